//! The quickstart: a SQLite file, one model, one listener, and the four things a
//! newcomer wants to see: insert, update and delete reach the listener after
//! commit, and a rolled-back transaction says nothing.
//!
//! Run it with `cargo run --example quickstart`. `DATABASE_PATH` picks the SQLite
//! file (default: `quickstart.db` in the system temp directory). When a broker
//! answers at `MQTT_URL` (default `mqtt://127.0.0.1:1883`), a second node in the same
//! process hears the writes as remote events; otherwise it says so and shows local
//! events only.
//!
//! The same code runs on PostgreSQL or MySQL/MariaDB: swap `SqliteConnection` for
//! `PgConnection` or (feature `mysql`) `MysqlConnection` and the URL; nothing else
//! changes.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use serde::{Deserialize, Serialize};
use std::time::Duration;

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
        email -> Text,
        active -> Bool,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    name: String,
    email: String,
    active: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("DATABASE_PATH").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("quickstart.db")
            .display()
            .to_string()
    });
    let (emitter, remote) = connect_nodes();

    // A listener: runs on its own thread for every committed write on `users`.
    let listener = emitter.on::<User>().listen(|ev: &Event<User>| {
        println!(
            "  event #{}: {:<6} {:?} (changed: {})",
            ev.meta.seq,
            ev.action,
            ev.row,
            ev.changed().join(", ")
        );
    });
    // Or a channel: only inserts, for a worker that sends welcome mails.
    let inserts = emitter.on::<User>().actions([Action::Insert]).subscribe();
    // On another server: events committed elsewhere arrive through the broker.
    let _remote_listener = remote.as_ref().map(|node| {
        let sub = node
            .on::<User>()
            .remote_only(true)
            .listen(|ev: &Event<User>| {
                println!(
                    "  remote event on node b from {}: {} {}",
                    ev.meta.origin, ev.action, ev.row.name
                );
            });
        let _ = node.wait_connected(Duration::from_secs(5));
        sub
    });

    let mut conn = EmittingConnection::new(SqliteConnection::establish(&path)?, emitter.clone());
    conn.batch_execute(
        "PRAGMA journal_mode = WAL;
         DROP TABLE IF EXISTS users;
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                             email TEXT NOT NULL, active BOOLEAN NOT NULL DEFAULT 1);",
    )?;
    println!("writing to {path}");

    println!("insert:");
    diesel::insert_into(users::table)
        .values((users::name.eq("Ada"), users::email.eq("ada@example.com")))
        .execute(&mut conn)?;
    pause();

    println!("update:");
    diesel::update(users::table.filter(users::name.eq("Ada")))
        .set(users::email.eq("ada@lovelace.dev"))
        .execute(&mut conn)?;
    pause();

    println!("a transaction that rolls back (no event expected):");
    let rolled_back = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        diesel::insert_into(users::table)
            .values((users::name.eq("Ghost"), users::email.eq("boo@example.com")))
            .execute(conn)?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(rolled_back.is_err());
    pause();
    println!("  (silence: the insert never committed)");

    println!("delete:");
    diesel::delete(users::table).execute(&mut conn)?;
    pause();

    let welcomed: Vec<String> = inserts.try_iter().map(|ev| ev.row.name).collect();
    println!("the insert-only channel saw: {welcomed:?}");

    listener.unsubscribe();
    emitter.shutdown(Duration::from_secs(5))?;
    if let Some(node) = &remote {
        pause();
        node.shutdown(Duration::from_secs(5))?;
    }
    let stats = emitter.stats();
    println!(
        "stats: {} emitted, {} delivered, {} dropped, {} listener panics",
        stats.emitted, stats.delivered, stats.dropped, stats.panics
    );
    Ok(())
}

/// Node a writes; node b (another "server", here in the same process) listens
/// through the broker, when one answers at `MQTT_URL`.
fn connect_nodes() -> (Emitter, Option<Emitter>) {
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let mqtt = MqttConfig::new(&url)
        .topic_prefix("quickstart/events")
        .require_connection(Duration::from_secs(2));
    let nodes = Emitter::builder()
        .node_id("a")
        .mqtt(mqtt.clone())
        .build()
        .and_then(|a| Ok((a, Emitter::builder().node_id("b").mqtt(mqtt).build()?)));
    match nodes {
        Ok((a, b)) => {
            println!("broker at {url}: node a writes, node b hears it remotely");
            (a, Some(b))
        }
        Err(error) => {
            println!("no broker at {url} ({error}); showing local events only");
            let local = Emitter::builder()
                .node_id("a")
                .build()
                .expect("a local emitter always builds");
            (local, None)
        }
    }
}

/// Listeners run on their own threads; give the printout a moment to appear in order.
fn pause() {
    std::thread::sleep(Duration::from_millis(50));
}
