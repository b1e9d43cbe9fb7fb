//! The behaviours every backend shares (`common/neutral/`), run against MariaDB or
//! MySQL (`MYSQL_URL`, default `mysql://root@127.0.0.1:3306`): every test gets a
//! database of its own, dropped at the end.
//!
//! The shared tests of Diesel's own RETURNING and of a COMMIT that fails on a deferred
//! foreign key are not compiled here (see `common/mysql_db.rs`); the capture's own
//! edge cases are in `tests/mysql*.rs`.

mod common;
#[path = "common/mysql_db.rs"]
mod mysql_db;

/// The fixture the shared tests of `common/neutral/` run against.
type Db = mysql_db::MysqlDb;

#[path = "common/neutral/mod.rs"]
mod neutral;

neutral::shared_tests!();

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use neutral::assert_transaction_delivers_on_commit;

#[test]
fn events_reach_listeners_in_commit_order_with_increasing_seq() {
    neutral::assert_interleaved_transactions_commit_in_order();
}

#[test]
fn a_read_committed_transaction_delivers_nothing_before_commit_and_its_insert_after() {
    // The capture's reasoning differs by isolation level (docs/how-it-works.md, 1b);
    // `SET TRANSACTION` applies to the next transaction only.
    assert_transaction_delivers_on_commit("read_committed", |conn, body| {
        conn.batch_execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")?;
        conn.transaction(body)
    });
}
