//! A writer process killed with SIGKILL right after it committed, while the broker
//! was down: its events survive in the outbox, and a fresh process's relay
//! publishes every one of them once the broker is back.
//!
//! The test runs its own binary again as the writer (`OUTBOX_CRASH_CHILD` set), so
//! it has no libtest harness (`harness = false` in Cargo.toml).

mod broker;
mod common;

use common::{Harness, PgSchema};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Outbox;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROWS: usize = 300;
const PREFIX: &str = "crash";

diesel::table! {
    crash_accounts (id) {
        id -> Integer,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = crash_accounts)]
struct Account {
    id: i32,
    name: String,
}

fn outbox_table(schema: &str) -> String {
    format!("{schema}.diesel_emitter_outbox")
}

fn main() {
    if let Ok(schema) = std::env::var("OUTBOX_CRASH_CHILD") {
        let url = std::env::var("OUTBOX_CRASH_MQTT").expect("the broker URL");
        return writer(&schema, &url);
    }
    let name = "a_writer_killed_after_commit_while_the_broker_is_down_loses_no_event";
    a_writer_killed_after_commit_while_the_broker_is_down_loses_no_event();
    println!("test {name} ... ok");
}

/// The child: commits `ROWS` rows with the broker unreachable, says so, and waits
/// to be killed.
fn writer(schema: &str, mqtt_url: &str) {
    let emitter = Emitter::builder()
        .node_id(broker::node_name("doomed"))
        .mqtt(MqttConfig::new(mqtt_url).topic_prefix(PREFIX))
        .outbox(Outbox::<PgConnection>::url(common::pg_url()).table(outbox_table(schema)))
        .build()
        .expect("the writer's emitter builds while the broker is down");
    let mut conn = EmittingConnection::new(
        PgConnection::establish(&common::pg_url()).expect("PostgreSQL"),
        emitter.clone(),
    );
    conn.batch_execute(&format!("SET search_path TO \"{schema}\""))
        .expect("search_path");
    let insert = |conn: &mut EmittingConnection<PgConnection>, i: usize| {
        diesel::insert_into(crash_accounts::table)
            .values(crash_accounts::name.eq(format!("a{i}")))
            .execute(conn)
    };
    // Two transactions of 100 rows, then 100 statements on their own.
    for batch in 0..2 {
        conn.transaction(|c| (0..100).try_for_each(|i| insert(c, batch * 100 + i).map(drop)))
            .expect("commit");
    }
    for i in 200..ROWS {
        insert(&mut conn, i).expect("autocommit insert");
    }
    assert!(!emitter.stats().broker_connected);
    let mut out = std::io::stdout();
    writeln!(out, "committed {ROWS}")
        .and_then(|()| out.flush())
        .expect("stdout");
    std::thread::sleep(Duration::from_secs(120));
}

fn a_writer_killed_after_commit_while_the_broker_is_down_loses_no_event() {
    let db = PgSchema::with_users("crash");
    let table = outbox_table(&db.name);
    db.plain()
        .batch_execute("CREATE TABLE crash_accounts (id SERIAL PRIMARY KEY, name TEXT NOT NULL)")
        .expect("create crash_accounts");
    Outbox::<PgConnection>::create_tables(&mut db.plain(), &table).expect("outbox tables");
    // The broker's port is known, and nothing listens on it while the writer runs.
    let mut own = broker::Broker::start();
    own.stop();

    let mut child = Command::new(std::env::current_exe().expect("own binary"))
        .env("OUTBOX_CRASH_CHILD", &db.name)
        .env("OUTBOX_CRASH_MQTT", own.url())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let said = rx.recv_timeout(Duration::from_secs(60));
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    assert_eq!(
        said.ok().as_deref(),
        Some("committed 300"),
        "the writer committed"
    );

    let waiting = rows_in(&db, &table);
    assert_eq!(
        waiting, ROWS as i64,
        "the killed writer's events wait in the outbox"
    );

    own.restart();
    let config = MqttConfig::new(own.url()).topic_prefix(PREFIX);
    let receiver = broker::node("receiver", config.clone());
    let remote = receiver.on::<Account>().remote_only(true).subscribe();
    broker::connected(&[&receiver]);
    let relay = Emitter::builder()
        .node_id(broker::node_name("fresh"))
        .mqtt(config)
        .outbox(
            Outbox::<PgConnection>::url(common::pg_url())
                .table(table.clone())
                .poll_interval(Duration::from_millis(100)),
        )
        .build()
        .expect("the fresh process's emitter builds");

    let mut names = HashSet::new();
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while names.len() < ROWS {
        let Ok(event) = remote.recv_deadline(deadline) else {
            break;
        };
        received += 1;
        names.insert(event.row.name);
    }
    let expected: HashSet<String> = (0..ROWS).map(|i| format!("a{i}")).collect();
    assert_eq!(names, expected, "every committed event arrived");
    assert_eq!(received, ROWS, "each once");
    assert!(broker::eventually(Duration::from_secs(10), || rows_in(
        &db, &table
    ) == 0));
    broker::shutdown_all(&[&relay, &receiver]);
    assert_eq!(relay.stats().outbox_published, ROWS as u64);
}

fn rows_in(db: &PgSchema, table: &str) -> i64 {
    common::count_rows(&mut db.plain(), table)
}
