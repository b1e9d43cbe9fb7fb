//! The behaviours every backend shares, written once.
//!
//! Each backend's test binary compiles this directory as its module `neutral`, after
//! naming its fixture `Db` (a [`Harness`] that is also [`Neutral`]: `PgSchema`,
//! `SqliteDb`, `MysqlDb`):
//!
//! ```ignore
//! mod common;
//! type Db = common::PgSchema;
//! #[path = "common/neutral/mod.rs"]
//! mod neutral;
//! neutral::shared_tests!();
//! ```
//!
//! so the tests are plain Diesel code on that backend's concrete connection types (no
//! generic bounds), and `shared_tests!` stamps out one `#[test]` per test at the
//! binary's root, under the test's own name. A test added here goes into the list in
//! `shared_tests!` too: an unlisted one is never called, and the compiler warns that
//! it is dead code (which `clippy -D warnings` refuses).
//!
//! The tests are grouped by concept, one file each: `writes.rs` (every write path),
//! `transactions.rs` (after commit only), `statements.rs` (the SQL that runs),
//! `listeners.rs` (listeners and scopes), `integration.rs` (r2d2, migrations, models
//! on renamed tables). Two more files hold tests only some backends can run, each
//! behind a capability the backend's fixture declares by implementing a marker trait
//! (a backend that lacks it does not compile the file, so nothing is skipped at run
//! time):
//!
//! - `returning.rs`, `Returning`: Diesel's own `.returning()` and `get_result` on
//!   inserts and updates (PostgreSQL, SQLite; Diesel's MySQL backend has no
//!   RETURNING in its query builder, so they do not compile there);
//! - `deferred.rs`, `DeferredConstraints`: a foreign key checked at COMMIT, so
//!   that the commit itself fails (PostgreSQL, SQLite; InnoDB checks every
//!   constraint at once).
//!
//! The tests only one backend runs are in `tests/postgres.rs`, `tests/sqlite.rs` and
//! `tests/mysql*.rs`; they use the helpers below (`pub`) as well.

mod integration;
mod listeners;
mod statements;
mod transactions;
mod writes;

pub use integration::*;
pub use listeners::*;
pub use statements::*;
pub use transactions::*;
pub use writes::*;

use super::Db;
use crate::common::*;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_emitter::crossbeam_channel::{self, Receiver};
use diesel_emitter::prelude::*;
pub use diesel_emitter::{Event, Source};
use std::collections::HashSet;

/// The backend's plain connection (`PgConnection`, `SqliteConnection`, `MysqlConnection`).
pub type Plain = <Db as Harness>::Plain;
/// The backend's emitting connection.
pub type Conn = EmittingConnection<Plain>;
/// The backend itself (`Pg`, `Sqlite`, `Mysql`), to render statements with `debug_query`.
pub type Backend = <Plain as Connection>::Backend;

/// What the shared tests need of a backend besides its [`Harness`]: the few writes
/// whose Diesel form differs between backends. Implemented next to each backend's
/// `Db` (`tests/postgres.rs`, `tests/sqlite.rs`, `tests/common/mysql_db.rs`).
pub trait Neutral: Harness {
    /// The conflict target of an upsert on `users.id`: the column where the backend
    /// names one (`ON CONFLICT (id)`), `DuplicatedKeys` on MySQL, whose `ON
    /// DUPLICATE KEY UPDATE` names none.
    type IdConflict;

    /// Queries an emitting connection runs before its first captured write, besides
    /// the write: the check of the model against the table's columns on every
    /// backend, and on MySQL the server's flavour (MariaDB's RETURNING or not).
    const SETUP_QUERIES: usize;

    /// Inserts `user` through `conn` and returns the row as stored.
    fn insert_user(conn: &mut EmittingConnection<Self::Plain>, user: &NewUser)
        -> QueryResult<User>;

    /// Inserts `user` through a plain connection and returns the row as stored.
    fn seed_user(conn: &mut Self::Plain, user: &NewUser) -> QueryResult<User>;

    /// See [`Neutral::IdConflict`].
    fn id_conflict() -> Self::IdConflict;

    /// The row count an upsert reports for `inserted` new rows and `updated`
    /// existing ones that it changed.
    fn upsert_count(inserted: usize, updated: usize) -> usize {
        inserted + updated
    }

    /// The row count `on_conflict_do_nothing()` reports for `inserted` new rows and
    /// `conflicting` ones it left alone.
    fn do_nothing_count(inserted: usize, _conflicting: usize) -> usize {
        inserted
    }
}

/// Stamps out, where it is called (a test binary's root), one
/// `#[test] fn <name>() { neutral::<name>() }` per test of this directory, except
/// those behind a capability (see the module's documentation).
macro_rules! shared_tests {
    () => {
        $crate::neutral::shared_tests!(
            // writes.rs
            insert_via_execute_emits_one_insert_event_with_the_full_row,
            batch_insert_of_n_rows_emits_n_insert_events,
            empty_batch_insert_returns_zero_and_emits_nothing,
            update_of_many_rows_emits_one_update_per_row_with_the_set_columns,
            update_matching_no_row_emits_nothing,
            one_changeset_type_with_different_fields_set_reports_each_statements_own_columns,
            delete_of_many_rows_emits_the_deleted_rows,
            save_changes_emits_one_update,
            upsert_do_update_emits_insert_for_new_keys_and_update_for_existing_ones,
            upsert_do_nothing_emits_only_for_inserted_rows,
            // transactions.rs
            transaction_delivers_nothing_before_commit_and_everything_after,
            rolled_back_transaction_delivers_nothing,
            rolled_back_savepoint_drops_only_its_own_events,
            released_savepoint_merges_into_the_outer_commit,
            failed_statement_in_a_savepoint_drops_its_events_and_the_outer_commit_delivers_the_rest,
            test_transaction_delivers_nothing,
            failed_statement_delivers_nothing,
            // statements.rs
            writes_on_a_table_without_a_model_run_exactly_the_plain_sql,
            writes_on_a_model_table_append_returning,
            the_same_statement_alternating_plain_and_emitting_always_counts_one_and_emits_only_when_emitting,
            without_events_emits_nothing_and_runs_the_sql_unchanged,
            inner_mut_writes_emit_nothing,
            // listeners.rs
            panicking_listener_keeps_receiving_and_harms_no_one,
            full_queue_with_drop_policy_drops_and_counts_without_blocking_the_write,
            listener_with_actions_sees_only_those_actions,
            listener_with_a_filter_sees_only_matching_rows,
            with_emit_local_only_delivers_to_local_listeners,
            with_emit_remote_only_delivers_nothing_to_local_listeners,
            events_keep_the_mode_of_the_scope_they_were_written_in,
            emit_mode_is_restored_after_the_scope,
            // integration.rs
            r2d2_pool_delivers_every_event_once_with_increasing_seq_per_origin,
            migrations_through_an_emitting_connection_emit_nothing_and_later_writes_emit,
            two_models_on_one_table_each_get_their_own_typed_event,
            a_model_on_a_table_renamed_with_sql_name_emits,
            a_column_renamed_with_sql_name_is_captured_and_reported_by_its_database_name,
        );
    };
    ($($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $crate::neutral::$name()
            }
        )*
    };
}
pub(crate) use shared_tests;

// A table without an `Emits` model.
diesel::table! {
    notes (id) {
        id -> Int4,
        body -> Text,
    }
}

// ---------------------------------------------------------------- helpers

/// Inserts a user through `conn` and returns it.
pub fn insert_user(conn: &mut Conn, name: &str) -> User {
    try_insert_user(conn, name).unwrap()
}

/// Inserts a user through `conn`, passing errors on.
pub fn try_insert_user(conn: &mut Conn, name: &str) -> QueryResult<User> {
    Db::insert_user(conn, &NewUser::named(name))
}

/// Inserts users through a plain connection (no events), one by one, and returns them.
pub fn seed(conn: &mut Plain, names: &[&str]) -> Vec<User> {
    names
        .iter()
        .map(|n| Db::seed_user(conn, &NewUser::named(n)).unwrap())
        .collect()
}

/// Commits a sentinel insert and asserts that it is the next event `rx` receives.
#[track_caller]
pub fn sentinel(conn: &mut Conn, rx: &Receiver<Event<User>>) {
    let name = unique_name("sentinel");
    insert_user(conn, &name);
    assert_next_is_sentinel(rx, &name);
}

/// Every user, by id.
pub fn all_users(conn: &mut Plain) -> Vec<User> {
    users::table
        .select(User::as_select())
        .order(users::id)
        .load(conn)
        .unwrap()
}

/// Two connections whose transactions interleave, as servers with row locks allow
/// (PostgreSQL, MySQL; SQLite's single writer has a scenario of its own): events
/// arrive in commit order, not statement order.
#[allow(dead_code)] // the SQLite binary does not call it
pub fn assert_interleaved_transactions_commit_in_order() {
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

/// Runs `writes` on two emitting connections to one database, then asserts that a
/// `subscribe()` receiver and a `listen` closure both got the users named `expected`,
/// in that order, with seq 1, 2, ... and unique event ids.
pub fn assert_commit_order(writes: impl FnOnce(&mut Conn, &mut Conn), expected: &[&str]) {
    let db = Db::with_users("commit_order");
    let emitter = emitter("commit_order");
    let rx = emitter.on::<User>().subscribe();
    let (tx, closure_rx) = crossbeam_channel::unbounded();
    let _sub = emitter.on::<User>().listen(move |ev: &Event<User>| {
        tx.send(ev.clone()).unwrap();
    });
    let mut a = db.emitting(&emitter);
    let mut b = db.emitting(&emitter);

    writes(&mut a, &mut b);

    for rx in [&rx, &closure_rx] {
        let events = recv_n(rx, expected.len());
        let names: Vec<&str> = events.iter().map(|e| e.row.name.as_str()).collect();
        assert_eq!(names, expected);
        let seqs: Vec<u64> = events.iter().map(|e| e.meta.seq).collect();
        assert_eq!(seqs, (1..=expected.len() as u64).collect::<Vec<u64>>());
        let ids: HashSet<_> = events.iter().map(|e| e.meta.id).collect();
        assert_eq!(ids.len(), expected.len(), "event ids are unique");
    }
    sentinel(&mut a, &rx);
}

/// The body of a transaction, for a test that begins the transaction its own way
/// (`transaction`, `build_transaction`, `immediate_transaction`, ...).
pub type TxBody<'a, T> = &'a mut dyn FnMut(&mut Conn) -> QueryResult<T>;

/// A transaction that `begin` begins and runs the body in delivers nothing before
/// it commits, and its insert after.
pub fn assert_transaction_delivers_on_commit(
    test: &str,
    begin: impl FnOnce(&mut Conn, TxBody<'_, User>) -> QueryResult<User>,
) {
    let db = Db::with_users(test);
    let emitter = emitter(test);
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user = begin(&mut conn, &mut |c| {
        let user = insert_user(c, "committed");
        assert_empty(&rx);
        assert_eq!(c.pending_events(), 1);
        Ok(user)
    })
    .unwrap();
    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &user));
    assert_eq!(conn.pending_events(), 0);
    sentinel(&mut conn, &rx);
}

/// A transaction that `begin` begins and runs the body in, which rolls back,
/// delivers nothing.
pub fn assert_rolled_back_transaction_delivers_nothing(
    test: &str,
    begin: impl FnOnce(&mut Conn, TxBody<'_, ()>) -> QueryResult<()>,
) {
    let db = Db::with_users(test);
    let emitter = emitter(test);
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result = begin(&mut conn, &mut |c| {
        insert_user(c, "ghost1");
        insert_user(c, "ghost2");
        assert_eq!(c.pending_events(), 2);
        Err(DieselError::RollbackTransaction)
    });
    assert!(matches!(result, Err(DieselError::RollbackTransaction)));
    assert_eq!(conn.pending_events(), 0);
    assert!(all_users(&mut db.plain()).is_empty());
    sentinel(&mut conn, &rx);
}
