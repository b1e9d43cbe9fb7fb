//! [`PendingEvent`]: a captured change waiting for its transaction to commit.
//!
//! The connection wrapper knows the model type only while it decodes a row; after
//! that the event waits in a transaction frame next to events of other models, so it
//! is kept type-erased here, in one allocation, through its whole life: captured,
//! numbered in place under the commit lock (and encoded for the outbox), then
//! delivered by itself as a typed [`Event`](crate::Event).

use crate::action::{Action, Audience};
use crate::dispatch::{local_meta, Delivery};
use crate::emits::Emits;
use crate::event::Event;
use crate::outbox::OutboxEntry;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// One captured row change, not yet committed.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let emitter = Emitter::builder().node_id("api-1").build()?;
/// use diesel_emitter::integration::PendingEvent;
///
/// let pending = PendingEvent::new(Action::Insert, User { id: 1, name: "Ada".into() }, vec!["id", "name"].into(), Audience::All);
/// assert_eq!((pending.table(), pending.action(), pending.emit()), ("users", Action::Insert, Audience::All));
/// emitter.commit([pending]);
/// assert_eq!(emitter.stats().emitted, 1);
/// # Ok(())
/// # }
/// ```
pub struct PendingEvent {
    pub(crate) inner: Box<dyn AnyEvent>,
}

impl PendingEvent {
    /// Captures a change of `row` made by `action`; `changed` lists the assigned columns.
    pub fn new<M: Emits>(
        action: Action,
        row: M,
        changed: Arc<[&'static str]>,
        emit: Audience,
    ) -> Self {
        PendingEvent {
            inner: Box::new(Typed {
                emit,
                stage: Stage::Captured(Change {
                    action,
                    row,
                    changed,
                }),
            }),
        }
    }

    /// The table of the changed row.
    pub fn table(&self) -> &'static str {
        self.inner.table()
    }

    /// The kind of change.
    pub fn action(&self) -> Action {
        self.inner.action()
    }

    /// Where this event is allowed to go.
    pub fn emit(&self) -> Audience {
        self.inner.emit()
    }
}

impl fmt::Debug for PendingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingEvent")
            .field("table", &self.table())
            .field("action", &self.action())
            .field("emit", &self.emit())
            .finish()
    }
}

/// An event of some model, type-erased: captured, then numbered, then delivered.
pub(crate) trait AnyEvent: Send {
    fn table(&self) -> &'static str;
    fn action(&self) -> Action;
    fn emit(&self) -> Audience;
    /// Makes it the local event number `seq` of emitter `origin`.
    fn number(&mut self, seq: u64, instance: u64, origin: &Arc<str>, committed_at: SystemTime);
    /// Its outbox row (once numbered).
    fn outbox_entry(&self) -> serde_json::Result<OutboxEntry>;
    /// Publishes it (when `publish` and its [`Audience`] allow) and queues it for the
    /// local listeners that want it.
    fn deliver(self: Box<Self>, to: &mut Delivery<'_>, publish: bool);
}

struct Change<M> {
    action: Action,
    row: M,
    changed: Arc<[&'static str]>,
}

enum Stage<M> {
    Captured(Change<M>),
    Numbered(Event<M>),
    /// Only while `number` moves the change into the event.
    Moving,
}

struct Typed<M> {
    emit: Audience,
    stage: Stage<M>,
}

impl<M: Emits> AnyEvent for Typed<M> {
    fn table(&self) -> &'static str {
        M::TABLE
    }

    fn action(&self) -> Action {
        match &self.stage {
            Stage::Captured(change) => change.action,
            Stage::Numbered(event) => event.action,
            Stage::Moving => unreachable!("an event is never seen while it is numbered"),
        }
    }

    fn emit(&self) -> Audience {
        self.emit
    }

    fn number(&mut self, seq: u64, instance: u64, origin: &Arc<str>, committed_at: SystemTime) {
        let Stage::Captured(change) = std::mem::replace(&mut self.stage, Stage::Moving) else {
            unreachable!("an event is numbered once");
        };
        self.stage = Stage::Numbered(Event {
            action: change.action,
            row: change.row,
            changed: change.changed,
            meta: local_meta::<M>(seq, instance, origin, committed_at),
        });
    }

    fn outbox_entry(&self) -> serde_json::Result<OutboxEntry> {
        let Stage::Numbered(event) = &self.stage else {
            return Err(serde::ser::Error::custom(
                "an event is encoded once numbered",
            ));
        };
        let payload = crate::wire::encode(event)?;
        Ok(OutboxEntry {
            event_id: event.meta.id,
            origin: event.meta.origin.clone(),
            seq: event.meta.seq,
            table: M::TABLE,
            action: event.action,
            // serde_json writes UTF-8 only.
            payload: String::from_utf8(payload).unwrap_or_default(),
        })
    }

    fn deliver(self: Box<Self>, to: &mut Delivery<'_>, publish: bool) {
        let Stage::Numbered(event) = self.stage else {
            unreachable!("an event is delivered once numbered");
        };
        if publish && self.emit.reaches_remote() {
            to.publish(&event);
        }
        if self.emit.reaches_local() {
            to.local(event);
        }
    }
}
