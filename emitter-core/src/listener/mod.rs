//! Listeners: how a model's events reach application code.
//!
//! Every listener owns a bounded queue. A closure listener gets its own thread that
//! drains the queue and calls the closure, catching panics; a `subscribe()` listener
//! hands the queue's receiving end to the caller. Filters run on the committing
//! thread so that events nobody wants are never cloned or queued.
//!
//! This module owns the [`Registry`]: each model's `ListenerSet` of `Slot`s, as the
//! dispatcher sees them, the listener count and the closure listeners' threads,
//! and the queue options ([`WhenFull`], [`DEFAULT_CAPACITY`]) that a slot carries.
//! It is the bottom of the core: dispatch reads the registry, commits drive
//! dispatch, the emitter holds them all, and nothing here knows the emitter. A
//! closure listener's thread (and its backlog) is in `thread`. Configuring and
//! registering a listener ([`ListenerBuilder`](crate::ListenerBuilder)) and the
//! handle that removes one ([`Subscription`](crate::Subscription)) belong to the
//! emitter, which they need: `emitter/listen/` and `emitter/subscription.rs`.

pub(crate) mod thread;

pub(crate) use thread::{current_listener, panic_message, run_listener, Backlog};

use crate::emits::Emits;
use crate::event::Event;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// The queue size of a listener unless [`ListenerBuilder::capacity`](crate::ListenerBuilder::capacity) says otherwise.
///
/// ```
/// assert_eq!(diesel_emitter::DEFAULT_CAPACITY, 10_000);
/// ```
pub const DEFAULT_CAPACITY: usize = 10_000;

/// The most memory one listener's queue may take: a queue is allocated in full
/// when its listener registers, `capacity × (size_of::<Event<M>>() + 8)` bytes, so
/// a capacity beyond this is refused with [`Error::CapacityTooLarge`](crate::Error)
/// rather than allocated (or, past what the machine has, aborting the process).
///
/// ```
/// assert_eq!(diesel_emitter::MAX_QUEUE_BYTES, 1 << 30);
/// ```
pub const MAX_QUEUE_BYTES: usize = 1 << 30;

/// What one queued event of model `M` takes in a listener's queue: the event and
/// the channel's per-slot stamp.
pub(crate) fn slot_bytes<M>() -> usize {
    std::mem::size_of::<Event<M>>() + std::mem::size_of::<usize>()
}

/// How long a closure listener's thread polls for the next event before it sleeps,
/// unless [`ListenerBuilder::stay_awake`](crate::ListenerBuilder::stay_awake) says otherwise: long enough to catch
/// events that come in a burst, short enough to cost little when they come one at
/// a time (and a listener whose last wait was longer does not poll at all).
///
/// ```
/// assert_eq!(diesel_emitter::DEFAULT_STAY_AWAKE, std::time::Duration::from_micros(50));
/// ```
pub const DEFAULT_STAY_AWAKE: std::time::Duration = std::time::Duration::from_micros(50);

/// The longest [`ListenerBuilder::stay_awake`](crate::ListenerBuilder::stay_awake) accepted: a thread that spins longer
/// after each event is a busy loop, not a wait.
///
/// ```
/// assert_eq!(diesel_emitter::MAX_STAY_AWAKE, std::time::Duration::from_millis(10));
/// ```
pub const MAX_STAY_AWAKE: std::time::Duration = std::time::Duration::from_millis(10);

/// What happens when a listener's queue is full.
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// // A best-effort listener: a full queue drops its events instead of holding up commits.
/// let rx = emitter.on::<User>().capacity(1).when_full(WhenFull::Drop).subscribe();
/// diesel::insert_into(users::table)
///     .values(&vec![(users::id.eq(1), users::name.eq("a")), (users::id.eq(2), users::name.eq("b"))])
///     .execute(&mut conn)?;
///
/// assert_eq!(rx.recv()?.row.id, 1);
/// assert_eq!(emitter.stats().dropped, 1, "the second event found the queue full");
/// # Ok(())
/// # }
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// The committing thread waits until the listener makes room: nothing is lost.
    /// A closure listener's own writes through the same emitter never wait on its
    /// own queue: their events wait in a backlog the listener takes after it.
    #[default]
    Block,
    /// The event is dropped for this listener, counted in [`Stats::dropped`](crate::Stats)
    /// and logged; the committing thread goes on at once.
    Drop,
}

pub(crate) type Filter<M> = Box<dyn Fn(&Event<M>) -> bool + Send + Sync>;

/// Which broker stream feeds a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Local events only.
    None,
    /// Also (or only) other nodes' events, from the plain subscription.
    Remote,
    /// Every node's events, from the group's shared subscription.
    Group(Arc<str>),
}

#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Closure,
    Receiver,
}

/// One listener as the dispatcher sees it.
pub(crate) struct Slot<M> {
    pub(crate) id: u64,
    pub(crate) label: String,
    pub(crate) actions: u8,
    pub(crate) filter: Option<Filter<M>>,
    pub(crate) tx: Sender<Event<M>>,
    pub(crate) when_full: WhenFull,
    pub(crate) kind: Kind,
    pub(crate) closed: AtomicBool,
    /// Receives this node's events directly.
    pub(crate) local: bool,
    pub(crate) reach: Reach,
    /// Events for a closure listener that its own thread delivered while its queue
    /// was full (see [`Backlog`]); shared with that thread, which drains it after
    /// the queue.
    pub(crate) backlog: Arc<Backlog<Event<M>>>,
}

impl<M> Slot<M> {
    pub(crate) fn mark_closed(&self) -> bool {
        !self.closed.swap(true, Ordering::Relaxed)
    }
}

/// The listeners of one model. Dispatch takes a snapshot (an `Arc` clone) so that
/// a committer blocked on a full queue never holds this lock.
pub(crate) struct ListenerSet<M> {
    slots: RwLock<Arc<[Arc<Slot<M>>]>>,
    _model: PhantomData<fn() -> M>,
}

impl<M> ListenerSet<M> {
    pub(crate) fn new() -> Self {
        ListenerSet {
            slots: RwLock::new(Arc::from(Vec::new())),
            _model: PhantomData,
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<[Arc<Slot<M>>]> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn add(&self, slot: Arc<Slot<M>>) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<_> = slots.iter().cloned().collect();
        next.push(slot);
        *slots = next.into();
    }

    fn remove(&self, id: u64) -> Option<Arc<Slot<M>>> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let removed = slots.iter().find(|s| s.id == id).cloned()?;
        *slots = slots.iter().filter(|s| s.id != id).cloned().collect();
        Some(removed)
    }

    fn clear(&self) -> usize {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let n = slots.len();
        *slots = Arc::from(Vec::new());
        n
    }
}

/// Type-erased access to a [`ListenerSet`], for shutdown.
trait AnyListenerSet: Any + Send + Sync {
    fn clear(&self) -> usize;
}

impl<M: Emits> AnyListenerSet for ListenerSet<M> {
    fn clear(&self) -> usize {
        ListenerSet::clear(self)
    }
}

type SetEntry = (Arc<dyn Any + Send + Sync>, Arc<dyn AnyListenerSet>);

/// Every listener of one emitter: the listener sets by model, their count, and
/// the closure listeners' threads with what shutdown needs to wait for them.
pub(crate) struct Registry {
    /// Unique in the process: a closure listener's thread is marked with it, so
    /// that a commit can tell that it runs on a listener thread of this emitter.
    id: u64,
    sets: RwLock<HashMap<TypeId, SetEntry>>,
    listener_ids: AtomicU64,
    listeners: AtomicU64,
    /// Changes whenever a listener is added or removed: a listener snapshot taken
    /// at one value is current while it holds.
    generation: AtomicU64,
    /// Every closure listener's thread holds a clone of this sender; when all are
    /// gone the receiver disconnects, which is how shutdown knows they finished.
    done_tx: Mutex<Option<Sender<()>>>,
    done_rx: Receiver<()>,
    /// Closure listeners' threads, joined by shutdown once `done_rx` says they
    /// finished: the token goes just before the thread ends, not after.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let (done_tx, done_rx) = crossbeam_channel::bounded(0);
        Registry {
            id: IDS.fetch_add(1, Ordering::Relaxed) + 1,
            sets: RwLock::new(HashMap::new()),
            listener_ids: AtomicU64::new(0),
            listeners: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            done_tx: Mutex::new(Some(done_tx)),
            done_rx,
            threads: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// See the field; read on every delivered event, written only when the
    /// listeners change.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// How many listeners are registered.
    pub(crate) fn count(&self) -> u64 {
        self.listeners.load(Ordering::Relaxed)
    }

    pub(crate) fn next_listener_id(&self) -> u64 {
        self.listener_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Adds `slot` to its model's set.
    pub(crate) fn add<M: Emits>(&self, slot: Arc<Slot<M>>) {
        self.listener_set::<M>().add(slot);
        self.changed();
        self.listeners.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes listener `id` of model `M`; the caller releases its broker
    /// subscription.
    pub(crate) fn remove<M: Emits>(&self, id: u64) -> Option<Arc<Slot<M>>> {
        let slot = self.existing_listener_set::<M>()?.remove(id)?;
        self.changed();
        self.listeners.fetch_sub(1, Ordering::Relaxed);
        Some(slot)
    }

    /// Removes every listener (shutdown).
    pub(crate) fn clear(&self) {
        let sets: Vec<_> = {
            let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
            sets.values().map(|(_, set)| set.clone()).collect()
        };
        for set in sets {
            let removed = set.clear() as u64;
            self.listeners.fetch_sub(removed, Ordering::Relaxed);
        }
        self.changed();
    }

    pub(crate) fn done_token(&self) -> Option<Sender<()>> {
        self.done_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps a closure listener's thread for shutdown to join.
    pub(crate) fn keep_thread(&self, thread: std::thread::JoinHandle<()>) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        // Unsubscribed listeners' threads end by themselves: keep the list short.
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }

    /// Waits until every closure listener's thread finished, at most until
    /// `deadline`; false if one still runs. Listener threads started afterwards
    /// get no token.
    pub(crate) fn wait_threads(&self, deadline: Instant) -> bool {
        drop(
            self.done_tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        loop {
            match self.done_rx.recv_deadline(deadline) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// Joins the finished listener threads, so that none is left running.
    pub(crate) fn join_threads(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
    }

    pub(crate) fn existing_listener_set<M: Emits>(&self) -> Option<Arc<ListenerSet<M>>> {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        let (any, _) = sets.get(&TypeId::of::<M>())?;
        any.clone().downcast::<ListenerSet<M>>().ok()
    }

    fn listener_set<M: Emits>(&self) -> Arc<ListenerSet<M>> {
        if let Some(set) = self.existing_listener_set::<M>() {
            return set;
        }
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        let (any, _) = sets.entry(TypeId::of::<M>()).or_insert_with(|| {
            let set = Arc::new(ListenerSet::<M>::new());
            (set.clone(), set)
        });
        any.clone()
            .downcast::<ListenerSet<M>>()
            .unwrap_or_else(|_| unreachable!("listener sets are keyed by their model's TypeId"))
    }
}
