//! Writers that commit at the same time, on PostgreSQL over loopback: 1, 2, 4 and 8
//! threads, each with its own connection, each running single-row autocommit
//! statements, through `EmittingConnection`s sharing one emitter (one counting
//! closure listener) side by side with plain `PgConnection`s.
//!
//! Each line runs a fixed total of statements split evenly over the writers, the
//! emitting and the plain side alternating round by round in ABBA order (as
//! `common::interleaved` does); the ratio is taken per round, and the line shows the
//! median of those ratios with their spread: the interquartile range and a 95%
//! confidence interval of the median (from order statistics), which is the figure
//! to compare with an effect.
//!
//! The last columns are what the emitting side's commits spent waiting, per commit:
//! for the commit lock, for the delivery turn, and delivering with the turn (its own
//! events and other writers'). They come from the TRACE events the emitter emits on
//! the `diesel_emitter::commit_wait` target, counted by the small subscriber below;
//! an emitter without that subscriber does not read the clock for them. The very
//! last is this process's CPU time per statement (all its threads, from
//! `/proc/self/stat`), emitting side / plain side: our own cost, which wall time
//! on a busy 2-core machine hides in its noise.
//!
//! ```text
//! cargo bench --bench writers                      # about two minutes
//! WRITERS_ROUNDS=60 cargo bench --bench writers    # fewer rounds per line
//! WRITERS_OPS=insert,update cargo bench --bench writers
//! WRITERS_STAY_AWAKE_US=0 cargo bench --bench writers   # the listener's stay_awake
//! WRITERS_LISTENER=none cargo bench --bench writers      # an emitter with no listener
//! WRITERS_HISTOGRAM=1 cargo bench --bench writers        # how long waits and deliveries took
//! WRITERS_COUNTS=4 WRITERS_AA=0 cargo bench --bench writers  # only the 4-writer line
//! WRITERS_FLOOR=1 cargo bench --bench writers           # + "N RET": RETURNING vs plain
//! ```
//!
//! `cargo bench` passes `--bench`; without it (`cargo test --benches`) this is a
//! short smoke run. Set `DATABASE_URL` to use another server.

mod common;

use common::users::{counting_emitter, users, NewUser, User};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The most writers a line runs; every side keeps this many connections.
const MAX_WRITERS: usize = 8;
/// The writer counts of the table.
const WRITERS: [usize; 4] = [1, 2, 4, 8];
/// Rows seeded for the update-by-key lines: each writer updates its own share.
const KEYED_ROWS: i32 = 8_000;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// What each writer's statements are.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Op {
    /// `INSERT` of one row.
    Insert,
    /// `UPDATE` of one row by primary key, cycling over the writer's own keys.
    Update,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
        }
    }
}

/// A connection a writer thread runs its statements on.
trait Writer: Send {
    fn run(&mut self, op: Op, row: &NewUser, key: i32);
}

macro_rules! writer {
    ($conn:ty) => {
        impl Writer for $conn {
            fn run(&mut self, op: Op, row: &NewUser, key: i32) {
                let n = match op {
                    Op::Insert => diesel::insert_into(users::table).values(row).execute(self),
                    Op::Update => {
                        let name = if key % 2 == 0 { "renamed" } else { "original" };
                        diesel::update(users::table.find(key))
                            .set(users::name.eq(name))
                            .execute(self)
                    }
                };
                assert_eq!(n.expect("benchmark statement"), 1);
            }
        }
    };
}
writer!(PgConnection);
writer!(EmittingConnection<PgConnection>);

/// A plain connection whose statements return the model's columns, decoded into
/// `User`s: what row capture costs without events (the floor of the emitting side).
struct Returning<'a>(&'a mut PgConnection);

impl Writer for Returning<'_> {
    fn run(&mut self, op: Op, row: &NewUser, key: i32) {
        let rows = match op {
            Op::Insert => diesel::insert_into(users::table)
                .values(row)
                .returning(User::as_returning())
                .get_results::<User>(self.0),
            Op::Update => {
                let name = if key % 2 == 0 { "renamed" } else { "original" };
                diesel::update(users::table.find(key))
                    .set(users::name.eq(name))
                    .returning(User::as_returning())
                    .get_results::<User>(self.0)
            }
        };
        assert_eq!(rows.expect("benchmark statement").len(), 1);
    }
}

/// What a line measures against plain connections.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Versus {
    /// Emitting connections.
    Emitting,
    /// A second set of plain connections: the noise floor.
    Plain,
    /// Plain connections with `RETURNING` (see [`Returning`]).
    Returning,
}

/// Counts the emitter's per-commit wait measurements (TRACE events on
/// `diesel_emitter::commit_wait`); every other callsite is disabled.
#[derive(Default)]
struct WaitCounter {
    commits: AtomicU64,
    lock_ns: AtomicU64,
    turn_ns: AtomicU64,
    deliver_ns: AtomicU64,
    /// Commits that waited for the delivery turn at all.
    turn_waits: AtomicU64,
    /// How many turn waits (`[0]`) and deliveries (`[1]`) took under 1 us, under
    /// 2, 4, ... (log2 buckets of microseconds).
    histogram: [[AtomicU64; 16]; 2],
}

/// The log2 bucket of `ns` in microseconds.
fn bucket(ns: u64) -> usize {
    ((u64::BITS - (ns / 1000).leading_zeros()) as usize).min(15)
}

const WAIT_TARGET: &str = "diesel_emitter::commit_wait";

/// A reading of the [`WaitCounter`]: commits, then nanoseconds waiting for the lock,
/// for the turn, delivering, and the commits that waited for the turn.
#[derive(Copy, Clone, Default)]
struct Waits([u64; 5]);

impl Waits {
    fn since(self, earlier: Waits) -> Waits {
        Waits(std::array::from_fn(|i| self.0[i] - earlier.0[i]))
    }

    fn add(&mut self, other: Waits) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl WaitCounter {
    /// Prints and resets the histograms.
    fn print_histogram(&self) {
        for (name, row) in ["turn waits", "deliveries"].iter().zip(&self.histogram) {
            let counts: Vec<String> = row.iter().map(|c| c.swap(0, Relaxed).to_string()).collect();
            println!("    {name:<10} <1,2,4..us: {}", counts.join(" "));
        }
    }

    fn read(&self) -> Waits {
        Waits(
            [
                &self.commits,
                &self.lock_ns,
                &self.turn_ns,
                &self.deliver_ns,
                &self.turn_waits,
            ]
            .map(|a| a.load(Relaxed)),
        )
    }
}

struct WaitVisitor<'a>(&'a WaitCounter);

impl tracing::field::Visit for WaitVisitor<'_> {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        let counter = &self.0;
        match field.name() {
            "lock_ns" => counter.lock_ns.fetch_add(value, Relaxed),
            "turn_ns" => {
                if value > 0 {
                    counter.turn_waits.fetch_add(1, Relaxed);
                    counter.histogram[0][bucket(value)].fetch_add(1, Relaxed);
                }
                counter.turn_ns.fetch_add(value, Relaxed)
            }
            "deliver_ns" => {
                if value > 0 {
                    counter.histogram[1][bucket(value)].fetch_add(1, Relaxed);
                }
                counter.deliver_ns.fetch_add(value, Relaxed)
            }
            _ => 0,
        };
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// The subscriber: shares its counter with the bench.
struct Subscriber(Arc<WaitCounter>);

impl tracing::Subscriber for Subscriber {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enabled(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == WAIT_TARGET
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        self.0.commits.fetch_add(1, Relaxed);
        event.record(&mut WaitVisitor(&self.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// The bench's schema (dropped at the end) and its connections.
struct Bench {
    schema: String,
    /// Runs setup statements, never measured.
    admin: PgConnection,
    emitter: Emitter,
    counted: Arc<AtomicU64>,
    /// Whether the counting listener is there.
    listening: bool,
    emitting: Vec<EmittingConnection<PgConnection>>,
    plain: Vec<PgConnection>,
    waits: Arc<WaitCounter>,
}

impl Bench {
    /// `stay_awake` is the listener's; `None` leaves the emitter without one.
    fn new(waits: Arc<WaitCounter>, stay_awake: Option<Duration>) -> Bench {
        let url = database_url();
        let schema = format!("emitter_writers_{}", std::process::id());
        let mut admin = PgConnection::establish(&url).expect("connect to PostgreSQL");
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE;
                 CREATE SCHEMA {schema};
                 SET search_path TO {schema};
                 CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT NOT NULL,
                                     email TEXT NOT NULL, active BOOLEAN NOT NULL);"
            ))
            .expect("create the benchmark schema");
        let (emitter, counted) = match stay_awake {
            Some(stay_awake) => counting_emitter(stay_awake),
            None => (
                Emitter::builder()
                    .node_id("bench")
                    .build()
                    .expect("build emitter"),
                Arc::default(),
            ),
        };
        let search_path = format!("SET search_path TO {schema}");
        let connect = || {
            let mut conn = PgConnection::establish(&url).expect("connect to PostgreSQL");
            conn.batch_execute(&search_path).unwrap();
            conn
        };
        let emitting = (0..MAX_WRITERS)
            .map(|_| EmittingConnection::new(connect(), emitter.clone()))
            .collect();
        let plain = (0..MAX_WRITERS).map(|_| connect()).collect();
        Bench {
            schema,
            admin,
            emitter,
            counted,
            listening: stay_awake.is_some(),
            emitting,
            plain,
            waits,
        }
    }

    fn setup(&mut self, sql: &str) {
        self.admin.batch_execute(sql).expect("setup statement");
    }

    /// Empties `users` and, for updates, fills it with rows `1..=KEYED_ROWS`.
    fn prepare(&mut self, op: Op) {
        self.settle();
        match op {
            Op::Insert => self.setup("TRUNCATE users RESTART IDENTITY"),
            Op::Update => self.setup(&format!(
                "TRUNCATE users RESTART IDENTITY;
                 INSERT INTO users (id, name, email, active)
                   SELECT g, 'user ' || g, 'user' || g || '@example.com', true
                   FROM generate_series(1, {KEYED_ROWS}) g;
                 SELECT setval(pg_get_serial_sequence('users', 'id'), {KEYED_ROWS});"
            )),
        }
        self.setup("VACUUM ANALYZE users");
    }

    /// Waits until the listener has run for every event emitted so far, so that
    /// its work does not land on the other side's clock.
    fn settle(&self) {
        if !self.listening {
            return;
        }
        let emitted = self.emitter.stats().emitted;
        while self.counted.load(Relaxed) < emitted {
            std::thread::yield_now();
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        let _ = self.emitter.shutdown(Duration::from_secs(10));
    }
}

/// Runs `total` statements split over the first `n` of `conns`, one thread each,
/// started together; the wall time from their start to the last one's end.
fn block<W: Writer>(conns: &mut [W], n: usize, total: usize, op: Op, round: usize) -> Duration {
    let per_writer = total / n;
    let start = Barrier::new(n + 1);
    std::thread::scope(|scope| {
        for (w, conn) in conns[..n].iter_mut().enumerate() {
            let start = &start;
            scope.spawn(move || {
                let row = NewUser {
                    name: format!("writer {w}"),
                    email: format!("writer{w}@example.com"),
                    active: true,
                };
                // Each writer updates its own keys: no two wait on one row lock.
                let share = KEYED_ROWS / MAX_WRITERS as i32;
                let first = w as i32 * share + 1;
                start.wait();
                for i in 0..per_writer {
                    let key = first + ((round * per_writer + i) as i32 % share);
                    conn.run(op, &row, key);
                }
            });
        }
        start.wait();
        // The writers are joined as the scope ends.
        Instant::now()
    })
    .elapsed()
}

/// The CPU time this process (every thread: writers, listener, emitter) has
/// used, from `/proc/self/stat`, in clock ticks (10 ms); `None` elsewhere.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name, which is in parentheses: utime and stime are the
    // 12th and 13th fields.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// One line of the table: its per-statement medians, ratio and spread.
struct Line {
    plain: f64,
    emitting: f64,
    ratio: f64,
    /// Interquartile range of the per-round ratios.
    iqr: (f64, f64),
    /// 95% confidence interval of the median ratio.
    ci: (f64, f64),
    waits: Waits,
    /// This process's CPU time per statement, emitting and plain side (us),
    /// over every measured round.
    cpu: Option<(f64, f64)>,
}

/// The median of `values` and a 95% confidence interval for it (the order
/// statistics at n/2 -+ 0.98 sqrt(n)), and the quartiles.
fn summary(values: &mut [f64]) -> (f64, (f64, f64), (f64, f64)) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let half = 0.98 * (n as f64).sqrt();
    let at = |rank: f64| values[(rank.round().max(0.0) as usize).min(n - 1)];
    let mid = n as f64 / 2.0;
    (
        values[n / 2],
        (at(mid - half), at(mid + half)),
        (at(n as f64 * 0.25), at(n as f64 * 0.75)),
    )
}

/// Interleaved rounds (ABBA) of `total` statements over `n` writers a side, `versus`
/// (in the emitting side's columns) against plain.
fn line(s: &mut Bench, op: Op, n: usize, rounds: usize, total: usize, versus: Versus) -> Line {
    let warm_up = rounds / 10;
    // What `block` runs: `total` split evenly.
    let statements = total / n * n;
    let (mut emitting, mut plain, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut waits = Waits::default();
    let mut ticks = [0u64; 2];
    for round in 0..warm_up + rounds {
        let mut micros = [0.0; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            s.settle();
            let before = s.waits.read();
            let cpu_before = cpu_ticks();
            let took = match (side, versus) {
                (0, Versus::Emitting) => block(&mut s.emitting, n, total, op, round),
                (0, Versus::Plain) => block(&mut s.plain[MAX_WRITERS - n..], n, total, op, round),
                (0, Versus::Returning) => {
                    let mut returning: Vec<Returning<'_>> = s.plain[MAX_WRITERS - n..]
                        .iter_mut()
                        .map(Returning)
                        .collect();
                    block(&mut returning, n, total, op, round)
                }
                _ => block(&mut s.plain, n, total, op, round),
            };
            micros[side] = took.as_secs_f64() * 1e6 / statements as f64;
            if let (Some(after), Some(before), true) = (cpu_ticks(), cpu_before, round >= warm_up) {
                ticks[side] += after - before;
            }
            if side == 0 && round >= warm_up {
                waits.add(s.waits.read().since(before));
            }
        }
        if round >= warm_up {
            emitting.push(micros[0]);
            plain.push(micros[1]);
            ratios.push(micros[0] / micros[1]);
        }
    }
    let (ratio, ci, iqr) = summary(&mut ratios);
    // Clock ticks are 10 ms on Linux.
    let per_statement = |ticks: u64| ticks as f64 * 1e4 / (rounds * statements) as f64;
    let cpu = cpu_ticks().map(|_| (per_statement(ticks[0]), per_statement(ticks[1])));
    Line {
        cpu,
        plain: summary(&mut plain).0,
        emitting: summary(&mut emitting).0,
        ratio,
        iqr,
        ci,
        waits,
    }
}

fn print_header() {
    println!(
        "{:<8} {:>7} {:>8} {:>9} {:>6} {:>13} {:>13} {:>8} {:>8} {:>8} {:>7} {:>11}",
        "op",
        "writers",
        "plain",
        "emitting",
        "ratio",
        "IQR",
        "95% CI",
        "lock",
        "turn",
        "deliver",
        "waited",
        "our CPU"
    );
    println!(
        "{:<8} {:>7} {:>8} {:>9} {:>6} {:>13} {:>13} {:>8} {:>8} {:>8} {:>7} {:>11}",
        "",
        "",
        "us/stmt",
        "us/stmt",
        "",
        "of ratios",
        "of median",
        "us/cmt",
        "us/cmt",
        "us/cmt",
        "turn",
        "em/pl us"
    );
}

fn print_line(op: &str, writers: &str, line: &Line) {
    let [commits, lock, turn, deliver, turn_waits] = line.waits.0;
    let per_commit = |ns: u64| {
        if commits == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", ns as f64 / commits as f64 / 1e3)
        }
    };
    let waited = if commits == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", turn_waits as f64 * 100.0 / commits as f64)
    };
    let cpu = line
        .cpu
        .map_or("-".to_string(), |(e, p)| format!("{e:.1}/{p:.1}"));
    println!(
        "{:<8} {:>7} {:>8.1} {:>9.1} {:>6.3} {:>13} {:>13} {:>8} {:>8} {:>8} {:>7} {:>11}",
        op,
        writers,
        line.plain,
        line.emitting,
        line.ratio,
        format!("{:.3}-{:.3}", line.iqr.0, line.iqr.1),
        format!("{:.3}-{:.3}", line.ci.0, line.ci.1),
        per_commit(lock),
        per_commit(turn),
        per_commit(deliver),
        waited,
        cpu
    );
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --benches` this is a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let env = |name: &str| std::env::var(name).ok();
    let rounds = env("WRITERS_ROUNDS")
        .map(|r| r.parse().expect("WRITERS_ROUNDS is a number"))
        .unwrap_or(if full { 100 } else { 2 });
    // A multiple of every writer count.
    let total = env("WRITERS_STATEMENTS")
        .map(|r| r.parse().expect("WRITERS_STATEMENTS is a number"))
        .unwrap_or(if full { 400 } else { 16 });
    let ops: Vec<Op> = env("WRITERS_OPS")
        .unwrap_or_else(|| "insert".into())
        .split(',')
        .map(|op| match op.trim() {
            "insert" => Op::Insert,
            "update" => Op::Update,
            other => panic!("WRITERS_OPS: unknown statement {other:?} (insert, update)"),
        })
        .collect();
    let stay_awake = env("WRITERS_STAY_AWAKE_US")
        .map_or(diesel_emitter::DEFAULT_STAY_AWAKE, |us| {
            Duration::from_micros(us.parse().expect("WRITERS_STAY_AWAKE_US is a number"))
        });
    let histogram = env("WRITERS_HISTOGRAM").is_some();
    let counts: Vec<usize> = env("WRITERS_COUNTS").map_or(WRITERS.to_vec(), |counts| {
        let counts = counts
            .split(',')
            .map(|n| n.trim().parse().expect("WRITERS_COUNTS: numbers"));
        counts
            .inspect(|&n| assert!((1..=MAX_WRITERS).contains(&n), "1 to {MAX_WRITERS} writers"))
            .collect()
    });
    let a_a = env("WRITERS_AA").is_none_or(|a| a != "0");
    let floor = env("WRITERS_FLOOR").is_some();
    let waits = Arc::new(WaitCounter::default());
    tracing::subscriber::set_global_default(Subscriber(waits.clone()))
        .expect("no other subscriber");
    // For comparison: the emitter's cost without delivering to anyone.
    let listening = env("WRITERS_LISTENER").is_none_or(|l| l != "none");
    let mut bench = Bench::new(waits, listening.then_some(stay_awake));

    let listener = if listening {
        format!("a counting listener, stay_awake {stay_awake:?}")
    } else {
        "no listener".into()
    };
    println!(
        "\nwriters committing at once (ABBA interleaved, {rounds} rounds of {total} statements \
         a side, split over the writers; {listener}); medians per \
         statement, median of per-round ratios; waits per emitting commit:"
    );
    print_header();
    for &op in &ops {
        for &n in &counts {
            bench.prepare(op);
            let line = line(&mut bench, op, n, rounds, total, Versus::Emitting);
            print_line(op.name(), &n.to_string(), &line);
            if histogram {
                bench.waits.print_histogram();
            }
        }
        if a_a {
            // The noise floor: plain against plain, 4 writers each.
            bench.prepare(op);
            let line = line(&mut bench, op, 4, rounds, total, Versus::Plain);
            print_line(op.name(), "4 A/A", &line);
        }
        if floor {
            // What capture costs with no emitter: RETURNING against plain.
            for &n in &counts {
                bench.prepare(op);
                let line = line(&mut bench, op, n, rounds, total, Versus::Returning);
                print_line(op.name(), &format!("{n} RET"), &line);
            }
        }
    }
    bench.settle();
    if listening {
        assert_eq!(
            bench.emitter.stats().emitted,
            bench.counted.load(Relaxed),
            "every event reached the listener"
        );
    }
    println!();
}
