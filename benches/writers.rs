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
//! last two are CPU time per statement, emitting side / plain side: this process's
//! (all its threads, from `/proc/self/stat`), our own cost, which wall time on a
//! busy 2-core machine hides in its noise; and the PostgreSQL server's (every
//! `postgres` process, from `/proc/<pid>/schedstat`), which is where `RETURNING`
//! costs most. On a machine whose cores the writers saturate, wall time follows
//! the sum of the two.
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
#[path = "writers/table.rs"]
mod table;
#[path = "writers/waits.rs"]
mod waits;

use common::cpu;
use common::users::{counting_emitter, users, NewUser, User};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use table::{print_header, print_line, summary, Line};
use waits::{Subscriber, WaitCounter, Waits};

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

/// Interleaved rounds (ABBA) of `total` statements over `n` writers a side, `versus`
/// (in the emitting side's columns) against plain.
fn line(s: &mut Bench, op: Op, n: usize, rounds: usize, total: usize, versus: Versus) -> Line {
    let warm_up = rounds / 10;
    // What `block` runs: `total` split evenly.
    let statements = total / n * n;
    let (mut emitting, mut plain, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut waits = Waits::default();
    // CPU microseconds of this process, then of the server, by side.
    let mut spent = [[0.0f64; 2]; 2];
    let mut measured = [true; 2];
    for round in 0..warm_up + rounds {
        let mut micros = [0.0; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            s.settle();
            let before = s.waits.read();
            let cpu_before = [cpu::this_process_us(), cpu::postgres_us()];
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
            let cpu_after = [cpu::this_process_us(), cpu::postgres_us()];
            for (whose, (after, before)) in cpu_after.into_iter().zip(cpu_before).enumerate() {
                match (after, before) {
                    (Some(after), Some(before)) if round >= warm_up => {
                        spent[whose][side] += after - before;
                    }
                    (Some(_), Some(_)) => {}
                    _ => measured[whose] = false,
                }
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
    let per_statement = |whose: usize| {
        let [emitting, plain] = spent[whose].map(|us| us / (rounds * statements) as f64);
        measured[whose].then_some((emitting, plain))
    };
    Line {
        cpu: per_statement(0),
        server: per_statement(1),
        plain: summary(&mut plain).0,
        emitting: summary(&mut emitting).0,
        ratio,
        iqr,
        ci,
        waits,
    }
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
