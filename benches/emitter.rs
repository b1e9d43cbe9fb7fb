//! The emitter itself.
//!
//! (a) No database: one thread commits events of a ~100-byte row, one event per
//!     commit, to one listener: a counting closure, or a `subscribe()` receiver
//!     drained by another thread. Side by side: a bare crossbeam bounded channel of
//!     the same element type (`Event<Order>`) between two threads, the floor of any
//!     channel-based dispatch.
//! (b) Commit-to-listener latency on PostgreSQL: an emitting autocommit INSERT; the
//!     listener notes `Instant::now()`, compared with the instant `execute` returned
//!     (events are handed to listeners as the statement returns). Criterion does not
//!     report percentiles, so this part is a plain measurement printed before the
//!     criterion run. Set `DATABASE_URL` to use another server; it is skipped when
//!     PostgreSQL is unreachable.

use criterion::{criterion_group, Criterion, Throughput};
use crossbeam_channel::{bounded, Receiver};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::integration::PendingEvent;
use diesel_emitter::prelude::*;
use diesel_emitter::DEFAULT_CAPACITY;
use diesel_emitter::{Event, EventMeta, Source};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Events per measured iteration of the throughput benchmarks.
const EVENTS: u64 = 10_000;
/// Latency samples (after a warm-up), and the warm-up.
const LATENCY_SAMPLES: usize = 10_000;
const LATENCY_WARM_UP: usize = 500;

/// A row of about 100 bytes: 80 inline plus two short strings.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Order {
    id: i64,
    customer_id: i64,
    status: String,
    sku: String,
    amount_cents: i64,
    paid: bool,
}

impl Emits for Order {
    const TABLE: &'static str = "orders";
    const COLUMNS: &'static [&'static str] =
        &["id", "customer_id", "status", "sku", "amount_cents", "paid"];
    const PRIMARY_KEY: &'static [&'static str] = &["id"];
}

fn order() -> Order {
    Order {
        id: 4_242_424,
        customer_id: 1_234_567,
        status: "shipped".into(),
        sku: "SKU-0000-1234-XL".into(),
        amount_cents: 129_900,
        paid: true,
    }
}

diesel::table! { users (id) { id -> Int4, name -> Text, email -> Text, active -> Bool } }

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    name: String,
    email: String,
    active: bool,
}

/// Waits (yielding) until `counter` reaches `target`.
fn wait_for(counter: &AtomicU64, target: u64) {
    while counter.load(Relaxed) < target {
        std::thread::yield_now();
    }
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("emitter_throughput");
    group.throughput(Throughput::Elements(EVENTS));
    let row = order();
    let changed: Arc<[&'static str]> = Order::COLUMNS.into();

    // One counting closure listener.
    {
        let emitter = Emitter::builder().node_id("bench").build().unwrap();
        let counted = Arc::new(AtomicU64::new(0));
        let c = counted.clone();
        let _kept = emitter.on::<Order>().listen(move |ev: &Event<Order>| {
            black_box(&ev.row);
            c.fetch_add(1, Relaxed);
        });
        group.bench_function("emitter_closure", |b| {
            b.iter_custom(|iters| {
                let target = counted.load(Relaxed) + iters * EVENTS;
                let start = Instant::now();
                for _ in 0..iters * EVENTS {
                    emitter.commit([PendingEvent::new(
                        Action::Insert,
                        row.clone(),
                        changed.clone(),
                        Audience::All,
                    )]);
                }
                wait_for(&counted, target);
                start.elapsed()
            })
        });
        emitter.shutdown(Duration::from_secs(10)).unwrap();
        let stats = emitter.stats();
        assert_eq!(stats.emitted, stats.delivered, "{stats:?}");
    }

    // One `subscribe()` receiver, drained by another thread.
    {
        let emitter = Emitter::builder().node_id("bench").build().unwrap();
        let rx = emitter.on::<Order>().subscribe();
        let counted = Arc::new(AtomicU64::new(0));
        let drain = spawn_counter(rx, counted.clone());
        group.bench_function("emitter_subscribe", |b| {
            b.iter_custom(|iters| {
                let target = counted.load(Relaxed) + iters * EVENTS;
                let start = Instant::now();
                for _ in 0..iters * EVENTS {
                    emitter.commit([PendingEvent::new(
                        Action::Insert,
                        row.clone(),
                        changed.clone(),
                        Audience::All,
                    )]);
                }
                wait_for(&counted, target);
                start.elapsed()
            })
        });
        emitter.shutdown(Duration::from_secs(10)).unwrap();
        drain.join().unwrap();
    }

    // The floor: a bare bounded channel of the same element type, same capacity.
    {
        let (tx, rx) = bounded::<Event<Order>>(DEFAULT_CAPACITY);
        let counted = Arc::new(AtomicU64::new(0));
        let drain = spawn_counter(rx, counted.clone());
        let meta = EventMeta {
            id: Default::default(),
            table: Order::TABLE,
            origin: "bench".into(),
            seq: 0,
            source: Source::Local,
            committed_at: SystemTime::now(),
        };
        group.bench_function("crossbeam_bounded", |b| {
            b.iter_custom(|iters| {
                let target = counted.load(Relaxed) + iters * EVENTS;
                let start = Instant::now();
                for _ in 0..iters * EVENTS {
                    let event =
                        Event::new(Action::Insert, row.clone(), meta.clone(), changed.clone());
                    tx.send(event).unwrap();
                }
                wait_for(&counted, target);
                start.elapsed()
            })
        });
        drop(tx);
        drain.join().unwrap();
    }
    group.finish();
}

fn spawn_counter(
    rx: Receiver<Event<Order>>,
    counted: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for ev in rx {
            black_box(&ev.row);
            counted.fetch_add(1, Relaxed);
        }
    })
}

/// Percentiles of signed nanosecond samples, printed in microseconds.
fn report(label: &str, samples: &mut [i64]) {
    samples.sort_unstable();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i] as f64 / 1_000.0
    };
    let negative = samples.iter().filter(|&&s| s < 0).count();
    println!(
        "{label:<46} n={:<6} p50={:>8.1} us  p90={:>8.1} us  p99={:>8.1} us  max={:>8.1} us  (<0: {negative})",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
}

/// How the latency listener is attached.
#[derive(Copy, Clone)]
enum Attach {
    Closure,
    Subscribe,
}

fn latency(samples: usize) {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut admin = match PgConnection::establish(&url) {
        Ok(conn) => conn,
        Err(e) => {
            println!("pg_latency: skipped, PostgreSQL unreachable at {url}: {e}");
            return;
        }
    };
    let schema = format!("emitter_latency_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE;
             CREATE SCHEMA {schema};
             CREATE TABLE {schema}.users (id SERIAL PRIMARY KEY, name TEXT NOT NULL,
                                          email TEXT NOT NULL, active BOOLEAN NOT NULL);"
        ))
        .expect("create the latency schema");
    println!("\npg_latency: emitting autocommit INSERT, {samples} samples after {LATENCY_WARM_UP} warm-up");
    for attach in [Attach::Closure, Attach::Subscribe] {
        latency_run(&url, &schema, samples, attach);
    }
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .expect("drop the latency schema");
    println!();
}

fn latency_run(url: &str, schema: &str, samples: usize, attach: Attach) {
    let emitter = Emitter::builder().node_id("bench").build().unwrap();
    let (seen_tx, seen_rx) = bounded::<Instant>(1);
    let drain = match attach {
        Attach::Closure => {
            let _kept = emitter.on::<User>().listen(move |_: &Event<User>| {
                let _ = seen_tx.send(Instant::now());
            });
            None
        }
        Attach::Subscribe => {
            let rx = emitter.on::<User>().subscribe();
            Some(std::thread::spawn(move || {
                for _ in rx {
                    let _ = seen_tx.send(Instant::now());
                }
            }))
        }
    };
    let mut conn = EmittingConnection::new(
        PgConnection::establish(url).expect("connect to PostgreSQL"),
        emitter.clone(),
    );
    conn.batch_execute(&format!("SET search_path TO {schema}; TRUNCATE users"))
        .unwrap();

    let mut after_return = Vec::with_capacity(samples);
    let mut execute_time = Vec::with_capacity(samples);
    for i in 0..LATENCY_WARM_UP + samples {
        let before = Instant::now();
        diesel::insert_into(users::table)
            .values((
                users::name.eq("latency"),
                users::email.eq("latency@example.com"),
                users::active.eq(true),
            ))
            .execute(&mut conn)
            .unwrap();
        let returned = Instant::now();
        let seen = seen_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the listener ran (is `User` registered?)");
        if i >= LATENCY_WARM_UP {
            after_return.push(signed_nanos(seen, returned));
            execute_time.push(signed_nanos(returned, before));
        }
    }
    let name = match attach {
        Attach::Closure => "closure",
        Attach::Subscribe => "subscribe",
    };
    report(
        &format!("{name}: listener runs after execute returns"),
        &mut after_return,
    );
    report(
        &format!("{name}: execute (INSERT round trip)"),
        &mut execute_time,
    );
    emitter.shutdown(Duration::from_secs(10)).unwrap();
    if let Some(drain) = drain {
        drain.join().unwrap();
    }
}

/// `a - b` in nanoseconds, negative when `a` is earlier.
fn signed_nanos(a: Instant, b: Instant) -> i64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_nanos() as i64,
        None => -((b - a).as_nanos() as i64),
    }
}

criterion_group! {
    name = emitter;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30);
    targets = throughput
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --benches` this is a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    latency(if full { LATENCY_SAMPLES } else { 100 });
    emitter();
    Criterion::default().configure_from_args().final_summary();
}
