//! Integration tests against a real PostgreSQL (`DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Every test works in a schema of its
//! own, dropped at the end, so the tests run in parallel and repeatedly.
//!
//! The behaviours every backend shares are written once in `common/neutral/` and run here
//! against [`PgSchema`]; this file holds the tests only PostgreSQL runs.

mod common;

/// The fixture the shared tests of `common/neutral/` run against.
type Db = PgSchema;

#[path = "common/neutral/mod.rs"]
mod neutral;

neutral::shared_tests!();

// PostgreSQL's Diesel DSL has RETURNING: the shared tests of `get_result` and
// `.returning()` run here.
#[path = "common/neutral/returning.rs"]
mod neutral_returning;

neutral_returning::returning_tests!();

// PostgreSQL can check a foreign key at COMMIT: the shared test of a failed commit runs here.
#[path = "common/neutral/deferred.rs"]
mod neutral_deferred;

neutral_deferred::deferred_tests!();

#[path = "postgres/prepared.rs"]
mod prepared;

impl neutral::Neutral for PgSchema {
    type IdConflict = users::id;
    // The check of the model against the table's columns.
    const SETUP_QUERIES: usize = 1;

    fn insert_user(
        conn: &mut EmittingConnection<PgConnection>,
        user: &NewUser,
    ) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(user)
            .returning(User::as_returning())
            .get_result(conn)
    }

    fn seed_user(conn: &mut PgConnection, user: &NewUser) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(user)
            .returning(User::as_returning())
            .get_result(conn)
    }

    fn id_conflict() -> users::id {
        users::id
    }
}

impl neutral_returning::Returning for PgSchema {}

impl neutral_deferred::DeferredConstraints for PgSchema {}

use common::*;
use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_emitter::crossbeam_channel;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use neutral::{
    all_users, assert_rolled_back_transaction_delivers_nothing,
    assert_transaction_delivers_on_commit, insert_user, notes, seed, sentinel, try_insert_user,
    Conn,
};
use serde::{Deserialize, Serialize};

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

// ---------------------------------------------------------------- write paths

#[test]
fn insert_get_results_emits_one_event_per_returned_row() {
    let db = Db::with_users("insert_get_results");
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
fn row_by_row_loading_mode_emits_every_row() {
    use diesel::pg::PgRowByRowLoadingMode;
    let db = Db::with_users("row_by_row");
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
    let db = Db::with_users("insert_select");
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
// PostgreSQL refuses system columns (`xmax`) in RETURNING on a partitioned table, so
// the wrapper cannot tell which rows such an upsert inserted: it says so once in the
// log and reports every row of the DO UPDATE upsert as an Update (README, limits).
fn upsert_on_a_partitioned_table_succeeds_and_reports_its_rows_as_updates() {
    let db = Db::new("upsert_partitioned");
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

// ---------------------------------------------------------------- after commit only

#[test]
fn failed_commit_on_a_deferred_unique_constraint_delivers_nothing() {
    let db = Db::new("failed_commit_unique");
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
fn serializable_build_transaction_delivers_on_commit() {
    assert_transaction_delivers_on_commit("serializable", |conn, body| {
        conn.build_transaction().serializable().run(|c| {
            let level: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                "current_setting('transaction_isolation')",
            ))
            .get_result(c)?;
            assert_eq!(level, "serializable");
            body(c)
        })
    });
}

#[test]
fn serialization_failure_delivers_nothing_for_the_failed_transaction() {
    let db = Db::with_users("serialization_failure");
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
    assert_rolled_back_transaction_delivers_nothing("serializable_rollback", |conn, body| {
        conn.build_transaction().repeatable_read().run(body)
    });
}

// ---------------------------------------------------------------- tables without a model

#[test]
fn writes_on_a_same_named_table_in_another_schema_run_exactly_the_plain_sql() {
    let db = Db::with_users("other_schema");
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

// ---------------------------------------------------------------- order

#[test]
fn events_reach_listeners_in_commit_order_with_increasing_seq() {
    neutral::assert_interleaved_transactions_commit_in_order();
}

// ---------------------------------------------------------------- listener queues, shutdown

// These four test the emitter more than the backend; only this binary runs them.

#[test]
fn full_queue_with_block_policy_loses_nothing() {
    let db = Db::with_users("when_full_block");
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
    let db = Db::with_users("after_shutdown");
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
    let db = Db::with_users("panicking_filter");
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
    let db = Db::with_users("dropped_receiver");
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
