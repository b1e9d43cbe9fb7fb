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

#[path = "mqtt/hops.rs"]
mod hops;
#[path = "mqtt/latency.rs"]
mod latency;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::integration::PendingEvent;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::Stats;
use paho_mqtt as paho;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
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

// ---------------------------------------------------------------------------
// The bench's own broker.

/// A Mosquitto child process, killed on drop.
struct Broker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("MOSQUITTO") {
            return Some(path.into());
        }
        let default = Path::new("/usr/sbin/mosquitto");
        if default.exists() {
            return Some(default.into());
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("mosquitto"))
                .find(|p| p.exists())
        })
    }

    fn start(binary: &Path) -> Broker {
        let dir =
            std::env::temp_dir().join(format!("diesel-emitter-mqtt-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the broker's directory");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Broker::try_start(binary, &dir, port) {
                Ok(broker) => return broker,
                Err(error) => last_error = error,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("cannot start mosquitto: {last_error}");
    }

    fn try_start(binary: &Path, dir: &Path, port: u16) -> Result<Broker, String> {
        let log = dir.join("mosquitto.log");
        let conf = dir.join("mosquitto.conf");
        // Run as root, Mosquitto drops to its own user: let it write the log.
        std::fs::write(&log, "").map_err(|e| e.to_string())?;
        set_mode(dir, 0o777);
        set_mode(&log, 0o666);
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 max_queued_messages 0\n\
                 max_inflight_messages 0\n\
                 persistence false\n\
                 log_dest file {}\n\
                 log_type error\n\
                 log_type warning\n\
                 log_type notice\n\
                 log_type information\n",
                log.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let mut broker = Broker {
            child,
            port,
            dir: dir.to_owned(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                let log = broker.log();
                // Do not let Drop remove the directory before the retry.
                std::mem::forget(broker);
                return Err(format!("exited with {status}; log:\n{log}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(broker);
            }
            if Instant::now() >= deadline {
                let _ = broker.child.kill();
                let _ = broker.child.wait();
                let log = broker.log();
                std::mem::forget(broker);
                return Err(format!("no answer on port {port} within 5 s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn paho_url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

// ---------------------------------------------------------------------------
// Bare Paho clients.

/// A Paho client configured like the emitter's (MQTT 5, no persistence, `inflight`
/// publishes in flight and buffered), not yet connected.
fn paho_client(url: &str, client_id: &str, inflight: usize) -> paho::AsyncClient {
    let create = paho::CreateOptionsBuilder::new()
        .server_uri(url)
        .client_id(client_id)
        .mqtt_version(paho::MQTT_VERSION_5)
        .persistence(None)
        .max_buffered_messages(inflight as i32)
        .finalize();
    paho::AsyncClient::new(create).expect("create a Paho client")
}

fn paho_connect(client: &paho::AsyncClient, inflight: usize) {
    let options = paho::ConnectOptionsBuilder::new_v5()
        .clean_start(true)
        .keep_alive_interval(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .max_inflight(inflight as i32)
        .finalize();
    client
        .connect(options)
        .wait_for(Duration::from_secs(10))
        .expect("connect a Paho client to the bench broker");
}

/// A Paho subscriber whose messages are handed to `handler` on its own thread.
struct PahoSub {
    client: paho::AsyncClient,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PahoSub {
    fn start(
        url: &str,
        client_id: &str,
        filter: &str,
        mut handler: impl FnMut(&paho::Message) + Send + 'static,
    ) -> PahoSub {
        let client = paho_client(url, client_id, INFLIGHT);
        let messages = client.start_consuming();
        paho_connect(&client, INFLIGHT);
        client
            .subscribe(filter, 1)
            .wait_for(Duration::from_secs(10))
            .expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(client_id.to_owned())
            .spawn(move || {
                while !stopping.load(Relaxed) {
                    match messages.recv_timeout(Duration::from_millis(50)) {
                        Ok(Some(message)) => handler(&message),
                        Ok(None) => eprintln!("bench subscriber: connection lost"),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .expect("spawn the subscriber thread");
        PahoSub {
            client,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PahoSub {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.client.stop_consuming();
        let _ = self
            .client
            .disconnect(None)
            .wait_for(Duration::from_secs(2));
    }
}

// ---------------------------------------------------------------------------
// Part 1: sustained publish rate.

/// One timed run: until the broker acknowledged everything, and until the counting
/// subscriber had everything.
#[derive(Copy, Clone, Debug)]
struct Run {
    /// Until the commit (or publish) loop returned.
    issued: Duration,
    /// Until the broker acknowledged every message.
    acked: Duration,
    /// Until the counting subscriber had every message.
    delivered: Duration,
}

/// Waits (sleeping 1 ms between looks, not to steal a core) until `acked` and
/// `delivered` both hold; returns when each first held, measured from `start`.
fn wait_both(
    start: Instant,
    issued: Duration,
    what: &str,
    acked: impl Fn() -> bool,
    delivered: impl Fn() -> bool,
) -> Run {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut a, mut d) = (None, None);
    loop {
        if a.is_none() && acked() {
            a = Some(start.elapsed());
        }
        if d.is_none() && delivered() {
            d = Some(start.elapsed());
        }
        if let (Some(acked), Some(delivered)) = (a, d) {
            return Run {
                issued,
                acked,
                delivered,
            };
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not acknowledged/delivered within 60 s (acked: {a:?}, delivered: {d:?})"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the counting subscriber reached `target` (between runs).
fn settle(counter: &AtomicU64, target: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.load(Relaxed) < target {
        assert!(
            Instant::now() < deadline,
            "the counting subscriber stalled at {} of {target}",
            counter.load(Relaxed)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Nothing else should arrive: QoS 1 duplicates would show up here.
    std::thread::sleep(Duration::from_millis(50));
}

fn run_bare(
    client: &paho::AsyncClient,
    message: &paho::Message,
    window: usize,
    n: u64,
    counter: &AtomicU64,
) -> Run {
    let target = counter.load(Relaxed) + n;
    let start = Instant::now();
    let mut inflight = VecDeque::with_capacity(window);
    let mut issued = Duration::ZERO;
    for _ in 0..n {
        if inflight.len() >= window {
            let token: paho::DeliveryToken = inflight.pop_front().expect("window is not empty");
            token.wait().expect("bare publish");
        }
        inflight.push_back(client.publish(message.clone()));
    }
    issued += start.elapsed();
    for token in inflight {
        token.wait().expect("bare publish");
    }
    let acked = start.elapsed();
    let run = wait_both(
        start,
        issued,
        "bare",
        || true,
        || counter.load(Relaxed) >= target,
    );
    Run { acked, ..run }
}

fn run_emitter(
    emitter: &Emitter,
    n: u64,
    counter: &AtomicU64,
    changed: &Arc<[&'static str]>,
) -> Run {
    let published = emitter.stats().published + n;
    let target = counter.load(Relaxed) + n;
    let start = Instant::now();
    for i in 0..n {
        emitter.commit([insert_event(row(i as i64), changed)]);
    }
    let issued = start.elapsed();
    wait_both(
        start,
        issued,
        "emitter",
        || emitter.stats().published >= published,
        || counter.load(Relaxed) >= target,
    )
}

fn run_sqlite(
    conn: &mut EmittingConnection<SqliteConnection>,
    emitter: &Emitter,
    n: u64,
    next_id: &mut i64,
    counter: &AtomicU64,
) -> Run {
    let published = emitter.stats().published + n;
    let target = counter.load(Relaxed) + n;
    let start = Instant::now();
    for _ in 0..n {
        *next_id += 1;
        diesel::insert_into(bench_rows::table)
            .values(&row(*next_id))
            .execute(conn)
            .expect("insert");
    }
    let inserted = start.elapsed();
    if !emitter.has_broker() {
        return Run {
            issued: inserted,
            acked: inserted,
            delivered: inserted,
        };
    }
    wait_both(
        start,
        inserted,
        "emitter + sqlite",
        || emitter.stats().published >= published,
        || counter.load(Relaxed) >= target,
    )
}

fn sqlite(emitter: &Emitter) -> EmittingConnection<SqliteConnection> {
    let mut conn = EmittingConnection::new(
        SqliteConnection::establish(":memory:").expect("open SQLite"),
        emitter.clone(),
    );
    conn.batch_execute(
        "CREATE TABLE bench_rows (id INTEGER PRIMARY KEY, customer_id BIGINT NOT NULL,
             status TEXT NOT NULL, sku TEXT NOT NULL, email TEXT NOT NULL, note TEXT NOT NULL,
             amount_cents BIGINT NOT NULL, paid BOOLEAN NOT NULL)",
    )
    .expect("create the table");
    conn
}

/// One contender of part 1.
#[derive(Copy, Clone, Debug, PartialEq)]
enum Variant {
    /// A bare Paho `AsyncClient` with this window.
    Bare(usize),
    /// `Emitter::commit`, no database, with this `max_inflight`.
    Emitter(usize),
    /// Autocommit INSERTs through `EmittingConnection<SqliteConnection>`.
    EmitterSqlite,
    /// The same INSERTs with an emitter without a broker (context).
    SqliteOnly,
}

impl Variant {
    fn label(self) -> String {
        match self {
            Variant::Bare(w) => format!("bare AsyncClient, {w} in flight"),
            Variant::Emitter(w) => format!("emitter.commit, max_inflight {w}"),
            Variant::EmitterSqlite => format!("emitter + SQLite INSERT, {INFLIGHT}"),
            Variant::SqliteOnly => "SQLite INSERT, no broker (context)".to_owned(),
        }
    }
    fn short(self) -> String {
        match self {
            Variant::Bare(w) => format!("bare{w}"),
            Variant::Emitter(w) => format!("emitter{w}"),
            Variant::EmitterSqlite => "emitter+sqlite".to_owned(),
            Variant::SqliteOnly => "sqlite-only".to_owned(),
        }
    }
    /// Whether its messages reach the counting subscriber.
    fn publishes(self) -> bool {
        self != Variant::SqliteOnly
    }
}

const VARIANTS: [Variant; 6] = [
    Variant::Bare(INFLIGHT),
    Variant::Bare(INFLIGHT_SMALL),
    Variant::Emitter(INFLIGHT),
    Variant::Emitter(INFLIGHT_SMALL),
    Variant::EmitterSqlite,
    Variant::SqliteOnly,
];

/// CPU time in clock ticks (USER_HZ, 100 per second), user + system, of this
/// process's threads by role and of the broker.
#[derive(Copy, Clone, Debug, Default)]
struct Cpu {
    /// The bench's main thread: the commit loop, or the bare publish loop.
    main: u64,
    /// The emitter's publisher thread.
    publisher: u64,
    /// The counting subscriber's consumer thread.
    counter: u64,
    /// The publisher's loopback relay threads (see emitter-core's `mqtt::relay`).
    relay: u64,
    /// Everything else in this process: Paho C's threads of every client, mostly.
    paho: u64,
    broker: u64,
}

impl Cpu {
    fn now(broker_pid: u32) -> Cpu {
        let mut cpu = Cpu {
            broker: proc_ticks(&format!("/proc/{broker_pid}/stat")).map_or(0, |(_, t)| t),
            ..Cpu::default()
        };
        let pid = std::process::id().to_string();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for task in tasks.flatten() {
            let tid = task.file_name().to_string_lossy().into_owned();
            let Some((comm, ticks)) = proc_ticks(&format!("/proc/self/task/{tid}/stat")) else {
                continue;
            };
            let slot = if tid == pid {
                &mut cpu.main
            } else if comm.starts_with("emitter-mqtt-pu") {
                &mut cpu.publisher
            } else if comm.starts_with("bench-counter") {
                &mut cpu.counter
            } else if comm.starts_with("emitter-mqtt-re") {
                &mut cpu.relay
            } else {
                &mut cpu.paho
            };
            *slot += ticks;
        }
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            main: self.main.saturating_sub(before.main),
            publisher: self.publisher.saturating_sub(before.publisher),
            counter: self.counter.saturating_sub(before.counter),
            relay: self.relay.saturating_sub(before.relay),
            paho: self.paho.saturating_sub(before.paho),
            broker: self.broker.saturating_sub(before.broker),
        }
    }

    fn add(&mut self, other: Cpu) {
        self.main += other.main;
        self.publisher += other.publisher;
        self.counter += other.counter;
        self.relay += other.relay;
        self.paho += other.paho;
        self.broker += other.broker;
    }

    fn process(&self) -> u64 {
        self.main + self.publisher + self.counter + self.relay + self.paho
    }
}

/// `(comm, utime + stime)` from a `/proc/.../stat` file.
fn proc_ticks(path: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    // Fields after the comm start at field 3 (state); utime and stime are 14 and 15.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// Part 1's results for one variant.
struct Measured {
    variant: Variant,
    /// Medians, events per second.
    acked: f64,
    delivered: f64,
    /// Median time of the commit (or publish) loop alone.
    issued: Duration,
    /// Acked rate of each round, in order.
    rates: Vec<f64>,
    /// CPU summed over every round.
    cpu: Cpu,
    events: u64,
}

impl Measured {
    /// Microseconds of CPU per event.
    fn per_event(&self, ticks: u64) -> f64 {
        ticks as f64 * 10_000.0 / self.events as f64
    }
}

/// Part 1's results.
struct Throughput {
    envelope_bytes: usize,
    row_bytes: usize,
    n: u64,
    runs: usize,
    variants: Vec<Measured>,
    load: Load,
}

/// Shares of the machine's CPU capacity (all cores) used during part 1's rounds.
#[derive(Copy, Clone, Debug)]
struct Load {
    /// This process and its broker.
    ours: f64,
    /// Every other process: noise.
    others: f64,
}

/// `(busy, total)` clock ticks of all cores since boot, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let get = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    (busy, busy + idle)
}

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

/// The clients and connections of part 1.
struct Contenders {
    counter: Arc<AtomicU64>,
    message: paho::Message,
    changed: Arc<[&'static str]>,
    bare: paho::AsyncClient,
    bare_small: paho::AsyncClient,
    emitter: Emitter,
    emitter_small: Emitter,
    conn: EmittingConnection<SqliteConnection>,
    next_id: i64,
    local: Emitter,
    local_conn: EmittingConnection<SqliteConnection>,
    local_next_id: i64,
}

impl Contenders {
    fn run(&mut self, variant: Variant, n: u64) -> Run {
        let counter = &*self.counter;
        match variant {
            Variant::Bare(w) if w == INFLIGHT => run_bare(&self.bare, &self.message, w, n, counter),
            Variant::Bare(w) => run_bare(&self.bare_small, &self.message, w, n, counter),
            Variant::Emitter(w) if w == INFLIGHT => {
                run_emitter(&self.emitter, n, counter, &self.changed)
            }
            Variant::Emitter(_) => run_emitter(&self.emitter_small, n, counter, &self.changed),
            Variant::EmitterSqlite => {
                run_sqlite(&mut self.conn, &self.emitter, n, &mut self.next_id, counter)
            }
            Variant::SqliteOnly => run_sqlite(
                &mut self.local_conn,
                &self.local,
                n,
                &mut self.local_next_id,
                counter,
            ),
        }
    }
}

fn throughput(broker: &Broker, base: &str, plan: &Plan) -> Throughput {
    let prefix = format!("{base}/tput");
    let counter = Arc::new(AtomicU64::new(0));
    let sample: Arc<Mutex<Option<paho::Message>>> = Arc::default();
    let _sub = {
        let (counter, sample) = (counter.clone(), sample.clone());
        PahoSub::start(
            &broker.paho_url(),
            "bench-counter",
            &format!("{prefix}/#"),
            move |message| {
                counter.fetch_add(1, Relaxed);
                let mut sample = sample.lock().unwrap();
                if sample.is_none() {
                    *sample = Some(message.clone());
                }
            },
        )
    };
    let emitter = bench_emitter(broker, &prefix, "bench-tput");
    let emitter_small = Emitter::builder()
        .node_id("bench-tput-small")
        .mqtt(mqtt_config(broker, &prefix).max_inflight(INFLIGHT_SMALL))
        .build()
        .expect("build the writer emitter");
    wait_connected(&[&emitter, &emitter_small]);
    // The emitter's first message is the template of the bare runs.
    let changed: Arc<[&'static str]> = Row::COLUMNS.into();
    emitter.commit([insert_event(row(0), &changed)]);
    settle(&counter, 1);
    let message = sample
        .lock()
        .unwrap()
        .take()
        .expect("the subscriber kept a sample");
    let row_bytes = serde_json::to_vec(&row(0)).unwrap().len();
    let envelope_bytes = message.payload().len();
    println!(
        "throughput: topic {}, row {row_bytes} B, envelope {envelope_bytes} B, QoS 1, {} events x {} rounds",
        message.topic(),
        plan.tput_events,
        plan.tput_runs
    );
    let bare = paho_client(&broker.paho_url(), "bench-tput-bare", INFLIGHT);
    paho_connect(&bare, INFLIGHT);
    let bare_small = paho_client(&broker.paho_url(), "bench-tput-bare-small", INFLIGHT_SMALL);
    paho_connect(&bare_small, INFLIGHT_SMALL);
    let local = Emitter::builder()
        .node_id("bench-sqlite-local")
        .build()
        .expect("build a local emitter");
    let mut c = Contenders {
        counter: counter.clone(),
        message,
        changed,
        bare,
        bare_small,
        conn: sqlite(&emitter),
        emitter,
        emitter_small,
        next_id: 0,
        local_conn: sqlite(&local),
        local,
        local_next_id: 0,
    };

    let mut expected = 1;
    let warm_up = (plan.tput_events / 10).max(1_000);
    for variant in VARIANTS {
        c.run(variant, warm_up);
        expected += if variant.publishes() { warm_up } else { 0 };
    }
    settle(&counter, expected);

    let n = plan.tput_events;
    let broker_pid = broker.child.id();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); VARIANTS.len()];
    let mut cpu = vec![Cpu::default(); VARIANTS.len()];
    println!(
        "  acked msg/s per round: {}",
        VARIANTS.map(|v| v.short()).join(", ")
    );
    let (cpu_start, machine_start) = (Cpu::now(broker_pid), machine_ticks());
    for round in 0..plan.tput_runs {
        print!("  round {}:", round + 1);
        for (i, variant) in VARIANTS.into_iter().enumerate() {
            let before = Cpu::now(broker_pid);
            let run = c.run(variant, n);
            cpu[i].add(Cpu::now(broker_pid).since(before));
            if variant.publishes() {
                expected += n;
                // Runs do not overlap: the subscriber has everything before the next.
                settle(&counter, expected);
            }
            print!(" {:>7.0}", rate(n, run.acked));
            std::io::stdout().flush().ok();
            runs[i].push(run);
        }
        println!();
    }
    let ours = Cpu::now(broker_pid).since(cpu_start);
    let (busy, total) = machine_ticks();
    let (busy, total) = (busy - machine_start.0, (total - machine_start.1).max(1));
    let load = Load {
        ours: (ours.process() + ours.broker) as f64 / total as f64,
        others: busy.saturating_sub(ours.process() + ours.broker) as f64 / total as f64,
    };
    let received = counter.load(Relaxed);
    assert_eq!(
        received, expected,
        "the counting subscriber saw {received} messages, expected {expected}"
    );
    for e in [&c.emitter, &c.emitter_small] {
        let stats = e.stats();
        assert_eq!(
            (stats.publish_dropped, stats.publish_failed),
            (0, 0),
            "the writer lost events: {stats:?}"
        );
    }
    for client in [&c.bare, &c.bare_small] {
        client
            .disconnect(None)
            .wait_for(Duration::from_secs(2))
            .ok();
    }
    for e in [&c.emitter, &c.emitter_small, &c.local] {
        e.shutdown(Duration::from_secs(10))
            .expect("emitter shutdown");
    }

    let variants = VARIANTS
        .into_iter()
        .zip(runs)
        .zip(cpu)
        .map(|((variant, runs), cpu)| Measured {
            variant,
            acked: median(runs.iter().map(|r| rate(n, r.acked)).collect()),
            rates: runs.iter().map(|r| rate(n, r.acked)).collect(),
            delivered: median(runs.iter().map(|r| rate(n, r.delivered)).collect()),
            issued: {
                let mut issued: Vec<Duration> = runs.iter().map(|r| r.issued).collect();
                issued.sort();
                issued[issued.len() / 2]
            },
            cpu,
            events: n * runs.len() as u64,
        })
        .collect();
    Throughput {
        envelope_bytes,
        row_bytes,
        n,
        runs: plan.tput_runs,
        variants,
        load,
    }
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---------------------------------------------------------------------------
// Part 3: nothing lost, nothing duplicated.

#[derive(Default)]
struct Seen {
    calls: u64,
    ids: HashSet<String>,
    rows: HashSet<i64>,
}

struct Loss {
    n: u64,
    calls: u64,
    distinct_ids: u64,
    distinct_rows: u64,
    lost: u64,
    duplicated: u64,
    elapsed: Duration,
    writer: Stats,
    listener: Stats,
}

fn loss(broker: &Broker, base: &str, n: u64) -> Loss {
    let prefix = format!("{base}/loss");
    let changed: Arc<[&'static str]> = Row::COLUMNS.into();
    let listener = bench_emitter(broker, &prefix, "bench-loss-listener");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let distinct = Arc::new(AtomicU64::new(0));
    let _kept = {
        let (seen, distinct) = (seen.clone(), distinct.clone());
        listener
            .on::<Row>()
            .remote_only(true)
            .listen(move |ev: &Event<Row>| {
                let mut seen = seen.lock().unwrap();
                seen.calls += 1;
                seen.ids.insert(ev.meta.id.to_string());
                if seen.rows.insert(ev.row.id) {
                    distinct.fetch_add(1, Relaxed);
                }
            })
    };
    let writer = bench_emitter(broker, &prefix, "bench-loss-writer");
    wait_connected(&[&listener, &writer]);

    let start = Instant::now();
    for i in 0..n {
        writer.commit([insert_event(row(i as i64), &changed)]);
    }
    // Until everything arrived, or nothing new for 10 s.
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let now = distinct.load(Relaxed);
        if now >= n {
            break;
        }
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(10) {
            eprintln!("loss: no progress for 10 s at {now} of {n}");
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    writer
        .shutdown(Duration::from_secs(10))
        .expect("writer shutdown");
    // Late duplicates, if any, have time to arrive.
    std::thread::sleep(Duration::from_millis(500));
    listener
        .shutdown(Duration::from_secs(10))
        .expect("listener shutdown");
    let seen = seen.lock().unwrap();
    let distinct_rows = seen.rows.len() as u64;
    Loss {
        n,
        calls: seen.calls,
        distinct_ids: seen.ids.len() as u64,
        distinct_rows,
        lost: n.saturating_sub(distinct_rows),
        duplicated: seen.calls - distinct_rows.min(seen.calls),
        elapsed,
        writer: writer.stats(),
        listener: listener.stats(),
    }
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

    let tput = wants("throughput").then(|| throughput(&broker, &base, &plan));
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
        loss(&broker, &base, plan.loss_events)
    });
    let broker_log = broker.log();
    let broker_drops = broker_log
        .lines()
        .filter(|l| l.contains(BROKER_DROP_LINE))
        .count();
    drop(broker);

    println!("\n================ mqtt bench summary (one run, one process) ================");
    if let Some(tput) = &tput {
        summary_throughput(tput);
    }
    if let Some(lat) = &lat {
        summary_latency(lat, &plan);
    }
    if let Some(loss) = &loss {
        summary_loss(loss, broker_drops);
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

fn summary_throughput(tput: &Throughput) {
    let acked = |v: Variant| {
        tput.variants
            .iter()
            .find(|m| m.variant == v)
            .map_or(f64::NAN, |m| m.acked)
    };
    let best = |bare: bool| {
        tput.variants
            .iter()
            .filter(|m| {
                matches!(
                    (bare, m.variant),
                    (true, Variant::Bare(_)) | (false, Variant::Emitter(_))
                )
            })
            .map(|m| m.acked)
            .fold(0.0, f64::max)
    };
    let best_bare = best(true);
    println!(
        "1. publish rate, QoS 1, row {} B / envelope {} B, a counting Paho subscriber attached;\n   \
         median of {} rounds x {} events; acked = every PUBACK in, delivered = the subscriber has all;\n   \
         loop = the commit/publish loop alone; CPU per event in us (bench process = main thread +\n   \
         emitter publisher thread + counting subscriber thread + the publisher's relay threads +\n   \
         Paho C and other threads; broker)",
        tput.row_bytes, tput.envelope_bytes, tput.runs, tput.n
    );
    println!(
        "   {:<36} {:>8} {:>9} {:>6} {:>6} {:>7} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6}",
        "",
        "acked/s",
        "deliv'd/s",
        "/bare",
        "/best",
        "loop",
        "proc",
        "main",
        "pub",
        "sub",
        "relay",
        "paho",
        "broker"
    );
    for m in &tput.variants {
        let same = match m.variant {
            Variant::Emitter(w) | Variant::Bare(w) => acked(Variant::Bare(w)),
            _ => acked(Variant::Bare(INFLIGHT)),
        };
        let c = &m.cpu;
        println!(
            "   {:<36} {:>8.0} {:>9.0} {:>6.2} {:>6.2} {:>5.0}ms | {:>5.1} {:>5.1} {:>5.1} {:>5.1} {:>5.1} {:>5.1} {:>6.1}",
            m.variant.label(),
            m.acked,
            m.delivered,
            m.acked / same,
            m.acked / best_bare,
            m.issued.as_secs_f64() * 1e3,
            m.per_event(c.process()),
            m.per_event(c.main),
            m.per_event(c.publisher),
            m.per_event(c.counter),
            m.per_event(c.relay),
            m.per_event(c.paho),
            m.per_event(c.broker),
        );
    }
    println!(
        "   (/bare: vs the bare client with the same window; /best: vs the faster bare client)"
    );
    println!(
        "   machine CPU during the rounds ({} cores): this bench + its broker {:.0}%, other processes {:.0}%",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tput.load.ours * 100.0,
        tput.load.others * 100.0
    );
    let same_window = acked(Variant::Emitter(INFLIGHT)) / acked(Variant::Bare(INFLIGHT));
    let best_vs_best = best(false) / best_bare;
    println!(
        "   target emitter >= 0.90 x bare: same window ({INFLIGHT}) {same_window:.3} -> {}; best emitter / best bare {best_vs_best:.3} -> {}",
        verdict(same_window >= 0.90),
        verdict(best_vs_best >= 0.90),
    );
    // Rounds run back to back, so a ratio within a round is less exposed to drift in
    // the machine's load than a ratio of medians.
    let paired = |a: Variant, b: Variant| {
        let rates = |v: Variant| {
            tput.variants
                .iter()
                .find(|m| m.variant == v)
                .map(|m| m.rates.clone())
        };
        match (rates(a), rates(b)) {
            (Some(a), Some(b)) => median(a.iter().zip(&b).map(|(a, b)| a / b).collect()),
            _ => f64::NAN,
        }
    };
    println!(
        "   median of per-round ratios: emitter{INFLIGHT}/bare{INFLIGHT} {:.3}, emitter{INFLIGHT_SMALL}/bare{INFLIGHT_SMALL} {:.3}, \
         emitter+sqlite/bare{INFLIGHT} {:.3}",
        paired(Variant::Emitter(INFLIGHT), Variant::Bare(INFLIGHT)),
        paired(Variant::Emitter(INFLIGHT_SMALL), Variant::Bare(INFLIGHT_SMALL)),
        paired(Variant::EmitterSqlite, Variant::Bare(INFLIGHT)),
    );
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
    let (median_ratio, min, max) = lat.round_ratios();
    println!(
        "   emitter/bare: p50 {:.2}x (per round: median {median_ratio:.2}x, {min:.2}-{max:.2}x), p99 {:.2}x, \
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
    println!("   where the emitter's time goes (hop marks run; each step from the previous mark):");
    println!("   {:<12} {:>8} {:>8}  marks", "step", "p50 us", "p99 us");
    let mut sum = 0.0;
    for step in &lat.steps {
        sum += step.p50;
        println!(
            "   {:<12} {:>8.1} {:>8.1}  {}",
            step.name, step.p50, step.p99, step.marks
        );
    }
    println!(
        "   sum of step medians {sum:.1} us (the run's p50 {:.1} us); bare hop p50 {:.1} us",
        lat.traced.p50, bare.p50
    );
}

fn summary_loss(loss: &Loss, broker_drops: usize) {
    println!(
        "3. {} events flat out: listener calls {}, distinct rows {}, distinct event ids {}, lost {}, duplicated {}",
        loss.n, loss.calls, loss.distinct_rows, loss.distinct_ids, loss.lost, loss.duplicated
    );
    println!(
        "   {:.0} events/s end to end; writer published {} (dropped {}, failed {}); listener received {}, \
         redeliveries dropped by dedup {}, rejected {}, reconnects {} -> {}",
        rate(loss.distinct_rows, loss.elapsed),
        loss.writer.published,
        loss.writer.publish_dropped,
        loss.writer.publish_failed,
        loss.listener.remote_received,
        loss.listener.remote_duplicates,
        loss.listener.remote_rejected,
        loss.writer.broker_reconnects + loss.listener.broker_reconnects,
        verdict(loss.lost == 0 && loss.duplicated == 0)
    );
    println!("   broker log lines \"{BROKER_DROP_LINE}\": {broker_drops}");
}
