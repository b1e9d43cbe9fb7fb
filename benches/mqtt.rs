//! The MQTT path: publish rate, commit-to-remote-listener latency, and loss.
//!
//! The bench starts its own Mosquitto on a free loopback port (the shared one keeps
//! the default `max_queued_messages 1000`, which silently drops QoS 1 messages queued
//! for a slow subscriber), with unlimited queues and in-flight windows, no
//! persistence and a log file; the broker is killed when the bench ends. Every topic
//! lives under a prefix unique to this process. Everything runs in one process, one
//! run, so the ratios printed compare figures measured side by side:
//!
//! 1. Sustained publish rate, QoS 1, a ~200-byte row (a ~455-byte envelope), with
//!    a counting Paho subscriber attached. Bare Paho `AsyncClient`s (1,000 and 500
//!    publishes in flight) publish copies of a message the emitter itself sent (same
//!    topic, payload and properties); emitters (`max_inflight` 1,000 and 500) commit
//!    events with no database (`Emitter::commit`), then through autocommit INSERTs
//!    into an in-memory SQLite database (and, for context, the same INSERTs with a
//!    broker-less emitter). Variants alternate within each of 9 rounds; medians are
//!    reported, with the median of per-round ratios. Rate = events / time until all
//!    are acknowledged by the broker (`stats().published`, or every delivery token).
//!    CPU time per event (from `/proc`, by thread role, and of the broker) shows
//!    where the time goes.
//! 2. Latency at 1,000 events/s, emitter against a bare Paho hop in alternating
//!    rounds, with CPU per event and the emitter's time per hop (`mqtt/latency.rs`).
//! 3. 100,000 events committed flat out through the emitter to a remote listener:
//!    distinct ids, lost and duplicated events; the bench panics if any is lost or
//!    duplicated.
//!
//! `MQTT_BENCH_PARTS` (say `latency` or `throughput,loss`) runs only those parts;
//! `emitter-only` or `bare-only` runs one latency side once, for instruction counts
//! under callgrind. `MQTT_BENCH_LAT_EVENTS`, `_RATE` and `_ROUNDS` change part 2's plan;
//! `MQTT_BENCH_STAY_AWAKE_US` the remote listener's `stay_awake` (default 50 µs);
//! `MQTT_BENCH_THREADS=1` prints part 2's CPU per event by thread.
//!
//! Not a criterion bench: criterion reports neither percentiles nor ratios between
//! runs of one process. `cargo bench` passes `--bench`; without it (`cargo test
//! --benches`) this is a short smoke run. `MOSQUITTO` overrides the broker binary.

#[path = "mqtt/bare.rs"]
mod bare;
#[path = "mqtt/broker.rs"]
mod broker;
#[path = "mqtt/cpu.rs"]
mod cpu;
#[path = "mqtt/hops.rs"]
mod hops;
#[path = "mqtt/latency.rs"]
mod latency;
#[path = "mqtt/loss.rs"]
mod loss;
/// The database benches' reader of `schedstat`, of which this bench uses one part.
#[allow(dead_code)]
#[path = "common/cpu.rs"]
mod proc_cpu;
#[path = "mqtt/throughput.rs"]
mod throughput;

use bare::PahoSub;
use broker::Broker;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::integration::PendingEvent;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::Stats;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Publishes in flight: the emitter's `max_inflight` and the bare client's window.
const INFLIGHT: usize = 1_000;
/// The second, smaller window of the bare client.
const INFLIGHT_SMALL: usize = 500;
/// The Mosquitto log line that betrays dropped QoS 1 messages.
const BROKER_DROP_LINE: &str = "Outgoing messages are being dropped";

diesel::table! {
    bench_rows (id) {
        id -> BigInt,
        customer_id -> BigInt,
        status -> Text,
        sku -> Text,
        email -> Text,
        note -> Text,
        amount_cents -> BigInt,
        paid -> Bool,
    }
}

/// A row of about 200 bytes as JSON.
#[derive(Queryable, Selectable, Insertable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = bench_rows)]
struct Row {
    id: i64,
    customer_id: i64,
    status: String,
    sku: String,
    email: String,
    note: String,
    amount_cents: i64,
    paid: bool,
}

fn row(id: i64) -> Row {
    Row {
        id,
        customer_id: 1_234_567,
        status: "shipped".into(),
        sku: "SKU-0000-1234-XL".into(),
        email: "customer.1234567@example.com".into(),
        note: "leave at the back door; ring twice; fragile".into(),
        amount_cents: 129_900,
        paid: true,
    }
}

fn insert_event(row: Row, changed: &Arc<[&'static str]>) -> PendingEvent {
    PendingEvent::new(Action::Insert, row, changed.clone(), Audience::All)
}

/// How much work each part does.
struct Plan {
    tput_events: u64,
    tput_runs: usize,
    lat_rate: u32,
    /// Events per side, split over `lat_rounds` rounds.
    lat_events: usize,
    lat_rounds: usize,
    lat_warm_up: usize,
    loss_events: u64,
}

const FULL: Plan = Plan {
    tput_events: 40_000,
    tput_runs: 9,
    lat_rate: 1_000,
    lat_events: 10_000,
    lat_rounds: 4,
    lat_warm_up: 500,
    loss_events: 100_000,
};

const SMOKE: Plan = Plan {
    tput_events: 2_000,
    tput_runs: 1,
    lat_rate: 1_000,
    lat_events: 300,
    lat_rounds: 2,
    lat_warm_up: 50,
    loss_events: 5_000,
};

/// An emitter named `node` on the bench broker under `prefix`.
fn bench_emitter(broker: &Broker, prefix: &str, node: &str) -> Emitter {
    Emitter::builder()
        .node_id(node)
        .mqtt(mqtt_config(broker, prefix))
        .build()
        .expect("build an emitter")
}

/// Waits until each emitter publishes and has its listeners subscribed.
fn wait_connected(emitters: &[&Emitter]) {
    for emitter in emitters {
        emitter
            .wait_connected(Duration::from_secs(10))
            .expect("connected to the bench broker");
    }
}

fn mqtt_config(broker: &Broker, prefix: &str) -> MqttConfig {
    MqttConfig::new(broker.url())
        .topic_prefix(prefix)
        .max_inflight(INFLIGHT)
        .require_connection(Duration::from_secs(10))
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------

/// Which parts to run: `MQTT_BENCH_PARTS`, a comma-separated subset of
/// `throughput,latency,loss` (all by default).
fn wants(part: &str) -> bool {
    std::env::var("MQTT_BENCH_PARTS")
        .map_or(true, |parts| parts.split(',').any(|p| p.trim() == part))
}

/// The size of one event's envelope as the emitter publishes it.
fn envelope_bytes(broker: &Broker, base: &str) -> usize {
    let prefix = format!("{base}/size");
    let (tx, rx) = crossbeam_channel::bounded(1);
    let _sub = PahoSub::start(
        &broker.paho_url(),
        "bench-size",
        &format!("{prefix}/#"),
        move |m| {
            let _ = tx.try_send(m.payload().len());
        },
    );
    let emitter = bench_emitter(broker, &prefix, "bench-size");
    wait_connected(&[&emitter]);
    emitter.commit([insert_event(row(0), &Row::COLUMNS.into())]);
    let size = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the sample event");
    emitter.shutdown(Duration::from_secs(10)).expect("shutdown");
    size
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --benches` this is a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let mut plan = if full { FULL } else { SMOKE };
    let setting = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    if let Some(n) = setting("MQTT_BENCH_LAT_EVENTS") {
        plan.lat_events = n;
    }
    if let Some(n) = setting("MQTT_BENCH_LAT_RATE") {
        plan.lat_rate = n as u32;
    }
    if let Some(n) = setting("MQTT_BENCH_LAT_ROUNDS") {
        plan.lat_rounds = n;
    }
    let Some(binary) = Broker::binary() else {
        println!("mqtt bench: skipped, no mosquitto binary (set MOSQUITTO)");
        return;
    };
    let broker = Broker::start(&binary);
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let base = format!("bench/mqtt-{}-{nonce:x}", std::process::id());
    println!(
        "mqtt bench: own mosquitto on 127.0.0.1:{} ({}), topic prefix {base}",
        broker.port,
        binary.display()
    );
    let began = Instant::now();
    let only = std::env::var("MQTT_BENCH_PARTS").unwrap_or_default();
    if only == "emitter-only" || only == "bare-only" {
        let bytes = envelope_bytes(&broker, &base);
        latency::one_side(&broker, &base, &plan, bytes, only == "emitter-only");
        return;
    }

    let tput = wants("throughput").then(|| throughput::throughput(&broker, &base, &plan));
    let lat = wants("latency").then(|| {
        let bytes = envelope_bytes(&broker, &base);
        println!(
            "\nlatency: {} events a side at {}/s in {} rounds, {bytes} B envelopes",
            plan.lat_events, plan.lat_rate, plan.lat_rounds
        );
        latency::latency(&broker, &base, &plan, bytes)
    });
    let loss = wants("loss").then(|| {
        println!(
            "\nloss: {} events flat out, emitter -> remote listener",
            plan.loss_events
        );
        loss::loss(&broker, &base, plan.loss_events)
    });
    let broker_log = broker.log();
    let broker_drops = broker_log
        .lines()
        .filter(|l| l.contains(BROKER_DROP_LINE))
        .count();
    drop(broker);

    println!("\n================ mqtt bench summary (one run, one process) ================");
    if let Some(tput) = &tput {
        throughput::summary(tput);
    }
    if let Some(lat) = &lat {
        summary_latency(lat, &plan);
    }
    if let Some(loss) = &loss {
        loss::summary(loss, broker_drops);
    }
    println!("   bench took {:.1} s", began.elapsed().as_secs_f64());
    println!("===========================================================================");
    let lost = loss.as_ref().map_or(0, |l| l.lost);
    let duplicated = loss.as_ref().map_or(0, |l| l.duplicated);
    let missing = lat.as_ref().map_or(0, |l| l.emitter.percentiles().missing);
    assert!(
        lost == 0 && duplicated == 0 && missing == 0,
        "events lost or duplicated: lost {lost}, duplicated {duplicated}, missing in the latency run {missing}",
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn summary_latency(lat: &latency::Latency, plan: &Plan) {
    let (emitter, bare) = (lat.emitter.percentiles(), lat.bare.percentiles());
    println!(
        "2. latency at {}/s, {} rounds x {} events a side, ABBA (us)      {:>8} {:>8} {:>8} {:>9}  missing  CPU/event",
        plan.lat_rate, lat.rounds, lat.per_round, "p50", "p90", "p99", "max"
    );
    for (label, p, cpu) in [
        (
            "emitter commit -> remote listener",
            &emitter,
            lat.emitter.cpu_per_event(),
        ),
        (
            "bare paho publish -> paho subscriber",
            &bare,
            lat.bare.cpu_per_event(),
        ),
        ("emitter, hop marks recorded", &lat.traced, f64::NAN),
    ] {
        println!(
            "   {label:<56} {:>8.1} {:>8.1} {:>8.1} {:>9.1}  {:>7}  {:>6.1} us  (n={})",
            p.p50, p.p90, p.p99, p.max, p.missing, cpu, p.n
        );
    }
    let (p50_median, p50_min, p50_max) = lat.round_ratios(|p| p.p50);
    let (p99_median, p99_min, p99_max) = lat.round_ratios(|p| p.p99);
    println!(
        "   emitter/bare: p50 {:.2}x (per round: median {p50_median:.2}x, {p50_min:.2}-{p50_max:.2}x), \
         p99 {:.2}x (per round: median {p99_median:.2}x, {p99_min:.2}-{p99_max:.2}x), \
         CPU per event {:.2}x (process + broker)",
        emitter.p50 / bare.p50,
        emitter.p99 / bare.p99,
        lat.emitter.cpu_per_event() / lat.bare.cpu_per_event(),
    );
    println!(
        "   target p50 and p99 <= 1.3x bare: p50 {}, p99 {}",
        verdict(emitter.p50 <= 1.3 * bare.p50),
        verdict(emitter.p99 <= 1.3 * bare.p99),
    );
    println!(
        "   where the emitter's time goes (hop marks run; each step from the mark it is timed from):"
    );
    println!(
        "   {:<12} {:<12} {:>8} {:>8}  marks",
        "step", "from", "p50 us", "p99 us"
    );
    let mut sum = 0.0;
    for step in &lat.steps {
        // A step beside the path overlaps the ones after it.
        if !step.beside {
            sum += step.p50;
        }
        println!(
            "   {:<12} {:<12} {:>8.1} {:>8.1}  {}{}",
            step.name,
            step.from,
            step.p50,
            step.p99,
            step.marks,
            if step.beside {
                "  (beside the path)"
            } else {
                ""
            }
        );
    }
    println!(
        "   sum of the path's step medians {sum:.1} us (the run's p50 {:.1} us); bare hop p50 {:.1} us",
        lat.traced.p50, bare.p50
    );
}
