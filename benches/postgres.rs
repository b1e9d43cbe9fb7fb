//! PostgreSQL over loopback: each write through an `EmittingConnection` (events on,
//! one counting closure listener) side by side with the same statement on a plain
//! `PgConnection`.
//!
//! Every group holds an `emitting` and a `plain` function; the ratio of their
//! medians is the cost of events. Set `DATABASE_URL` to use another server.
//!
//! Table sizes stay stable: inserts empty their table before each sample (not
//! measured), deletes remove rows seeded before each sample (not measured), and
//! updates rewrite the same rows, vacuumed before each sample (not measured).

mod common;

use common::users::{counting_emitter, users, NewUser, User};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BatchSize, Bencher, BenchmarkGroup, Criterion};
use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_dsl::methods::ExecuteDsl;
use diesel::sql_types::Integer;
use diesel_emitter::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

diesel::table! { audit_log (id) { id -> Int4, name -> Text, email -> Text, active -> Bool } }

/// A row for `COPY FROM`, which takes every value given (no `DEFAULT`s).
#[derive(Insertable)]
#[diesel(table_name = users, treat_none_as_default_value = false)]
struct CopiedUser {
    name: String,
    email: String,
    active: bool,
}

const BATCH_ROWS: usize = 1_000;
const BULK_ROWS: i32 = 10_000;
/// Rows kept in `users` for the update-by-key benchmark; updates cycle over them.
const KEYED_ROWS: i32 = 1_000;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The benchmark's schema, created on first use and dropped when the bench ends.
struct Bench {
    schema: String,
    /// Runs setup statements (truncate, seed, vacuum) that are never measured.
    admin: PgConnection,
    emitting: EmittingConnection<PgConnection>,
    plain: PgConnection,
    /// A second plain connection: the A/A line of the interleaved run (noise floor).
    plain2: PgConnection,
    emitter: Emitter,
    counted: Arc<AtomicU64>,
    /// An emitting connection whose listener stays awake `AWAKE` after each event.
    awake: EmittingConnection<PgConnection>,
    awake_emitter: Emitter,
    awake_counted: Arc<AtomicU64>,
    next_id: i32,
}

/// The `stay_awake` of the `awake` connection's listener: longer than the time
/// between two single-row statements here, so it never sleeps between them.
const AWAKE: Duration = Duration::from_micros(500);

impl Bench {
    fn new() -> Bench {
        let url = database_url();
        let schema = format!("emitter_bench_{}", std::process::id());
        let mut admin = PgConnection::establish(&url).expect("connect to PostgreSQL");
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE;
                 CREATE SCHEMA {schema};
                 SET search_path TO {schema};
                 CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT NOT NULL,
                                     email TEXT NOT NULL, active BOOLEAN NOT NULL);
                 CREATE TABLE audit_log (id SERIAL PRIMARY KEY, name TEXT NOT NULL,
                                         email TEXT NOT NULL, active BOOLEAN NOT NULL);"
            ))
            .expect("create the benchmark schema");
        let (emitter, counted) = counting_emitter(diesel_emitter::DEFAULT_STAY_AWAKE);
        let (awake_emitter, awake_counted) = counting_emitter(AWAKE);
        let mut emitting = EmittingConnection::new(
            PgConnection::establish(&url).expect("connect to PostgreSQL"),
            emitter.clone(),
        );
        let mut plain = PgConnection::establish(&url).expect("connect to PostgreSQL");
        let search_path = format!("SET search_path TO {schema}");
        emitting.batch_execute(&search_path).unwrap();
        plain.batch_execute(&search_path).unwrap();
        let mut awake = EmittingConnection::new(
            PgConnection::establish(&url).expect("connect to PostgreSQL"),
            awake_emitter.clone(),
        );
        awake.batch_execute(&search_path).unwrap();
        let mut plain2 = PgConnection::establish(&url).expect("connect to PostgreSQL");
        plain2.batch_execute(&search_path).unwrap();
        Bench {
            schema,
            admin,
            emitting,
            plain,
            plain2,
            emitter,
            counted,
            awake,
            awake_emitter,
            awake_counted,
            next_id: 1_000_000,
        }
    }

    fn setup(&mut self, sql: &str) {
        self.admin.batch_execute(sql).expect("setup statement");
    }

    /// Empties `table` and fills it with rows `1..=rows`.
    fn seed(&mut self, table: &str, rows: i32) {
        self.setup(&format!(
            "TRUNCATE {table} RESTART IDENTITY;
             INSERT INTO {table} (id, name, email, active)
               SELECT g, 'user ' || g, 'user' || g || '@example.com', true
               FROM generate_series(1, {rows}) g;
             SELECT setval(pg_get_serial_sequence('{table}', 'id'), {rows});"
        ));
        // VACUUM cannot run in the implicit transaction of a multi-statement batch.
        self.setup(&format!("VACUUM ANALYZE {table}"));
    }

    /// Waits until the listeners have run for every event emitted so far.
    fn settle(&self) {
        for (emitter, counted) in [
            (&self.emitter, &self.counted),
            (&self.awake_emitter, &self.awake_counted),
        ] {
            let emitted = emitter.stats().emitted;
            while counted.load(Relaxed) < emitted {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        let _ = self.emitter.shutdown(Duration::from_secs(10));
        let _ = self.awake_emitter.shutdown(Duration::from_secs(10));
    }
}

fn new_user(i: usize) -> NewUser {
    NewUser {
        name: format!("user {i}"),
        email: format!("user{i}@example.com"),
        active: i.is_multiple_of(2),
    }
}

/// Which connection runs a benchmark's statement, and how.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Side {
    /// `execute` on the emitting connection (events on, one counting listener).
    Emitting,
    /// `execute` on a plain `PgConnection`.
    Plain,
    /// For reference: the statement with `RETURNING` the model's columns, decoded
    /// into `User`s on a plain connection: what row capture costs without events.
    PlainReturning,
    /// `execute` on the emitting connection whose listener stays awake `AWAKE`.
    Awake,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Emitting => "emitting",
            Side::Plain => "plain",
            Side::PlainReturning => "plain_returning",
            Side::Awake => "awake",
        }
    }
}

const PAIR: &[Side] = &[Side::Emitting, Side::Plain];
const WITH_RETURNING: &[Side] = &[Side::Emitting, Side::Plain, Side::PlainReturning];

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
            Side::Awake => $query.execute(&mut $s.awake),
        }
        .expect("benchmark statement")
    };
}

// Declared after `run!`, which it uses.
#[path = "postgres/interleaved.rs"]
mod interleaved;
use interleaved::interleaved;

/// Runs `query` on the emitting or the plain connection (no `RETURNING` variant).
fn exec<Q>(s: &mut Bench, side: Side, query: Q) -> usize
where
    Q: ExecuteDsl<EmittingConnection<PgConnection>, Pg> + ExecuteDsl<PgConnection, Pg>,
{
    let n = match side {
        Side::Emitting => {
            ExecuteDsl::<EmittingConnection<PgConnection>, Pg>::execute(query, &mut s.emitting)
        }
        Side::Plain => ExecuteDsl::<PgConnection, Pg>::execute(query, &mut s.plain),
        Side::Awake => {
            ExecuteDsl::<EmittingConnection<PgConnection>, Pg>::execute(query, &mut s.awake)
        }
        Side::PlainReturning => unreachable!("no RETURNING variant for this statement"),
    };
    n.expect("benchmark statement")
}

/// Benchmarks `run(bencher, bench, side)` as one function per side of `group`, then
/// waits for the listener to catch up so that no work leaks into the next function.
fn pair(
    c: &mut Criterion,
    bench: &RefCell<&mut Bench>,
    group: &str,
    sides: &[Side],
    configure: impl Fn(&mut BenchmarkGroup<'_, WallTime>),
    mut run: impl FnMut(&mut Bencher<'_>, &mut Bench, Side),
) {
    let mut g = c.benchmark_group(group);
    configure(&mut g);
    for &side in sides {
        g.bench_function(side.name(), |b| {
            let mut s = bench.borrow_mut();
            run(b, &mut s, side);
            s.settle();
        });
    }
    g.finish();
}

fn single_row(c: &mut Criterion, bench: &RefCell<&mut Bench>) {
    let row = new_user(1);
    let defaults = |_: &mut BenchmarkGroup<'_, WallTime>| {};

    // Single-row autocommit INSERT via `execute`; the table is emptied per sample.
    pair(
        c,
        bench,
        "pg_insert_single",
        WITH_RETURNING,
        defaults,
        |b, s, side| {
            s.setup("TRUNCATE users");
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    run!(s, side, diesel::insert_into(users::table).values(&row));
                }
                start.elapsed()
            });
        },
    );

    // UPDATE by primary key, cycling over a fixed set of rows.
    bench.borrow_mut().seed("users", KEYED_ROWS);
    let mut key = 0;
    pair(
        c,
        bench,
        "pg_update_by_key",
        PAIR,
        defaults,
        |b, s, side| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    key = key % KEYED_ROWS + 1;
                    let name = if key % 2 == 0 { "renamed" } else { "original" };
                    let query = diesel::update(users::table.find(key)).set(users::name.eq(name));
                    assert_eq!(exec(s, side, query), 1);
                }
                start.elapsed()
            });
        },
    );

    // DELETE by primary key: the rows to delete are inserted before each sample.
    pair(
        c,
        bench,
        "pg_delete_by_key",
        PAIR,
        defaults,
        |b, s, side| {
            b.iter_custom(|iters| {
                let first = s.next_id;
                s.next_id += iters as i32;
                s.setup(&format!(
                    "INSERT INTO users (id, name, email, active)
                   SELECT g, 'gone ' || g, 'gone' || g || '@example.com', false
                   FROM generate_series({first}, {}) g",
                    s.next_id - 1
                ));
                let start = Instant::now();
                for id in first..s.next_id {
                    assert_eq!(exec(s, side, diesel::delete(users::table.find(id))), 1);
                }
                start.elapsed()
            });
        },
    );

    // A table without an `Emits` model: the wrapper must pass it through untouched.
    pair(
        c,
        bench,
        "pg_insert_no_model",
        PAIR,
        defaults,
        |b, s, side| {
            s.setup("TRUNCATE audit_log");
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let query = diesel::insert_into(audit_log::table).values((
                        audit_log::name.eq(&row.name),
                        audit_log::email.eq(&row.email),
                        audit_log::active.eq(row.active),
                    ));
                    exec(s, side, query);
                }
                start.elapsed()
            });
        },
    );
}

fn bulk(c: &mut Criterion, bench: &RefCell<&mut Bench>) {
    // One INSERT of 1,000 rows into an emptied table.
    let rows: Vec<NewUser> = (0..BATCH_ROWS).map(new_user).collect();
    let config = |g: &mut BenchmarkGroup<'_, WallTime>| {
        g.sample_size(20).measurement_time(Duration::from_secs(5));
    };
    let group = "pg_insert_batch_1000";
    pair(c, bench, group, WITH_RETURNING, config, |b, s, side| {
        let s = RefCell::new(s);
        b.iter_batched(
            || s.borrow_mut().setup("TRUNCATE users"),
            |()| {
                let mut s = s.borrow_mut();
                let n = run!(s, side, diesel::insert_into(users::table).values(&rows));
                assert_eq!(n, BATCH_ROWS);
            },
            BatchSize::PerIteration,
        );
    });

    // One UPDATE touching 10,000 rows, the same rows every time. Each update leaves
    // 10,000 dead row versions, so the table is vacuumed before every iteration (not
    // measured) and brought to that steady state first: otherwise whichever side runs
    // first pays for growing the table.
    bench.borrow_mut().seed("users", BULK_ROWS);
    for _ in 0..2 {
        let mut s = bench.borrow_mut();
        s.setup("UPDATE users SET active = NOT active");
        s.setup("VACUUM users");
    }
    let mut flip = false;
    let config = |g: &mut BenchmarkGroup<'_, WallTime>| {
        g.sample_size(15).measurement_time(Duration::from_secs(8));
    };
    let group = "pg_update_10000_rows";
    pair(c, bench, group, WITH_RETURNING, config, |b, s, side| {
        let s = RefCell::new(s);
        b.iter_batched(
            || s.borrow_mut().setup("VACUUM users"),
            |()| {
                flip = !flip;
                let mut s = s.borrow_mut();
                let n = run!(
                    s,
                    side,
                    diesel::update(users::table.filter(users::id.le(BULK_ROWS)))
                        .set(users::active.eq(flip))
                );
                assert_eq!(n, BULK_ROWS as usize);
            },
            BatchSize::PerIteration,
        );
    });
}

/// Checks, before measuring, that the emitting connection really emits here and
/// that the two connections run the same statements.
fn sanity(bench: &mut Bench) {
    bench.seed("users", 1);
    let before = bench.emitter.stats().emitted;
    diesel::update(users::table.find(1))
        .set(users::name.eq("checked"))
        .execute(&mut bench.emitting)
        .unwrap();
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::name.eq("x"),
            audit_log::email.eq("x@example.com"),
            audit_log::active.eq(true),
        ))
        .execute(&mut bench.emitting)
        .unwrap();
    let n = diesel::sql_query("SELECT count(*)::int4 AS n FROM users")
        .get_result::<Count>(&mut bench.plain)
        .unwrap()
        .n;
    assert_eq!(n, 1, "both connections see the benchmark schema");
    assert_eq!(
        bench.emitter.stats().emitted,
        before + 1,
        "one event for the users update, none for audit_log"
    );
    bench.settle();
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = Integer)]
    n: i32,
}

fn benches(c: &mut Criterion) {
    let mut bench = Bench::new();
    sanity(&mut bench);
    {
        let bench = RefCell::new(&mut bench);
        single_row(c, &bench);
        bulk(c, &bench);
    }
    // `cargo bench` passes `--bench`; under `cargo test --benches` this is a smoke run.
    interleaved(&mut bench, std::env::args().any(|a| a == "--bench"));
    assert_eq!(
        bench.emitter.stats().emitted,
        bench.counted.load(Relaxed),
        "every event reached the listener"
    );
    assert_eq!(
        bench.awake_emitter.stats().emitted,
        bench.awake_counted.load(Relaxed),
        "every event reached the listener that stays awake"
    );
}

criterion_group! {
    name = postgres;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50);
    targets = benches
}
criterion_main!(postgres);
