//! SQLite on a file database (WAL, `synchronous = NORMAL`): each write through an
//! `EmittingConnection` (events on, one counting closure listener) side by side with
//! the same statement on a plain `SqliteConnection`.
//!
//! Every group holds an `emitting` and a `plain` function; the ratio of their
//! medians is the cost of events. Inserts empty their table before each sample and
//! updates rewrite the same rows, so the table size stays stable.

mod common;

use common::users::{counting_emitter, users, NewUser, User};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, Bencher, BenchmarkGroup, Criterion};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BULK_ROWS: i32 = 10_000;
const PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;";

struct Bench {
    path: PathBuf,
    /// Runs setup statements that are never measured.
    admin: SqliteConnection,
    emitting: EmittingConnection<SqliteConnection>,
    plain: SqliteConnection,
    /// A second plain connection: the A/A line of the interleaved run (noise floor).
    plain2: SqliteConnection,
    emitter: Emitter,
    counted: Arc<AtomicU64>,
}

fn open(path: &str) -> SqliteConnection {
    let mut conn = SqliteConnection::establish(path).expect("open the SQLite database");
    conn.batch_execute(PRAGMAS).expect("set PRAGMAs");
    conn
}

impl Bench {
    fn new() -> Bench {
        let path =
            std::env::temp_dir().join(format!("emitter-bench-{}.sqlite", std::process::id()));
        remove_database(&path);
        let url = path.to_str().expect("UTF-8 temp path");
        let mut admin = open(url);
        admin
            .batch_execute(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                     email TEXT NOT NULL, active BOOLEAN NOT NULL);",
            )
            .expect("create the benchmark table");
        let (emitter, counted) = counting_emitter(diesel_emitter::DEFAULT_STAY_AWAKE);
        let emitting = EmittingConnection::new(open(url), emitter.clone());
        let plain = open(url);
        let plain2 = open(url);
        Bench {
            path,
            admin,
            emitting,
            plain,
            plain2,
            emitter,
            counted,
        }
    }

    fn setup(&mut self, sql: &str) {
        self.admin.batch_execute(sql).expect("setup statement");
    }

    /// Waits until the listener has run for every event emitted so far.
    fn settle(&self) {
        let emitted = self.emitter.stats().emitted;
        while self.counted.load(Relaxed) < emitted {
            std::thread::yield_now();
        }
    }
}

fn remove_database(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.emitter.shutdown(Duration::from_secs(10));
        remove_database(&self.path);
    }
}

/// Which connection runs a benchmark's statement, and how.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Side {
    /// `execute` on the emitting connection (events on, one counting listener).
    Emitting,
    /// `execute` on a plain `SqliteConnection`.
    Plain,
    /// For reference: the statement with `RETURNING` the model's columns, decoded
    /// into `User`s on a plain connection: what row capture costs without events.
    PlainReturning,
}

impl Side {
    const ALL: [Side; 3] = [Side::Emitting, Side::Plain, Side::PlainReturning];

    fn name(self) -> &'static str {
        match self {
            Side::Emitting => "emitting",
            Side::Plain => "plain",
            Side::PlainReturning => "plain_returning",
        }
    }
}

/// Runs `$query` on the side's connection; the affected row count.
macro_rules! run {
    ($s:expr, $side:expr, $query:expr) => {
        match $side {
            Side::Emitting => $query.execute(&mut $s.emitting),
            Side::Plain => $query.execute(&mut $s.plain),
            Side::PlainReturning => $query
                .returning(User::as_returning())
                .get_results::<User>(&mut $s.plain)
                .map(|rows| rows.len()),
        }
        .expect("benchmark statement")
    };
}

/// Benchmarks `run(bencher, bench, side)` as one function per side of `group`, then
/// waits for the listener to catch up.
fn sides(
    c: &mut Criterion,
    bench: &RefCell<&mut Bench>,
    group: &str,
    configure: impl Fn(&mut BenchmarkGroup<'_, WallTime>),
    mut run: impl FnMut(&mut Bencher<'_>, &mut Bench, Side),
) {
    let mut g = c.benchmark_group(group);
    configure(&mut g);
    for side in Side::ALL {
        g.bench_function(side.name(), |b| {
            let mut s = bench.borrow_mut();
            run(b, &mut s, side);
            s.settle();
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let mut bench = Bench::new();
    // Before measuring: the emitting connection emits here.
    diesel::insert_into(users::table)
        .values((
            users::name.eq("check"),
            users::email.eq("check@example.com"),
            users::active.eq(true),
        ))
        .execute(&mut bench.emitting)
        .unwrap();
    assert_eq!(bench.emitter.stats().emitted, 1, "the insert emitted");
    let bench = RefCell::new(&mut bench);

    // Single-row autocommit INSERT via `execute`; the table is emptied per sample.
    let row = NewUser {
        name: "user 1".into(),
        email: "user1@example.com".into(),
        active: true,
    };
    sides(
        c,
        &bench,
        "sqlite_insert_single",
        |_| {},
        |b, s, side| {
            s.setup("DELETE FROM users");
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    run!(s, side, diesel::insert_into(users::table).values(&row));
                }
                start.elapsed()
            });
        },
    );

    // One UPDATE touching 10,000 rows, the same rows every time.
    let seed = format!(
        "DELETE FROM users;
         WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {BULK_ROWS})
         INSERT INTO users (id, name, email, active)
           SELECT i, 'user ' || i, 'user' || i || '@example.com', 1 FROM g;
         PRAGMA wal_checkpoint(TRUNCATE);"
    );
    bench.borrow_mut().setup(&seed);
    let mut flip = false;
    let config = |g: &mut BenchmarkGroup<'_, WallTime>| {
        g.sample_size(15).measurement_time(Duration::from_secs(6));
    };
    sides(
        c,
        &bench,
        "sqlite_update_10000_rows",
        config,
        |b, s, side| {
            b.iter(|| {
                flip = !flip;
                let n = run!(
                    s,
                    side,
                    diesel::update(users::table.filter(users::id.le(BULK_ROWS)))
                        .set(users::active.eq(flip))
                );
                assert_eq!(n, BULK_ROWS as usize);
            });
        },
    );

    // Both statements again with the two sides interleaved (see `common`).
    let s = &mut **bench.borrow_mut();
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, bulk_rounds) = if full { (300, 30) } else { (2, 2) };
    common::header(&format!(
        "{rounds} rounds of 20 inserts a side, {bulk_rounds} rounds of 1 bulk update"
    ));
    s.setup("DELETE FROM users");
    let nothing = |_: &mut Bench| {};
    // A/A: the same statement on two plain connections; how far from 1.000 noise goes.
    common::interleaved(s, "A/A plain vs plain", rounds, 20, nothing, |s, first| {
        let conn = if first { &mut s.plain2 } else { &mut s.plain };
        diesel::insert_into(users::table)
            .values(&row)
            .execute(conn)
            .expect("benchmark statement");
    });
    common::interleaved(s, "sqlite_insert_single", rounds, 20, nothing, |s, e| {
        let side = if e { Side::Emitting } else { Side::Plain };
        run!(s, side, diesel::insert_into(users::table).values(&row));
    });
    // The floor: what RETURNING and loading the rows with plain Diesel cost alone.
    common::interleaved_as(
        s,
        common::FLOOR,
        ["returning", "plain"],
        rounds,
        20,
        nothing,
        |s, r| {
            let side = if r { Side::PlainReturning } else { Side::Plain };
            run!(s, side, diesel::insert_into(users::table).values(&row));
        },
    );
    s.setup(&seed);
    let settle = |s: &mut Bench| s.settle();
    for (name, sides, capture) in [
        (
            "sqlite_update_10000_rows",
            ["emitting", "plain"],
            Side::Emitting,
        ),
        (
            "  RETURNING alone",
            ["returning", "plain"],
            Side::PlainReturning,
        ),
    ] {
        common::interleaved_as(s, name, sides, bulk_rounds, 1, settle, |s, first| {
            flip = !flip;
            let side = if first { capture } else { Side::Plain };
            let n = run!(
                s,
                side,
                diesel::update(users::table.filter(users::id.le(BULK_ROWS)))
                    .set(users::active.eq(flip))
            );
            assert_eq!(n, BULK_ROWS as usize);
        });
    }
    // Below the floor: RETURNING one integer column, so nearly all that remains is
    // SQLite's own RETURNING machinery (rows buffered in an ephemeral table, no
    // one-pass update), not decoding.
    common::interleaved_as(
        s,
        "  RETURNING id only",
        ["returning", "plain"],
        bulk_rounds,
        1,
        settle,
        |s, first| {
            flip = !flip;
            let query = diesel::update(users::table.filter(users::id.le(BULK_ROWS)))
                .set(users::active.eq(flip));
            let n = if first {
                query
                    .returning(users::id)
                    .get_results::<i32>(&mut s.plain)
                    .map(|ids| ids.len())
            } else {
                query.execute(&mut s.plain)
            }
            .expect("benchmark statement");
            assert_eq!(n, BULK_ROWS as usize);
        },
    );
    s.settle();
    println!();
    assert_eq!(
        s.emitter.stats().emitted,
        s.counted.load(Relaxed),
        "every event reached the listener"
    );
}

criterion_group! {
    name = sqlite;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50);
    targets = benches
}
criterion_main!(sqlite);
