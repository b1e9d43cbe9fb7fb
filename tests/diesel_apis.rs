//! Diesel APIs of the plain connections that work through `EmittingConnection`
//! too: PostgreSQL `COPY FROM`, custom SQL types, SQLite batch inserts that return
//! rows, and r2d2 pools that carry their emitter.

mod common;

use common::*;
use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::UseEmitter;
use serde::{Deserialize, Serialize};

/// Inserts a row named `sentinel` and asserts that it is the next event: nothing
/// the test wrote before it reached the listener.
macro_rules! sentinel {
    ($conn:expr, $rx:expr) => {{
        diesel::insert_into(users::table)
            .values(NewUser::named("sentinel"))
            .execute($conn)
            .unwrap();
        assert_next_is_sentinel($rx, "sentinel");
    }};
}

/// `users` rows for `COPY`: every column given, as `from_insertable` needs.
#[derive(Insertable)]
#[diesel(table_name = users)]
#[diesel(treat_none_as_default_value = false)]
struct CopiedUser {
    id: i32,
    name: String,
    email: String,
    active: bool,
}

fn copied(id: i32, name: &str) -> CopiedUser {
    CopiedUser {
        id,
        name: name.to_owned(),
        email: format!("{name}@example.com"),
        active: true,
    }
}

// ---------------------------------------------------------------- COPY FROM

/// Writes `data` for `from_raw_data` (text format: tab-separated, one row a line).
fn raw(out: &mut dyn std::io::Write, data: &[u8]) -> QueryResult<()> {
    out.write_all(data)
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

#[test]
fn copy_from_insertable_emits_an_insert_per_copied_row() {
    let db = PgSchema::with_users("copy_insertable");
    let emitter = emitter("copy_insertable");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows = vec![
        copied(101, "ada"),
        copied(102, "grace"),
        copied(103, "edsger"),
    ];
    let n = diesel::copy_from(users::table)
        .from_insertable(&rows)
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 3);
    let events = recv_n(&rx, 3);
    assert!(events.iter().all(|e| e.action == Action::Insert));
    let names: Vec<_> = events
        .iter()
        .map(|e| (e.row.id, e.row.name.as_str()))
        .collect();
    assert_eq!(names, [(101, "ada"), (102, "grace"), (103, "edsger")]);
    assert_eq!(count_rows(&mut conn, "users"), 3);
    sentinel!(&mut conn, &rx);
}

#[test]
fn copy_from_raw_data_fills_defaults_from_the_real_tables_sequence() {
    let db = PgSchema::with_users("copy_raw");
    let emitter = emitter("copy_raw");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    // Ids the sequence already gave out: the copied rows must continue after them.
    diesel::insert_into(users::table)
        .values(&NewUser::named("first"))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(recv(&rx).row.id, 1);

    let n = diesel::copy_from(users::table)
        .from_raw_data((users::name, users::email), |out| {
            raw(out, b"ada\tada@example.com\ngrace\tgrace@example.com\n")
        })
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 2);
    let events = recv_n(&rx, 2);
    let rows: Vec<_> = events
        .iter()
        .map(|e| (e.row.id, e.row.name.as_str(), e.row.active))
        .collect();
    assert_eq!(rows, [(2, "ada", true), (3, "grace", true)]);
    let stored: Vec<User> = users::table.order(users::id).load(&mut conn).unwrap();
    assert_eq!(stored.iter().map(|u| u.id).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn copy_from_into_an_identity_column_table_keeps_the_identity_sequence() {
    let db = PgSchema::new("copy_identity");
    db.plain()
        .batch_execute(
            "CREATE TABLE users (
                id INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                name TEXT NOT NULL,
                email TEXT NOT NULL UNIQUE,
                active BOOLEAN NOT NULL DEFAULT TRUE
            )",
        )
        .unwrap();
    let emitter = emitter("copy_identity");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    diesel::copy_from(users::table)
        .from_raw_data((users::name, users::email), |out| {
            raw(out, b"ada\tada@example.com\n")
        })
        .execute(&mut conn)
        .unwrap();
    diesel::insert_into(users::table)
        .values(&NewUser::named("grace"))
        .execute(&mut conn)
        .unwrap();

    let ids: Vec<i32> = recv_n(&rx, 2).iter().map(|e| e.row.id).collect();
    assert_eq!(
        ids,
        [1, 2],
        "the copy took the identity's first value, the insert the next"
    );
}

#[test]
fn copy_from_in_a_rolled_back_transaction_delivers_nothing_and_writes_nothing() {
    let db = PgSchema::with_users("copy_rollback");
    let emitter = emitter("copy_rollback");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result: QueryResult<()> = conn.transaction(|conn| {
        diesel::copy_from(users::table)
            .from_insertable(&vec![copied(1, "ada")])
            .execute(conn)?;
        assert_eq!(conn.pending_events(), 1, "waiting for the commit");
        Err(diesel::result::Error::RollbackTransaction)
    });

    assert!(result.is_err());
    assert_eq!(count_rows(&mut conn, "users"), 0);
    sentinel!(&mut conn, &rx);
}

#[test]
fn copy_from_that_violates_a_constraint_fails_as_on_a_plain_connection_and_delivers_nothing() {
    let db = PgSchema::with_users("copy_conflict");
    let emitter = emitter("copy_conflict");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let duplicate = vec![copied(1, "ada"), copied(1, "ada")];
    let error = diesel::copy_from(users::table)
        .from_insertable(&duplicate)
        .execute(&mut conn)
        .unwrap_err();

    assert!(
        matches!(
            error,
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            )
        ),
        "{error:?}"
    );
    assert_eq!(count_rows(&mut conn, "users"), 0);
    sentinel!(&mut conn, &rx);
}

diesel::table! {
    tags (id) {
        id -> Int4,
        label -> Text,
    }
}

#[test]
fn copy_from_into_a_table_without_a_model_runs_the_plain_copy() {
    let db = PgSchema::with_users("copy_no_model");
    db.plain()
        .batch_execute("CREATE TABLE tags (id INT PRIMARY KEY, label TEXT NOT NULL)")
        .unwrap();
    let emitter = emitter("copy_no_model");
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let n = diesel::copy_from(tags::table)
        .from_raw_data((tags::id, tags::label), |out| {
            raw(out, b"1\tred\n2\tblue\n")
        })
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 2);
    let statements = log.take();
    assert_eq!(statements.len(), 1, "the COPY alone: {statements:?}");
    assert!(
        sql_part(&statements[0]).starts_with("COPY \"tags\""),
        "{statements:?}"
    );
    assert_eq!(emitter.stats().emitted, 0);
}

#[test]
fn copy_to_reads_through_the_inner_connection() {
    let db = PgSchema::with_users("copy_to");
    let emitter = emitter("copy_to");
    let mut conn = db.emitting(&emitter);
    diesel::insert_into(users::table)
        .values(&NewUser::named("ada"))
        .execute(&mut conn)
        .unwrap();

    // Diesel keeps the trait behind `copy_to(..).load(..)` private to its own
    // connections; a read emits nothing, so the inner connection serves it.
    let users: Vec<User> = diesel::copy_to(users::table)
        .load::<User, _>(conn.inner_mut())
        .unwrap()
        .collect::<QueryResult<_>>()
        .unwrap();

    assert_eq!(
        users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["ada"]
    );
}

// ---------------------------------------------------------------- custom SQL types

mod mood {
    use diesel::deserialize::{self, FromSql, FromSqlRow};
    use diesel::expression::AsExpression;
    use diesel::pg::{Pg, PgValue};
    use diesel::serialize::{self, IsNull, Output, ToSql};
    use std::io::Write;

    /// A PostgreSQL `enum` type, whose OID Diesel looks up through the connection.
    #[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
    #[diesel(postgres_type(name = "mood"))]
    pub struct MoodType;

    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        AsExpression,
        FromSqlRow,
        serde::Serialize,
        serde::Deserialize,
    )]
    #[diesel(sql_type = MoodType)]
    pub enum Mood {
        Happy,
        Sad,
    }

    impl ToSql<MoodType, Pg> for Mood {
        fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
            out.write_all(match self {
                Mood::Happy => b"happy",
                Mood::Sad => b"sad",
            })?;
            Ok(IsNull::No)
        }
    }

    impl FromSql<MoodType, Pg> for Mood {
        fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
            match bytes.as_bytes() {
                b"happy" => Ok(Mood::Happy),
                b"sad" => Ok(Mood::Sad),
                other => Err(format!("not a mood: {}", String::from_utf8_lossy(other)).into()),
            }
        }
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::mood::MoodType;

    moods (id) {
        id -> Int4,
        mood -> MoodType,
    }
}

#[derive(
    Queryable, Selectable, Insertable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits,
)]
#[diesel(table_name = moods, check_for_backend(Pg))]
struct Feeling {
    id: i32,
    mood: mood::Mood,
}

#[test]
fn a_custom_enum_type_is_written_and_emitted_through_the_wrapper() {
    let db = PgSchema::new("custom_enum");
    db.plain()
        .batch_execute(&format!(
            "CREATE TYPE \"{schema}\".mood AS ENUM ('happy', 'sad');
             CREATE TABLE moods (id INT PRIMARY KEY, mood \"{schema}\".mood NOT NULL)",
            schema = db.name
        ))
        .unwrap();
    let emitter = emitter("custom_enum");
    let rx = emitter.on::<Feeling>().subscribe();
    let mut conn = db.emitting(&emitter);

    let written = Feeling {
        id: 1,
        mood: mood::Mood::Sad,
    };
    let returned: Feeling = diesel::insert_into(moods::table)
        .values(&written)
        .returning(Feeling::as_returning())
        .get_result(&mut conn)
        .unwrap();

    assert_eq!(returned, written);
    let event = recv(&rx);
    assert_eq!((event.action, event.row), (Action::Insert, written));
}

// ---------------------------------------------------------------- SQLite batch RETURNING

#[test]
fn sqlite_batch_insert_returning_rows_emits_an_insert_per_row() {
    let db = SqliteDb::with_users("batch_returning");
    let emitter = emitter("batch_returning");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows = vec![NewUser::named("ada"), NewUser::named("grace")];
    let returned: Vec<User> = conn
        .batch_get_results(
            diesel::insert_into(users::table)
                .values(&rows)
                .returning(User::as_returning()),
        )
        .unwrap();

    assert_eq!(
        returned.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["ada", "grace"]
    );
    let events: Vec<User> = recv_n(&rx, 2).into_iter().map(|e| e.row).collect();
    assert_eq!(events, returned);
}

#[test]
fn sqlite_batch_insert_returning_that_fails_midway_writes_and_emits_nothing() {
    let db = SqliteDb::with_users("batch_returning_fails");
    let emitter = emitter("batch_returning_fails");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    // The second row repeats the first one's unique email.
    let rows = vec![NewUser::named("ada"), NewUser::named("ada")];
    let result: QueryResult<Vec<i32>> = conn.batch_get_results(
        diesel::insert_into(users::table)
            .values(&rows)
            .returning(users::id),
    );

    assert!(result.is_err());
    assert_eq!(count_rows(&mut conn, "users"), 0);
    sentinel!(&mut conn, &rx);
}

// ---------------------------------------------------------------- pools

#[test]
fn a_pool_built_with_use_emitter_emits_through_that_emitter_without_a_global() {
    let db = PgSchema::with_users("pool_use_emitter");
    let emitter = emitter("pool_use_emitter");
    let rx = emitter.on::<User>().subscribe();
    let pool = UseEmitter::pool_builder(emitter.clone())
        .max_size(2)
        .build(diesel::r2d2::ConnectionManager::<
            EmittingConnection<PgConnection>,
        >::new(pg_url()))
        .unwrap();

    let mut conn = pool.get().unwrap();
    conn.batch_execute(&db.search_path_sql()).unwrap();
    diesel::insert_into(users::table)
        .values(&NewUser::named("ada"))
        .execute(&mut conn)
        .unwrap();

    let event = recv(&rx);
    assert_eq!(
        (event.action, event.row.name.as_str()),
        (Action::Insert, "ada")
    );
    assert_eq!(&*event.meta.origin, emitter.node_id());
}

// ---------------------------------------------------------------- MultiConnection

// Diesel's derive writes each variant's type where an expression goes, so generic
// types need an alias.
type PgEmitting = EmittingConnection<PgConnection>;
type SqliteEmitting = EmittingConnection<SqliteConnection>;

/// An application that picks its database at run time.
#[derive(diesel::MultiConnection)]
enum AnyConnection {
    Postgresql(PgEmitting),
    Sqlite(SqliteEmitting),
}

fn insert_through_multi_connection(
    mut conn: AnyConnection,
    rx: &diesel_emitter::crossbeam_channel::Receiver<Event<User>>,
) {
    diesel::insert_into(users::table)
        .values((users::name.eq("ada"), users::email.eq("ada@example.com")))
        .execute(&mut conn)
        .unwrap();
    let event = recv(rx);
    assert_eq!(
        (event.action, event.row.name.as_str()),
        (Action::Insert, "ada")
    );
}

#[test]
fn a_multi_connection_of_wrappers_emits_on_postgres() {
    let db = PgSchema::with_users("multi_pg");
    let emitter = emitter("multi_pg");
    let rx = emitter.on::<User>().subscribe();
    insert_through_multi_connection(AnyConnection::Postgresql(db.emitting(&emitter)), &rx);
}

#[test]
fn a_multi_connection_of_wrappers_emits_on_sqlite() {
    let db = SqliteDb::with_users("multi_sqlite");
    let emitter = emitter("multi_sqlite");
    let rx = emitter.on::<User>().subscribe();
    insert_through_multi_connection(AnyConnection::Sqlite(db.emitting(&emitter)), &rx);
}
