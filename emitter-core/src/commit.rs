//! Two-phase commits: events numbered before the database commits, delivered after.
//!
//! With the outbox, a transaction's events must be encoded (with their ids and
//! `seq`) before its COMMIT, to be written into the outbox table inside it, and
//! reach local listeners only after it. Transactions on other connections commit
//! meanwhile; the [`Sequencer`] holds back events numbered later until every
//! earlier transaction committed or rolled back, so listeners still see `seq`
//! increase.

use crate::action::Emit;
use crate::emits::Emits;
use crate::emitter::{Emitter, Shared};
use crate::event::Event;
use crate::outbox::OutboxEntry;
use crate::pending::{Change, PendingEvent};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

/// Hands out `seq` numbers and keeps delivery in their order.
#[derive(Default)]
pub(crate) struct Sequencer {
    /// The last `seq` given out.
    pub(crate) last: u64,
    /// Prepared commits by their first `seq`: `None` while the database commits.
    open: BTreeMap<u64, Option<Ready>>,
}

struct Ready {
    events: Vec<Box<dyn Numbered>>,
    /// False when the outbox carries the events to the broker.
    publish: bool,
}

impl Sequencer {
    pub(crate) fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Every `seq` below this belongs to a transaction that has committed or
    /// rolled back (the outbox relay claims this emitter's rows below it).
    pub(crate) fn settled_below(&self) -> u64 {
        self.open
            .first_key_value()
            .map_or(self.last + 1, |(first, _)| *first)
    }

    /// Queues `events` (numbered from `first`) and delivers everything no earlier
    /// commit holds back.
    pub(crate) fn ready(
        &mut self,
        shared: &Shared,
        first: u64,
        events: Vec<Box<dyn Numbered>>,
        publish: bool,
    ) {
        self.open.insert(first, Some(Ready { events, publish }));
        while let Some(entry) = self.open.first_entry() {
            if entry.get().is_none() {
                break;
            }
            if let Some(ready) = entry.remove() {
                for event in ready.events {
                    event.deliver(shared, ready.publish);
                }
            }
        }
    }

    /// Numbers `events` without delivering them.
    pub(crate) fn number(
        &mut self,
        shared: &Shared,
        events: impl IntoIterator<Item = PendingEvent>,
        committed_at: SystemTime,
    ) -> (u64, Vec<Box<dyn Numbered>>) {
        let first = self.last + 1;
        let numbered = events
            .into_iter()
            .map(|pending| {
                self.last += 1;
                pending
                    .inner
                    .number(pending.emit, self.last, shared, committed_at)
            })
            .collect();
        (first, numbered)
    }
}

/// A numbered event of some model, waiting for delivery.
pub(crate) trait Numbered: Send {
    fn reaches_remote(&self) -> bool;
    fn entry(&self) -> serde_json::Result<OutboxEntry>;
    fn deliver(self: Box<Self>, shared: &Shared, publish: bool);
}

pub(crate) struct NumberedEvent<M> {
    pub(crate) event: Event<M>,
    pub(crate) emit: Emit,
}

impl<M: Emits> NumberedEvent<M> {
    pub(crate) fn new(
        change: Change<M>,
        emit: Emit,
        seq: u64,
        shared: &Shared,
        at: SystemTime,
    ) -> Self {
        NumberedEvent {
            event: crate::dispatch::numbered(change, seq, shared, at),
            emit,
        }
    }
}

impl<M: Emits> Numbered for NumberedEvent<M> {
    fn reaches_remote(&self) -> bool {
        self.emit.reaches_remote()
    }

    fn entry(&self) -> serde_json::Result<OutboxEntry> {
        let payload = crate::wire::encode(&self.event)?;
        Ok(OutboxEntry {
            event_id: self.event.meta.id,
            origin: self.event.meta.origin.clone(),
            seq: self.event.meta.seq,
            table: M::TABLE,
            action: self.event.action,
            // serde_json writes UTF-8 only.
            payload: String::from_utf8(payload).unwrap_or_default(),
        })
    }

    fn deliver(self: Box<Self>, shared: &Shared, publish: bool) {
        if publish && self.emit.reaches_remote() {
            shared.publish(&self.event);
        }
        if self.emit.reaches_local() {
            crate::dispatch::deliver(shared, self.event, |slot| slot.local);
        }
    }
}

/// A transaction's events, numbered before its COMMIT; see [`Emitter::prepare`].
///
/// Call [`committed`](Self::committed) once the database committed. Dropping it
/// instead means the transaction rolled back: its events are discarded.
#[must_use = "call `committed()` after the COMMIT; dropping it discards the events"]
pub struct PreparedCommit {
    shared: Arc<Shared>,
    first: u64,
    events: Vec<Box<dyn Numbered>>,
    in_outbox: bool,
    settled: bool,
}

impl PreparedCommit {
    pub(crate) fn new(emitter: &Emitter, events: Vec<PendingEvent>) -> Self {
        let shared = emitter.shared.clone();
        let (first, events) = if events.is_empty() {
            (0, Vec::new())
        } else {
            let mut sequencer = shared.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
            let (first, numbered) = sequencer.number(&shared, events, SystemTime::now());
            sequencer.open.insert(first, None);
            (first, numbered)
        };
        PreparedCommit {
            shared,
            first,
            events,
            in_outbox: false,
            settled: false,
        }
    }

    /// How many events the transaction produced.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the transaction produced no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The outbox rows for the events that go to the broker, encoded; from now on
    /// these events are published through the outbox only, not directly.
    ///
    /// An event whose row does not serialize is counted as a capture error and
    /// logged (it still reaches local listeners).
    pub fn outbox_entries(&mut self) -> Vec<OutboxEntry> {
        self.in_outbox = true;
        let mut entries = Vec::with_capacity(self.events.len());
        for event in self.events.iter().filter(|e| e.reaches_remote()) {
            match event.entry() {
                Ok(entry) => entries.push(entry),
                Err(error) => self.shared.counters.capture_error_logged(&error),
            }
        }
        entries
    }

    /// The database committed: delivers the events (after any earlier transaction's)
    /// and wakes the outbox relay.
    pub fn committed(mut self) {
        self.settled = true;
        if self.events.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let events = std::mem::take(&mut self.events);
        shared.counters.emitted(events.len() as u64);
        let mut sequencer = shared.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        let events = if shared.shut_down.load(Ordering::Acquire) {
            let n = events.len() as u64;
            shared.counters.dropped(n);
            tracing::warn!(
                events = n,
                "emitter is shut down; committed events not delivered locally"
            );
            Vec::new()
        } else {
            events
        };
        sequencer.ready(&shared, self.first, events, !self.in_outbox);
        drop(sequencer);
        if self.in_outbox {
            shared.kick_outbox();
        }
    }
}

impl Drop for PreparedCommit {
    fn drop(&mut self) {
        if self.settled || self.first == 0 {
            return;
        }
        let shared = self.shared.clone();
        let mut sequencer = shared.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        sequencer.ready(&shared, self.first, Vec::new(), false);
    }
}

impl std::fmt::Debug for PreparedCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedCommit")
            .field("first_seq", &self.first)
            .field("events", &self.events.len())
            .field("in_outbox", &self.in_outbox)
            .finish()
    }
}
