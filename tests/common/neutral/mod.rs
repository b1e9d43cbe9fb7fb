//! The behaviours both backends share, written once.
//!
//! Each backend's test binary compiles this file as its module `neutral`, after naming
//! its fixture `Db` (a [`Harness`]: `PgSchema`, `SqliteDb`):
//!
//! ```ignore
//! mod common;
//! type Db = common::PgSchema;
//! #[path = "common/neutral.rs"]
//! mod neutral;
//! neutral::shared_tests!();
//! ```
//!
//! so the tests below are plain Diesel code on that backend's concrete connection
//! types (no generic bounds), and `shared_tests!` stamps out one `#[test]` per test at
//! the binary's root, under the test's own name. A test added here goes into the list
//! in `shared_tests!` too: an unlisted one is never called, and the compiler warns
//! that it is dead code (which `clippy -D warnings` refuses).
//!
//! The tests only one backend runs are in `tests/postgres.rs` and `tests/sqlite.rs`;
//! they use the helpers below (`pub`) as well.

use super::Db;
use crate::common::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_emitter::crossbeam_channel::{self, Receiver};
use diesel_emitter::prelude::*;
use diesel_migrations::MigrationHarness;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The backend's plain connection (`PgConnection`, `SqliteConnection`).
pub type Plain = <Db as Harness>::Plain;
/// The backend's emitting connection.
pub type Conn = EmittingConnection<Plain>;
/// The backend itself (`Pg`, `Sqlite`), to render statements with `debug_query`.
pub type Backend = <Plain as Connection>::Backend;

/// Stamps out, where it is called (a test binary's root), one
/// `#[test] fn <name>() { neutral::<name>() }` per test of this file.
macro_rules! shared_tests {
    () => {
        $crate::neutral::shared_tests!(
            insert_via_execute_emits_one_insert_event_with_the_full_row,
            insert_get_result_returns_the_row_and_emits_it,
            insert_returning_id_returns_the_id_and_the_event_has_the_full_row,
            batch_insert_of_n_rows_emits_n_insert_events,
            empty_batch_insert_returns_zero_and_emits_nothing,
            update_of_many_rows_emits_one_update_per_row_with_the_set_columns,
            update_matching_no_row_emits_nothing,
            one_changeset_type_with_different_fields_set_reports_each_statements_own_columns,
            update_get_results_returns_the_rows_and_emits_them,
            get_result_on_a_many_row_update_still_emits_every_row,
            delete_of_many_rows_emits_the_deleted_rows,
            save_changes_emits_one_update,
            upsert_do_update_emits_insert_for_new_keys_and_update_for_existing_ones,
            upsert_do_nothing_emits_only_for_inserted_rows,
            transaction_delivers_nothing_before_commit_and_everything_after,
            rolled_back_transaction_delivers_nothing,
            rolled_back_savepoint_drops_only_its_own_events,
            released_savepoint_merges_into_the_outer_commit,
            failed_statement_in_a_savepoint_drops_its_events_and_the_outer_commit_delivers_the_rest,
            test_transaction_delivers_nothing,
            failed_statement_delivers_nothing,
            failed_commit_on_a_deferred_foreign_key_delivers_nothing,
            writes_on_a_table_without_a_model_run_exactly_the_plain_sql,
            writes_on_a_model_table_append_returning,
            panicking_listener_keeps_receiving_and_harms_no_one,
            full_queue_with_drop_policy_drops_and_counts_without_blocking_the_write,
            the_same_statement_alternating_plain_and_emitting_always_counts_one_and_emits_only_when_emitting,
            without_events_emits_nothing_and_runs_the_sql_unchanged,
            with_emit_local_only_delivers_to_local_listeners,
            with_emit_remote_only_delivers_nothing_to_local_listeners,
            events_keep_the_mode_of_the_scope_they_were_written_in,
            emit_mode_is_restored_after_the_scope,
            inner_mut_writes_emit_nothing,
            r2d2_pool_delivers_every_event_once_with_increasing_seq_per_origin,
            migrations_through_an_emitting_connection_emit_nothing_and_later_writes_emit,
            two_models_on_one_table_each_get_their_own_typed_event,
            a_model_on_a_table_renamed_with_sql_name_emits,
            a_column_renamed_with_sql_name_is_captured_and_reported_by_its_database_name,
            listener_with_actions_sees_only_those_actions,
            listener_with_a_filter_sees_only_matching_rows,
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

// Two models on one table.
diesel::table! {
    profiles (id) {
        id -> Int4,
        name -> Text,
        bio -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = profiles)]
struct Profile {
    id: i32,
    name: String,
    bio: String,
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = profiles)]
struct ProfileName {
    id: i32,
    name: String,
}

// A model whose table has a deferred foreign key.
diesel::table! {
    members (id) {
        id -> Int4,
        team_id -> Int4,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = members)]
struct Member {
    id: i32,
    team_id: i32,
}

// A table whose SQL name differs from its Rust name.
diesel::table! {
    #[sql_name = "app_accounts"]
    accounts (id) {
        id -> Int4,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = accounts)]
struct Account {
    id: i32,
    name: String,
}

// A column whose SQL name differs from its Rust name, read into a renamed field.
diesel::table! {
    labels (id) {
        id -> Int4,
        #[sql_name = "label_text"]
        text -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = labels)]
struct Label {
    id: i32,
    #[diesel(column_name = text)]
    caption: String,
}

// A model on diesel's migrations table: it must never emit.
diesel::table! {
    __diesel_schema_migrations (version) {
        version -> VarChar,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = __diesel_schema_migrations, primary_key(version))]
struct SchemaMigration {
    version: String,
}

// ---------------------------------------------------------------- helpers

/// Inserts a user through `conn` and returns it.
pub fn insert_user(conn: &mut Conn, name: &str) -> User {
    try_insert_user(conn, name).unwrap()
}

/// Inserts a user through `conn`, passing errors on.
pub fn try_insert_user(conn: &mut Conn, name: &str) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(&NewUser::named(name))
        .returning(User::as_returning())
        .get_result(conn)
}

/// Inserts users through a plain connection (no events), one by one, and returns them.
pub fn seed(conn: &mut Plain, names: &[&str]) -> Vec<User> {
    names
        .iter()
        .map(|n| {
            diesel::insert_into(users::table)
                .values(&NewUser::named(n))
                .returning(User::as_returning())
                .get_result(conn)
                .unwrap()
        })
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

// ---------------------------------------------------------------- write paths

pub fn insert_via_execute_emits_one_insert_event_with_the_full_row() {
    let db = Db::with_users("insert_execute");
    let emitter = emitter("insert_execute");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(users::table)
        .values(&NewUser::named("ann"))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 1);

    let ev = recv(&rx);
    let stored = all_users(&mut db.plain());
    assert_eq!(stored.len(), 1);
    assert_eq!(ev.action, Action::Insert);
    assert_eq!(ev.row, stored[0], "the event carries the row as stored");
    assert!(ev.row.id > 0, "the generated id is filled in");
    assert!(ev.row.active, "the DB default is filled in");
    assert_eq!(sorted(ev.changed()), sorted(&USER_COLUMNS));
    assert_eq!(ev.meta.table, "users");
    assert_eq!(ev.meta.source, Source::Local);
    assert_eq!(&*ev.meta.origin, emitter.node_id());
    assert_eq!(ev.meta.seq, 1);
    sentinel(&mut conn, &rx);
}

pub fn insert_get_result_returns_the_row_and_emits_it() {
    let db = Db::with_users("insert_get_result");
    let emitter = emitter("insert_get_result");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user: User = diesel::insert_into(users::table)
        .values(&NewUser::named("bob"))
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(user.name, "bob");
    assert_eq!(all_users(&mut db.plain()), vec![user.clone()]);

    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &user));
    sentinel(&mut conn, &rx);
}

pub fn insert_returning_id_returns_the_id_and_the_event_has_the_full_row() {
    let db = Db::with_users("insert_returning_id");
    let emitter = emitter("insert_returning_id");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let id: i32 = diesel::insert_into(users::table)
        .values(&NewUser::named("cid"))
        .returning(users::id)
        .get_result(&mut conn)
        .unwrap();

    let stored = all_users(&mut db.plain());
    assert_eq!(stored.len(), 1);
    assert_eq!(
        id, stored[0].id,
        "the caller's RETURNING gets the right value"
    );
    let ev = recv(&rx);
    assert_eq!(ev.action, Action::Insert);
    assert_eq!(ev.row, stored[0]);
    sentinel(&mut conn, &rx);
}

pub fn batch_insert_of_n_rows_emits_n_insert_events() {
    let db = Db::with_users("batch_insert");
    let emitter = emitter("batch_insert");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let names: Vec<String> = (0..25).map(|i| format!("user{i:02}")).collect();
    let rows: Vec<NewUser> = names.iter().map(|n| NewUser::named(n)).collect();
    let n = diesel::insert_into(users::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 25);

    let events = recv_n(&rx, 25);
    let mut got: Vec<String> = events.iter().map(|e| e.row.name.clone()).collect();
    got.sort();
    assert_eq!(got, names);
    assert!(events.iter().all(|e| e.action == Action::Insert));
    let ids: HashSet<i32> = events.iter().map(|e| e.row.id).collect();
    assert_eq!(ids.len(), 25);
    sentinel(&mut conn, &rx);
}

pub fn empty_batch_insert_returns_zero_and_emits_nothing() {
    let db = Db::with_users("empty_batch");
    let emitter = emitter("empty_batch");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(users::table)
        .values(&Vec::<NewUser>::new())
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 0);
    sentinel(&mut conn, &rx);
}

pub fn update_of_many_rows_emits_one_update_per_row_with_the_set_columns() {
    let db = Db::with_users("update_many");
    let mut plain = db.plain();
    let seeded = seed(&mut plain, &["a", "b", "c", "d"]);
    diesel::update(users::table.find(seeded[3].id))
        .set(users::active.eq(false))
        .execute(&mut plain)
        .unwrap();
    let emitter = emitter("update_many");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::update(users::table.filter(users::active.eq(true)))
        .set((users::name.eq("renamed"), users::active.eq(false)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 3);

    let events = recv_n(&rx, 3);
    let after = all_users(&mut plain);
    let mut ids = Vec::new();
    for ev in &events {
        assert_eq!(ev.action, Action::Update);
        assert_eq!(sorted(ev.changed()), sorted(&["name", "active"]));
        assert_eq!(ev.row.name, "renamed");
        assert!(!ev.row.active);
        assert!(after.contains(&ev.row), "the row after the update");
        ids.push(ev.row.id);
    }
    ids.sort();
    assert_eq!(ids, vec![seeded[0].id, seeded[1].id, seeded[2].id]);
    sentinel(&mut conn, &rx);
}

pub fn one_changeset_type_with_different_fields_set_reports_each_statements_own_columns() {
    // `None` fields are left out of the SET list, so one Rust type renders
    // different SQL; each statement's plan must be its own.
    #[derive(AsChangeset)]
    #[diesel(table_name = users)]
    struct Patch {
        name: Option<String>,
        active: Option<bool>,
    }
    let db = Db::with_users("patch_types");
    let seeded = seed(&mut db.plain(), &["a"]);
    let emitter = emitter("patch_types");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let patches = [
        (Some("b"), None, vec!["name"]),
        (None, Some(false), vec!["active"]),
        (Some("c"), Some(true), vec!["active", "name"]),
        (Some("d"), None, vec!["name"]),
    ];
    for (name, active, changed) in patches {
        let patch = Patch {
            name: name.map(str::to_owned),
            active,
        };
        diesel::update(users::table.find(seeded[0].id))
            .set(&patch)
            .execute(&mut conn)
            .unwrap();
        let ev = recv(&rx);
        assert_eq!(sorted(ev.changed()), sorted(&changed));
        if let Some(name) = name {
            assert_eq!(ev.row.name, name);
        }
        if let Some(active) = active {
            assert_eq!(ev.row.active, active);
        }
    }
    sentinel(&mut conn, &rx);
}

pub fn update_matching_no_row_emits_nothing() {
    let db = Db::with_users("update_none");
    let emitter = emitter("update_none");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::update(users::table.filter(users::id.eq(-1)))
        .set(users::name.eq("nobody"))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 0);
    sentinel(&mut conn, &rx);
}

pub fn update_get_results_returns_the_rows_and_emits_them() {
    // (SQLite cannot return the rows of a batch insert: Diesel runs it row by row.
    // `insert_get_results_emits_one_event_per_returned_row` is PostgreSQL's.)
    let db = Db::with_users("update_get_results");
    let seeded = seed(&mut db.plain(), &["a", "b"]);
    let emitter = emitter("update_get_results");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let updated: Vec<User> = diesel::update(users::table)
        .set(users::email.eq(users::name.concat("@new.example")))
        .returning(User::as_returning())
        .get_results(&mut conn)
        .unwrap();
    assert_eq!(updated.len(), seeded.len());

    let rows: Vec<User> = recv_n(&rx, 2).into_iter().map(|e| e.row).collect();
    assert_eq!(rows, updated);
    sentinel(&mut conn, &rx);
}

pub fn get_result_on_a_many_row_update_still_emits_every_row() {
    let db = Db::with_users("update_get_result_many");
    seed(&mut db.plain(), &["a", "b", "c"]);
    let emitter = emitter("update_get_result_many");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    // get_result reads only the first returned row; the statement changed three.
    let first: User = diesel::update(users::table)
        .set(users::active.eq(false))
        .returning(User::as_returning())
        .get_result(&mut conn)
        .unwrap();
    assert!(!first.active);

    let events = recv_n(&rx, 3);
    assert!(events.iter().any(|e| e.row == first));
    assert!(events
        .iter()
        .all(|e| e.action == Action::Update && !e.row.active));
    sentinel(&mut conn, &rx);
}

pub fn delete_of_many_rows_emits_the_deleted_rows() {
    let db = Db::with_users("delete_many");
    let seeded = seed(&mut db.plain(), &["a", "b", "c", "d"]);
    let emitter = emitter("delete_many");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let doomed: Vec<i32> = seeded[..3].iter().map(|u| u.id).collect();
    let n = diesel::delete(users::table.filter(users::id.eq_any(&doomed)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 3);

    let mut events = recv_n(&rx, 3);
    events.sort_by_key(|e| e.row.id);
    for (ev, before) in events.iter().zip(&seeded[..3]) {
        assert_eq!(ev.action, Action::Delete);
        assert_eq!(&ev.row, before, "the deleted row as it was");
        assert_eq!(sorted(ev.changed()), sorted(&USER_COLUMNS));
    }
    assert_eq!(all_users(&mut db.plain()), vec![seeded[3].clone()]);
    sentinel(&mut conn, &rx);
}

pub fn save_changes_emits_one_update() {
    let db = Db::with_users("save_changes");
    let mut user = seed(&mut db.plain(), &["sam"]).remove(0);
    let emitter = emitter("save_changes");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    user.name = "samantha".into();
    let saved: User = (&user).save_changes(&mut conn).unwrap();
    assert_eq!(saved, user);

    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Update, &user));
    assert_eq!(sorted(ev.changed()), sorted(&["name", "email", "active"]));
    sentinel(&mut conn, &rx);
}

pub fn upsert_do_update_emits_insert_for_new_keys_and_update_for_existing_ones() {
    let db = Db::with_users("upsert_do_update");
    let seeded = seed(&mut db.plain(), &["old1", "old2"]);
    let emitter = emitter("upsert_do_update");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows = vec![
        (
            users::id.eq(1000),
            users::name.eq("new1"),
            users::email.eq("new1@example.com"),
            users::active.eq(true),
        ),
        (
            users::id.eq(seeded[0].id),
            users::name.eq("upd1"),
            users::email.eq("ignored1@example.com"),
            users::active.eq(true),
        ),
        (
            users::id.eq(1001),
            users::name.eq("new2"),
            users::email.eq("new2@example.com"),
            users::active.eq(false),
        ),
        (
            users::id.eq(seeded[1].id),
            users::name.eq("upd2"),
            users::email.eq("ignored2@example.com"),
            users::active.eq(true),
        ),
    ];
    let n = diesel::insert_into(users::table)
        .values(&rows)
        .on_conflict(users::id)
        .do_update()
        .set(users::name.eq(excluded(users::name)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 4);

    let events: HashMap<i32, Event<User>> =
        recv_n(&rx, 4).into_iter().map(|e| (e.row.id, e)).collect();
    let stored: HashMap<i32, User> = all_users(&mut db.plain())
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    assert_eq!(events.len(), 4);
    for id in [1000, 1001] {
        let ev = &events[&id];
        assert_eq!(ev.action, Action::Insert, "{ev:?}");
        assert_eq!(sorted(ev.changed()), sorted(&USER_COLUMNS));
        assert_eq!(ev.row, stored[&id]);
    }
    for old in &seeded {
        let ev = &events[&old.id];
        assert_eq!(ev.action, Action::Update, "{ev:?}");
        assert_eq!(ev.changed(), ["name"]);
        assert_eq!(ev.row, stored[&old.id]);
        assert_eq!(
            ev.row.email, old.email,
            "only the DO UPDATE SET columns changed"
        );
    }
    sentinel(&mut conn, &rx);
}

pub fn upsert_do_nothing_emits_only_for_inserted_rows() {
    let db = Db::with_users("upsert_do_nothing");
    let seeded = seed(&mut db.plain(), &["old"]);
    let emitter = emitter("upsert_do_nothing");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows = vec![
        (
            users::id.eq(seeded[0].id),
            users::name.eq("clash"),
            users::email.eq("clash@example.com"),
        ),
        (
            users::id.eq(2000),
            users::name.eq("fresh"),
            users::email.eq("fresh@example.com"),
        ),
    ];
    let n = diesel::insert_into(users::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 1);

    let ev = recv(&rx);
    assert_eq!(ev.action, Action::Insert);
    assert_eq!(
        (ev.row.id, ev.row.name.as_str(), ev.row.active),
        (2000, "fresh", true)
    );
    sentinel(&mut conn, &rx);
}

// ---------------------------------------------------------------- after commit only

pub fn transaction_delivers_nothing_before_commit_and_everything_after() {
    let db = Db::with_users("tx_commit");
    let emitter = emitter("tx_commit");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "t1");
        insert_user(c, "t2");
        diesel::update(users::table)
            .set(users::active.eq(false))
            .execute(c)?;
        assert_empty(&rx);
        assert_eq!(c.pending_events(), 4);
        Ok::<_, DieselError>(())
    })
    .unwrap();
    assert_eq!(conn.pending_events(), 0);

    let events = recv_n(&rx, 4);
    let got: Vec<(Action, &str)> = events
        .iter()
        .map(|e| (e.action, e.row.name.as_str()))
        .collect();
    assert_eq!(
        got[..2],
        [(Action::Insert, "t1"), (Action::Insert, "t2")],
        "commit order"
    );
    assert!(got[2..].iter().all(|(a, _)| *a == Action::Update));
    assert_seq_increasing(&events);
    sentinel(&mut conn, &rx);
}

pub fn rolled_back_transaction_delivers_nothing() {
    assert_rolled_back_transaction_delivers_nothing("tx_rollback", |conn, body| {
        conn.transaction(body)
    });
}

pub fn rolled_back_savepoint_drops_only_its_own_events() {
    let db = Db::with_users("savepoint_rollback");
    let emitter = emitter("savepoint_rollback");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "outer1");
        let inner = c.transaction(|c| {
            insert_user(c, "inner");
            assert_eq!(c.pending_events(), 2);
            Err::<(), _>(DieselError::RollbackTransaction)
        });
        assert!(inner.is_err());
        assert_eq!(c.pending_events(), 1, "the savepoint's event is gone");
        insert_user(c, "outer2");
        Ok::<_, DieselError>(())
    })
    .unwrap();

    let names: Vec<String> = recv_n(&rx, 2).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["outer1", "outer2"]);
    let stored: Vec<String> = all_users(&mut db.plain())
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(stored, ["outer1", "outer2"]);
    sentinel(&mut conn, &rx);
}

pub fn released_savepoint_merges_into_the_outer_commit() {
    let db = Db::with_users("savepoint_release");
    let emitter = emitter("savepoint_release");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "outer1");
        c.transaction(|c| {
            insert_user(c, "inner");
            Ok::<_, DieselError>(())
        })?;
        assert_empty(&rx);
        assert_eq!(
            c.pending_events(),
            2,
            "the released savepoint's event waits"
        );
        insert_user(c, "outer2");
        Ok::<_, DieselError>(())
    })
    .unwrap();

    let events = recv_n(&rx, 3);
    let names: Vec<&str> = events.iter().map(|e| e.row.name.as_str()).collect();
    assert_eq!(names, ["outer1", "inner", "outer2"]);
    assert_seq_increasing(&events);
    sentinel(&mut conn, &rx);
}

pub fn failed_statement_in_a_savepoint_drops_its_events_and_the_outer_commit_delivers_the_rest() {
    let db = Db::with_users("savepoint_failed_statement");
    let emitter = emitter("savepoint_failed_statement");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "outer1");
        let inner = c.transaction(|c| {
            insert_user(c, "inner-ok");
            // The same email again: a unique violation aborts the savepoint.
            try_insert_user(c, "outer1")
        });
        assert!(
            matches!(
                inner,
                Err(DieselError::DatabaseError(
                    DatabaseErrorKind::UniqueViolation,
                    _
                ))
            ),
            "{inner:?}"
        );
        assert_eq!(c.pending_events(), 1);
        insert_user(c, "outer2");
        Ok::<_, DieselError>(())
    })
    .unwrap();

    let names: Vec<String> = recv_n(&rx, 2).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["outer1", "outer2"]);
    sentinel(&mut conn, &rx);
}

pub fn test_transaction_delivers_nothing() {
    let db = Db::with_users("test_transaction");
    let emitter = emitter("test_transaction");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.test_transaction(|c| {
        insert_user(c, "never");
        assert_eq!(c.pending_events(), 1);
        Ok::<_, DieselError>(())
    });
    assert_eq!(conn.pending_events(), 0);
    assert!(all_users(&mut db.plain()).is_empty());
    sentinel(&mut conn, &rx);
}

pub fn failed_statement_delivers_nothing() {
    let db = Db::with_users("failed_statement");
    let existing = seed(&mut db.plain(), &["taken"]).remove(0);
    let emitter = emitter("failed_statement");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    // The first rows are fine, the last one violates the unique email.
    let rows = vec![
        NewUser::named("fine1"),
        NewUser::named("fine2"),
        NewUser {
            name: "dup".into(),
            email: existing.email.clone(),
        },
    ];
    let result = diesel::insert_into(users::table)
        .values(&rows)
        .execute(&mut conn);
    assert!(
        matches!(
            result,
            Err(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        ),
        "{result:?}"
    );
    assert_eq!(all_users(&mut db.plain()), vec![existing]);
    sentinel(&mut conn, &rx);
}

pub fn failed_commit_on_a_deferred_foreign_key_delivers_nothing() {
    let db = Db::new("failed_commit_fk");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE teams (id INTEGER PRIMARY KEY);
             CREATE TABLE members (
                id {},
                team_id INTEGER NOT NULL REFERENCES teams (id) DEFERRABLE INITIALLY DEFERRED
             );",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("failed_commit_fk");
    let rx = emitter.on::<Member>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result = conn.transaction(|c| {
        diesel::insert_into(members::table)
            .values(members::team_id.eq(42))
            .execute(c)?;
        assert_eq!(c.pending_events(), 1);
        Ok::<_, DieselError>(())
    });
    assert!(
        matches!(
            result,
            Err(DieselError::DatabaseError(
                DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        ),
        "COMMIT must fail: {result:?}"
    );
    assert_eq!(conn.pending_events(), 0);
    let stored: i64 = members::table.count().get_result(&mut db.plain()).unwrap();
    assert_eq!(stored, 0);

    // Sentinel: a valid member is the next event.
    db.plain()
        .batch_execute("INSERT INTO teams (id) VALUES (1)")
        .unwrap();
    let member: Member = diesel::insert_into(members::table)
        .values(members::team_id.eq(1))
        .get_result(&mut conn)
        .unwrap();
    let ev = recv(&rx);
    assert_eq!((ev.action, ev.row), (Action::Insert, member));
}

// ---------------------------------------------------------------- tables without a model

pub fn writes_on_a_table_without_a_model_run_exactly_the_plain_sql() {
    let db = Db::new("no_model_sql");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE notes (id {}, body TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("no_model_sql");
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = || diesel::insert_into(notes::table).values(notes::body.eq("hello"));
    let expected = diesel::debug_query::<Backend, _>(&insert()).to_string();
    assert_eq!(insert().execute(&mut conn).unwrap(), 1);
    assert_eq!(log.take(), vec![expected]);

    let update = || diesel::update(notes::table).set(notes::body.eq("bye"));
    let expected = diesel::debug_query::<Backend, _>(&update()).to_string();
    assert_eq!(update().execute(&mut conn).unwrap(), 1);
    assert_eq!(log.take(), vec![expected]);

    let delete = || diesel::delete(notes::table.filter(notes::body.eq("bye")));
    let expected = diesel::debug_query::<Backend, _>(&delete()).to_string();
    assert_eq!(delete().execute(&mut conn).unwrap(), 1);
    let queries = log.take();
    assert_eq!(queries, vec![expected]);
    assert!(!has_returning(&queries[0]));
    assert_eq!(emitter.stats().emitted, 0);
}

pub fn writes_on_a_model_table_append_returning() {
    let db = Db::with_users("model_sql");
    let emitter = emitter("model_sql");
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = |name: &str| diesel::insert_into(users::table).values(NewUser::named(name));
    // The first write on a model's table per connection also reads the table's
    // columns, to check the model against it.
    insert("first").execute(&mut conn).unwrap();
    let first = log.take();
    assert_eq!(
        first.len(),
        2,
        "the column check, then the insert: {first:?}"
    );
    assert!(has_returning(&first[1]), "{}", first[1]);

    let plain = diesel::debug_query::<Backend, _>(&insert("r")).to_string();
    assert!(!has_returning(&plain));
    insert("r").execute(&mut conn).unwrap();
    let queries = log.take();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(has_returning(&queries[0]), "{}", queries[0]);
    assert!(
        sql_part(&queries[0]).starts_with(sql_part(&plain)),
        "the statement itself is unchanged: {} vs {plain}",
        queries[0]
    );
}

// ---------------------------------------------------------------- panicking listener

pub fn panicking_listener_keeps_receiving_and_harms_no_one() {
    let db = Db::with_users("panicking_listener");
    let emitter = emitter("panicking_listener");
    let everything = emitter.on::<User>().subscribe();
    let (tx, survived) = crossbeam_channel::unbounded::<String>();
    let _sub = emitter.on::<User>().listen(move |ev: &Event<User>| {
        if ev.row.name.starts_with("boom") {
            panic!("listener panics on purpose for {}", ev.row.name);
        }
        tx.send(ev.row.name.clone()).unwrap();
    });
    let mut conn = db.emitting(&emitter);

    let names = ["ok1", "boom1", "ok2", "boom2", "ok3"];
    for name in names {
        let n = diesel::insert_into(users::table)
            .values(NewUser::named(name))
            .execute(&mut conn)
            .unwrap();
        assert_eq!(n, 1, "the write succeeds whatever the listener does");
    }

    let got: Vec<String> = (0..3)
        .map(|_| {
            survived
                .recv_timeout(TIMEOUT)
                .expect("the listener survives")
        })
        .collect();
    assert_eq!(got, ["ok1", "ok2", "ok3"]);
    // ok3 was handled after boom2, on the same listener thread: both panics are counted.
    assert_eq!(emitter.stats().panics, 2);
    let all: Vec<String> = recv_n(&everything, 5)
        .into_iter()
        .map(|e| e.row.name)
        .collect();
    assert_eq!(all, names, "the other listener gets everything");
    assert_eq!(all_users(&mut db.plain()).len(), 5);
}

pub fn full_queue_with_drop_policy_drops_and_counts_without_blocking_the_write() {
    let db = Db::with_users("when_full_drop");
    let emitter = emitter("when_full_drop");
    let (started_tx, started) = crossbeam_channel::unbounded::<String>();
    let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
    let _sub = emitter
        .on::<User>()
        .capacity(1)
        .when_full(WhenFull::Drop)
        .listen(move |ev: &Event<User>| {
            started_tx.send(ev.row.name.clone()).unwrap();
            gate.recv().unwrap();
        });
    let mut conn = db.emitting(&emitter);

    insert_user(&mut conn, "w1");
    // The listener holds w1 and waits at the gate: its queue is empty.
    assert_eq!(started.recv_timeout(TIMEOUT).unwrap(), "w1");
    insert_user(&mut conn, "w2"); // fills the queue (capacity 1)
    for name in ["w3", "w4", "w5"] {
        insert_user(&mut conn, name); // dropped, and the write is not held up
    }
    assert_eq!(emitter.stats().dropped, 3);
    gate_tx.send(()).unwrap();
    assert_eq!(started.recv_timeout(TIMEOUT).unwrap(), "w2");
    gate_tx.send(()).unwrap();
    insert_user(&mut conn, "w6");
    assert_eq!(started.recv_timeout(TIMEOUT).unwrap(), "w6");
    gate_tx.send(()).unwrap();
    assert_eq!(all_users(&mut db.plain()).len(), 6);
}

// ---------------------------------------------------------------- prepared statements

pub fn the_same_statement_alternating_plain_and_emitting_always_counts_one_and_emits_only_when_emitting(
) {
    let db = Db::with_users("prepared_cache");
    let emitter = emitter("prepared_cache");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let plan = [
        ("p1", false),
        ("e1", true),
        ("e2", true),
        ("p2", false),
        ("p3", false),
        ("e3", true),
        ("p4", false),
        ("e4", true),
        ("e5", true),
        ("p5", false),
    ];
    // One closure: every call returns the same statement type (the same query id).
    let stmt = |name: &str| {
        diesel::insert_into(users::table).values((
            users::name.eq(name.to_owned()),
            users::email.eq(format!("{name}@example.com")),
        ))
    };
    for (name, emitting) in plan {
        let n = if emitting {
            stmt(name).execute(&mut conn)
        } else {
            stmt(name).execute(conn.inner_mut())
        }
        .unwrap();
        assert_eq!(n, 1, "{name}");
    }

    let emitted: Vec<&str> = plan.iter().filter(|p| p.1).map(|p| p.0).collect();
    let got: Vec<String> = recv_n(&rx, emitted.len())
        .into_iter()
        .map(|e| e.row.name)
        .collect();
    assert_eq!(got, emitted);
    sentinel(&mut conn, &rx);
    assert_eq!(all_users(&mut db.plain()).len(), plan.len() + 1);
}

// ---------------------------------------------------------------- scopes

pub fn without_events_emits_nothing_and_runs_the_sql_unchanged() {
    let db = Db::with_users("without_events");
    let emitter = emitter("without_events");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = || diesel::insert_into(users::table).values(NewUser::named("quiet"));
    let expected = diesel::debug_query::<Backend, _>(&insert()).to_string();
    let n = conn
        .without_events(|c| {
            assert_eq!(c.emit_mode(), Emit::Off);
            insert().execute(c)
        })
        .unwrap();
    assert_eq!(n, 1);
    let queries = log.take();
    assert_eq!(queries, vec![expected]);
    assert!(!has_returning(&queries[0]));
    assert_eq!(conn.emit_mode(), Emit::All);
    sentinel(&mut conn, &rx);
}

pub fn with_emit_local_only_delivers_to_local_listeners() {
    let db = Db::with_users("local_only");
    let emitter = emitter("local_only");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user = conn.with_emit(Emit::LocalOnly, |c| insert_user(c, "local"));
    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &user));
    sentinel(&mut conn, &rx);
}

pub fn with_emit_remote_only_delivers_nothing_to_local_listeners() {
    let db = Db::with_users("remote_only");
    let emitter = emitter("remote_only");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.with_emit(Emit::RemoteOnly, |c| {
        insert_user(c, "remote");
        c.transaction(|c| {
            insert_user(c, "remote-tx");
            Ok::<_, DieselError>(())
        })
        .unwrap();
    });
    sentinel(&mut conn, &rx);
}

pub fn events_keep_the_mode_of_the_scope_they_were_written_in() {
    let db = Db::with_users("scope_in_tx");
    let emitter = emitter("scope_in_tx");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        c.with_emit(Emit::RemoteOnly, |c| insert_user(c, "hidden"));
        c.without_events(|c| insert_user(c, "off"));
        insert_user(c, "visible");
        Ok::<_, DieselError>(())
    })
    .unwrap();
    let ev = recv(&rx);
    assert_eq!(ev.row.name, "visible");
    sentinel(&mut conn, &rx);
}

pub fn emit_mode_is_restored_after_the_scope() {
    let db = Db::with_users("mode_restored");
    let emitter = emitter("mode_restored");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    assert_eq!(conn.emit_mode(), Emit::All);
    conn.with_emit(Emit::LocalOnly, |c| {
        c.without_events(|c| assert_eq!(c.emit_mode(), Emit::Off));
        assert_eq!(c.emit_mode(), Emit::LocalOnly);
    });
    assert_eq!(conn.emit_mode(), Emit::All);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        conn.without_events(|_| panic!("a scope that panics"))
    }));
    assert!(panicked.is_err());
    assert_eq!(conn.emit_mode(), Emit::All, "restored after a panic too");

    // The restored mode emits.
    let user = insert_user(&mut conn, "after");
    let ev = recv(&rx);
    assert_eq!(ev.row, user);
}

pub fn inner_mut_writes_emit_nothing() {
    let db = Db::with_users("inner_mut");
    let emitter = emitter("inner_mut");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    seed(conn.inner_mut(), &["a", "b"]);
    diesel::update(users::table)
        .set(users::active.eq(false))
        .execute(conn.inner_mut())
        .unwrap();
    diesel::delete(users::table)
        .execute(conn.inner_mut())
        .unwrap();
    sentinel(&mut conn, &rx);
    assert_eq!(emitter.stats().emitted, 1);
}

// ---------------------------------------------------------------- r2d2

pub fn r2d2_pool_delivers_every_event_once_with_increasing_seq_per_origin() {
    const THREADS: usize = 4;
    const ROUNDS: usize = Db::R2D2_ROUNDS;
    let db = Db::with_users("r2d2");
    let emitter = emitter("r2d2");
    let origin = emitter.node_id().to_owned();
    Emitter::set_global(emitter.clone());
    let rx = emitter.on::<User>().subscribe();

    let pool = Arc::new(db.pool(THREADS as u32));

    // Per thread: ROUNDS rounds; every third one is a transaction of two inserts and
    // an update, the others a single autocommit insert.
    let per_thread: usize = (0..ROUNDS).map(|i| if i % 3 == 0 { 3 } else { 1 }).sum();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let mut conn = pool.get().unwrap();
                    if i % 3 == 0 {
                        Db::write_transaction(&mut conn, |c| {
                            let u = insert_user(c, &format!("t{t}-{i:03}-a"));
                            insert_user(c, &format!("t{t}-{i:03}-b"));
                            diesel::update(users::table.find(u.id))
                                .set(users::active.eq(false))
                                .execute(c)
                        })
                        .unwrap();
                    } else {
                        insert_user(&mut conn, &format!("t{t}-{i:03}"));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }

    let total = THREADS * per_thread;
    let events: Vec<Event<User>> = recv_n(&rx, total)
        .into_iter()
        .filter(|e| *e.meta.origin == *origin)
        .collect();
    assert_eq!(events.len(), total);
    let ids: HashSet<_> = events.iter().map(|e| e.meta.id).collect();
    assert_eq!(ids.len(), total, "every event exactly once");
    assert_seq_increasing(&events);
    // Each thread's writes arrive in the order it committed them.
    for t in 0..THREADS {
        let prefix = format!("t{t}-");
        let mine: Vec<(Action, &str)> = events
            .iter()
            .filter(|e| e.row.name.starts_with(&prefix))
            .map(|e| (e.action, e.row.name.as_str()))
            .collect();
        assert_eq!(mine.len(), per_thread);
        let inserts: Vec<&str> = mine
            .iter()
            .filter(|(a, _)| *a == Action::Insert)
            .map(|(_, n)| *n)
            .collect();
        let mut in_order = inserts.clone();
        in_order.sort();
        assert_eq!(inserts, in_order, "thread {t} commit order");
    }
    // Nothing else arrives.
    let mut conn = pool.get().unwrap();
    sentinel(&mut conn, &rx);
}

// ---------------------------------------------------------------- migrations

pub fn migrations_through_an_emitting_connection_emit_nothing_and_later_writes_emit() {
    let db = Db::new("migrations");
    let emitter = emitter("migrations");
    let users_rx = emitter.on::<User>().subscribe();
    let migrations_rx = emitter.on::<SchemaMigration>().subscribe();
    let mut conn = db.emitting(&emitter);

    let applied = conn.run_pending_migrations(Db::MIGRATIONS).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(conn.applied_migrations().unwrap().len(), 1);
    assert_eq!(emitter.stats().emitted, 0);

    sentinel(&mut conn, &users_rx);
    assert_empty(&migrations_rx);
}

// ---------------------------------------------------------------- two models, one table

pub fn two_models_on_one_table_each_get_their_own_typed_event() {
    let db = Db::new("two_models");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE profiles (id {}, name TEXT NOT NULL, bio TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("two_models");
    let full = emitter.on::<Profile>().subscribe();
    let names = emitter.on::<ProfileName>().subscribe();
    let mut conn = db.emitting(&emitter);

    let p: Profile = diesel::insert_into(profiles::table)
        .values((profiles::name.eq("pat"), profiles::bio.eq("hi")))
        .get_result(&mut conn)
        .unwrap();
    let ev = recv(&full);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &p));
    let ev = recv(&names);
    assert_eq!(
        (ev.action, &ev.row),
        (
            Action::Insert,
            &ProfileName {
                id: p.id,
                name: "pat".into()
            }
        )
    );

    diesel::update(profiles::table.find(p.id))
        .set(profiles::name.eq("patricia"))
        .execute(&mut conn)
        .unwrap();
    let a = recv(&full);
    let b = recv(&names);
    assert_eq!(
        (a.action, a.row.name.as_str()),
        (Action::Update, "patricia")
    );
    assert_eq!(
        (b.action, b.row.name.as_str()),
        (Action::Update, "patricia")
    );
    assert_eq!(a.changed(), ["name"]);
    assert_eq!(b.changed(), ["name"]);
    assert_ne!(a.meta.id, b.meta.id);

    diesel::delete(profiles::table).execute(&mut conn).unwrap();
    assert_eq!(recv(&full).action, Action::Delete);
    assert_eq!(recv(&names).action, Action::Delete);
    assert_empty(&full);
    assert_empty(&names);
}

pub fn a_model_on_a_table_renamed_with_sql_name_emits() {
    let db = Db::new("sql_name");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE app_accounts (id {}, name TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("sql_name");
    let rx = emitter.on::<Account>().subscribe();
    let mut conn = db.emitting(&emitter);

    let account: Account = diesel::insert_into(accounts::table)
        .values(accounts::name.eq("acme"))
        .get_result(&mut conn)
        .unwrap();
    let ev = recv(&rx);
    assert_eq!((ev.action, ev.row), (Action::Insert, account));
    // Events name the table as the `table!` declaration does.
    assert_eq!(ev.meta.table, "accounts");
}

pub fn a_column_renamed_with_sql_name_is_captured_and_reported_by_its_database_name() {
    let db = Db::new("column_sql_name");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE labels (id {}, label_text TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("column_sql_name");
    let rx = emitter.on::<Label>().subscribe();
    let mut conn = db.emitting(&emitter);

    let label: Label = diesel::insert_into(labels::table)
        .values(labels::text.eq("draft"))
        .get_result(&mut conn)
        .unwrap();
    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &label));
    assert_eq!(sorted(ev.changed()), sorted(&["id", "label_text"]));

    diesel::update(labels::table.find(label.id))
        .set(labels::text.eq("final"))
        .execute(&mut conn)
        .unwrap();
    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.caption.as_str()),
        (Action::Update, "final")
    );
    assert_eq!(ev.changed(), ["label_text"]);
}

// ---------------------------------------------------------------- actions and filter

pub fn listener_with_actions_sees_only_those_actions() {
    let db = Db::with_users("actions");
    let emitter = emitter("actions");
    let deletes = emitter.on::<User>().actions([Action::Delete]).subscribe();
    let mut conn = db.emitting(&emitter);

    let u = insert_user(&mut conn, "victim");
    diesel::update(users::table.find(u.id))
        .set(users::name.eq("victim2"))
        .execute(&mut conn)
        .unwrap();
    diesel::delete(users::table.find(u.id))
        .execute(&mut conn)
        .unwrap();
    // A subscribe() receiver is filled before the write returns, in commit order:
    // had the insert or update matched, it would come first.
    let ev = recv(&deletes);
    assert_eq!(
        (ev.action, ev.row.name.as_str()),
        (Action::Delete, "victim2")
    );
    assert_empty(&deletes);
}

pub fn listener_with_a_filter_sees_only_matching_rows() {
    let db = Db::with_users("filter");
    let emitter = emitter("filter");
    let (tx, active_rx) = crossbeam_channel::unbounded::<Event<User>>();
    let sub = emitter
        .on::<User>()
        .actions([Action::Insert, Action::Update])
        .filter(|ev| ev.row.active)
        .capacity(100)
        .when_full(WhenFull::Block)
        .listen(move |ev: &Event<User>| tx.send(ev.clone()).unwrap());
    let mut conn = db.emitting(&emitter);

    let idle = diesel::insert_into(users::table)
        .values((
            users::name.eq("idle"),
            users::email.eq("idle@example.com"),
            users::active.eq(false),
        ))
        .returning(User::as_returning())
        .get_result(&mut conn)
        .unwrap();
    insert_user(&mut conn, "busy");
    diesel::update(users::table.find(idle.id))
        .set(users::active.eq(true))
        .execute(&mut conn)
        .unwrap();
    diesel::delete(users::table.filter(users::name.eq("busy")))
        .execute(&mut conn)
        .unwrap();
    insert_user(&mut conn, "last");

    let got: Vec<(Action, String)> = (0..3)
        .map(|_| {
            let ev = active_rx.recv_timeout(TIMEOUT).expect("an event");
            assert!(ev.row.active);
            (ev.action, ev.row.name)
        })
        .collect();
    assert_eq!(
        got,
        [
            (Action::Insert, "busy".to_owned()),
            (Action::Update, "idle".to_owned()),
            (Action::Insert, "last".to_owned()),
        ]
    );
    sub.unsubscribe();
    assert_eq!(emitter.stats().listeners, 0);
    insert_user(&mut conn, "after-unsubscribe");
    // The removed listener's thread ends and drops `tx`: the channel disconnects
    // without anything more in it.
    assert_eq!(
        active_rx.recv_timeout(TIMEOUT).map(|e| e.row.name),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    );
}
