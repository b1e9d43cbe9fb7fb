//! Type fidelity: a row travels from one node's database, through the broker, into
//! another node's listener, and arrives equal to what the database stored, whatever
//! its column types (the shared Mosquitto at 127.0.0.1:1883, a PostgreSQL schema
//! and a SQLite file of the test's own).

mod broker;
mod common;

use bigdecimal::BigDecimal;
use broker::{connected, node, recv, shutdown_all, unique_prefix, TempDir, SHARED_URL};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use common::{Harness, PgSchema};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Two nodes on the shared broker; `b` hears `a`'s events of `M` as remote.
fn pair<M: diesel_emitter::Emits>(
    test: &str,
) -> (
    Emitter,
    Emitter,
    diesel_emitter::crossbeam_channel::Receiver<Event<M>>,
) {
    let config = MqttConfig::new(SHARED_URL).topic_prefix(unique_prefix(test));
    let a = node("a", config.clone());
    let b = node("b", config);
    let remote = b.on::<M>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    (a, b, remote)
}

fn timestamp(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("a valid timestamp")
}

// ---------------------------------------------------------------- PostgreSQL

mod pg {
    diesel::table! {
        samples (id) {
            id -> Int8,
            at_local -> Timestamp,
            at_utc -> Timestamptz,
            day -> Date,
            token -> Uuid,
            amount -> Numeric,
            doc -> Json,
            docb -> Jsonb,
            blob -> Bytea,
            scores -> Array<Int4>,
            note -> Nullable<Text>,
            missing -> Nullable<Int4>,
            flag -> Bool,
            small -> Int2,
            ratio -> Float8,
            approx -> Float4,
        }
    }
}

const PG_DDL: &str = "CREATE TABLE samples (
    id BIGINT PRIMARY KEY,
    at_local TIMESTAMP NOT NULL,
    at_utc TIMESTAMPTZ NOT NULL,
    day DATE NOT NULL,
    token UUID NOT NULL,
    amount NUMERIC NOT NULL,
    doc JSON NOT NULL,
    docb JSONB NOT NULL,
    blob BYTEA NOT NULL,
    scores INT4[] NOT NULL,
    note TEXT,
    missing INT4,
    flag BOOLEAN NOT NULL,
    small INT2 NOT NULL,
    ratio FLOAT8 NOT NULL,
    approx FLOAT4 NOT NULL
)";

#[derive(
    Queryable, Selectable, Insertable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits,
)]
#[diesel(table_name = pg::samples, check_for_backend(diesel::pg::Pg))]
struct PgSample {
    id: i64,
    at_local: NaiveDateTime,
    at_utc: DateTime<Utc>,
    day: NaiveDate,
    token: uuid::Uuid,
    amount: BigDecimal,
    doc: serde_json::Value,
    docb: serde_json::Value,
    blob: Vec<u8>,
    scores: Vec<i32>,
    note: Option<String>,
    missing: Option<i32>,
    flag: bool,
    small: i16,
    ratio: f64,
    approx: f32,
}

/// Values chosen to break a lossy encoding: extreme integers, microseconds, a
/// numeric longer than an f64 holds, bytes that are not UTF-8, JSON with nesting and
/// Unicode, floats without a short decimal form.
fn pg_sample() -> PgSample {
    PgSample {
        id: i64::MAX,
        at_local: timestamp("2026-02-28 23:59:59.999999"),
        at_utc: DateTime::parse_from_rfc3339("1999-12-31T23:59:59.000001+05:30")
            .expect("a valid RFC 3339 time")
            .with_timezone(&Utc),
        day: NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date"),
        token: uuid::Uuid::new_v4(),
        amount: BigDecimal::from_str("-12345678901234567890.000000000123456789")
            .expect("a valid decimal"),
        doc: serde_json::json!({"nested": {"list": [1, 2.5, null, "x"]}, "emoji": "ü 🚀"}),
        docb: serde_json::json!({"big": 9007199254740993_i64, "flag": false}),
        blob: vec![0, 159, 146, 150, 255],
        scores: vec![i32::MIN, 0, i32::MAX],
        note: Some("quote \" and \\ backslash, ünïcode".into()),
        missing: Some(-1),
        flag: true,
        small: i16::MIN,
        ratio: 0.1 + 0.2,
        approx: f32::MIN_POSITIVE,
    }
}

/// A schema of the test's own with the samples table, a writer `a` connected to it,
/// and `b`, whose `remote_only` listener is `remote`.
struct PgNodes {
    a: Emitter,
    b: Emitter,
    remote: diesel_emitter::crossbeam_channel::Receiver<Event<PgSample>>,
    conn: EmittingConnection<PgConnection>,
    _schema: PgSchema,
}

impl PgNodes {
    fn start(test: &str) -> PgNodes {
        let schema = PgSchema::new(test);
        let (a, b, remote) = pair::<PgSample>(test);
        let mut conn = schema.emitting(&a);
        conn.batch_execute(PG_DDL).expect("create samples");
        PgNodes {
            a,
            b,
            remote,
            conn,
            _schema: schema,
        }
    }
}

#[test]
fn postgres_row_of_every_common_type_arrives_remote_equal_to_what_was_stored() {
    let PgNodes {
        a,
        b,
        remote,
        mut conn,
        _schema,
    } = PgNodes::start("fidelity_pg");

    let stored: PgSample = diesel::insert_into(pg::samples::table)
        .values(pg_sample())
        .returning(PgSample::as_returning())
        .get_result(&mut conn)
        .expect("insert a sample");
    let event = recv(&remote);

    assert_eq!(event.action, Action::Insert);
    assert_eq!(event.row, stored);
    shutdown_all(&[&a, &b]);
}

#[test]
fn postgres_update_that_sets_nulls_arrives_remote_with_the_nulls() {
    let PgNodes {
        a,
        b,
        remote,
        mut conn,
        _schema,
    } = PgNodes::start("fidelity_pg_null");
    let mut sample = pg_sample();
    sample.note = Some("to be cleared".into());
    diesel::insert_into(pg::samples::table)
        .values(sample)
        .execute(&mut conn)
        .expect("insert a sample");
    recv(&remote);

    let stored: PgSample = diesel::update(pg::samples::table)
        .set((
            pg::samples::note.eq(None::<String>),
            pg::samples::missing.eq(None::<i32>),
        ))
        .returning(PgSample::as_returning())
        .get_result(&mut conn)
        .expect("clear the nullable columns");
    let event = recv(&remote);

    assert_eq!(
        (event.action, event.changed()),
        (Action::Update, &["note", "missing"][..])
    );
    assert_eq!((event.row.note.as_deref(), event.row.missing), (None, None));
    assert_eq!(event.row, stored);
    shutdown_all(&[&a, &b]);
}

#[test]
fn postgres_non_finite_float_is_rejected_and_counted_by_the_receiver_never_altered() {
    // JSON has no NaN: serde_json writes it as null, which no f64 field accepts.
    let PgNodes {
        a,
        b,
        remote,
        mut conn,
        _schema,
    } = PgNodes::start("fidelity_pg_nan");
    let mut nan = pg_sample();
    nan.ratio = f64::NAN;
    let mut next = pg_sample();
    next.id -= 1;

    diesel::insert_into(pg::samples::table)
        .values(vec![nan, next])
        .execute(&mut conn)
        .expect("insert two samples");

    assert_eq!(
        recv(&remote).row.id,
        i64::MAX - 1,
        "the finite row still flows"
    );
    assert!(
        broker::eventually(broker::TIMEOUT, || b.stats().remote_rejected == 1),
        "the NaN row is counted as rejected: {:?}",
        b.stats()
    );
    broker::assert_empty(&remote);
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------- SQLite

mod lite {
    diesel::table! {
        samples (id) {
            id -> BigInt,
            at_local -> Timestamp,
            day -> Date,
            label -> Text,
            blob -> Binary,
            note -> Nullable<Text>,
            flag -> Bool,
            count -> Integer,
            ratio -> Double,
        }
    }
}

#[derive(
    Queryable, Selectable, Insertable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits,
)]
#[diesel(table_name = lite::samples, check_for_backend(diesel::sqlite::Sqlite))]
struct LiteSample {
    id: i64,
    at_local: NaiveDateTime,
    day: NaiveDate,
    label: String,
    blob: Vec<u8>,
    note: Option<String>,
    flag: bool,
    count: i32,
    ratio: f64,
}

#[test]
fn sqlite_row_of_every_common_type_arrives_remote_equal_to_what_was_stored() {
    let dir = TempDir::new("fidelity");
    let (a, b, remote) = pair::<LiteSample>("fidelity_sqlite");
    let mut conn = EmittingConnection::new(
        SqliteConnection::establish(&dir.join("fidelity.db").display().to_string())
            .expect("open the SQLite file"),
        a.clone(),
    );
    conn.batch_execute(
        "CREATE TABLE samples (id BIGINT PRIMARY KEY, at_local TIMESTAMP NOT NULL,
         day DATE NOT NULL, label TEXT NOT NULL, blob BLOB NOT NULL, note TEXT,
         flag BOOLEAN NOT NULL, count INTEGER NOT NULL, ratio DOUBLE NOT NULL)",
    )
    .expect("create samples");

    let stored: LiteSample = diesel::insert_into(lite::samples::table)
        .values(LiteSample {
            id: i64::MIN,
            at_local: timestamp("2026-11-26 20:00:00.123456"),
            day: NaiveDate::from_ymd_opt(2024, 2, 29).expect("a valid date"),
            label: "line\nbreak, tab\t and \u{0} NUL".into(),
            blob: vec![255, 0, 128],
            note: None,
            flag: false,
            count: i32::MAX,
            ratio: -1.0e-300,
        })
        .returning(LiteSample::as_returning())
        .get_result(&mut conn)
        .expect("insert a sample");
    let event = recv(&remote);

    assert_eq!(event.action, Action::Insert);
    assert_eq!(event.row, stored);
    shutdown_all(&[&a, &b]);
}
