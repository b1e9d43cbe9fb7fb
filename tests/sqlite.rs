//! Integration tests against real SQLite files: a fresh WAL database file per test,
//! removed at the end, so the tests run in parallel and repeatedly.
//!
//! The behaviours every backend shares are written once in `common/neutral/` and run
//! here against [`SqliteDb`]; this file holds the tests only SQLite runs.

mod common;

/// The fixture the shared tests of `common/neutral/` run against.
type Db = SqliteDb;

#[path = "common/neutral/mod.rs"]
mod neutral;

neutral::shared_tests!();

// SQLite's Diesel DSL has RETURNING: the shared tests of `get_result` and
// `.returning()` run here.
#[path = "common/neutral/returning.rs"]
mod neutral_returning;

neutral_returning::returning_tests!();

// SQLite can check a foreign key at COMMIT: the shared test of a failed commit runs here.
#[path = "common/neutral/deferred.rs"]
mod neutral_deferred;

neutral_deferred::deferred_tests!();

impl neutral::Neutral for SqliteDb {
    type IdConflict = users::id;
    // The check of the model against the table's columns.
    const SETUP_QUERIES: usize = 1;

    fn insert_user(
        conn: &mut EmittingConnection<SqliteConnection>,
        user: &NewUser,
    ) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(user)
            .returning(User::as_returning())
            .get_result(conn)
    }

    fn seed_user(conn: &mut SqliteConnection, user: &NewUser) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(user)
            .returning(User::as_returning())
            .get_result(conn)
    }

    fn id_conflict() -> users::id {
        users::id
    }
}

impl neutral_returning::Returning for SqliteDb {}

impl neutral_deferred::DeferredConstraints for SqliteDb {}

use common::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::upsert::excluded;
use diesel_emitter::prelude::*;
use neutral::{
    assert_commit_order, assert_rolled_back_transaction_delivers_nothing,
    assert_transaction_delivers_on_commit, insert_user, seed, sentinel,
};
use serde::{Deserialize, Serialize};

// A model on a WITHOUT ROWID table.
diesel::table! {
    tags (name) {
        name -> Text,
        hits -> Int4,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = tags, primary_key(name))]
struct Tag {
    name: String,
    hits: i32,
}

// ---------------------------------------------------------------- write paths

#[test]
fn batch_insert_with_defaults_emits_one_event_per_row() {
    // Rows that leave a column to its default make Diesel run one INSERT per row on SQLite.
    #[derive(Insertable)]
    #[diesel(table_name = users)]
    struct MaybeActive {
        name: String,
        email: String,
        active: Option<bool>,
    }
    let db = Db::with_users("batch_defaults");
    let emitter = emitter("batch_defaults");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows: Vec<MaybeActive> = (0..4)
        .map(|i| MaybeActive {
            name: format!("m{i}"),
            email: format!("m{i}@example.com"),
            active: (i % 2 == 0).then_some(false),
        })
        .collect();
    let n = diesel::insert_into(users::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 4);

    let events = recv_n(&rx, 4);
    let got: Vec<(String, bool)> = events
        .iter()
        .map(|e| (e.row.name.clone(), e.row.active))
        .collect();
    assert_eq!(
        got,
        [
            ("m0".to_owned(), false),
            ("m1".to_owned(), true),
            ("m2".to_owned(), false),
            ("m3".to_owned(), true),
        ]
    );
    sentinel(&mut conn, &rx);
}

#[test]
fn upsert_after_an_insert_on_the_same_connection_still_tells_update() {
    // last_insert_rowid() is per connection: the previous insert must not make the
    // updated row look inserted.
    let db = Db::with_users("upsert_after_insert");
    let emitter = emitter("upsert_after_insert");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user = insert_user(&mut conn, "last");
    assert_eq!(recv(&rx).action, Action::Insert);
    let n = diesel::insert_into(users::table)
        .values((
            users::id.eq(user.id),
            users::name.eq("again"),
            users::email.eq("x@example.com"),
        ))
        .on_conflict(users::id)
        .do_update()
        .set(users::name.eq(excluded(users::name)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 1);
    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.id, ev.row.name.as_str()),
        (Action::Update, user.id, "again")
    );
    sentinel(&mut conn, &rx);
}

#[test]
// A WITHOUT ROWID table has no rowid to compare with last_insert_rowid(), so the
// wrapper cannot tell which rows such an upsert inserted: it says so once in the log
// and reports every row of the DO UPDATE upsert as an Update (README, limits).
fn upsert_on_a_without_rowid_table_succeeds_and_reports_its_rows_as_updates() {
    let db = Db::new("upsert_without_rowid");
    db.plain()
        .batch_execute(
            "CREATE TABLE tags (name TEXT PRIMARY KEY, hits INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO tags (name, hits) VALUES ('rust', 1);",
        )
        .unwrap();
    let emitter = emitter("upsert_without_rowid");
    let rx = emitter.on::<Tag>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(tags::table)
        .values(&vec![
            (tags::name.eq("rust"), tags::hits.eq(2)),
            (tags::name.eq("sqlite"), tags::hits.eq(1)),
        ])
        .on_conflict(tags::name)
        .do_update()
        .set(tags::hits.eq(excluded(tags::hits)))
        .execute(&mut conn);
    assert_eq!(n, Ok(2), "the user's upsert must succeed");

    let mut events = recv_n(&rx, 2);
    events.sort_by(|a, b| a.row.name.cmp(&b.row.name));
    assert_eq!(
        (
            events[0].action,
            events[0].row.name.as_str(),
            events[0].row.hits
        ),
        (Action::Update, "rust", 2)
    );
    assert_eq!(
        (events[1].action, events[1].row.name.as_str()),
        (Action::Update, "sqlite")
    );
}

#[test]
fn insert_or_ignore_emits_only_for_inserted_rows() {
    let db = Db::with_users("insert_or_ignore");
    let seeded = seed(&mut db.plain(), &["old"]);
    let emitter = emitter("insert_or_ignore");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_or_ignore_into(users::table)
        .values(&vec![
            (
                users::id.eq(seeded[0].id),
                users::name.eq("clash"),
                users::email.eq("c@e.x"),
            ),
            (
                users::id.eq(3000),
                users::name.eq("fresh"),
                users::email.eq("f@e.x"),
            ),
        ])
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 1);
    let ev = recv(&rx);
    assert_eq!((ev.action, ev.row.id), (Action::Insert, 3000));
    sentinel(&mut conn, &rx);
}

#[test]
fn replace_into_emits_the_new_row() {
    let db = Db::with_users("replace_into");
    let seeded = seed(&mut db.plain(), &["old"]);
    let emitter = emitter("replace_into");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::replace_into(users::table)
        .values((
            users::id.eq(seeded[0].id),
            users::name.eq("replaced"),
            users::email.eq("r@e.x"),
        ))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 1);
    let ev = recv(&rx);
    assert_eq!(ev.row.id, seeded[0].id);
    assert_eq!(ev.row.name, "replaced");
    sentinel(&mut conn, &rx);
}

// ---------------------------------------------------------------- after commit only

#[test]
fn immediate_transaction_delivers_on_commit() {
    assert_transaction_delivers_on_commit("immediate", |conn, body| {
        conn.immediate_transaction(body)
    });
}

#[test]
fn immediate_transaction_takes_the_write_lock_at_begin() {
    let db = Db::with_users("immediate_lock");
    let emitter = emitter("immediate_lock");
    let mut conn = db.emitting(&emitter);
    let mut other = db.plain();
    other.batch_execute("PRAGMA busy_timeout = 0").unwrap();

    conn.immediate_transaction(|_| {
        // No statement has run yet, but the write lock is held.
        let blocked = other.batch_execute("BEGIN IMMEDIATE");
        assert!(
            blocked.is_err(),
            "BEGIN IMMEDIATE elsewhere must be refused"
        );
        Ok::<_, DieselError>(())
    })
    .unwrap();
    other.batch_execute("BEGIN IMMEDIATE; COMMIT;").unwrap();
}

#[test]
fn rolled_back_immediate_transaction_delivers_nothing() {
    assert_rolled_back_transaction_delivers_nothing("immediate_rollback", |conn, body| {
        conn.immediate_transaction(body)
    });
}

#[test]
fn exclusive_transaction_delivers_on_commit() {
    assert_transaction_delivers_on_commit("exclusive", |conn, body| {
        conn.exclusive_transaction(body)
    });
}

// ---------------------------------------------------------------- order

#[test]
fn events_reach_listeners_in_commit_order_with_increasing_seq() {
    // One writer at a time: the connections take turns.
    assert_commit_order(
        |a, b| {
            insert_user(a, "1");
            a.transaction(|a| {
                insert_user(a, "2");
                a.transaction(|a| {
                    insert_user(a, "3");
                    Ok::<_, DieselError>(())
                })?;
                insert_user(a, "4");
                Ok::<_, DieselError>(())
            })
            .unwrap();
            insert_user(b, "5");
            let _ = a.transaction(|a| {
                insert_user(a, "rolled-back");
                Err::<(), _>(DieselError::RollbackTransaction)
            });
            b.immediate_transaction(|b| {
                insert_user(b, "6");
                insert_user(b, "7");
                Ok::<_, DieselError>(())
            })
            .unwrap();
            insert_user(a, "8");
            insert_user(b, "9");
        },
        &["1", "2", "3", "4", "5", "6", "7", "8", "9"],
    );
}
