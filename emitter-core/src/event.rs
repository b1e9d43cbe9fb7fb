//! [`Event`] and [`EventMeta`]: what a listener receives.

use crate::action::{Action, Source};
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

/// Where an event comes from and how to tell it apart from every other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// Unique per event, also across nodes; receivers deduplicate by it.
    pub id: Uuid,
    /// The table the row belongs to.
    pub table: &'static str,
    /// The node id of the emitter that committed the write.
    pub origin: Arc<str>,
    /// Increases by one with every event an origin commits, in commit order.
    pub seq: u64,
    /// Whether this node committed the write or received it from another.
    pub source: Source,
    /// When the write's transaction committed (all events of a commit share it).
    pub committed_at: SystemTime,
}

/// One committed change to one row of a model's table.
///
/// `row` is the row after the write; for [`Action::Delete`] it is the deleted row.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<T> {
    /// Insert, update or delete.
    pub action: Action,
    /// The row, decoded into the model.
    pub row: T,
    /// Identity, origin and timing.
    pub meta: EventMeta,
    pub(crate) changed: Arc<[&'static str]>,
}

impl<T> Event<T> {
    /// The columns the statement assigned, by database name: every column for an
    /// insert and a delete, the `SET` columns for an update (the `DO UPDATE SET`
    /// columns for the update branch of an upsert).
    pub fn changed(&self) -> &[&'static str] {
        &self.changed
    }

    /// Whether the statement assigned `column`.
    pub fn did_change(&self, column: &str) -> bool {
        self.changed.contains(&column)
    }

    /// Builds an event from its parts; meant for tests of listener code.
    pub fn new(action: Action, row: T, meta: EventMeta, changed: Arc<[&'static str]>) -> Self {
        Event {
            action,
            row,
            meta,
            changed,
        }
    }
}
