//! Type fidelity on MySQL: every column type the model reads arrives at a remote node
//! (through the MQTT broker) as the database stored it, as MariaDB captures it and as
//! MySQL 8 does.

mod broker;
mod common;
#[path = "common/mysql_people.rs"]
mod mysql_people;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use mysql_people::*;
use serde::{Deserialize, Serialize};

mysql_people::both_flavors!(every_column_type_arrives_at_a_remote_node_as_the_database_stored_it);

mod types {
    diesel::table! {
        samples (id) {
            id -> Unsigned<Bigint>,
            tiny -> TinyInt,
            small -> SmallInt,
            big -> BigInt,
            unsigned_int -> Unsigned<Integer>,
            amount -> Numeric,
            at_local -> Datetime,
            stamp -> Timestamp,
            day -> Date,
            clock -> Time,
            bytes -> Blob,
            body -> Text,
            doc -> Json,
            flag -> Bool,
            ratio -> Double,
            note -> Nullable<Text>,
        }
    }
}

#[derive(
    Queryable, Selectable, Insertable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits,
)]
#[diesel(table_name = types::samples, check_for_backend(diesel::mysql::Mysql))]
struct Sample {
    id: u64,
    tiny: i8,
    small: i16,
    big: i64,
    unsigned_int: u32,
    amount: bigdecimal::BigDecimal,
    at_local: chrono::NaiveDateTime,
    stamp: chrono::NaiveDateTime,
    day: chrono::NaiveDate,
    clock: chrono::NaiveTime,
    bytes: Vec<u8>,
    body: String,
    doc: serde_json::Value,
    flag: bool,
    ratio: f64,
    note: Option<String>,
}

const SAMPLES_DDL: &str = "CREATE TABLE samples (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    tiny TINYINT NOT NULL,
    small SMALLINT NOT NULL,
    big BIGINT NOT NULL,
    unsigned_int INT UNSIGNED NOT NULL,
    amount DECIMAL(38, 18) NOT NULL,
    at_local DATETIME(6) NOT NULL,
    stamp TIMESTAMP(6) NOT NULL,
    day DATE NOT NULL,
    clock TIME(6) NOT NULL,
    bytes BLOB NOT NULL,
    body TEXT NOT NULL,
    doc JSON NOT NULL,
    flag BOOLEAN NOT NULL,
    ratio DOUBLE NOT NULL,
    note TEXT NULL
) ENGINE = InnoDB";

fn sample() -> Sample {
    use std::str::FromStr;
    let at = |s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    Sample {
        id: u64::MAX,
        tiny: i8::MIN,
        small: i16::MIN,
        big: i64::MIN,
        unsigned_int: u32::MAX,
        amount: bigdecimal::BigDecimal::from_str("-12345678901234567890.000000000123456789")
            .unwrap(),
        at_local: at("2026-02-28 23:59:59.999999"),
        stamp: at("2030-01-19 03:14:07.000001"),
        day: chrono::NaiveDate::from_ymd_opt(1000, 1, 1).unwrap(),
        clock: chrono::NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
        bytes: vec![0, 159, 146, 150, 255],
        body: "quote \" and \\ backslash, ünïcode 🚀".into(),
        doc: serde_json::json!({"nested": {"list": [1, 2.5, null, "x"]}, "emoji": "ü 🚀"}),
        flag: true,
        ratio: 0.1 + 0.2,
        note: None,
    }
}

fn every_column_type_arrives_at_a_remote_node_as_the_database_stored_it(flavor: Flavor) {
    use broker::{connected, node, shutdown_all, unique_prefix, SHARED_URL};
    let db = Db::new("types");
    db.plain()
        .batch_execute("SET time_zone = '+00:00'")
        .unwrap();
    db.plain().batch_execute(SAMPLES_DDL).unwrap();
    let config = MqttConfig::new(SHARED_URL).topic_prefix(unique_prefix("mysql_types"));
    let a = node("a", config.clone());
    let b = node("b", config);
    let remote = b.on::<Sample>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let mut conn = db.emitting(&a, flavor);

    diesel::insert_into(types::samples::table)
        .values(&sample())
        .execute(&mut conn)
        .unwrap();
    let stored: Sample = types::samples::table.first(&mut db.plain()).unwrap();
    let mut changed = stored.clone();
    changed.note = Some("set".into());
    diesel::update(types::samples::table)
        .set(types::samples::note.eq(&changed.note))
        .execute(&mut conn)
        .unwrap();

    let inserted = broker::recv(&remote);
    assert_eq!((inserted.action, &inserted.row), (Action::Insert, &stored));
    let updated = broker::recv(&remote);
    assert_eq!((updated.action, &updated.row), (Action::Update, &changed));
    shutdown_all(&[&a, &b]);
}
