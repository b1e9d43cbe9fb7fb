//! The durable outbox on a SQLite file: a transaction's events are written into the
//! outbox table with its rows, and the relay publishes them from there, now or,
//! if no broker answers, on a later run.
//!
//! Run it with `cargo run --example outbox`, once with the broker at `MQTT_URL`
//! (default `mqtt://127.0.0.1:1883`) down and once with it up: the first run leaves
//! its events in the outbox of `DATABASE_PATH` (default `outbox-example.db` in the
//! system temp directory), the second publishes them along with its own.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::Outbox;
use serde::{Deserialize, Serialize};
use std::time::Duration;

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    name: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("DATABASE_PATH").unwrap_or_else(|_| {
        let file = std::env::temp_dir().join("outbox-example.db");
        file.display().to_string()
    });
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let mqtt = MqttConfig::new(&url).topic_prefix("outbox-example/events");

    // The tables: the application's, and the outbox's (usually a migration).
    let mut setup = SqliteConnection::establish(&path)?;
    setup.batch_execute(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
    )?;
    Outbox::<SqliteConnection>::create_tables(&mut setup, "diesel_emitter_outbox")?;

    // Another server, listening through the broker, if one answers.
    let listener = Emitter::builder()
        .node_id("listener")
        .mqtt(mqtt.clone().require_connection(Duration::from_secs(2)))
        .build()
        .ok();
    let _heard = listener.as_ref().map(|node| {
        node.on::<User>()
            .remote_only(true)
            .listen(|ev: &Event<User>| {
                println!(
                    "  heard from {} (seq {}): {} {}",
                    ev.meta.origin, ev.meta.seq, ev.action, ev.row.name
                )
            })
    });
    match &listener {
        Some(node) => {
            node.wait_connected(Duration::from_secs(5))?;
            println!("broker at {url}: the listener node hears what the outbox publishes");
        }
        None => println!("no broker at {url}: the events will wait in the outbox"),
    }

    // The writer: builds whether or not the broker is up; its relay publishes
    // whenever it is. `build()` would fail here if the outbox tables were missing.
    let writer = Emitter::builder()
        .node_id(format!("writer-{}", std::process::id()))
        .mqtt(mqtt)
        .outbox(Outbox::<SqliteConnection>::url(path.clone()))
        .build()?;
    let mut conn = EmittingConnection::new(SqliteConnection::establish(&path)?, writer.clone());
    conn.batch_execute("PRAGMA busy_timeout = 5000;")?;
    conn.immediate_transaction(|conn| {
        diesel::insert_into(users::table)
            .values(&vec![users::name.eq("Ada"), users::name.eq("Grace")])
            .execute(conn)?;
        diesel::update(users::table.filter(users::name.eq("Ada")))
            .set(users::name.eq("Ada Lovelace"))
            .execute(conn)
    })?;
    println!("committed 3 events into the outbox of {path}");

    // The relay counts the backlog about once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let stats = writer.stats();
    println!(
        "outbox: {} rows waiting, {} published by this run's relay",
        stats.outbox_backlog, stats.outbox_published
    );
    writer.shutdown(Duration::from_secs(5))?;
    if let Some(node) = &listener {
        std::thread::sleep(Duration::from_millis(200));
        node.shutdown(Duration::from_secs(5))?;
    } else {
        println!("start a broker and run again: the relay publishes what waits first");
    }
    Ok(())
}
