//! Two servers, one broker: writes committed on one reach listeners on the other.
//!
//! Terminal 1 (a server that only listens):
//!     cargo run --example multi_server -- listen
//! Terminal 2 (a server that writes to its own SQLite file):
//!     cargo run --example multi_server -- write
//!
//! Options: `--node NAME` (node id), `--count N` (listen: exit after N events; write:
//! how many users to insert, each then updated and deleted), `--group NAME` (listen
//! as a member of a competing-consumer group). `MQTT_URL` picks the broker (default
//! `mqtt://127.0.0.1:1883`), `MQTT_PREFIX` the topic prefix (default `diesel/events`).
//!
//! The listener prints `READY` once its subscription is in place, then one line per
//! event: `EVENT <id> <origin> <seq> <action> <row as JSON>`.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};
use std::io::Write;
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

struct Args {
    role: String,
    node: Option<String>,
    count: Option<u64>,
    group: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let role = it
        .next()
        .ok_or("usage: multi_server listen|write [--node NAME] [--count N] [--group NAME]")?;
    let mut args = Args {
        role,
        node: None,
        count: None,
        group: None,
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--node" => args.node = Some(value),
            "--count" => args.count = Some(value.parse().map_err(|_| "--count needs a number")?),
            "--group" => args.group = Some(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let prefix = std::env::var("MQTT_PREFIX").unwrap_or_else(|_| "diesel/events".into());
    let node = args
        .node
        .clone()
        .unwrap_or_else(|| format!("{}-{}", args.role, std::process::id()));
    let emitter = Emitter::builder()
        .node_id(node)
        .mqtt(
            MqttConfig::new(&url)
                .topic_prefix(prefix)
                .require_connection(Duration::from_secs(5)),
        )
        .build()?;
    match args.role.as_str() {
        "listen" => listen(&emitter, &args),
        "write" => write(&emitter, &args),
        other => Err(format!("unknown role {other}; use listen or write").into()),
    }
}

fn listen(emitter: &Emitter, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = emitter.on::<User>().remote_only(true);
    if let Some(group) = &args.group {
        builder = emitter.on::<User>().group(group.clone());
    }
    let events = builder.subscribe();
    emitter.wait_connected(Duration::from_secs(10))?;
    println!("READY");
    std::io::stdout().flush()?;
    let mut seen = 0;
    while args.count.is_none_or(|n| seen < n) {
        let Ok(ev) = events.recv() else { break };
        println!(
            "EVENT {} {} {} {} {}",
            ev.meta.id,
            ev.meta.origin,
            ev.meta.seq,
            ev.action,
            serde_json::to_string(&ev.row)?
        );
        std::io::stdout().flush()?;
        seen += 1;
    }
    emitter.shutdown(Duration::from_secs(5))?;
    Ok(())
}

fn write(emitter: &Emitter, args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("multi-server-{}.db", emitter.node_id()));
    let mut conn = EmittingConnection::new(
        SqliteConnection::establish(&path.to_string_lossy())?,
        emitter.clone(),
    );
    conn.batch_execute(
        "PRAGMA journal_mode = WAL;
         DROP TABLE IF EXISTS users;
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                             email TEXT NOT NULL, active BOOLEAN NOT NULL DEFAULT 1);",
    )?;
    for i in 0..args.count.unwrap_or(3) {
        let name = format!("user-{i}");
        let user: User = diesel::insert_into(users::table)
            .values((
                users::name.eq(&name),
                users::email.eq(format!("{name}@example.com")),
            ))
            .returning(User::as_returning())
            .get_result(&mut conn)?;
        diesel::update(users::table.find(user.id))
            .set(users::active.eq(false))
            .execute(&mut conn)?;
        diesel::delete(users::table.find(user.id)).execute(&mut conn)?;
        println!("wrote {name}: insert, update, delete");
    }
    // A rolled-back write is never published.
    let _ = conn.transaction::<(), _, _>(|conn| {
        diesel::insert_into(users::table)
            .values((
                users::name.eq("ghost"),
                users::email.eq("ghost@example.com"),
            ))
            .execute(conn)?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    emitter.shutdown(Duration::from_secs(10))?;
    let stats = emitter.stats();
    println!(
        "published {} events ({} failed)",
        stats.published,
        stats.publish_failed + stats.publish_dropped
    );
    Ok(())
}
