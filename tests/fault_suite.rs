//! Faults against real services, each test ending with a count of what survived:
//!
//! - a Mosquitto of the test's own stopped for ten seconds while four r2d2 threads
//!   commit 20,000 rows to PostgreSQL: the other node gets every event exactly once,
//!   and the writer neither drops nor fails a publish, whether the events wait in
//!   memory or in the durable outbox;
//! - a pooled PostgreSQL connection whose backend is terminated in the middle of a
//!   transaction: the caller gets the error, no event is delivered, and the pool
//!   replaces the connection with a working one;
//! - a slow (drop-when-full) and a panicking listener beside a fast one under load:
//!   the fast one gets everything, and `emitted × listeners = delivered + dropped`.
//!
//! PostgreSQL is `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! a schema per test; brokers are `/usr/sbin/mosquitto` on free loopback ports.

mod broker;
mod common;

use common::Harness;
use diesel::connection::SimpleConnection;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel::sql_types::{Bool, Int4};
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::Outbox;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

diesel::table! {
    fault_items (id) {
        id -> Int4,
        label -> Text,
    }
}

/// The model every test writes; its table exists only in the tests' own schemas.
#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = fault_items)]
struct Item {
    id: i32,
    label: String,
}

type PgPool = Pool<ConnectionManager<EmittingConnection<PgConnection>>>;

/// A schema of the test's own (dropped with the guard) holding `fault_items`.
fn items_schema(test: &str) -> common::PgSchema {
    let db = common::PgSchema::new(test);
    db.plain()
        .batch_execute("CREATE TABLE fault_items (id SERIAL PRIMARY KEY, label TEXT NOT NULL)")
        .expect("create fault_items");
    db
}

/// r2d2 opens connections with `establish`, which emits through the process-wide
/// emitter. A test that sets it holds this lock for its whole run, so that no other
/// test of this binary establishes a connection on its emitter or replaces it.
static GLOBAL_EMITTER: Mutex<()> = Mutex::new(());

fn make_global(emitter: &Emitter) -> MutexGuard<'static, ()> {
    let guard = GLOBAL_EMITTER
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    Emitter::set_global(emitter.clone());
    guard
}

/// A pool of emitting connections (through the global emitter) to `db`'s schema.
fn items_pool(db: &common::PgSchema, size: u32, test_on_check_out: bool) -> PgPool {
    Pool::builder()
        .max_size(size)
        .test_on_check_out(test_on_check_out)
        .connection_customizer(Box::new(common::OnAcquire(db.search_path_sql())))
        .build(ConnectionManager::new(common::pg_url()))
        .expect("the pool opens its connections")
}

fn insert_item(conn: &mut EmittingConnection<PgConnection>, label: &str) -> QueryResult<usize> {
    diesel::insert_into(fault_items::table)
        .values(fault_items::label.eq(label))
        .execute(conn)
}

fn count_items(db: &common::PgSchema) -> i64 {
    fault_items::table
        .count()
        .get_result(&mut db.plain())
        .expect("count fault_items")
}

fn backend_pid(conn: &mut EmittingConnection<PgConnection>) -> i32 {
    diesel::select(sql::<Int4>("pg_backend_pid()"))
        .get_result(conn)
        .expect("read the backend pid")
}

// ---------------------------------------------------------------- broker outage

#[test]
fn broker_stopped_for_ten_seconds_during_20000_writes_from_four_threads_loses_nothing_and_duplicates_nothing(
) {
    outage_during_pooled_writes(false);
}

#[test]
fn with_the_outbox_a_broker_stopped_for_ten_seconds_during_20000_pooled_writes_loses_nothing_and_duplicates_nothing(
) {
    outage_during_pooled_writes(true);
}

/// Events wait in A's offline buffer, or with `durable` in the outbox table.
fn outage_during_pooled_writes(durable: bool) {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5_000;
    const TOTAL: usize = THREADS * PER_THREAD;
    // The broker stops once this many rows are committed; each writer then commits up
    // to GATE_AT rows and waits for the restart before it writes the rest, so rows are
    // committed before, during and after the outage.
    const STOP_AFTER: usize = TOTAL / 5;
    const GATE_AT: usize = PER_THREAD * 4 / 5;
    const DOWN: Duration = Duration::from_secs(10);

    let db = items_schema("fault_outage");
    let outbox_table = format!("{}.diesel_emitter_outbox", db.name);
    let mut broker = broker::Broker::start();
    let config = MqttConfig::new(broker.url()).topic_prefix(broker::unique_prefix("outage"));
    // Room for every event of the run while the broker is away.
    let a = if durable {
        Outbox::<PgConnection>::create_tables(&mut db.plain(), &outbox_table)
            .expect("create the outbox tables");
        Emitter::builder()
            .node_id(broker::node_name("a"))
            .mqtt(config.clone())
            .outbox(
                Outbox::<PgConnection>::url(common::pg_url())
                    .table(outbox_table.clone())
                    .poll_interval(Duration::from_millis(100)),
            )
            .build()
            .expect("A builds with the outbox")
    } else {
        broker::node("a", config.clone().buffer(2 * TOTAL))
    };
    // An explicit client id: B's broker session, and what is queued for it, survive
    // the restart (Broker::stop is a SIGTERM, on which Mosquitto saves its state).
    let b = broker::node("b", config.client_id(broker::node_name("b")));
    let b_rx = b
        .on::<Item>()
        .remote_only(true)
        .capacity(2 * TOTAL)
        .subscribe();
    let a_rx = a.on::<Item>().capacity(TOTAL).subscribe();
    broker::connected(&[&a, &b]);
    let _global = make_global(&a);
    let pool = items_pool(&db, THREADS as u32, true);

    let written = Arc::new(AtomicUsize::new(0));
    let restarted = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (pool, written, restarted) = (pool.clone(), written.clone(), restarted.clone());
            std::thread::spawn(move || -> Result<(), String> {
                for i in 0..PER_THREAD {
                    if i == GATE_AT
                        && !broker::eventually(Duration::from_secs(120), || restarted.load(SeqCst))
                    {
                        return Err(format!("writer {t}: the broker never came back"));
                    }
                    let mut conn = pool.get().map_err(|e| format!("writer {t}: {e}"))?;
                    match insert_item(&mut conn, &format!("w{t}-{i}")) {
                        Ok(1) => written.fetch_add(1, SeqCst),
                        other => return Err(format!("writer {t}, row {i}: {other:?}")),
                    };
                }
                Ok(())
            })
        })
        .collect();

    assert!(
        broker::eventually(Duration::from_secs(120), || written.load(SeqCst)
            >= STOP_AFTER),
        "the writers did not reach {STOP_AFTER} rows; {} written",
        written.load(SeqCst)
    );
    let written_at_stop = written.load(SeqCst);
    broker.stop();
    std::thread::sleep(DOWN);
    let written_at_restart = written.load(SeqCst);
    broker.restart();
    restarted.store(true, SeqCst);
    for (t, writer) in writers.into_iter().enumerate() {
        let result = writer
            .join()
            .unwrap_or_else(|_| Err(format!("writer {t} panicked")));
        assert_eq!(
            result,
            Ok(()),
            "every write commits whatever the broker does"
        );
    }
    assert!(
        written_at_restart > written_at_stop,
        "rows were committed while the broker was down ({written_at_stop} at the stop, \
         {written_at_restart} at the restart)"
    );

    // What B's application receives (event id -> copies, row ids), until it has
    // every event (bounded).
    let mut copies: HashMap<_, usize> = HashMap::with_capacity(TOTAL);
    let mut rows = HashSet::with_capacity(TOTAL);
    let mut received = 0usize;
    let mut take = |event: Event<Item>, copies: &mut HashMap<_, usize>| {
        assert_eq!(&*event.meta.origin, a.node_id(), "only A writes");
        received += 1;
        *copies.entry(event.meta.id).or_default() += 1;
        rows.insert(event.row.id);
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while copies.len() < TOTAL && Instant::now() < deadline {
        if let Ok(event) = b_rx.recv_timeout(Duration::from_millis(100)) {
            take(event, &mut copies);
        }
    }
    a.shutdown(Duration::from_secs(30))
        .expect("A publishes everything and shuts down");
    // A copy delivered late would come now: drain until B has been quiet for a second.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match b_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(event) => take(event, &mut copies),
            Err(_) => break,
        }
    }

    let local: HashSet<_> = a_rx.try_iter().map(|e| e.meta.id).collect();
    assert_eq!(local.len(), TOTAL, "A's local listener saw every commit");
    let missing = local.iter().filter(|id| !copies.contains_key(id)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of A's events never reached B ({} distinct received); broker log:\n{}",
        copies.len(),
        broker.log()
    );
    assert_eq!(copies.len(), TOTAL, "B received nothing but A's events");
    assert_eq!(
        received - copies.len(),
        0,
        "duplicates delivered to B's application"
    );
    assert_eq!(received, TOTAL, "exactly one delivery per event");
    let db_rows: HashSet<i32> = fault_items::table
        .select(fault_items::id)
        .load(&mut db.plain())
        .expect("read the ids")
        .into_iter()
        .collect();
    assert_eq!(db_rows.len(), TOTAL, "every row is in the database");
    assert!(
        rows == db_rows,
        "B's events carry exactly the committed rows"
    );

    let stats = a.stats();
    assert_eq!(stats.emitted, TOTAL as u64, "{stats:?}");
    assert_eq!(
        (stats.publish_dropped, stats.publish_failed),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.published, TOTAL as u64, "{stats:?}");
    assert!(
        stats.broker_reconnects >= 1,
        "A noticed the outage: {stats:?}"
    );
    if durable {
        assert_eq!(stats.outbox_published, TOTAL as u64, "{stats:?}");
        let left = common::count_rows(&mut db.plain(), &outbox_table);
        assert_eq!(left, 0, "every outbox row was deleted after its PUBACK");
    }
    let b_stats = b.stats();
    assert_eq!(b_stats.remote_rejected, 0, "{b_stats:?}");
    b.shutdown(Duration::from_secs(5)).expect("B shuts down");
}

// ---------------------------------------------------------------- killed connection

#[test]
fn a_connection_killed_mid_transaction_returns_the_error_delivers_nothing_and_the_pool_discards_it()
{
    let db = items_schema("fault_killed");
    let emitter = common::emitter("fault_killed");
    let rx = emitter.on::<Item>().subscribe();
    let _global = make_global(&emitter);
    // No ping at check-out: the broken connection has to be recognised when it comes
    // back (`R2D2Connection::is_broken`, r2d2's `has_broken`).
    let pool = items_pool(&db, 1, false);

    let mut conn = pool.get().expect("a pooled connection");
    let doomed = backend_pid(&mut conn);
    let mut admin = db.plain();
    let mut terminated = None;
    let result = conn.transaction(|c| {
        insert_item(c, "doomed")?;
        // Waits (up to 10 s) until the backend is gone.
        terminated = Some(
            diesel::select(sql::<Bool>(&format!(
                "pg_terminate_backend({doomed}, 10000)"
            )))
            .get_result::<bool>(&mut admin),
        );
        // The COMMIT is what fails.
        QueryResult::Ok(())
    });
    assert!(
        matches!(terminated, Some(Ok(true))),
        "the backend was terminated: {terminated:?}"
    );
    assert!(result.is_err(), "the caller gets the commit's error");
    assert!(
        R2D2Connection::is_broken(&mut *conn),
        "the connection reports itself broken to the pool"
    );
    assert_eq!(conn.pending_events(), 0, "nothing left pending");
    drop(conn);

    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing delivered for the lost transaction"
    );
    assert_eq!(emitter.stats().emitted, 0, "{:?}", emitter.stats());
    assert_eq!(count_items(&db), 0, "the transaction did not commit");

    let mut fresh = pool.get().expect("the pool opens a new connection");
    let pid = backend_pid(&mut fresh);
    assert_ne!(pid, doomed, "the broken connection was discarded");
    let n = insert_item(&mut fresh, "survivor").expect("the new connection writes");
    assert_eq!(n, 1);
    let event = common::recv(&rx);
    assert_eq!(
        (event.action, event.row.label.as_str()),
        (Action::Insert, "survivor")
    );
    drop(fresh);
    emitter
        .shutdown(Duration::from_secs(5))
        .expect("the emitter shuts down");
    let stats = emitter.stats();
    assert_eq!(
        (stats.emitted, stats.delivered, stats.dropped),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(count_items(&db), 1, "only the survivor is in the table");
}

// ---------------------------------------------------------------- listener isolation

#[test]
fn a_slow_and_a_panicking_listener_under_load_leave_others_unaffected_and_counts_add_up() {
    const ROWS: usize = 2_000;
    // Each commit hands BATCH events at once to a slow queue of SLOW_CAPACITY.
    const BATCH: usize = 100;
    const SLOW_CAPACITY: usize = 10;
    const LISTENERS: u64 = 3;

    let db = items_schema("fault_listeners");
    let emitter = common::emitter("fault_listeners");

    let fast_rows = Arc::new(Mutex::new(Vec::with_capacity(ROWS)));
    let _fast = emitter.on::<Item>().name("fast").listen({
        let fast_rows = fast_rows.clone();
        move |event: &Event<Item>| fast_rows.lock().unwrap().push(event.row.id)
    });
    let slow_calls = Arc::new(AtomicU64::new(0));
    let _slow = emitter
        .on::<Item>()
        .name("slow")
        .capacity(SLOW_CAPACITY)
        .when_full(WhenFull::Drop)
        .listen({
            let slow_calls = slow_calls.clone();
            move |_: &Event<Item>| {
                std::thread::sleep(Duration::from_millis(2));
                slow_calls.fetch_add(1, SeqCst);
            }
        });
    let panicking_calls = Arc::new(AtomicU64::new(0));
    let _panicking = emitter.on::<Item>().name("panicking").listen({
        let calls = panicking_calls.clone();
        move |_: &Event<Item>| {
            // Every other call panics; resume_unwind skips the panic hook's message.
            if calls.fetch_add(1, SeqCst).is_multiple_of(2) {
                std::panic::resume_unwind(Box::new("this listener fails on purpose"));
            }
        }
    });

    let mut conn = db.emitting(&emitter);
    for batch in 0..ROWS / BATCH {
        let values: Vec<_> = (0..BATCH)
            .map(|i| fault_items::label.eq(format!("b{batch}-{i}")))
            .collect();
        let n = diesel::insert_into(fault_items::table)
            .values(values)
            .execute(&mut conn)
            .expect("the batch commits whatever the listeners do");
        assert_eq!(n, BATCH);
    }
    emitter
        .shutdown(Duration::from_secs(30))
        .expect("every queued event is handled before shutdown returns");

    let stats = emitter.stats();
    let fast_rows = fast_rows.lock().unwrap().clone();
    let slow = slow_calls.load(SeqCst);
    let panicking = panicking_calls.load(SeqCst);
    let db_rows: Vec<i32> = fault_items::table
        .select(fault_items::id)
        .order(fault_items::id)
        .load(&mut db.plain())
        .expect("read the ids");
    assert_eq!(db_rows.len(), ROWS, "every row is in the database");
    assert!(
        fast_rows == db_rows,
        "the fast listener got every row once, in commit order ({} of {ROWS})",
        fast_rows.len()
    );
    assert_eq!(
        panicking, ROWS as u64,
        "the panicking listener kept receiving"
    );
    assert_eq!(
        stats.panics,
        ROWS as u64 / 2,
        "every panic counted: {stats:?}"
    );
    assert!(
        0 < slow && slow < ROWS as u64,
        "the slow listener got some events, not all: {slow}"
    );
    assert_eq!(
        stats.dropped,
        ROWS as u64 - slow,
        "what the slow listener missed is counted as dropped: {stats:?}"
    );
    assert_eq!(stats.emitted, ROWS as u64, "{stats:?}");
    assert_eq!(
        stats.delivered,
        ROWS as u64 + slow + panicking,
        "delivered counts every listener call, panicking ones too: {stats:?}"
    );
    assert_eq!(stats.queued, 0, "{stats:?}");
    assert_eq!(
        stats.emitted * LISTENERS,
        stats.delivered + stats.dropped,
        "every event offered to a listener is delivered or dropped: {stats:?}"
    );
}
