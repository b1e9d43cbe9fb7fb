//! Soak: a long steady run that looks for leaks, lost events and a growing lag.
//!
//! For `SOAK_SECS` seconds (default 600) the bench writes `SOAK_RATE` rows a second
//! (default 500) on a fixed schedule (write `i` is due at `i / rate` from the start;
//! a late writer catches up instead of drifting) through an
//! `EmittingConnection<PgConnection>`: 60 % inserts, 30 % updates and 10 % deletes of
//! a ~200-byte users-like row, each one statement touching one row, in a table of a
//! fresh schema (dropped at the end). Emitter A publishes over MQTT and has one
//! counting local listener; emitter B (another node id, same process) has a
//! `remote_only` listener that counts distinct event ids. Every 10 s one line shows
//! the writes so far, the process RSS, A's stats, B's remote count and the lag
//! (writes - distinct remote ids). The summary gives the achieved rate, RSS first /
//! max / last and its slope over the second half (least squares), events lost and
//! duplicated, and how the emitters shut down.
//!
//! The exit status is 1 if any event was lost (locally or remotely), a shutdown
//! failed, or RSS grew by more than 20 % between the sample at 25 % of the run and
//! the last one. The set of remote ids is sized for the whole run up front, so its
//! memory is touched in the first seconds and does not pose as a leak.
//!
//! With `SOAK_OUTBOX=1`, emitter A also has the durable outbox (tables in the soak
//! schema): every write commits its event into the outbox and A's relay publishes
//! it; the summary then adds the outbox counters, and the run fails if rows are left.
//!
//! ```sh
//! cargo bench -p diesel-emitter --bench soak                     # 10 minutes
//! SOAK_OUTBOX=1 cargo bench -p diesel-emitter --bench soak       # the same, through the outbox
//! SOAK_SECS=60 SOAK_RATE=500 cargo bench -p diesel-emitter --bench soak
//! ```
//!
//! Needs PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and a broker (`MQTT_URL`, default `mqtt://127.0.0.1:1883`; topics under a prefix unique
//! to the run). The summary counts Mosquitto's "Outgoing messages are being dropped" lines
//! (its default `max_queued_messages 1000`) logged during the run, if it can read the log.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::outbox::OutboxConfig;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::Outbox;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

diesel::table! {
    soak_users (id) { id -> Int4, name -> Text, email -> Text, bio -> Text, active -> Bool }
}

/// About 200 bytes as JSON.
#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = soak_users)]
struct User {
    id: i32,
    name: String,
    email: String,
    bio: String,
    active: bool,
}

const BIO: &str = "Writes Rust for a living, reviews SQL for fun, and keeps a long-running \
                   soak test going to see whether memory stays flat over time.";
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    let parse = |v: String| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
    };
    std::env::var(name).map_or(default, parse)
}

/// VmRSS of this process in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn broker_drop_lines() -> Option<usize> {
    let log = std::fs::read_to_string("/var/log/mosquitto/mosquitto.log").ok()?;
    let dropping = |l: &&str| l.contains("Outgoing messages are being dropped");
    Some(log.lines().filter(dropping).count())
}

/// The bench's schema, dropped when this goes (also when the bench panics).
struct Schema {
    admin: PgConnection,
    name: String,
}

impl Schema {
    fn create(url: &str, name: String) -> Schema {
        let mut admin = PgConnection::establish(url).expect("connect to PostgreSQL");
        let sql = format!(
            "CREATE SCHEMA {name};
             CREATE TABLE {name}.soak_users (id SERIAL PRIMARY KEY, name TEXT NOT NULL,
                 email TEXT NOT NULL, bio TEXT NOT NULL, active BOOLEAN NOT NULL);"
        );
        admin.batch_execute(&sql).expect("create the soak schema");
        Schema { admin, name }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if let Err(e) = self.admin.batch_execute(&sql) {
            eprintln!("soak: could not drop schema {}: {e}", self.name);
        }
    }
}

/// What B's remote listener saw.
struct Remote {
    ids: Mutex<HashSet<u128>>,
    calls: AtomicU64,
    distinct: AtomicU64,
}

/// xorshift64*: deterministic, no dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// One write, 60/30/10 insert/update/delete; returns the rows it touched.
fn write_one(
    conn: &mut EmittingConnection<PgConnection>,
    rng: &mut u64,
    live: &mut Vec<i32>,
    i: u64,
) -> QueryResult<usize> {
    use crate::soak_users::dsl::*;
    let roll = next(rng) % 10;
    if live.is_empty() || roll < 6 {
        let new_id = diesel::insert_into(soak_users)
            .values((
                name.eq(format!("user {i:07}")),
                email.eq(format!("user.{i:07}@soak.example.com")),
                bio.eq(BIO),
                active.eq(true),
            ))
            .returning(id)
            .get_result::<i32>(conn)?;
        live.push(new_id);
        return Ok(1);
    }
    let at = (next(rng) % live.len() as u64) as usize;
    if roll < 9 {
        diesel::update(soak_users.find(live[at]))
            .set((
                name.eq(format!("user {i:07} (renamed)")),
                active.eq(i.is_multiple_of(2)),
            ))
            .execute(conn)
    } else {
        diesel::delete(soak_users.find(live.swap_remove(at))).execute(conn)
    }
}

#[derive(Clone, Copy)]
struct Sample {
    secs: f64,
    rss: f64,
}

/// Least-squares slope of RSS (MiB) against time (minutes).
fn slope_per_minute(samples: &[Sample]) -> f64 {
    let n = samples.len() as f64;
    let (mx, my) = samples.iter().fold((0.0, 0.0), |(x, y), s| {
        (x + s.secs / 60.0 / n, y + s.rss / n)
    });
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for s in samples {
        let dx = s.secs / 60.0 - mx;
        sxy += dx * (s.rss - my);
        sxx += dx * dx;
    }
    sxy / sxx
}

fn emitter(node: &str, url: &str, prefix: &str, outbox: Option<OutboxConfig>) -> Emitter {
    let mqtt = MqttConfig::new(url).topic_prefix(prefix);
    let mqtt = mqtt.require_connection(Duration::from_secs(10));
    let mut builder = Emitter::builder().node_id(node).mqtt(mqtt);
    if let Some(outbox) = outbox {
        builder = builder.outbox(outbox);
    }
    let built = builder.build();
    built.unwrap_or_else(|e| panic!("build emitter {node}: {e}"))
}

fn main() {
    let secs: u64 = env_or("SOAK_SECS", 600).max(1);
    let rate: u64 = env_or("SOAK_RATE", 500).max(1);
    let db_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mqtt_url = std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let tag = format!("{}_{:x}", std::process::id(), nonce & 0xffff_ffff);
    let prefix = format!("bench/soak-{tag}");
    let total = secs * rate;

    let schema = Schema::create(&db_url, format!("emitter_soak_{tag}"));

    // B first, so its subscription is in place before A commits anything.
    let b = emitter(&format!("soak-b-{tag}"), &mqtt_url, &prefix, None);
    let remote = Arc::new(Remote {
        ids: Mutex::new(HashSet::with_capacity(total as usize + total as usize / 8)),
        calls: AtomicU64::new(0),
        distinct: AtomicU64::new(0),
    });
    let seen = remote.clone();
    let _remote_listener = b
        .on::<User>()
        .remote_only(true)
        .listen(move |ev: &Event<User>| {
            seen.calls.fetch_add(1, Relaxed);
            if seen.ids.lock().unwrap().insert(ev.meta.id.as_u128()) {
                seen.distinct.fetch_add(1, Relaxed);
            }
        });
    let outbox_table = format!("{}.diesel_emitter_outbox", schema.name);
    let outbox = std::env::var("SOAK_OUTBOX")
        .is_ok_and(|v| v == "1")
        .then(|| {
            let mut admin = PgConnection::establish(&db_url).expect("connect to PostgreSQL");
            Outbox::<PgConnection>::create_tables(&mut admin, &outbox_table)
                .expect("create the outbox tables");
            Outbox::<PgConnection>::url(db_url.clone()).table(outbox_table.clone())
        });
    let with_outbox = outbox.is_some();
    let a = emitter(&format!("soak-a-{tag}"), &mqtt_url, &prefix, outbox);
    let local = Arc::new(AtomicU64::new(0));
    let counted = local.clone();
    let _local_listener = a.on::<User>().listen(move |_: &Event<User>| {
        counted.fetch_add(1, Relaxed);
    });
    for node in [&b, &a] {
        let connected = node.wait_connected(Duration::from_secs(10));
        connected.unwrap_or_else(|e| panic!("{}: {e}", node.node_id()));
    }
    let mut conn = EmittingConnection::new(
        PgConnection::establish(&db_url).expect("connect to PostgreSQL"),
        a.clone(),
    );
    conn.batch_execute(&format!("SET search_path TO {}", schema.name))
        .expect("set search_path");

    println!(
        "soak: {secs} s at {rate} writes/s (60/30/10 insert/update/delete) into {}.soak_users; \
         MQTT {mqtt_url}, prefix {prefix}",
        schema.name
    );
    let drops_before = broker_drop_lines();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    // Touched up front, like the id set, so the bench's own bookkeeping is not growth.
    let mut live = vec![-1; total as usize];
    live.clear();
    let mut expected = 0u64;
    let mut samples: Vec<Sample> = Vec::new();
    let (mut max_behind, mut slowest) = (Duration::ZERO, (Duration::ZERO, Duration::ZERO));
    let mut sample = |elapsed: Duration, writes: u64| {
        // Distinct before B's count: an event is counted as received before its call.
        let distinct = remote.distinct.load(Relaxed);
        let (s, received, rss) = (a.stats(), b.stats().remote_received, rss_mib());
        let t = elapsed.as_secs_f64();
        println!(
            "t={t:>5.0}s writes {writes:>7} rss {rss:>6.1} MiB | A emitted {:>7} delivered {:>7} \
             published {:>7} publish_dropped {} | B received {received:>7} distinct {:>7} lag {:>5}",
            s.emitted,
            s.delivered,
            s.published,
            s.publish_dropped,
            distinct,
            writes as i64 - distinct as i64
        );
        samples.push(Sample { secs: t, rss });
    };

    let start = Instant::now();
    sample(Duration::ZERO, 0);
    let mut next_sample = SAMPLE_EVERY;
    let run = Duration::from_secs(secs);
    for i in 0..total {
        let due = Duration::from_nanos(i * 1_000_000_000 / rate);
        let now = start.elapsed();
        if now >= next_sample && next_sample < run {
            sample(now, i);
            next_sample += SAMPLE_EVERY;
        }
        match due.checked_sub(now) {
            Some(wait) => std::thread::sleep(wait),
            None => max_behind = max_behind.max(now - due),
        }
        let began = Instant::now();
        let rows = write_one(&mut conn, &mut rng, &mut live, i).expect("a soak write");
        slowest = slowest.max((began.elapsed(), start.elapsed()));
        expected += rows as u64;
    }
    let wrote_in = start.elapsed();
    if let Some(wait) = run.checked_sub(wrote_in) {
        std::thread::sleep(wait);
    }
    sample(start.elapsed(), total);

    // Let the remote listener catch up: until it has everything, or 15 s without news.
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let now = remote.distinct.load(Relaxed).min(local.load(Relaxed));
        if now >= expected || last_change.elapsed() > Duration::from_secs(15) {
            break;
        }
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let drained_after = start.elapsed() - wrote_in.max(run);
    let a_shutdown = a.shutdown(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1)); // late redeliveries, if any
    let b_shutdown = b.shutdown(Duration::from_secs(10));
    let (sa, sb) = (a.stats(), b.stats());
    let drops = drops_before
        .zip(broker_drop_lines())
        .map(|(x, y)| y.saturating_sub(x));
    let drops = drops.map_or("unknown (log unreadable)".into(), |n| n.to_string());
    let outbox_left = with_outbox.then(|| {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let counts: Vec<Count> =
            diesel::sql_query(format!("SELECT count(*) AS n FROM {outbox_table}"))
                .load(&mut PgConnection::establish(&db_url).expect("connect to PostgreSQL"))
                .expect("count the outbox rows left");
        counts.first().map_or(0, |c| c.n)
    });
    drop(conn);
    drop(schema);

    let calls = remote.calls.load(Relaxed);
    let distinct = remote.distinct.load(Relaxed);
    let delivered = local.load(Relaxed);
    let lost_remote = expected.saturating_sub(distinct);
    let lost_local = expected.saturating_sub(delivered);
    let dups = calls - distinct;
    let rss = |s: &Sample| s.rss;
    let first = samples.first().map_or(f64::NAN, rss);
    let last = samples.last().map_or(f64::NAN, rss);
    let max = samples.iter().map(rss).fold(f64::MIN, f64::max);
    let half = secs as f64 / 2.0;
    let second_half: Vec<Sample> = samples.iter().filter(|s| s.secs >= half).copied().collect();
    let slope = slope_per_minute(&second_half);
    let quarter = samples
        .iter()
        .find(|s| s.secs >= secs as f64 / 4.0)
        .expect("a sample at 25 % of the run");
    let growth = last / quarter.rss - 1.0;
    let (pct, at) = (growth * 100.0, quarter.secs);

    println!("\n==================== soak summary ====================");
    println!(
        "writes {total} in {:.1} s: {:.1}/s (target {rate}/s); \
         at worst {:.1} ms behind schedule; slowest write {:.1} ms (ended at t={:.0}s)",
        wrote_in.as_secs_f64(),
        total as f64 / wrote_in.as_secs_f64(),
        max_behind.as_secs_f64() * 1e3,
        slowest.0.as_secs_f64() * 1e3,
        slowest.1.as_secs_f64()
    );
    println!(
        "RSS MiB: first {first:.1}, max {max:.1}, last {last:.1}; at 25 % (t={at:.0}s) {:.1} -> last {pct:+.1} %; \
         slope over the second half {slope:+.3} MiB/min ({} samples)",
        quarter.rss,
        second_half.len()
    );
    println!(
        "events expected {expected}; local delivered {delivered} (lost {lost_local}); \
         remote calls {calls}, distinct ids {distinct}, lost {lost_remote}, duplicates {dups}"
    );
    println!(
        "A published {} (publish_dropped {}, publish_failed {}); B remote_received {} \
         (redeliveries dropped {}, rejected {}); reconnects A {} B {}",
        sa.published,
        sa.publish_dropped,
        sa.publish_failed,
        sb.remote_received,
        sb.remote_duplicates,
        sb.remote_rejected,
        sa.broker_reconnects,
        sb.broker_reconnects
    );
    println!(
        "remote drained {:.1} s after the last write; broker log drop lines during the run: {drops}",
        drained_after.as_secs_f64()
    );
    if let Some(left) = outbox_left {
        println!(
            "outbox: A's relay published {} rows, dead-lettered {}, database errors {}; \
             rows left in the outbox {left}",
            sa.outbox_published, sa.outbox_dead_lettered, sa.outbox_errors
        );
    }
    println!("shutdown: A {a_shutdown:?}, B {b_shutdown:?}");
    if dups > 0 {
        println!("note: {dups} duplicate deliveries reached the remote listener");
    }
    let lost = format!("events lost (local {lost_local}, remote {lost_remote})");
    let grew = format!("RSS grew {pct:.1} % (> 20 %) from t={at:.0}s to the end");
    let shutdown_failed = a_shutdown.is_err() || b_shutdown.is_err();
    let failures: Vec<&str> = [
        (lost_local + lost_remote > 0, lost.as_str()),
        (growth > 0.20, grew.as_str()),
        (shutdown_failed, "a shutdown failed"),
        (outbox_left.unwrap_or(0) > 0, "rows left in the outbox"),
    ]
    .into_iter()
    .filter_map(|(bad, why)| bad.then_some(why))
    .collect();
    if failures.is_empty() {
        println!("verdict: PASS (nothing lost, RSS within 20 %)");
    } else {
        println!("verdict: FAIL: {}", failures.join("; "));
        std::process::exit(1);
    }
}
