//! Helpers shared by the PostgreSQL and SQLite integration tests: isolated
//! databases (a schema per test, a file per test) behind one [`Harness`] trait, the
//! models, bounded receives and a recorder of the SQL a connection runs.
//!
//! The tests both backends share are written once, in `neutral.rs` next to this file;
//! see there how a test binary runs them. Every test file uses a different subset of
//! these helpers.
#![allow(dead_code)]

use diesel::connection::{InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel_emitter::connection::EmittingBackend;
use diesel_emitter::crossbeam_channel::{Receiver, RecvTimeoutError};
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a test waits for an event it expects.
pub const TIMEOUT: Duration = Duration::from_secs(5);

diesel::table! {
    users (id) {
        id -> Int4,
        name -> Text,
        email -> Text,
        active -> Bool,
    }
}

/// The model every test listens to.
#[derive(
    Queryable,
    Selectable,
    Identifiable,
    AsChangeset,
    Serialize,
    Deserialize,
    Clone,
    Debug,
    PartialEq,
    Emits,
)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub active: bool,
}

/// A new user: `id` and `active` come from the database's defaults.
#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub name: String,
    pub email: String,
}

impl NewUser {
    pub fn named(name: &str) -> Self {
        NewUser {
            name: name.to_owned(),
            email: format!("{name}@example.com"),
        }
    }
}

/// All columns of `users`, in the model's order.
pub const USER_COLUMNS: [&str; 4] = ["id", "name", "email", "active"];

/// A name unique across threads, processes and runs: `prefix_pid_counter_nanos`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A fresh emitter with a node id unique to the test.
pub fn emitter(test: &str) -> Emitter {
    Emitter::builder()
        .node_id(unique_name(test))
        .build()
        .expect("emitter builds")
}

/// The next event, waiting at most [`TIMEOUT`].
#[track_caller]
pub fn recv<T: Debug>(rx: &Receiver<Event<T>>) -> Event<T> {
    match rx.recv_timeout(TIMEOUT) {
        Ok(event) => event,
        Err(RecvTimeoutError::Timeout) => panic!("no event within {TIMEOUT:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("the listener's channel closed"),
    }
}

/// The next `n` events, each waited for at most [`TIMEOUT`].
#[track_caller]
pub fn recv_n<T: Debug>(rx: &Receiver<Event<T>>, n: usize) -> Vec<Event<T>> {
    (0..n).map(|_| recv(rx)).collect()
}

/// Asserts that nothing is waiting in `rx` right now.
#[track_caller]
pub fn assert_empty<T: Debug>(rx: &Receiver<Event<T>>) {
    if let Ok(event) = rx.try_recv() {
        panic!("expected no event, got {event:?}");
    }
}

/// Asserts that the next event is the insert of the sentinel row named `name`:
/// every write committed before the sentinel delivered nothing to this listener.
#[track_caller]
pub fn assert_next_is_sentinel(rx: &Receiver<Event<User>>, name: &str) {
    let event = recv(rx);
    assert_eq!(
        (event.action, event.row.name.as_str()),
        (Action::Insert, name),
        "expected the sentinel insert next, got {event:?}"
    );
}

/// Sorted column names, to compare `changed()` without depending on order.
pub fn sorted(columns: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    v.sort();
    v
}

/// Asserts that `seq` strictly increases along `events`.
#[track_caller]
pub fn assert_seq_increasing<T>(events: &[Event<T>]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].meta.seq < pair[1].meta.seq,
            "seq must strictly increase: {} then {}",
            pair[0].meta.seq,
            pair[1].meta.seq
        );
    }
}

/// Records the SQL of every query a connection starts (diesel's Instrumentation).
#[derive(Clone, Default)]
pub struct QueryLog(Arc<Mutex<Vec<String>>>);

impl QueryLog {
    /// Installs a recorder on `conn` and returns its log.
    pub fn install<C: Connection>(conn: &mut C) -> QueryLog {
        let log = QueryLog::default();
        let sink = log.0.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                sink.lock().unwrap().push(query.to_string());
            }
        });
        log
    }

    /// The queries recorded since the last call (SQL and binds, as `debug_query` shows them).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The SQL part of a `debug_query` / instrumentation rendering (without `-- binds: ...`).
pub fn sql_part(rendered: &str) -> &str {
    rendered
        .split_once(" -- binds: ")
        .map_or(rendered, |(sql, _)| sql)
}

/// Whether rendered SQL has a RETURNING clause.
pub fn has_returning(sql: &str) -> bool {
    sql_part(sql).to_ascii_uppercase().contains(" RETURNING ")
}

// ---------------------------------------------------------------- the harness

/// What a backend's test fixture provides: a database of its own for one test (dropped
/// with the fixture), connections to it, and the few SQL and connection details that
/// differ between backends. Implemented by [`PgSchema`] and [`SqliteDb`].
pub trait Harness: Sized {
    /// The backend's plain connection (`PgConnection`, `SqliteConnection`).
    type Plain: EmittingBackend + R2D2Connection;

    /// `CREATE TABLE users`, matching [`users`]: `id` and `active` have defaults.
    const USERS_DDL: &'static str;

    /// The SQL type of an `INT4` primary key the database fills in, for `CREATE TABLE`.
    const AUTO_ID: &'static str;

    /// The migrations of `tests/migrations/<backend>`: one, which creates `users`.
    const MIGRATIONS: EmbeddedMigrations;

    /// How many rounds each thread of the r2d2 test writes.
    const R2D2_ROUNDS: usize;

    /// An empty database for the test named `test`.
    fn new(test: &str) -> Self;

    /// A plain connection to the database.
    fn plain(&self) -> Self::Plain;

    /// An emitting connection to the database, emitting through `emitter`.
    fn emitting(&self, emitter: &Emitter) -> EmittingConnection<Self::Plain>;

    /// An r2d2 pool of emitting connections to the database; they emit through the
    /// global emitter (`Emitter::set_global`).
    fn pool(&self, max_size: u32) -> Pool<ConnectionManager<EmittingConnection<Self::Plain>>>;

    /// Runs `f` in a transaction meant to write, as concurrent writers should begin
    /// one on this backend.
    fn write_transaction<T>(
        conn: &mut EmittingConnection<Self::Plain>,
        f: impl FnOnce(&mut EmittingConnection<Self::Plain>) -> QueryResult<T>,
    ) -> QueryResult<T>;

    /// An empty database with the `users` table.
    fn with_users(test: &str) -> Self {
        let db = Self::new(test);
        db.plain().batch_execute(Self::USERS_DDL).unwrap();
        db
    }
}

/// Runs a batch of SQL on every connection an r2d2 pool opens.
#[derive(Debug)]
pub struct OnAcquire(pub String);

impl<C: SimpleConnection> diesel::r2d2::CustomizeConnection<C, diesel::r2d2::Error> for OnAcquire {
    fn on_acquire(&self, conn: &mut C) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&self.0)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The rows of `table`, counted on `conn`.
pub fn count_rows<C>(conn: &mut C, table: &str) -> i64
where
    C: Connection,
    for<'a> diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'a, C, RowCount>,
{
    diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .get_result::<RowCount>(conn)
        .unwrap_or_else(|e| panic!("count the rows of {table}: {e}"))
        .n
}

/// What [`count_rows`] reads.
#[derive(QueryableByName)]
pub struct RowCount {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

// ---------------------------------------------------------------- PostgreSQL

/// The PostgreSQL the tests use: `DATABASE_URL`, or the local trust-auth server.
pub fn pg_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A schema of its own for one test; dropped (CASCADE) when the guard drops.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    /// `SET search_path TO <schema>`, to run on every connection of the test.
    pub fn search_path_sql(&self) -> String {
        format!("SET search_path TO \"{}\"", self.name)
    }
}

impl Harness for PgSchema {
    type Plain = PgConnection;

    const USERS_DDL: &'static str = "CREATE TABLE users (
        id SERIAL PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE,
        active BOOLEAN NOT NULL DEFAULT TRUE
    )";
    const AUTO_ID: &'static str = "SERIAL PRIMARY KEY";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations/postgres");
    const R2D2_ROUNDS: usize = 20;

    fn new(test: &str) -> PgSchema {
        let name = unique_name(&format!("de_{test}"))
            .chars()
            .take(63)
            .collect::<String>()
            .to_ascii_lowercase();
        let mut admin = PgConnection::establish(&pg_url()).expect("PostgreSQL is reachable");
        admin
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .expect("create the test schema");
        PgSchema { name }
    }

    /// A plain connection with the schema as its search path.
    fn plain(&self) -> PgConnection {
        let mut conn = PgConnection::establish(&pg_url()).expect("PostgreSQL is reachable");
        conn.batch_execute(&self.search_path_sql())
            .expect("set search_path");
        conn
    }

    /// An emitting connection with the schema as its search path.
    fn emitting(&self, emitter: &Emitter) -> EmittingConnection<PgConnection> {
        let mut conn = EmittingConnection::new(
            PgConnection::establish(&pg_url()).expect("PostgreSQL is reachable"),
            emitter.clone(),
        );
        // batch_execute is never captured.
        conn.batch_execute(&self.search_path_sql())
            .expect("set search_path");
        conn
    }

    /// Pooled connections get the schema as their search path.
    fn pool(&self, max_size: u32) -> Pool<ConnectionManager<EmittingConnection<PgConnection>>> {
        Pool::builder()
            .max_size(max_size)
            .connection_customizer(Box::new(OnAcquire(self.search_path_sql())))
            .build(ConnectionManager::new(pg_url()))
            .unwrap()
    }

    /// A plain `transaction`.
    fn write_transaction<T>(
        conn: &mut EmittingConnection<PgConnection>,
        f: impl FnOnce(&mut EmittingConnection<PgConnection>) -> QueryResult<T>,
    ) -> QueryResult<T> {
        conn.transaction(f)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        match PgConnection::establish(&pg_url()) {
            Ok(mut admin) => {
                if let Err(e) =
                    admin.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name))
                {
                    eprintln!("could not drop schema {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("could not drop schema {}: {e}", self.name),
        }
    }
}

// ---------------------------------------------------------------- SQLite

/// A SQLite database file of its own for one test (WAL); removed when the guard drops.
pub struct SqliteDb {
    pub path: PathBuf,
}

impl SqliteDb {
    /// The file's path, which is its connection URL.
    pub fn url(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temp path")
    }
}

impl Harness for SqliteDb {
    type Plain = SqliteConnection;

    const USERS_DDL: &'static str = "CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        email TEXT NOT NULL UNIQUE,
        active BOOLEAN NOT NULL DEFAULT 1
    )";
    const AUTO_ID: &'static str = "INTEGER PRIMARY KEY";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations/sqlite");
    // SQLite runs one writer at a time.
    const R2D2_ROUNDS: usize = 15;

    fn new(test: &str) -> SqliteDb {
        let dir = std::env::temp_dir().join("diesel-emitter-tests");
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        let path = dir.join(format!("{}.db", unique_name(test)));
        let db = SqliteDb { path };
        // Switch the file to WAL once; the mode is persistent.
        db.plain()
            .batch_execute("PRAGMA journal_mode = WAL;")
            .expect("WAL mode");
        db
    }

    /// A plain connection to the file.
    fn plain(&self) -> SqliteConnection {
        let mut conn = SqliteConnection::establish(self.url()).expect("open the SQLite file");
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
            .expect("pragmas");
        conn
    }

    /// An emitting connection to the file.
    fn emitting(&self, emitter: &Emitter) -> EmittingConnection<SqliteConnection> {
        let mut conn = EmittingConnection::new(
            SqliteConnection::establish(self.url()).expect("open the SQLite file"),
            emitter.clone(),
        );
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
            .expect("pragmas");
        conn
    }

    /// Pooled connections wait up to 10 s for the write lock.
    fn pool(&self, max_size: u32) -> Pool<ConnectionManager<EmittingConnection<SqliteConnection>>> {
        Pool::builder()
            .max_size(max_size)
            .connection_customizer(Box::new(OnAcquire("PRAGMA busy_timeout = 10000;".into())))
            .build(ConnectionManager::new(self.url()))
            .unwrap()
    }

    /// `immediate_transaction`: it takes the write lock at BEGIN, so concurrent writers
    /// wait for it (busy_timeout) instead of failing to upgrade a read lock.
    fn write_transaction<T>(
        conn: &mut EmittingConnection<SqliteConnection>,
        f: impl FnOnce(&mut EmittingConnection<SqliteConnection>) -> QueryResult<T>,
    ) -> QueryResult<T> {
        conn.immediate_transaction(f)
    }
}

fn remove_if_present(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!("could not remove {}: {e}", path.display());
        }
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            remove_if_present(Path::new(&p));
        }
    }
}
