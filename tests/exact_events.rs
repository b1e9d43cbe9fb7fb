//! Events for exactly the committed rows, and no write broken by the wrapper: the
//! edges real applications reach (aborted PostgreSQL transactions, capture errors
//! in rolled-back transactions, a model that does not match the real table, a probe
//! that could not run, SQLite multi-row upserts and REPLACE, raw SQL).

mod common;

use common::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::upsert::excluded;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

/// Inserts a user; the email makes it unique.
fn insert<C: diesel_emitter::connection::EmittingBackend>(
    conn: &mut EmittingConnection<C>,
    name: &str,
) -> QueryResult<usize>
where
    diesel::query_builder::InsertStatement<
        users::table,
        <NewUser as Insertable<users::table>>::Values,
    >: diesel::query_dsl::methods::ExecuteDsl<EmittingConnection<C>>,
{
    diesel::insert_into(users::table)
        .values(NewUser::named(name))
        .execute(conn)
}

// ---------------------------------------------------------------- aborted transactions

#[test]
fn a_postgres_transaction_that_ignored_a_failed_statement_delivers_nothing() {
    let db = PgSchema::with_users("aborted_tx");
    let emitter = emitter("aborted_tx");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    // The application swallows the unique violation and returns Ok: Diesel returns
    // Ok too, but PostgreSQL answers the COMMIT with ROLLBACK.
    let result: QueryResult<()> = conn.transaction(|conn| {
        insert(conn, "ada")?;
        let duplicate = insert(conn, "ada");
        assert!(matches!(
            duplicate,
            Err(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        ));
        Ok(())
    });

    assert_eq!(result, Ok(()), "as on a plain PgConnection");
    assert_eq!(
        count_rows(&mut db.plain(), "users"),
        0,
        "nothing was written"
    );
    insert(&mut conn, "sentinel").unwrap();
    assert_next_is_sentinel(&rx, "sentinel");
}

#[test]
fn a_failure_undone_by_a_savepoint_rollback_keeps_the_transactions_events() {
    let db = PgSchema::with_users("savepoint_failure");
    let emitter = emitter("savepoint_failure");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|conn| {
        insert(conn, "ada")?;
        let nested: QueryResult<usize> = conn.transaction(|conn| insert(conn, "ada"));
        assert!(nested.is_err(), "the savepoint is rolled back");
        insert(conn, "grace")
    })
    .unwrap();

    let names: Vec<String> = recv_n(&rx, 2).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["ada", "grace"]);
    assert_eq!(count_rows(&mut db.plain(), "users"), 2);
}

#[test]
fn a_failed_read_also_aborts_a_postgres_transaction() {
    let db = PgSchema::with_users("aborted_by_read");
    let emitter = emitter("aborted_by_read");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result: QueryResult<()> = conn.transaction(|conn| {
        insert(conn, "ada")?;
        let failed = diesel::sql_query("SELECT 1 / 0 AS n").execute(conn);
        assert!(failed.is_err());
        Ok(())
    });

    assert_eq!(result, Ok(()));
    assert_eq!(count_rows(&mut db.plain(), "users"), 0);
    insert(&mut conn, "sentinel").unwrap();
    assert_next_is_sentinel(&rx, "sentinel");
}

#[test]
fn a_sqlite_transaction_goes_on_after_a_failed_statement() {
    let db = SqliteDb::with_users("sqlite_failed_statement");
    let emitter = emitter("sqlite_failed_statement");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    // SQLite undoes only the failed statement: the transaction commits the rest.
    conn.transaction(|conn| {
        insert(conn, "ada")?;
        assert!(insert(conn, "ada").is_err());
        insert(conn, "grace")
    })
    .unwrap();

    let names: Vec<String> = recv_n(&rx, 2).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["ada", "grace"]);
}

// ---------------------------------------------------------------- capture errors

diesel::table! {
    gauges (id) {
        id -> Int4,
        reading -> Int4,
    }
}

/// Does not match its table: `reading` is BIGINT in the database.
#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = gauges)]
struct Gauge {
    id: i32,
    reading: i32,
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

#[test]
fn a_row_that_does_not_decode_in_a_rolled_back_transaction_is_no_capture_error() {
    let db = PgSchema::new("capture_error_rollback");
    db.plain()
        .batch_execute("CREATE TABLE gauges (id SERIAL PRIMARY KEY, reading BIGINT NOT NULL)")
        .unwrap();
    let emitter = emitter("capture_error_rollback");
    let mut conn = db.emitting(&emitter);

    let rolled_back: QueryResult<()> = conn.transaction(|conn| {
        diesel::insert_into(gauges::table)
            .values(gauges::reading.eq(7))
            .execute(conn)?;
        Err(DieselError::RollbackTransaction)
    });
    assert!(rolled_back.is_err());
    assert_eq!(emitter.stats().capture_errors, 0, "no row was committed");

    conn.transaction(|conn| {
        diesel::insert_into(gauges::table)
            .values(gauges::reading.eq(8))
            .execute(conn)
    })
    .unwrap();
    assert_eq!(
        emitter.stats().capture_errors,
        1,
        "the committed row is counted"
    );
}

// ---------------------------------------------------------------- a model the table lacks

/// The `users` table of another part of the application: same name, other columns.
mod legacy {
    diesel::table! {
        users (id) {
            id -> Int4,
            nickname -> Text,
        }
    }
}

fn legacy_users_table(db: &PgSchema) {
    db.plain()
        .batch_execute("CREATE TABLE users (id SERIAL PRIMARY KEY, nickname TEXT NOT NULL)")
        .unwrap();
}

#[test]
fn a_write_on_a_table_without_the_models_columns_runs_untouched_and_is_counted() {
    let db = PgSchema::new("model_mismatch");
    legacy_users_table(&db);
    let emitter = emitter("model_mismatch");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    for nickname in ["ada", "grace"] {
        let n = diesel::insert_into(legacy::users::table)
            .values(legacy::users::nickname.eq(nickname))
            .execute(&mut conn);
        assert_eq!(n, Ok(1), "the write plain Diesel runs must succeed");
    }

    assert_eq!(count_rows(&mut db.plain(), "users"), 2);
    let stats = emitter.stats();
    assert_eq!((stats.uncaptured_writes, stats.emitted), (2, 0));
    assert_empty(&rx);
}

#[test]
fn a_mismatched_model_does_not_poison_the_surrounding_transaction() {
    let db = PgSchema::new("model_mismatch_tx");
    legacy_users_table(&db);
    let emitter = emitter("model_mismatch_tx");
    let mut conn = db.emitting(&emitter);

    conn.transaction(|conn| {
        diesel::update(legacy::users::table)
            .set(legacy::users::nickname.eq("x"))
            .execute(conn)?;
        diesel::insert_into(legacy::users::table)
            .values(legacy::users::nickname.eq("ada"))
            .execute(conn)
    })
    .unwrap();

    assert_eq!(count_rows(&mut db.plain(), "users"), 1);
}

// ---------------------------------------------------------------- a probe that could not run

diesel::table! {
    shards (id) {
        id -> Int4,
        name -> Text,
    }
}

/// A model on a partitioned table that no other test touches: the upsert flag's
/// probe result is kept per process and table.
#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = shards)]
struct Shard {
    id: i32,
    name: String,
}

#[test]
fn an_upsert_probe_that_failed_in_an_aborted_transaction_is_asked_again() {
    let db = PgSchema::new("probe_aborted");
    db.plain()
        .batch_execute(
            "CREATE TABLE shards (id INT NOT NULL PRIMARY KEY, name TEXT NOT NULL) PARTITION BY RANGE (id);
             CREATE TABLE shards_all PARTITION OF shards FOR VALUES FROM (MINVALUE) TO (MAXVALUE);",
        )
        .unwrap();
    let emitter = emitter("probe_aborted");
    let rx = emitter.on::<Shard>().subscribe();
    let mut conn = db.emitting(&emitter);
    let upsert = |conn: &mut EmittingConnection<PgConnection>, name: &str| {
        diesel::insert_into(shards::table)
            .values((shards::id.eq(1), shards::name.eq(name)))
            .on_conflict(shards::id)
            .do_update()
            .set(shards::name.eq(excluded(shards::name)))
            .execute(conn)
    };
    // The model is checked against the table outside any transaction.
    diesel::delete(shards::table).execute(&mut conn).unwrap();

    let _: QueryResult<()> = conn.transaction(|conn| {
        assert!(diesel::sql_query("SELECT 1 / 0 AS n")
            .execute(conn)
            .is_err());
        assert!(upsert(conn, "in an aborted transaction").is_err());
        Err(DieselError::RollbackTransaction)
    });

    assert_eq!(
        upsert(&mut conn, "after"),
        Ok(1),
        "a failed probe was not taken as an answer"
    );
    let event = recv(&rx);
    assert_eq!(
        (event.action, event.row.name.as_str()),
        (Action::Update, "after")
    );
}

// ---------------------------------------------------------------- SQLite upserts and REPLACE

#[test]
fn a_sqlite_upsert_row_that_updates_a_row_inserted_by_the_same_statement_is_an_update() {
    let db = SqliteDb::with_users("sqlite_multirow_upsert");
    let emitter = emitter("sqlite_multirow_upsert");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    diesel::insert_into(users::table)
        .values(&vec![
            (
                users::id.eq(1),
                users::name.eq("ada"),
                users::email.eq("a@x"),
            ),
            (
                users::id.eq(1),
                users::name.eq("ada lovelace"),
                users::email.eq("a@x"),
            ),
            (
                users::id.eq(2),
                users::name.eq("grace"),
                users::email.eq("g@x"),
            ),
        ])
        .on_conflict(users::id)
        .do_update()
        .set(users::name.eq(excluded(users::name)))
        .execute(&mut conn)
        .unwrap();

    let events: Vec<(Action, i32, String)> = recv_n(&rx, 3)
        .into_iter()
        .map(|e| (e.action, e.row.id, e.row.name))
        .collect();
    assert_eq!(
        events,
        [
            (Action::Insert, 1, "ada".to_owned()),
            (Action::Update, 1, "ada lovelace".to_owned()),
            (Action::Insert, 2, "grace".to_owned()),
        ]
    );
}

#[test]
fn sqlite_replace_emits_an_insert_for_the_row_written_and_nothing_for_the_row_replaced() {
    let db = SqliteDb::with_users("sqlite_replace");
    let emitter = emitter("sqlite_replace");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    insert(&mut conn, "ada").unwrap();
    let ada = recv(&rx).row;

    diesel::replace_into(users::table)
        .values((
            users::id.eq(ada.id),
            users::name.eq("ada lovelace"),
            users::email.eq("l@x"),
        ))
        .execute(&mut conn)
        .unwrap();

    let event = recv(&rx);
    assert_eq!(
        (event.action, event.row.id, event.row.name.as_str()),
        (Action::Insert, ada.id, "ada lovelace")
    );
    insert(&mut conn, "sentinel").unwrap();
    assert_next_is_sentinel(&rx, "sentinel");
}

// ---------------------------------------------------------------- raw SQL

#[test]
fn raw_sql_writes_are_captured_whatever_their_quoting() {
    let db = PgSchema::with_users("raw_sql_quoting");
    let emitter = emitter("raw_sql_quoting");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    diesel::sql_query(r#"INSERT INTO "users" ("name", "email") VALUES ('ada', 'a@x')"#)
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query("INSERT INTO users (name, email) VALUES ('grace', 'g@x')")
        .execute(&mut conn)
        .unwrap();
    diesel::sql_query("UPDATE Users SET Name = 'grace hopper' WHERE email = 'g@x'")
        .execute(&mut conn)
        .unwrap();

    let events = recv_n(&rx, 3);
    let seen: Vec<(Action, &str)> = events
        .iter()
        .map(|e| (e.action, e.row.name.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Action::Insert, "ada"),
            (Action::Insert, "grace"),
            (Action::Update, "grace hopper")
        ]
    );
    assert_eq!(events[2].changed(), ["name"]);
}

#[test]
fn raw_sql_the_wrapper_cannot_read_runs_untouched_and_is_counted() {
    let db = PgSchema::with_users("raw_sql_unreadable");
    let emitter = emitter("raw_sql_unreadable");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let statements = [
        "WITH gone AS (SELECT 1) INSERT INTO users (name, email) VALUES ('a', 'a@x')",
        "INSERT INTO users (name, email) VALUES ('b', 'b@x') -- a comment",
        // A RETURNING inside a dollar-quoted string is not the statement's own.
        "INSERT INTO users (name, email) VALUES ($$ RETURNING $$, 'c@x')",
    ];
    for sql in statements {
        assert_eq!(diesel::sql_query(sql).execute(&mut conn), Ok(1), "{sql}");
    }
    conn.batch_execute("UPDATE users SET active = false; DELETE FROM users WHERE email = 'a@x'")
        .unwrap();

    assert_eq!(count_rows(&mut db.plain(), "users"), 2);
    let stats = emitter.stats();
    assert_eq!((stats.uncaptured_writes, stats.emitted), (4, 0));
    assert_empty(&rx);
}
