//! What the relay needs from the database: [`OutboxStore`], and the rows it moves.
//!
//! The store is implemented next to the connection types (in `emitter-diesel`), so
//! this crate keeps knowing nothing of Diesel.

use crate::action::Action;
pub use crate::error::OutboxError;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// One event as the committing transaction writes it into the outbox.
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let emitter = Emitter::builder().node_id("api-1").build()?;
/// use diesel_emitter::integration::PendingEvent;
///
/// let row = User { id: 1, name: "Ada".into() };
/// let mut prepared = emitter.prepare(vec![PendingEvent::new(Action::Insert, row, vec!["id", "name"].into(), Audience::All)]);
/// let entry = &prepared.outbox_entries()[0];
/// assert_eq!((entry.table, entry.action, entry.seq, &*entry.origin), ("users", Action::Insert, 1, "api-1"));
/// assert!(entry.payload.starts_with(r#"{"v":1,"#));
/// prepared.committed();
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxEntry {
    /// The event's id, as in the envelope.
    pub event_id: Uuid,
    /// The node that committed it.
    pub origin: Arc<str>,
    /// Its per-origin sequence number.
    pub seq: u64,
    /// The changed table.
    pub table: &'static str,
    /// The kind of change.
    pub action: Action,
    /// The whole envelope, as JSON, unsigned: the relay signs it when it publishes.
    pub payload: String,
}

/// One outbox row claimed by a relay.
///
/// ```
/// use diesel_emitter::outbox::OutboxRow;
///
/// let row = OutboxRow::new(7, "users", "insert", r#"{"v":1}"#, 0);
/// assert_eq!((row.id, row.table.as_str(), row.attempts), (7, "users", 0));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxRow {
    /// The row's key in the outbox table, in the order rows were written.
    pub id: i64,
    /// The changed table.
    pub table: String,
    /// `insert`, `update` or `delete`.
    pub action: String,
    /// The envelope, as written.
    pub payload: String,
    /// How many times publishing it failed before.
    pub attempts: u32,
    /// The event's per-origin sequence number; the relay publishes a claim in
    /// this order.
    pub seq: u64,
}

impl OutboxRow {
    /// A row as a store read it.
    pub fn new(
        id: i64,
        table: impl Into<String>,
        action: impl Into<String>,
        payload: impl Into<String>,
        attempts: u32,
    ) -> Self {
        OutboxRow {
            id,
            table: table.into(),
            action: action.into(),
            payload: payload.into(),
            attempts,
            seq: 0,
        }
    }

    /// The row with its event's sequence number.
    ///
    /// ```
    /// use diesel_emitter::outbox::OutboxRow;
    ///
    /// let row = OutboxRow::new(7, "users", "insert", r#"{"v":1}"#, 0).with_seq(42);
    /// assert_eq!(row.seq, 42);
    /// ```
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }
}

/// Which rows a relay may claim, so that its own emitter's events reach the broker
/// in `seq` order.
///
/// A transaction's events are numbered just before its `COMMIT`, and transactions
/// on other connections commit in between: a row can become visible before a row
/// numbered earlier. So a relay claims the rows of its own emitter (event ids from
/// `first_id` to `last_id`) only below `below_seq`, under which every transaction
/// has committed or rolled back, and claims in `seq` order. Rows of other emitters
/// (writers built with `relay(false)`, another run of this node) are claimed at
/// once, also in `seq` order; as their writer's settled `seq` is unknown here, two
/// of their transactions that commit at the same moment may still cross.
///
/// ```
/// use diesel_emitter::outbox::ClaimScope;
///
/// let scope = ClaimScope::new("api-1", 0x1234, 43);
/// assert!(scope.first_id < scope.last_id);
/// assert_eq!((&*scope.origin, scope.below_seq), ("api-1", 43));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimScope {
    /// The relay's own node id.
    pub origin: Arc<str>,
    /// The smallest event id its emitter gives out.
    pub first_id: Uuid,
    /// The largest event id its emitter gives out.
    pub last_id: Uuid,
    /// Its own rows with a `seq` below this are settled: claimable.
    pub below_seq: u64,
}

impl ClaimScope {
    /// The scope of the emitter with node id `origin` and event-id prefix
    /// `instance`, whose transactions below `below_seq` are all settled.
    pub fn new(origin: impl Into<Arc<str>>, instance: u64, below_seq: u64) -> Self {
        ClaimScope {
            origin: origin.into(),
            first_id: crate::dispatch::event_id(instance, 0),
            last_id: crate::dispatch::event_id(instance, u64::MAX),
            below_seq,
        }
    }
}

/// How far the relays are behind: rows waiting in the outbox and the age of the oldest.
///
/// ```
/// use diesel_emitter::outbox::Backlog;
/// use std::time::Duration;
///
/// let backlog = Backlog { rows: 3, oldest: Some(Duration::from_millis(250)) };
/// assert_eq!(backlog.rows, 3);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Rows waiting (claimed or not).
    pub rows: u64,
    /// How long the oldest has waited, by the database's clock.
    pub oldest: Option<Duration>,
}

/// The outbox tables as a relay uses them.
///
/// Implemented by `diesel_emitter::Outbox` for PostgreSQL and SQLite; implement it
/// to keep the outbox elsewhere. Every method runs in a short transaction of its own:
/// a claim marks rows as taken until its lease ends, so no transaction stays open
/// while the broker is asked.
pub trait OutboxStore: Send {
    /// Fails unless both tables exist and can be read.
    fn check(&mut self) -> Result<(), OutboxError>;

    /// Takes up to `limit` rows that `scope` allows, lowest `seq` first, skipping
    /// rows another relay holds, and marks them as taken for `lease`. Returns them
    /// in `seq` order.
    fn claim(
        &mut self,
        limit: usize,
        lease: Duration,
        scope: &ClaimScope,
    ) -> Result<Vec<OutboxRow>, OutboxError>;

    /// Deletes rows the broker acknowledged.
    fn remove(&mut self, ids: &[i64]) -> Result<(), OutboxError>;

    /// Records a failed publish of row `id`. Once it failed `max_attempts` times the
    /// row moves to the dead-letter table with `reason`; returns whether it did.
    fn fail(&mut self, id: i64, reason: &str, max_attempts: u32) -> Result<bool, OutboxError>;

    /// Counts the rows waiting.
    fn backlog(&mut self) -> Result<Backlog, OutboxError>;
}

/// Checks that `name` can be an outbox table: a plain SQL identifier (letters,
/// digits, `_`), optionally qualified by a schema.
///
/// ```
/// use diesel_emitter::outbox::validate_table;
///
/// assert!(validate_table("events.diesel_emitter_outbox").is_ok());
/// assert!(validate_table("outbox; DROP TABLE users").is_err());
/// ```
pub fn validate_table(name: &str) -> Result<(), OutboxError> {
    let ident = |part: &str| {
        part.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && part.len() <= 50
    };
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| ident(p)) {
        Ok(())
    } else {
        Err(OutboxError::InvalidTable(name.to_owned()))
    }
}
