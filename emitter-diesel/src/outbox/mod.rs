//! The outbox tables: [`Outbox`], the store the relay reads, and the SQL each
//! backend writes, claims and deletes rows with.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use diesel::connection::Connection;
use diesel::result::{ConnectionResult, QueryResult};
use emitter_core::outbox::{
    Backlog, ClaimScope, OutboxConfig, OutboxEntry, OutboxError, OutboxRow, OutboxStore,
};
use std::time::Duration;

/// The outbox SQL of one backend.
///
/// Plumbing: implemented for `PgConnection`, `SqliteConnection` and `MysqlConnection`;
/// applications use
/// [`Outbox`].
pub trait OutboxBackend: Connection + Send + 'static {
    /// The statements that create the outbox table `table` and its dead-letter table:
    /// the backend's shipped migration (`emitter-diesel/migrations/<backend>`) with
    /// its tables renamed, so the two cannot drift apart.
    fn create_sql(table: &str) -> String;
    /// Writes `entries` into `table`, inside the caller's transaction.
    fn write_entries(&mut self, table: &str, entries: &[OutboxEntry]) -> QueryResult<()>;
    /// Reads nothing from both tables, failing when either is missing or lacks a
    /// column the outbox uses.
    fn check_tables(&mut self, table: &str) -> QueryResult<()> {
        self.batch_execute(&format!(
            "SELECT id, event_id, origin, seq, table_name, action, payload, created_at, attempts, claimed_until, last_error FROM {table} LIMIT 0; \
             SELECT id, event_id, origin, seq, table_name, action, payload, created_at, attempts, reason, failed_at FROM {table}_dead_letter LIMIT 0;"
        ))
    }
    /// Settings for the relay's own connection, run once when it connects.
    fn prepare_relay(&mut self) -> QueryResult<()> {
        Ok(())
    }
    /// See [`OutboxStore::claim`].
    fn claim_rows(
        &mut self,
        table: &str,
        limit: usize,
        lease: Duration,
        scope: &ClaimScope,
    ) -> QueryResult<Vec<OutboxRow>>;
    /// See [`OutboxStore::remove`].
    fn remove_rows(&mut self, table: &str, ids: &[i64]) -> QueryResult<()>;
    /// Counts a failure of row `id`; returns its attempts so far (`None` if it is gone).
    fn count_failure(&mut self, table: &str, id: i64, reason: &str) -> QueryResult<Option<u32>>;
    /// Moves row `id` to the dead-letter table.
    fn dead_letter(&mut self, table: &str, id: i64, reason: &str) -> QueryResult<()>;
    /// See [`OutboxStore::backlog`].
    fn count_backlog(&mut self, table: &str) -> QueryResult<Backlog>;
}

/// The outbox tables on a connection of type `C`: builds the [`OutboxConfig`] for
/// [`EmitterBuilder::outbox`](emitter_core::EmitterBuilder::outbox), and is the
/// store its relay uses.
///
/// The tables must exist before the emitter is built: run
/// [`create_sql`](Self::create_sql) (or [`create_tables`](Self::create_tables)), or
/// use the migration the repository ships, `emitter-diesel/migrations/{postgres,sqlite,mysql}`:
/// `create_sql` is that migration's `up.sql`, with the tables renamed when the outbox
/// is not [`DEFAULT_TABLE`](emitter_core::outbox::DEFAULT_TABLE).
///
/// ```
/// # use diesel::prelude::*;
/// # use diesel::connection::SimpleConnection;
/// # use diesel_emitter::prelude::*;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use diesel_emitter::Outbox;
///
/// let dir = std::env::temp_dir().join(format!("outbox-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("app.db").display().to_string();
/// Outbox::<SqliteConnection>::create_tables(&mut SqliteConnection::establish(&path)?, "diesel_emitter_outbox")?;
///
/// // With MQTT configured, `build()` checks these tables and starts the relay.
/// let config = Outbox::<SqliteConnection>::url(path).batch(100);
/// assert_eq!(config.table_name(), "diesel_emitter_outbox");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub struct Outbox<C> {
    conn: C,
    table: String,
}

impl<C: OutboxBackend> Outbox<C> {
    /// An outbox whose relay opens its connections with `C::establish(url)`.
    pub fn url(url: impl Into<String>) -> OutboxConfig {
        let url = url.into();
        Self::connect_with(move || C::establish(&url))
    }

    /// An outbox whose relay opens its connections with `connect` (to set options
    /// such as SQLite's `busy_timeout`, or to reuse a pool's settings).
    pub fn connect_with<F>(mut connect: F) -> OutboxConfig
    where
        F: FnMut() -> ConnectionResult<C> + Send + 'static,
    {
        OutboxConfig::new(move |table| {
            let mut conn = connect().map_err(|e| OutboxError::Connect(e.to_string()))?;
            conn.prepare_relay()
                .map_err(|e| OutboxError::Connect(e.to_string()))?;
            Ok(Box::new(Outbox::<C> {
                conn,
                table: table.to_owned(),
            }) as Box<dyn OutboxStore>)
        })
    }

    /// The SQL that creates the outbox table `table` and `{table}_dead_letter`.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// use diesel_emitter::Outbox;
    ///
    /// let sql = Outbox::<SqliteConnection>::create_sql("diesel_emitter_outbox");
    /// assert!(sql.contains("CREATE TABLE IF NOT EXISTS diesel_emitter_outbox_dead_letter"));
    /// ```
    pub fn create_sql(table: &str) -> String {
        C::create_sql(table)
    }

    /// Runs [`create_sql`](Self::create_sql) on `conn`.
    pub fn create_tables(conn: &mut C, table: &str) -> Result<(), OutboxError> {
        emitter_core::outbox::validate_table(table)?;
        conn.batch_execute(&C::create_sql(table)).map_err(database)
    }
}

fn database(error: diesel::result::Error) -> OutboxError {
    OutboxError::Database(error.to_string())
}

impl<C: OutboxBackend> OutboxStore for Outbox<C> {
    fn check(&mut self) -> Result<(), OutboxError> {
        self.conn
            .check_tables(&self.table)
            .map_err(|e| OutboxError::MissingTable {
                table: self.table.clone(),
                reason: e.to_string(),
            })
    }

    fn claim(
        &mut self,
        limit: usize,
        lease: Duration,
        scope: &ClaimScope,
    ) -> Result<Vec<OutboxRow>, OutboxError> {
        let mut rows = self
            .conn
            .claim_rows(&self.table, limit, lease, scope)
            .map_err(database)?;
        // RETURNING promises no order.
        rows.sort_unstable_by_key(|row| (row.seq, row.id));
        Ok(rows)
    }

    fn remove(&mut self, ids: &[i64]) -> Result<(), OutboxError> {
        self.conn.remove_rows(&self.table, ids).map_err(database)
    }

    fn fail(&mut self, id: i64, reason: &str, max_attempts: u32) -> Result<bool, OutboxError> {
        let table = &self.table;
        self.conn
            .transaction(|conn| match conn.count_failure(table, id, reason)? {
                Some(attempts) if attempts >= max_attempts => {
                    conn.dead_letter(table, id, reason)?;
                    Ok(true)
                }
                _ => Ok(false),
            })
            .map_err(database)
    }

    fn backlog(&mut self) -> Result<Backlog, OutboxError> {
        self.conn.count_backlog(&self.table).map_err(database)
    }
}

/// Rows as the claim statements return them.
#[derive(diesel::QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    action: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    payload: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

impl From<Claimed> for OutboxRow {
    fn from(row: Claimed) -> Self {
        OutboxRow::new(
            row.id,
            row.table_name,
            row.action,
            row.payload,
            u32::try_from(row.attempts).unwrap_or(0),
        )
        .with_seq(u64::try_from(row.seq).unwrap_or(0))
    }
}

#[derive(diesel::QueryableByName)]
struct Attempts {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    attempts: i32,
}

#[derive(diesel::QueryableByName)]
struct BacklogRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    waiting: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    oldest: Option<f64>,
}

impl From<BacklogRow> for Backlog {
    fn from(row: BacklogRow) -> Self {
        Backlog {
            rows: u64::try_from(row.waiting).unwrap_or(0),
            oldest: row
                .oldest
                .map(|secs| Duration::from_secs_f64(secs.max(0.0))),
        }
    }
}

/// A shipped migration's `up.sql` (which creates `diesel_emitter_outbox` and
/// `diesel_emitter_outbox_dead_letter`) for the outbox table `table`.
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
fn renamed(up_sql: &str, table: &str) -> String {
    up_sql.replace(emitter_core::outbox::DEFAULT_TABLE, table)
}

#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
fn only<T>(mut rows: Vec<T>) -> Option<T> {
    rows.pop()
}

#[cfg(test)]
mod tests {
    use super::OutboxBackend;
    use emitter_core::outbox::DEFAULT_TABLE;

    /// A file of the migration the repository ships for `backend`.
    fn shipped(backend: &str, file: &str) -> String {
        let path = format!(
            "{}/migrations/{backend}/2026-11-27-000000_diesel_emitter_outbox/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// `create_sql` is the shipped `up.sql` for the default table, and the same
    /// statements with both tables renamed for another.
    fn create_sql_is_the_shipped_migration<C: OutboxBackend>(backend: &str) {
        let up = shipped(backend, "up.sql");
        assert_eq!(C::create_sql(DEFAULT_TABLE), up);
        let jobs = C::create_sql("jobs_outbox");
        assert!(!jobs.contains(DEFAULT_TABLE), "{jobs}");
        assert!(
            jobs.contains("CREATE TABLE IF NOT EXISTS jobs_outbox ("),
            "{jobs}"
        );
        assert!(
            jobs.contains("CREATE TABLE IF NOT EXISTS jobs_outbox_dead_letter ("),
            "{jobs}"
        );
        assert_eq!(jobs.replace("jobs_outbox", DEFAULT_TABLE), up);
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_create_sql_is_the_shipped_migration() {
        create_sql_is_the_shipped_migration::<diesel::pg::PgConnection>("postgres");
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn mysql_create_sql_is_the_shipped_migration() {
        create_sql_is_the_shipped_migration::<diesel::mysql::MysqlConnection>("mysql");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_create_sql_is_the_shipped_migration() {
        create_sql_is_the_shipped_migration::<diesel::sqlite::SqliteConnection>("sqlite");
    }

    /// The shipped SQLite migration, run as it is, makes the tables the outbox checks
    /// for, and its `down.sql` removes them; `create_tables` under another name makes
    /// tables the outbox accepts under that name. (The PostgreSQL and MySQL
    /// migrations run in tests/outbox.rs and tests/mysql_outbox.rs.)
    #[cfg(feature = "sqlite")]
    #[test]
    fn the_shipped_sqlite_migration_makes_the_tables_the_outbox_checks() {
        use diesel::connection::{Connection, SimpleConnection};
        use diesel::sqlite::SqliteConnection;
        let mut conn = SqliteConnection::establish(":memory:").expect("in-memory SQLite");
        assert!(conn.check_tables(DEFAULT_TABLE).is_err(), "no tables yet");
        conn.batch_execute(&shipped("sqlite", "up.sql"))
            .expect("up.sql runs");
        conn.check_tables(DEFAULT_TABLE)
            .expect("up.sql made the outbox's tables");
        conn.batch_execute(&shipped("sqlite", "down.sql"))
            .expect("down.sql runs");
        assert!(
            conn.check_tables(DEFAULT_TABLE).is_err(),
            "down.sql dropped them"
        );

        super::Outbox::<SqliteConnection>::create_tables(&mut conn, "jobs_outbox")
            .expect("create_tables under another name");
        conn.check_tables("jobs_outbox")
            .expect("the renamed tables");
        assert!(
            conn.check_tables(DEFAULT_TABLE).is_err(),
            "nothing under the default name"
        );
    }
}
