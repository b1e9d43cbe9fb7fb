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
use diesel::result::Error as DieselError;
use neutral::{assert_commit_order, assert_transaction_delivers_on_commit, insert_user};

#[test]
fn events_reach_listeners_in_commit_order_with_increasing_seq() {
    assert_commit_order(
        |a, b| {
            insert_user(a, "1");
            a.transaction(|a| {
                insert_user(a, "2");
                insert_user(b, "3"); // autocommit on another connection: commits first
                insert_user(a, "4");
                Ok::<_, DieselError>(())
            })
            .unwrap();
            b.transaction(|b| {
                insert_user(b, "5");
                insert_user(a, "6");
                b.transaction(|b| {
                    insert_user(b, "7");
                    Ok::<_, DieselError>(())
                })
            })
            .unwrap();
            insert_user(a, "8");
            insert_user(b, "9");
        },
        &["1", "3", "2", "4", "6", "5", "7", "8", "9"],
    );
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
