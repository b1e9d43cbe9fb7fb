//! What durability costs: PostgreSQL writes through an emitter whose events wait in
//! memory for the broker, and the same writes through one with the outbox (each
//! transaction also writes its events into the outbox table; the relay publishes
//! them), with a plain `PgConnection` beside them for scale.
//!
//! Both emitters publish to the broker at `MQTT_URL` (default the local Mosquitto),
//! so both sides pay for publishing; the outbox side adds its insert, and its relay's
//! claim and delete statements, running on the same two cores. The criterion groups
//! time each side; the interleaved table (ABBA rounds, see `common`) gives the ratios.
//!
//! ```sh
//! cargo bench -p diesel-emitter --bench outbox
//! OUTBOX_BENCH_RELAY=0 cargo bench -p diesel-emitter --bench outbox   # the writes alone
//! ```

mod common;

use common::users::{users, NewUser};
use criterion::{criterion_group, criterion_main, Criterion};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Outbox;
use std::time::Duration;

fn new_user(i: usize) -> NewUser {
    NewUser {
        name: format!("user {i}"),
        email: format!("user{i}@example.com"),
        active: true,
    }
}

/// Connections of the three kinds in a schema of the bench's own.
struct Bench {
    schema: String,
    admin: PgConnection,
    memory: EmittingConnection<PgConnection>,
    outbox: EmittingConnection<PgConnection>,
    plain: PgConnection,
    emitters: [Emitter; 2],
    next: usize,
}

impl Bench {
    fn new() -> Bench {
        let url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mqtt = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
        let schema = format!("emitter_outbox_bench_{}", std::process::id());
        let table = format!("{schema}.diesel_emitter_outbox");
        let mut admin = PgConnection::establish(&url).expect("connect to PostgreSQL");
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.users (id SERIAL PRIMARY KEY, name TEXT NOT NULL,
                     email TEXT NOT NULL, active BOOLEAN NOT NULL);"
            ))
            .expect("create the bench schema");
        Outbox::<PgConnection>::create_tables(&mut admin, &table).expect("outbox tables");
        let config = |node: &str| {
            MqttConfig::new(&mqtt)
                .topic_prefix(format!("bench/outbox-{}-{node}", std::process::id()))
                .require_connection(Duration::from_secs(10))
        };
        let memory_emitter = Emitter::builder()
            .node_id("bench-memory")
            .mqtt(config("memory"))
            .build()
            .expect("build the in-memory emitter");
        let outbox_emitter = Emitter::builder()
            .node_id("bench-outbox")
            .mqtt(config("outbox"))
            .outbox(
                Outbox::<PgConnection>::url(url.clone())
                    .table(table)
                    .relay(std::env::var("OUTBOX_BENCH_RELAY").as_deref() != Ok("0")),
            )
            .build()
            .expect("build the outbox emitter");
        let connect = |emitter: &Emitter| {
            let mut conn = EmittingConnection::new(
                PgConnection::establish(&url).expect("connect to PostgreSQL"),
                emitter.clone(),
            );
            conn.batch_execute(&format!("SET search_path TO {schema}"))
                .expect("search_path");
            conn
        };
        let memory = connect(&memory_emitter);
        let outbox = connect(&outbox_emitter);
        let mut plain = PgConnection::establish(&url).expect("connect to PostgreSQL");
        plain
            .batch_execute(&format!("SET search_path TO {schema}"))
            .expect("search_path");
        Bench {
            schema,
            admin,
            memory,
            outbox,
            plain,
            emitters: [memory_emitter, outbox_emitter],
            next: 0,
        }
    }

    fn user(&mut self) -> NewUser {
        self.next += 1;
        new_user(self.next)
    }

    fn insert(&mut self, side: Side) {
        let row = self.user();
        let query = diesel::insert_into(users::table).values(row);
        let n = match side {
            Side::Memory => query.execute(&mut self.memory),
            Side::Outbox => query.execute(&mut self.outbox),
            Side::Plain => query.execute(&mut self.plain),
        };
        assert_eq!(n.expect("insert"), 1);
    }

    fn transaction_of_100(&mut self, side: Side) {
        let rows: Vec<NewUser> = (0..100).map(|_| self.user()).collect();
        let query = diesel::insert_into(users::table).values(rows);
        let n = match side {
            Side::Memory => self.memory.transaction(|c| query.execute(c)),
            Side::Outbox => self.outbox.transaction(|c| query.execute(c)),
            Side::Plain => self.plain.transaction(|c| query.execute(c)),
        };
        assert_eq!(n.expect("insert 100"), 100);
    }

    fn truncate(&mut self) {
        self.admin
            .batch_execute(&format!("TRUNCATE {}.users", self.schema))
            .expect("truncate");
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for emitter in &self.emitters {
            if let Err(error) = emitter.shutdown(Duration::from_secs(30)) {
                eprintln!("{}: {error}", emitter.node_id());
            }
        }
        let stats = self.emitters[1].stats();
        println!(
            "outbox relay: published {}, dead-lettered {}, errors {}, backlog {}",
            stats.outbox_published,
            stats.outbox_dead_lettered,
            stats.outbox_errors,
            stats.outbox_backlog
        );
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

#[derive(Clone, Copy)]
enum Side {
    Memory,
    Outbox,
    Plain,
}

const SIDES: [(Side, &str); 3] = [
    (Side::Plain, "plain"),
    (Side::Memory, "memory"),
    (Side::Outbox, "outbox"),
];

fn benches(c: &mut Criterion) {
    let mut bench = Bench::new();
    let mut g = c.benchmark_group("pg_outbox_insert_single");
    for (side, name) in SIDES {
        g.bench_function(name, |b| b.iter(|| bench.insert(side)));
    }
    g.finish();
    bench.truncate();
    let mut g = c.benchmark_group("pg_outbox_transaction_of_100");
    g.sample_size(20);
    for (side, name) in SIDES {
        g.bench_function(name, |b| b.iter(|| bench.transaction_of_100(side)));
    }
    g.finish();
    bench.truncate();

    println!("\ninterleaved (ABBA, 200 rounds of 10 single inserts / 60 rounds of 1 transaction):");
    let nothing = |_: &mut Bench| {};
    let pick = |first: bool, a: Side, b: Side| if first { a } else { b };
    for (other, name) in [(Side::Memory, "memory"), (Side::Plain, "plain")] {
        let sides = ["outbox", name];
        common::interleaved_as(
            &mut bench,
            "insert_single",
            sides,
            200,
            10,
            nothing,
            |s, f| s.insert(pick(f, Side::Outbox, other)),
        );
        common::interleaved_as(
            &mut bench,
            "transaction_of_100",
            sides,
            60,
            1,
            nothing,
            |s, f| s.transaction_of_100(pick(f, Side::Outbox, other)),
        );
    }
}

criterion_group! {
    name = outbox;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = benches
}
criterion_main!(outbox);
