//! Committing: numbering a commit's events under the commit lock, then delivering
//! them in `seq` order without that lock.
//!
//! # Numbering and delivering
//!
//! The commit lock (the [`Sequencer`]'s mutex) is held only to number events and
//! append them, in `seq` order, to the sequencer's `deliverable` list; it is never
//! held while an event is sent to a queue. One thread at a time has the delivery
//! turn (`Sequencer::delivering`, taken and given back under the commit lock): it
//! takes the list's batches one by one and delivers each without the commit lock,
//! blocking on full [`WhenFull::Block`](crate::WhenFull) queues if it must, until
//! the list is empty ("flat combining": whoever has the turn delivers everyone's
//! events, in order).
//!
//! A committer on an ordinary thread that finds the turn taken waits for it (on
//! the `turn` condition variable), so that when
//! [`Emitter::commit`](crate::Emitter::commit) returns its events are in the
//! queues. A committer on a closure listener's own thread never waits for it: it
//! appends its events and returns, and the thread that has the turn delivers them.
//! If it takes the turn itself, a send to its own full queue goes to the
//! listener's backlog instead of blocking (the listener would wait for itself).
//! So a listener's writes never wait on its own queue, and a deliverer blocked on
//! a listener's queue never waits on that listener's writes.
//!
//! Nothing is left undelivered: the turn is given back only in a commit-lock
//! critical section that found the list empty, and an append is made under the
//! same lock; an append that finds the turn taken is therefore seen by its
//! holder before it gives the turn back.
//!
//! # Two-phase commits
//!
//! With the outbox, a transaction's events must be encoded (with their ids and
//! `seq`) before its COMMIT, to be written into the outbox table inside it, and
//! reach local listeners only after it. Transactions on other connections commit
//! meanwhile; the [`Sequencer`] holds back events numbered later until every
//! earlier transaction committed or rolled back, so listeners still see `seq`
//! increase.
//!
//! # Measuring the wait
//!
//! With a subscriber that enables TRACE on the target [`WAIT_TARGET`]
//! (`diesel_emitter::commit_wait`), every settled commit emits one event with the
//! nanoseconds it spent waiting: `lock_ns` to get the commit lock and `turn_ns` for
//! the delivery turn, and `deliver_ns` delivering with the turn (its own batch and
//! others'). Off, this costs one check of the callsite's interest per commit; the
//! clock is read only when the event is wanted.

use crate::dispatch::{listener_thread, Delivery, ListenerCache, Outlet};
use crate::outbox::OutboxEntry;
use crate::pending::PendingEvent;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

/// The `tracing` target of the per-commit wait measurements (see the module
/// documentation).
pub(crate) const WAIT_TARGET: &str = "diesel_emitter::commit_wait";

/// Hands out `seq` numbers and keeps delivery in their order.
#[derive(Default)]
pub(crate) struct Sequencer {
    /// The last `seq` given out.
    pub(crate) last: u64,
    /// Prepared commits by their first `seq`: `None` while the database commits.
    open: BTreeMap<u64, Option<Batch>>,
    /// Batches whose turn came, in `seq` order, for the thread with the delivery turn.
    deliverable: VecDeque<Batch>,
    /// Whether a thread has the delivery turn (see the module documentation).
    delivering: bool,
    /// Ordinary committers waiting for the turn.
    waiting: usize,
    /// The delivery turn's listener lookups, kept from one batch to the next.
    listeners: ListenerCache,
}

/// Numbered events of one commit.
struct Batch {
    events: Vec<PendingEvent>,
    /// False when the outbox carries the events to the broker.
    publish: bool,
}

impl Sequencer {
    /// Every `seq` below this belongs to a transaction that has committed or
    /// rolled back (the outbox relay claims this emitter's rows below it).
    pub(crate) fn settled_below(&self) -> u64 {
        self.open
            .first_key_value()
            .map_or(self.last + 1, |(first, _)| *first)
    }

    /// Drops the delivery turn's listener snapshot, after listeners were removed
    /// (see [`ListenerCache`]).
    pub(crate) fn forget_listeners(&mut self) {
        self.listeners = ListenerCache::default();
    }

    /// Whether every numbered event was delivered (or dropped): nothing waits in
    /// the list and nobody delivers. Shutdown waits for it.
    pub(crate) fn is_idle(&self) -> bool {
        self.deliverable.is_empty() && !self.delivering
    }

    /// Numbers `events` in place, from `last + 1`; returns the first `seq`.
    fn number(
        &mut self,
        events: &mut [PendingEvent],
        commit: &Sequencing<'_>,
        committed_at: SystemTime,
    ) -> u64 {
        let first = self.last + 1;
        for event in events {
            self.last += 1;
            event
                .inner
                .number(self.last, commit.instance, commit.origin, committed_at);
        }
        first
    }

    /// The batch numbered from `first` may be delivered (its database committed,
    /// or it never waited): moves it, and every later batch no earlier one holds
    /// back, to the deliverable list. An empty `batch` only settles `first`.
    fn ready(&mut self, first: u64, batch: Batch) {
        if self.open.is_empty() {
            if !batch.events.is_empty() {
                self.deliverable.push_back(batch);
            }
            return;
        }
        self.open.insert(first, Some(batch));
        while let Some(entry) = self.open.first_entry() {
            if entry.get().is_none() {
                break;
            }
            if let Some(batch) = entry.remove() {
                if !batch.events.is_empty() {
                    self.deliverable.push_back(batch);
                }
            }
        }
    }
}

/// What committing needs of the emitter besides [`Outlets`](crate::dispatch::Outlets).
pub(crate) struct Sequencing<'a> {
    /// The commit lock.
    pub(crate) sequencer: &'a Mutex<Sequencer>,
    /// Signalled when the delivery turn is given back while committers wait.
    pub(crate) turn: &'a Condvar,
    pub(crate) shut_down: &'a AtomicBool,
    pub(crate) origin: &'a Arc<str>,
    pub(crate) instance: u64,
}

/// The emitter as a commit sees it; implemented by the emitter's shared state.
pub(crate) trait Host: Outlet {
    fn sequencing(&self) -> Sequencing<'_>;
    /// Wakes the outbox relay after a commit wrote outbox rows.
    fn outbox_written(&self);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Numbers the events of a commit that already happened and delivers them (after
/// any earlier transaction's); [`Emitter::commit`](crate::Emitter::commit).
pub(crate) fn commit(host: &dyn Host, events: Vec<PendingEvent>) {
    if events.is_empty() {
        return;
    }
    let committed_at = SystemTime::now();
    settle(host, events, None, committed_at, true);
}

/// Hands a batch over to delivery: numbers `events` first unless they were
/// numbered from `prepared` before the database committed, then delivers whatever
/// waits, unless another thread has the delivery turn (see the module documentation).
fn settle(
    host: &dyn Host,
    mut events: Vec<PendingEvent>,
    prepared: Option<u64>,
    committed_at: SystemTime,
    publish: bool,
) {
    let commit = host.sequencing();
    let outlets = host.outlets();
    let me = listener_thread(outlets.registry);
    let timed = tracing::enabled!(target: WAIT_TARGET, tracing::Level::TRACE);
    let start = timed.then(Instant::now);
    let mut sequencer = lock(commit.sequencer);
    let locked = timed.then(Instant::now);
    let mut turn = None;
    // Checked under the commit lock: shutdown takes it before clearing listeners.
    let dropped = commit.shut_down.load(Ordering::Acquire) && !events.is_empty();
    if dropped {
        let n = events.len() as u64;
        if prepared.is_none() {
            outlets.counters.emitted(n);
        }
        outlets.counters.dropped(n);
        tracing::warn!(
            events = n,
            "emitter is shut down; committed events not delivered locally"
        );
        events.clear();
    }
    match prepared {
        // Numbered before its database committed (rolled back: no event left).
        Some(first) => sequencer.ready(first, Batch { events, publish }),
        None if dropped => {}
        None => {
            outlets.counters.emitted(events.len() as u64);
            let first = sequencer.number(&mut events, &commit, committed_at);
            sequencer.ready(first, Batch { events, publish });
        }
    }
    if sequencer.delivering {
        if me.is_some() {
            // A listener's thread never waits for the turn (its holder may be
            // waiting for this very listener to make room): the holder delivers
            // these events before it gives the turn back.
            drop(sequencer);
            trace_wait(start, locked, None, None);
            return;
        }
        let waiting = timed.then(Instant::now);
        sequencer.waiting += 1;
        sequencer = commit
            .turn
            .wait_while(sequencer, |s| s.delivering)
            .unwrap_or_else(|e| e.into_inner());
        sequencer.waiting -= 1;
        turn = waiting.zip(timed.then(Instant::now));
    }
    // Even with nothing of its own (all delivered meanwhile, or settled empty),
    // the thread that takes the turn delivers whatever waits.
    let delivering = timed.then(Instant::now);
    deliver_all(&commit, host, me, sequencer);
    trace_wait(
        start,
        locked,
        turn,
        delivering.zip(timed.then(Instant::now)),
    );
}

/// Emits the wait measurements of one commit on [`WAIT_TARGET`]: from `start` to
/// `locked` (the commit lock), then the spans of waiting for the delivery turn
/// and of delivering, when they happened.
fn trace_wait(
    start: Option<Instant>,
    locked: Option<Instant>,
    turn: Option<(Instant, Instant)>,
    delivering: Option<(Instant, Instant)>,
) {
    let (Some(start), Some(locked)) = (start, locked) else {
        return;
    };
    let nanos = |span: Option<(Instant, Instant)>| {
        span.map_or(0, |(from, to)| (to - from).as_nanos() as u64)
    };
    tracing::trace!(
        target: WAIT_TARGET,
        lock_ns = nanos(Some((start, locked))),
        turn_ns = nanos(turn),
        deliver_ns = nanos(delivering),
        "commit waited"
    );
}

/// Takes the delivery turn and delivers the deliverable list, batch by batch,
/// until it is empty; gives the turn back in the critical section that found it
/// empty.
fn deliver_all<'a>(
    commit: &Sequencing<'a>,
    host: &dyn Host,
    me: Option<u64>,
    mut sequencer: MutexGuard<'a, Sequencer>,
) {
    loop {
        let Some(batch) = sequencer.deliverable.pop_front() else {
            sequencer.delivering = false;
            if sequencer.waiting > 0 {
                commit.turn.notify_all();
            }
            return;
        };
        sequencer.delivering = true;
        let listeners = std::mem::take(&mut sequencer.listeners);
        drop(sequencer);
        let mut delivery = Delivery::new(host.outlets(), me, listeners);
        for event in batch.events {
            event.inner.deliver(&mut delivery, batch.publish);
        }
        let listeners = delivery.into_cache();
        sequencer = lock(commit.sequencer);
        // Kept only while current: a snapshot holds its listeners' senders, and a
        // removed listener's thread ends when the last sender goes.
        if listeners.is_current(host.outlets().registry) {
            sequencer.listeners = listeners;
        }
    }
}

/// A transaction's events, numbered before its COMMIT; see [`Emitter::prepare`](crate::Emitter::prepare).
///
/// Call [`committed`](Self::committed) once the database committed. Dropping it
/// instead means the transaction rolled back: its events are discarded.
#[must_use = "call `committed()` after the COMMIT; dropping it discards the events"]
pub struct PreparedCommit {
    host: Arc<dyn Host>,
    first: u64,
    events: Vec<PendingEvent>,
    in_outbox: bool,
    settled: bool,
}

impl PreparedCommit {
    pub(crate) fn new(host: Arc<dyn Host>, mut events: Vec<PendingEvent>) -> Self {
        let first = if events.is_empty() {
            0
        } else {
            let commit = host.sequencing();
            let mut sequencer = lock(commit.sequencer);
            let first = sequencer.number(&mut events, &commit, SystemTime::now());
            sequencer.open.insert(first, None);
            first
        };
        PreparedCommit {
            host,
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
        let counters = self.host.outlets().counters;
        let mut entries = Vec::with_capacity(self.events.len());
        for event in self
            .events
            .iter()
            .filter(|e| e.inner.emit().reaches_remote())
        {
            match event.inner.outbox_entry() {
                Ok(entry) => entries.push(entry),
                Err(error) => counters.capture_error_logged(&error),
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
        let events = std::mem::take(&mut self.events);
        self.host.outlets().counters.emitted(events.len() as u64);
        settle(
            &*self.host,
            events,
            Some(self.first),
            SystemTime::now(),
            !self.in_outbox,
        );
        if self.in_outbox {
            self.host.outbox_written();
        }
    }
}

impl Drop for PreparedCommit {
    fn drop(&mut self) {
        if self.settled || self.first == 0 {
            return;
        }
        // Rolled back: its numbers are settled with no event, which may release
        // later transactions' events.
        settle(
            &*self.host,
            Vec::new(),
            Some(self.first),
            SystemTime::now(),
            false,
        );
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
