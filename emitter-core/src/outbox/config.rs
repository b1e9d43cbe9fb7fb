//! [`OutboxConfig`]: where the outbox lives and how its relay behaves.

use super::store::{validate_table, OutboxError, OutboxStore};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The outbox table's default name; its dead-letter table adds `_dead_letter`.
pub const DEFAULT_TABLE: &str = "diesel_emitter_outbox";

type Connect = dyn FnMut(&str) -> Result<Box<dyn OutboxStore>, OutboxError> + Send;

/// The durable outbox: with it, a transaction writes its events into an outbox table
/// just before it commits, and a relay thread publishes them and deletes each row
/// once the broker acknowledged it.
///
/// Build one with `diesel_emitter::Outbox` (which knows the connection types) and
/// hand it to [`EmitterBuilder::outbox`](crate::EmitterBuilder::outbox).
///
/// ```
/// use diesel_emitter::outbox::{OutboxConfig, OutboxError};
/// use std::time::Duration;
///
/// // A store of your own: any `OutboxStore`.
/// let config = OutboxConfig::new(|table| Err(OutboxError::Connect(format!("no database for {table}"))))
///     .table("events.outbox")
///     .batch(200)
///     .max_attempts(5)
///     .poll_interval(Duration::from_millis(250));
/// assert_eq!(config.table_name(), "events.outbox");
/// ```
#[derive(Clone)]
#[must_use]
pub struct OutboxConfig {
    pub(crate) connect: Arc<Mutex<Connect>>,
    pub(crate) table: String,
    pub(crate) batch: usize,
    pub(crate) poll_interval: Duration,
    pub(crate) lease: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) relay: bool,
}

impl OutboxConfig {
    /// An outbox whose relay reaches the tables through the stores `connect` opens
    /// (called with the table name, again after the relay lost its connection).
    pub fn new<F>(connect: F) -> Self
    where
        F: FnMut(&str) -> Result<Box<dyn OutboxStore>, OutboxError> + Send + 'static,
    {
        OutboxConfig {
            connect: Arc::new(Mutex::new(connect)),
            table: DEFAULT_TABLE.to_owned(),
            batch: 500,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            max_attempts: 3,
            relay: true,
        }
    }

    /// The outbox table, optionally schema-qualified (default
    /// [`DEFAULT_TABLE`]); the dead-letter table is the same name plus `_dead_letter`.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// How many rows a relay claims at once (default 500).
    pub fn batch(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// How often the relay looks for rows other processes left, such as a process
    /// that crashed after committing (default 500 ms). This process's own commits
    /// wake it at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a claimed row stays reserved for the relay that took it (default
    /// 30 s); after that another relay may publish it again (receivers drop the copy
    /// by id).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// After how many failed publishes a row moves to the dead-letter table
    /// (default 3). A publish fails when the broker refuses it (too large, say), not
    /// while the broker is merely away.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Whether this emitter runs a relay (default true). A process that only writes
    /// can leave publishing to the relays of other processes.
    pub fn relay(mut self, run: bool) -> Self {
        self.relay = run;
        self
    }

    /// The outbox table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The dead-letter table's name.
    pub fn dead_letter_table(&self) -> String {
        format!("{}_dead_letter", self.table)
    }

    pub(crate) fn validate(&self) -> Result<(), OutboxError> {
        validate_table(&self.table)
    }

    pub(crate) fn open_store(&self) -> Result<Box<dyn OutboxStore>, OutboxError> {
        let mut connect = self.connect.lock().unwrap_or_else(|e| e.into_inner());
        (connect)(&self.table)
    }
}

impl fmt::Debug for OutboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxConfig")
            .field("table", &self.table)
            .field("batch", &self.batch)
            .field("poll_interval", &self.poll_interval)
            .field("lease", &self.lease)
            .field("max_attempts", &self.max_attempts)
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}
