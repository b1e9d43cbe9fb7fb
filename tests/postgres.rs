//! Integration tests against a real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Every test works in a schema of its
//! own, dropped at the end, so the tests run in parallel and repeatedly.

mod common;

use common::*;
use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_emitter::crossbeam_channel;
use diesel_emitter::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

type Conn = EmittingConnection<PgConnection>;

const USERS_DDL: &str = "CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    active BOOLEAN NOT NULL DEFAULT TRUE
)";

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

// A partitioned table with a model.
diesel::table! {
    parts (id) {
        id -> Int4,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = parts)]
struct Part {
    id: i32,
    name: String,
}

// A table in another schema (the session's temporary one) that has the same name as
// the `users` model table but no model of its own.
mod temp {
    diesel::table! {
        pg_temp.users (id) {
            id -> Int4,
            note -> Text,
        }
    }
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

// A model that does not match its table: `reading` is BIGINT in the database.
diesel::table! {
    gauges (id) {
        id -> Int4,
        reading -> Int4,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = gauges)]
struct Gauge {
    id: i32,
    reading: i32,
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

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations/postgres");

// ---------------------------------------------------------------- helpers

/// A schema with the `users` table.
fn users_schema(test: &str) -> PgSchema {
    let schema = PgSchema::new(test);
    schema.plain().batch_execute(USERS_DDL).unwrap();
    schema
}

/// Inserts a user through `conn` and returns it.
fn insert_user(conn: &mut Conn, name: &str) -> User {
    diesel::insert_into(users::table)
        .values(&NewUser::named(name))
        .returning(User::as_returning())
        .get_result(conn)
        .unwrap()
}

/// Inserts a user through `conn`, passing errors on.
fn try_insert_user(conn: &mut Conn, name: &str) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(&NewUser::named(name))
        .returning(User::as_returning())
        .get_result(conn)
}

/// Inserts users through a plain connection (no events) and returns them.
fn seed(conn: &mut PgConnection, names: &[&str]) -> Vec<User> {
    let rows: Vec<NewUser> = names.iter().map(|n| NewUser::named(n)).collect();
    diesel::insert_into(users::table)
        .values(&rows)
        .returning(User::as_returning())
        .get_results(conn)
        .unwrap()
}

/// Commits a sentinel insert and asserts that it is the next event `rx` receives.
#[track_caller]
fn sentinel(conn: &mut Conn, rx: &crossbeam_channel::Receiver<Event<User>>) {
    let name = unique_name("sentinel");
    insert_user(conn, &name);
    assert_next_is_sentinel(rx, &name);
}

fn all_users(conn: &mut PgConnection) -> Vec<User> {
    users::table
        .select(User::as_select())
        .order(users::id)
        .load(conn)
        .unwrap()
}

// ---------------------------------------------------------------- 1. write paths

#[test]
fn insert_via_execute_emits_one_insert_event_with_the_full_row() {
    let db = users_schema("insert_execute");
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
    assert!(ev.row.id > 0, "the serial id is filled in");
    assert!(ev.row.active, "the DB default is filled in");
    assert_eq!(sorted(ev.changed()), sorted(&USER_COLUMNS));
    assert_eq!(ev.meta.table, "users");
    assert_eq!(ev.meta.source, Source::Local);
    assert_eq!(&*ev.meta.origin, emitter.node_id());
    assert_eq!(ev.meta.seq, 1);
    sentinel(&mut conn, &rx);
}

#[test]
fn insert_get_result_returns_the_row_and_emits_it() {
    let db = users_schema("insert_get_result");
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

#[test]
fn insert_get_results_emits_one_event_per_returned_row() {
    let db = users_schema("insert_get_results");
    let emitter = emitter("insert_get_results");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows: Vec<NewUser> = ["a", "b", "c"].iter().map(|n| NewUser::named(n)).collect();
    let users: Vec<User> = diesel::insert_into(users::table)
        .values(&rows)
        .returning(User::as_returning())
        .get_results(&mut conn)
        .unwrap();
    assert_eq!(users.len(), 3);

    let events = recv_n(&rx, 3);
    assert!(events.iter().all(|e| e.action == Action::Insert));
    let rows: Vec<User> = events.into_iter().map(|e| e.row).collect();
    assert_eq!(rows, users);
    sentinel(&mut conn, &rx);
}

#[test]
fn insert_returning_id_returns_the_id_and_the_event_has_the_full_row() {
    let db = users_schema("insert_returning_id");
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

#[test]
fn batch_insert_of_n_rows_emits_n_insert_events() {
    let db = users_schema("batch_insert");
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

#[test]
fn empty_batch_insert_returns_zero_and_emits_nothing() {
    let db = users_schema("empty_batch");
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

#[test]
fn update_of_many_rows_emits_one_update_per_row_with_the_set_columns() {
    let db = users_schema("update_many");
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

#[test]
fn update_matching_no_row_emits_nothing() {
    let db = users_schema("update_none");
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

#[test]
fn update_get_results_returns_the_rows_and_emits_them() {
    let db = users_schema("update_get_results");
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

#[test]
fn get_result_on_a_many_row_update_still_emits_every_row() {
    let db = users_schema("update_get_result_many");
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

#[test]
fn row_by_row_loading_mode_emits_every_row() {
    use diesel::pg::PgRowByRowLoadingMode;
    let db = users_schema("row_by_row");
    seed(&mut db.plain(), &["a", "b", "c"]);
    let emitter = emitter("row_by_row");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let mut returned = Vec::new();
    for row in diesel::update(users::table)
        .set(users::name.eq(users::name.concat("!")))
        .returning(User::as_returning())
        .load_iter::<User, PgRowByRowLoadingMode>(&mut conn)
        .unwrap()
    {
        returned.push(row.unwrap());
    }
    assert_eq!(returned.len(), 3);

    let rows: Vec<User> = recv_n(&rx, 3).into_iter().map(|e| e.row).collect();
    assert_eq!(rows, returned);
    sentinel(&mut conn, &rx);
}

#[test]
fn insert_from_select_emits_one_insert_per_row() {
    let db = users_schema("insert_select");
    db.plain()
        .batch_execute(
            "CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL);
             INSERT INTO notes (body) VALUES ('x'), ('y');",
        )
        .unwrap();
    let emitter = emitter("insert_select");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(users::table)
        .values(notes::table.select((notes::body, notes::body.concat("@notes.example"))))
        .into_columns((users::name, users::email))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 2);

    let mut names: Vec<String> = recv_n(&rx, 2).into_iter().map(|e| e.row.name).collect();
    names.sort();
    assert_eq!(names, ["x", "y"]);
    sentinel(&mut conn, &rx);
}

#[test]
fn delete_of_many_rows_emits_the_deleted_rows() {
    let db = users_schema("delete_many");
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

#[test]
fn save_changes_emits_one_update() {
    let db = users_schema("save_changes");
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

#[test]
fn upsert_do_update_emits_insert_for_new_keys_and_update_for_existing_ones() {
    let db = users_schema("upsert_do_update");
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

#[test]
// PostgreSQL refuses system columns (`xmax`) in RETURNING on a partitioned table, so
// the wrapper cannot tell which rows such an upsert inserted: it says so once in the
// log and reports every row of the DO UPDATE upsert as an Update (README, limits).
fn upsert_on_a_partitioned_table_succeeds_and_reports_its_rows_as_updates() {
    let db = PgSchema::new("upsert_partitioned");
    db.plain()
        .batch_execute(
            "CREATE TABLE parts (id INT NOT NULL PRIMARY KEY, name TEXT NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (MINVALUE) TO (1000);
             CREATE TABLE parts_high PARTITION OF parts FOR VALUES FROM (1000) TO (MAXVALUE);
             INSERT INTO parts (id, name) VALUES (1, 'one');",
        )
        .unwrap();
    let emitter = emitter("upsert_partitioned");
    let rx = emitter.on::<Part>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(parts::table)
        .values(&vec![
            (parts::id.eq(1), parts::name.eq("one-again")),
            (parts::id.eq(1001), parts::name.eq("new")),
        ])
        .on_conflict(parts::id)
        .do_update()
        .set(parts::name.eq(excluded(parts::name)))
        .execute(&mut conn);
    assert_eq!(n, Ok(2), "the user's upsert must succeed");

    let mut events = recv_n(&rx, 2);
    events.sort_by_key(|e| e.row.id);
    assert_eq!((events[0].action, events[0].row.id), (Action::Update, 1));
    assert_eq!((events[1].action, events[1].row.id), (Action::Update, 1001));
    assert_eq!(events[1].row.name, "new");
}

#[test]
fn upsert_do_nothing_emits_only_for_inserted_rows() {
    let db = users_schema("upsert_do_nothing");
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

// ---------------------------------------------------------------- 2. after commit only

#[test]
fn transaction_delivers_nothing_before_commit_and_everything_after() {
    let db = users_schema("tx_commit");
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

#[test]
fn rolled_back_transaction_delivers_nothing() {
    let db = users_schema("tx_rollback");
    let emitter = emitter("tx_rollback");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result = conn.transaction(|c| {
        insert_user(c, "ghost1");
        insert_user(c, "ghost2");
        assert_eq!(c.pending_events(), 2);
        Err::<(), _>(DieselError::RollbackTransaction)
    });
    assert!(matches!(result, Err(DieselError::RollbackTransaction)));
    assert_eq!(conn.pending_events(), 0);
    assert!(all_users(&mut db.plain()).is_empty());
    sentinel(&mut conn, &rx);
}

#[test]
fn rolled_back_savepoint_drops_only_its_own_events() {
    let db = users_schema("savepoint_rollback");
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

#[test]
fn released_savepoint_merges_into_the_outer_commit() {
    let db = users_schema("savepoint_release");
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

#[test]
fn failed_statement_in_a_savepoint_drops_its_events_and_the_outer_commit_delivers_the_rest() {
    let db = users_schema("savepoint_failed_statement");
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

#[test]
fn test_transaction_delivers_nothing() {
    let db = users_schema("test_transaction");
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

#[test]
fn failed_statement_delivers_nothing() {
    let db = users_schema("failed_statement");
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

#[test]
fn failed_commit_on_a_deferred_unique_constraint_delivers_nothing() {
    let db = PgSchema::new("failed_commit_unique");
    db.plain()
        .batch_execute(
            "CREATE TABLE users (
                id SERIAL PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT NOT NULL,
                active BOOLEAN NOT NULL DEFAULT TRUE,
                CONSTRAINT users_email_deferred UNIQUE (email) DEFERRABLE INITIALLY DEFERRED
            )",
        )
        .unwrap();
    let emitter = emitter("failed_commit_unique");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result = conn.transaction(|c| {
        for name in ["twin1", "twin2"] {
            diesel::insert_into(users::table)
                .values(NewUser {
                    name: name.into(),
                    email: "same@example.com".into(),
                })
                .execute(c)?;
        }
        assert_eq!(c.pending_events(), 2, "both statements succeeded");
        Ok::<_, DieselError>(())
    });
    assert!(
        matches!(
            result,
            Err(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        ),
        "COMMIT must fail: {result:?}"
    );
    assert_eq!(conn.pending_events(), 0);
    assert!(all_users(&mut db.plain()).is_empty());
    sentinel(&mut conn, &rx);
}

#[test]
fn failed_commit_on_a_deferred_foreign_key_delivers_nothing() {
    let db = PgSchema::new("failed_commit_fk");
    db.plain()
        .batch_execute(
            "CREATE TABLE teams (id INT PRIMARY KEY);
             CREATE TABLE members (
                id SERIAL PRIMARY KEY,
                team_id INT NOT NULL REFERENCES teams (id) DEFERRABLE INITIALLY DEFERRED
             );",
        )
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

#[test]
fn serializable_build_transaction_delivers_on_commit() {
    let db = users_schema("serializable");
    let emitter = emitter("serializable");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user = conn
        .build_transaction()
        .serializable()
        .run(|c| {
            let level: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                "current_setting('transaction_isolation')",
            ))
            .get_result(c)?;
            assert_eq!(level, "serializable");
            let user = insert_user(c, "serial");
            assert_empty(&rx);
            assert_eq!(c.pending_events(), 1);
            Ok::<_, DieselError>(user)
        })
        .unwrap();

    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &user));
    assert_eq!(conn.pending_events(), 0);
    sentinel(&mut conn, &rx);
}

#[test]
fn serialization_failure_delivers_nothing_for_the_failed_transaction() {
    let db = users_schema("serialization_failure");
    let emitter = emitter("serialization_failure");
    let rx = emitter.on::<User>().subscribe();
    let mut a = db.emitting(&emitter);
    let mut b = db.emitting(&emitter);
    let count_active = |c: &mut Conn| -> QueryResult<i64> {
        users::table
            .filter(users::active.eq(true))
            .count()
            .get_result(c)
    };

    // Write skew: each reads what the other writes; b commits first, so a must fail.
    let result = a.build_transaction().serializable().run(|a| {
        count_active(a)?;
        try_insert_user(a, "a-loses")?;
        b.build_transaction()
            .serializable()
            .run(|b| {
                count_active(b)?;
                try_insert_user(b, "b-wins")
            })
            .unwrap();
        assert_eq!(a.pending_events(), 1);
        Ok::<_, DieselError>(())
    });
    assert!(
        matches!(
            result,
            Err(DieselError::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                _
            ))
        ),
        "{result:?}"
    );
    assert_eq!(a.pending_events(), 0);
    assert_eq!(recv(&rx).row.name, "b-wins");
    sentinel(&mut a, &rx);
}

#[test]
fn rolled_back_build_transaction_delivers_nothing() {
    let db = users_schema("serializable_rollback");
    let emitter = emitter("serializable_rollback");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result = conn.build_transaction().repeatable_read().run(|c| {
        insert_user(c, "ghost");
        Err::<(), _>(DieselError::RollbackTransaction)
    });
    assert!(result.is_err());
    assert_eq!(conn.pending_events(), 0);
    sentinel(&mut conn, &rx);
}

// ---------------------------------------------------------------- 3. tables without a model

#[test]
fn writes_on_a_table_without_a_model_run_exactly_the_plain_sql() {
    let db = PgSchema::new("no_model_sql");
    db.plain()
        .batch_execute("CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    let emitter = emitter("no_model_sql");
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = || diesel::insert_into(notes::table).values(notes::body.eq("hello"));
    let expected = diesel::debug_query::<Pg, _>(&insert()).to_string();
    assert_eq!(insert().execute(&mut conn).unwrap(), 1);
    assert_eq!(log.take(), vec![expected]);

    let update = || diesel::update(notes::table).set(notes::body.eq("bye"));
    let expected = diesel::debug_query::<Pg, _>(&update()).to_string();
    assert_eq!(update().execute(&mut conn).unwrap(), 1);
    assert_eq!(log.take(), vec![expected]);

    let delete = || diesel::delete(notes::table.filter(notes::body.eq("bye")));
    let expected = diesel::debug_query::<Pg, _>(&delete()).to_string();
    assert_eq!(delete().execute(&mut conn).unwrap(), 1);
    let queries = log.take();
    assert_eq!(queries, vec![expected]);
    assert!(!has_returning(&queries[0]));
    assert_eq!(emitter.stats().emitted, 0);
}

#[test]
fn writes_on_a_same_named_table_in_another_schema_run_exactly_the_plain_sql() {
    let db = users_schema("other_schema");
    let emitter = emitter("other_schema");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    conn.batch_execute("CREATE TEMP TABLE users (id SERIAL PRIMARY KEY, note TEXT NOT NULL)")
        .unwrap();
    let log = QueryLog::install(&mut conn);

    // `pg_temp.users` has no model; only the search-path `users` does.
    let insert = || diesel::insert_into(temp::users::table).values(temp::users::note.eq("n"));
    let expected = diesel::debug_query::<Pg, _>(&insert()).to_string();
    let result = insert().execute(&mut conn);
    let queries = log.take();
    assert_eq!(result, Ok(1), "{queries:?}");
    assert_eq!(queries, vec![expected]);
    // The temporary table shadows the schema's `users` on the search path.
    conn.batch_execute("DROP TABLE pg_temp.users").unwrap();
    sentinel(&mut conn, &rx);
}

#[test]
fn writes_on_a_model_table_append_returning() {
    let db = users_schema("model_sql");
    let emitter = emitter("model_sql");
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = || diesel::insert_into(users::table).values(NewUser::named("r"));
    let plain = diesel::debug_query::<Pg, _>(&insert()).to_string();
    assert!(!has_returning(&plain));
    insert().execute(&mut conn).unwrap();
    let queries = log.take();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(has_returning(&queries[0]), "{}", queries[0]);
    assert!(
        sql_part(&queries[0]).starts_with(sql_part(&plain)),
        "the statement itself is unchanged: {} vs {plain}",
        queries[0]
    );
}

// ---------------------------------------------------------------- 4. order

#[test]
fn events_reach_listeners_in_commit_order_with_increasing_seq() {
    let db = users_schema("commit_order");
    let emitter = emitter("commit_order");
    let rx = emitter.on::<User>().subscribe();
    let (tx, closure_rx) = crossbeam_channel::unbounded();
    let _sub = emitter.on::<User>().listen(move |ev: &Event<User>| {
        tx.send(ev.clone()).unwrap();
    });
    let mut a = db.emitting(&emitter);
    let mut b = db.emitting(&emitter);

    insert_user(&mut a, "1");
    a.transaction(|a| {
        insert_user(a, "2");
        insert_user(&mut b, "3"); // autocommit on another connection: commits first
        insert_user(a, "4");
        Ok::<_, DieselError>(())
    })
    .unwrap();
    b.transaction(|b| {
        insert_user(b, "5");
        insert_user(&mut a, "6");
        b.transaction(|b| {
            insert_user(b, "7");
            Ok::<_, DieselError>(())
        })
    })
    .unwrap();
    insert_user(&mut a, "8");
    insert_user(&mut b, "9");

    let expected = ["1", "3", "2", "4", "6", "5", "7", "8", "9"];
    for rx in [&rx, &closure_rx] {
        let events = recv_n(rx, expected.len());
        let names: Vec<&str> = events.iter().map(|e| e.row.name.as_str()).collect();
        assert_eq!(names, expected);
        let seqs: Vec<u64> = events.iter().map(|e| e.meta.seq).collect();
        assert_eq!(seqs, (1..=9).collect::<Vec<u64>>());
        let ids: HashSet<_> = events.iter().map(|e| e.meta.id).collect();
        assert_eq!(ids.len(), expected.len(), "event ids are unique");
    }
    sentinel(&mut a, &rx);
}

// ---------------------------------------------------------------- 5. panicking listener

#[test]
fn panicking_listener_keeps_receiving_and_harms_no_one() {
    let db = users_schema("panicking_listener");
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

#[test]
fn full_queue_with_drop_policy_drops_and_counts_without_blocking_the_write() {
    let db = users_schema("when_full_drop");
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

#[test]
fn full_queue_with_block_policy_loses_nothing() {
    let db = users_schema("when_full_block");
    let emitter = emitter("when_full_block");
    let (tx, got) = crossbeam_channel::unbounded::<String>();
    let _sub = emitter
        .on::<User>()
        .capacity(1)
        .listen(move |ev: &Event<User>| {
            std::thread::yield_now();
            tx.send(ev.row.name.clone()).unwrap();
        });
    let mut conn = db.emitting(&emitter);

    let names: Vec<String> = (0..50).map(|i| format!("b{i:02}")).collect();
    for name in &names {
        insert_user(&mut conn, name);
    }
    let received: Vec<String> = (0..names.len())
        .map(|_| got.recv_timeout(TIMEOUT).unwrap())
        .collect();
    assert_eq!(received, names);
    assert_eq!(emitter.stats().dropped, 0);
}

#[test]
fn writes_after_shutdown_succeed_and_count_as_dropped() {
    let db = users_schema("after_shutdown");
    let emitter = emitter("after_shutdown");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    insert_user(&mut conn, "before");
    emitter.shutdown(TIMEOUT).unwrap();
    insert_user(&mut conn, "after");
    assert_eq!(recv(&rx).row.name, "before");
    assert!(matches!(
        rx.recv_timeout(TIMEOUT),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    ));
    assert_eq!(emitter.stats().dropped, 1);
    assert_eq!(all_users(&mut db.plain()).len(), 2);
}

#[test]
fn panicking_filter_counts_as_a_panic_and_skips_only_that_event() {
    let db = users_schema("panicking_filter");
    let emitter = emitter("panicking_filter");
    let rx = emitter
        .on::<User>()
        .filter(|ev| {
            assert!(ev.row.name != "boom", "filter panics on purpose");
            true
        })
        .subscribe();
    let mut conn = db.emitting(&emitter);

    insert_user(&mut conn, "boom");
    assert_eq!(emitter.stats().panics, 1);
    sentinel(&mut conn, &rx);
    assert_eq!(all_users(&mut db.plain()).len(), 2);
}

#[test]
fn dropped_receiver_is_removed_and_writes_go_on() {
    let db = users_schema("dropped_receiver");
    let emitter = emitter("dropped_receiver");
    let rx = emitter.on::<User>().subscribe();
    let kept = emitter.on::<User>().subscribe();
    assert_eq!(emitter.stats().listeners, 2);
    drop(rx);
    let mut conn = db.emitting(&emitter);

    insert_user(&mut conn, "first");
    assert_eq!(emitter.stats().listeners, 1);
    assert_eq!(recv(&kept).row.name, "first");
    sentinel(&mut conn, &kept);
}

// ---------------------------------------------------------------- 6. prepared statements

#[test]
fn the_same_statement_alternating_plain_and_emitting_always_counts_one_and_emits_only_when_emitting(
) {
    let db = users_schema("prepared_cache");
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

// ---------------------------------------------------------------- 7. scopes

#[test]
fn without_events_emits_nothing_and_runs_the_sql_unchanged() {
    let db = users_schema("without_events");
    let emitter = emitter("without_events");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = || diesel::insert_into(users::table).values(NewUser::named("quiet"));
    let expected = diesel::debug_query::<Pg, _>(&insert()).to_string();
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

#[test]
fn with_emit_local_only_delivers_to_local_listeners() {
    let db = users_schema("local_only");
    let emitter = emitter("local_only");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user = conn.with_emit(Emit::LocalOnly, |c| insert_user(c, "local"));
    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &user));
    sentinel(&mut conn, &rx);
}

#[test]
fn with_emit_remote_only_delivers_nothing_to_local_listeners() {
    let db = users_schema("remote_only");
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

#[test]
fn events_keep_the_mode_of_the_scope_they_were_written_in() {
    let db = users_schema("scope_in_tx");
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

#[test]
fn emit_mode_is_restored_after_the_scope() {
    let db = users_schema("mode_restored");
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

#[test]
fn inner_mut_writes_emit_nothing() {
    let db = users_schema("inner_mut");
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

// ---------------------------------------------------------------- 8. r2d2

#[test]
fn r2d2_pool_delivers_every_event_once_with_increasing_seq_per_origin() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 20;
    let db = users_schema("r2d2");
    let emitter = emitter("r2d2");
    let origin = emitter.node_id().to_owned();
    Emitter::set_global(emitter.clone());
    let rx = emitter.on::<User>().subscribe();

    let pool = Pool::builder()
        .max_size(THREADS as u32)
        .connection_customizer(Box::new(SearchPath(db.search_path_sql())))
        .build(ConnectionManager::<Conn>::new(pg_url()))
        .unwrap();
    let pool = Arc::new(pool);

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
                        conn.transaction(|c| {
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

// ---------------------------------------------------------------- 9. migrations

#[test]
fn migrations_through_an_emitting_connection_emit_nothing_and_later_writes_emit() {
    let db = PgSchema::new("migrations");
    let emitter = emitter("migrations");
    let users_rx = emitter.on::<User>().subscribe();
    let migrations_rx = emitter.on::<SchemaMigration>().subscribe();
    let mut conn = db.emitting(&emitter);

    let applied = conn.run_pending_migrations(MIGRATIONS).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(conn.applied_migrations().unwrap().len(), 1);
    assert_eq!(emitter.stats().emitted, 0);

    sentinel(&mut conn, &users_rx);
    assert_empty(&migrations_rx);
}

// ---------------------------------------------------------------- 10. two models, one table

#[test]
fn two_models_on_one_table_each_get_their_own_typed_event() {
    let db = PgSchema::new("two_models");
    db.plain()
        .batch_execute(
            "CREATE TABLE profiles (id SERIAL PRIMARY KEY, name TEXT NOT NULL, bio TEXT NOT NULL)",
        )
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

#[test]
fn a_model_on_a_table_renamed_with_sql_name_emits() {
    let db = PgSchema::new("sql_name");
    db.plain()
        .batch_execute("CREATE TABLE app_accounts (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
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

#[test]
fn a_column_renamed_with_sql_name_is_captured_and_reported_by_its_database_name() {
    let db = PgSchema::new("column_sql_name");
    db.plain()
        .batch_execute("CREATE TABLE labels (id SERIAL PRIMARY KEY, label_text TEXT NOT NULL)")
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

#[test]
fn a_row_that_does_not_decode_is_counted_and_the_write_still_succeeds() {
    let db = PgSchema::new("capture_error");
    db.plain()
        .batch_execute("CREATE TABLE gauges (id SERIAL PRIMARY KEY, reading BIGINT NOT NULL)")
        .unwrap();
    let emitter = emitter("capture_error");
    let rx = emitter.on::<Gauge>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(gauges::table)
        .values(gauges::reading.eq(7))
        .execute(&mut conn);
    assert_eq!(n, Ok(1), "the write succeeds");
    let stats = emitter.stats();
    assert_eq!((stats.capture_errors, stats.emitted), (1, 0));
    assert_empty(&rx);
    let stored: i64 = gauges::table.count().get_result(&mut db.plain()).unwrap();
    assert_eq!(stored, 1);
}

// ---------------------------------------------------------------- 11. actions and filter

#[test]
fn listener_with_actions_sees_only_those_actions() {
    let db = users_schema("actions");
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

#[test]
fn listener_with_a_filter_sees_only_matching_rows() {
    let db = users_schema("filter");
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
