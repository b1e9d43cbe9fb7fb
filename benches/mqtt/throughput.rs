//! Part 1: the sustained publish rate at QoS 1, emitters against bare Paho clients,
//! with CPU per event by thread role (see the bench's module documentation).

use super::bare::{paho_client, paho_connect, PahoSub};
use super::broker::Broker;
use super::cpu::{machine_ns, Cpu, Load};
use super::*;
use paho_mqtt as paho;

#[path = "throughput_report.rs"]
mod report;

pub use report::summary;

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
    fn per_event(&self, ns: u64) -> f64 {
        ns as f64 / 1e3 / self.events as f64
    }
}

/// Part 1's results.
pub struct Throughput {
    envelope_bytes: usize,
    row_bytes: usize,
    n: u64,
    runs: usize,
    variants: Vec<Measured>,
    load: Load,
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

pub fn throughput(broker: &Broker, base: &str, plan: &Plan) -> Throughput {
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
    let broker_pid = broker.pid();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); VARIANTS.len()];
    let mut cpu = vec![Cpu::default(); VARIANTS.len()];
    println!(
        "  acked msg/s per round: {}",
        VARIANTS.map(|v| v.short()).join(", ")
    );
    let (cpu_start, machine_start) = (Cpu::now(broker_pid), machine_ns());
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
    let (busy, total) = machine_ns();
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
