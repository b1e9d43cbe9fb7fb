//! Part 2: commit-to-remote-listener latency at a fixed rate, side by side with a
//! bare Paho hop, the CPU each costs per event, and where the emitter's time goes.
//!
//! Rounds alternate (ABBA) between the emitter (a writer emitter commits on a fixed
//! schedule, a `remote_only` listener on a second emitter notes the arrival) and a
//! bare Paho publisher with a Paho subscriber at the same rate and payload size.
//! An event's latency is its arrival minus the instant just before its commit (or
//! publish), matched by the row id. Latencies of all rounds are pooled per side;
//! the per-round p50 ratios show the spread.
//!
//! CPU per event is the on-CPU time (`/proc/.../schedstat`, nanoseconds) of every
//! thread of this process plus the broker's during a run, divided by its events:
//! both sides include a publisher, a subscriber and the pacing loop.
//!
//! The breakdown run comes last, with the hop collector installed (see `hops`).

use super::bare::{paho_client, paho_connect, PahoSub};
use super::broker::Broker;
use super::cpu;
use super::hops::{self, Marks, Step};
use super::{bench_emitter, insert_event, median, row, wait_connected, Plan, Row, INFLIGHT};
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use paho_mqtt as paho;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Percentiles in microseconds.
#[derive(Copy, Clone, Debug, Default)]
pub struct Percentiles {
    pub n: usize,
    pub missing: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

fn percentiles(mut nanos: Vec<u64>, missing: usize) -> Percentiles {
    nanos.sort_unstable();
    if nanos.is_empty() {
        return Percentiles {
            missing,
            ..Default::default()
        };
    }
    let at = |p: f64| nanos[((nanos.len() as f64 - 1.0) * p).round() as usize] as f64 / 1_000.0;
    Percentiles {
        n: nanos.len(),
        missing,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// One side's runs.
#[derive(Default)]
pub struct Side {
    /// Latencies after warm-up, nanoseconds, of every round.
    nanos: Vec<u64>,
    missing: usize,
    /// On-CPU nanoseconds (process + broker) and events, summed over rounds.
    cpu_ns: u64,
    events: u64,
    /// Each round's percentiles.
    rounds: Vec<Percentiles>,
}

impl Side {
    fn add(&mut self, run: Run) {
        self.rounds
            .push(percentiles(run.nanos.clone(), run.missing));
        self.nanos.extend(run.nanos);
        self.missing += run.missing;
        self.cpu_ns += run.cpu_ns;
        self.events += run.events;
    }

    pub fn percentiles(&self) -> Percentiles {
        percentiles(self.nanos.clone(), self.missing)
    }

    /// On-CPU microseconds per event, this process and the broker together.
    pub fn cpu_per_event(&self) -> f64 {
        self.cpu_ns as f64 / 1e3 / self.events.max(1) as f64
    }
}

/// Part 2's results.
pub struct Latency {
    pub emitter: Side,
    pub bare: Side,
    pub rounds: usize,
    pub per_round: usize,
    /// The breakdown run: its percentiles and steps.
    pub traced: Percentiles,
    pub steps: Vec<Step>,
}

impl Latency {
    /// Median of the per-round emitter/bare ratios of the percentile `pick`
    /// chooses, and their min and max. Each round's two sides ran back to back,
    /// so a ratio is paired: a noisy stretch of the machine moves both.
    pub fn round_ratios(&self, pick: impl Fn(&Percentiles) -> f64) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self
            .emitter
            .rounds
            .iter()
            .zip(&self.bare.rounds)
            .map(|(e, b)| pick(e) / pick(b))
            .collect();
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        (median(ratios), min, max)
    }
}

struct Run {
    nanos: Vec<u64>,
    missing: usize,
    cpu_ns: u64,
    events: u64,
}

/// Runs `send(i)` for `total` indices at `rate` per second; returns the instant
/// just before each call.
fn paced(total: usize, rate: u32, mut send: impl FnMut(usize)) -> Vec<Instant> {
    let interval = Duration::from_secs(1) / rate;
    let mut sent = Vec::with_capacity(total);
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        sent.push(Instant::now());
        send(i);
    }
    sent
}

/// Collects `(index, arrival)` pairs until `total` arrived or nothing came for 5 s.
fn arrivals(
    arrivals: &crossbeam_channel::Receiver<(usize, Instant)>,
    total: usize,
) -> Vec<Option<Instant>> {
    let mut arrived: Vec<Option<Instant>> = vec![None; total];
    let mut got = 0;
    while got < total {
        match arrivals.recv_timeout(Duration::from_secs(5)) {
            Ok((i, at)) if i < total => {
                if arrived[i].is_none() {
                    got += 1;
                }
                arrived[i].get_or_insert(at);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    arrived
}

/// Latencies after the warm-up, nanoseconds, and how many never arrived.
fn latencies(sent: &[Instant], arrived: &[Option<Instant>], warm_up: usize) -> (Vec<u64>, usize) {
    let mut nanos = Vec::with_capacity(sent.len());
    let mut missing = 0;
    for (sent, arrived) in sent.iter().zip(arrived).skip(warm_up) {
        match arrived {
            Some(at) => nanos.push(at.saturating_duration_since(*sent).as_nanos() as u64),
            None => missing += 1,
        }
    }
    (nanos, missing)
}

/// On-CPU nanoseconds by thread (`tid`, name) of this process, and of the broker
/// under the name `broker`.
#[derive(Default)]
struct Threads(std::collections::HashMap<(u64, String), u64>);

impl Threads {
    fn now(broker_pid: u32) -> Threads {
        let mut threads = Threads::default();
        let broker = cpu::schedstat_ns(&format!("/proc/{broker_pid}/schedstat"));
        threads
            .0
            .insert((0, "broker".to_owned()), broker.unwrap_or(0));
        for thread in cpu::threads() {
            threads.0.insert((thread.tid, thread.name), thread.ns);
        }
        threads
    }

    /// Nanoseconds since `before`, by thread name (threads of one name summed).
    fn since(&self, before: &Threads) -> std::collections::BTreeMap<String, u64> {
        let mut by_name = std::collections::BTreeMap::new();
        for ((tid, name), ns) in &self.0 {
            let was = before.0.get(&(*tid, name.clone())).copied().unwrap_or(0);
            *by_name.entry(name.clone()).or_insert(0) += ns.saturating_sub(was);
        }
        by_name
    }
}

/// On-CPU nanoseconds of the process and the broker since `before`, by thread
/// name on stdout with `MQTT_BENCH_THREADS` set.
fn cpu_since(before: &Threads, broker_pid: u32, side: &str, events: usize) -> u64 {
    let by_thread = Threads::now(broker_pid).since(before);
    if std::env::var_os("MQTT_BENCH_THREADS").is_some() {
        for (name, ns) in &by_thread {
            let per_event = *ns as f64 / 1e3 / events as f64;
            println!("   {side} CPU {name:<20} {per_event:>7.1} us/event");
        }
    }
    by_thread.values().sum()
}

/// The emitter's side, one round of `events` after `warm_up`: `marks`, when given,
/// records the hop marks of every event of the run.
fn emitter_run(
    broker: &Broker,
    prefix: &str,
    rate: u32,
    warm_up: usize,
    events: usize,
    marks: Option<&Marks>,
) -> (Run, Vec<Instant>, Vec<Option<Instant>>) {
    let changed: Arc<[&'static str]> = Row::COLUMNS.into();
    let listener = bench_emitter(broker, prefix, "bench-lat-listener");
    let (tx, arrived) = crossbeam_channel::unbounded();
    let stay_awake = std::env::var("MQTT_BENCH_STAY_AWAKE_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(diesel_emitter::DEFAULT_STAY_AWAKE, Duration::from_micros);
    let _kept = listener
        .on::<Row>()
        .remote_only(true)
        .stay_awake(stay_awake)
        .listen(move |ev: &Event<Row>| {
            let _ = tx.send((ev.row.id as usize, Instant::now()));
        });
    let writer = bench_emitter(broker, prefix, "bench-lat-writer");
    wait_connected(&[&listener, &writer]);
    let total = warm_up + events;
    let cpu_before = Threads::now(broker.pid());
    if let Some(marks) = marks {
        marks.start();
    }
    let sent = paced(total, rate, |i| {
        writer.commit([insert_event(row(i as i64), &changed)])
    });
    let arrived = arrivals(&arrived, total);
    let cpu = cpu_since(&cpu_before, broker.pid(), "emitter", total);
    let (nanos, missing) = latencies(&sent, &arrived, warm_up);
    writer
        .shutdown(Duration::from_secs(10))
        .expect("writer shutdown");
    listener
        .shutdown(Duration::from_secs(10))
        .expect("listener shutdown");
    let run = Run {
        nanos,
        missing,
        cpu_ns: cpu,
        events: total as u64,
    };
    (run, sent, arrived)
}

/// The bare side, one round: a Paho publisher and a Paho subscriber, the same rate
/// and payload size (the index in the payload's first 12 bytes).
fn bare_run(
    broker: &Broker,
    topic: &str,
    rate: u32,
    warm_up: usize,
    events: usize,
    payload_bytes: usize,
) -> Run {
    let (tx, arrived) = crossbeam_channel::unbounded();
    let sub = PahoSub::start(
        &broker.paho_url(),
        "bench-lat-bare-sub",
        topic,
        move |message| {
            let index = std::str::from_utf8(&message.payload()[..12])
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(i) = index {
                let _ = tx.send((i, Instant::now()));
            }
        },
    );
    let client = paho_client(&broker.paho_url(), "bench-lat-bare-pub", INFLIGHT);
    paho_connect(&client, INFLIGHT);
    let mut props = paho::Properties::new();
    props
        .push_string_pair(
            paho::PropertyCode::UserProperty,
            "origin",
            "bench-lat-bare-pub",
        )
        .expect("user property");
    let filler = vec![b'x'; payload_bytes.saturating_sub(12)];
    let total = warm_up + events;
    let mut tokens = Vec::with_capacity(total);
    let cpu_before = Threads::now(broker.pid());
    let sent = paced(total, rate, |i| {
        let mut payload = format!("{i:012}").into_bytes();
        payload.extend_from_slice(&filler);
        let message = paho::MessageBuilder::new()
            .topic(topic)
            .payload(payload)
            .qos(1)
            .properties(props.clone())
            .finalize();
        tokens.push(client.publish(message));
    });
    let arrived = arrivals(&arrived, total);
    let cpu = cpu_since(&cpu_before, broker.pid(), "bare", total);
    let (nanos, missing) = latencies(&sent, &arrived, warm_up);
    for token in tokens {
        token.wait().expect("bare publish");
    }
    client
        .disconnect(None)
        .wait_for(Duration::from_secs(2))
        .ok();
    drop(sub);
    Run {
        nanos,
        missing,
        cpu_ns: cpu,
        events: total as u64,
    }
}

/// Part 2: `plan.lat_rounds` rounds in ABBA order, then the breakdown run.
pub fn latency(broker: &Broker, base: &str, plan: &Plan, payload_bytes: usize) -> Latency {
    let rounds = plan.lat_rounds.max(1);
    let per_round = (plan.lat_events / rounds).max(1);
    let mut emitter = Side::default();
    let mut bare = Side::default();
    for round in 0..rounds {
        let prefix = format!("{base}/lat{round}");
        let topic = format!("{base}/bare-lat{round}/bench_rows/insert");
        let emitter_first = matches!(round % 4, 0 | 3);
        for emitter_turn in [emitter_first, !emitter_first] {
            if emitter_turn {
                let (run, _, _) = emitter_run(
                    broker,
                    &prefix,
                    plan.lat_rate,
                    plan.lat_warm_up,
                    per_round,
                    None,
                );
                emitter.add(run);
            } else {
                bare.add(bare_run(
                    broker,
                    &topic,
                    plan.lat_rate,
                    plan.lat_warm_up,
                    per_round,
                    payload_bytes,
                ));
            }
        }
    }
    let marks = Marks::install();
    let (run, sent, arrived) = emitter_run(
        broker,
        &format!("{base}/lat-traced"),
        plan.lat_rate,
        plan.lat_warm_up,
        per_round,
        Some(&marks),
    );
    let steps = hops::steps(&sent, &marks.stop(), &arrived, plan.lat_warm_up);
    Latency {
        emitter,
        bare,
        rounds,
        per_round,
        traced: percentiles(run.nanos, run.missing),
        steps,
    }
}

/// One side alone, once, no warm-up: `plan.lat_events` events. For instruction
/// counts (`valgrind --tool=callgrind`): the difference between two event counts,
/// divided by the difference in events, is this process's instructions per event.
pub fn one_side(broker: &Broker, base: &str, plan: &Plan, payload_bytes: usize, emitter: bool) {
    let run = if emitter {
        emitter_run(
            broker,
            &format!("{base}/one"),
            plan.lat_rate,
            0,
            plan.lat_events,
            None,
        )
        .0
    } else {
        let topic = format!("{base}/bare-one/bench_rows/insert");
        bare_run(
            broker,
            &topic,
            plan.lat_rate,
            0,
            plan.lat_events,
            payload_bytes,
        )
    };
    let p = percentiles(run.nanos, run.missing);
    println!(
        "one side ({}): {} events, p50 {:.1} us, missing {}",
        if emitter { "emitter" } else { "bare" },
        run.events,
        p.p50,
        p.missing
    );
}
