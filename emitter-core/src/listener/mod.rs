//! Listeners: how a model's events reach application code.
//!
//! Every listener owns a bounded queue. A closure listener gets its own thread that
//! drains the queue and calls the closure, catching panics; a `subscribe()` listener
//! hands the queue's receiving end to the caller. Filters run on the committing
//! thread so that events nobody wants are never cloned or queued.
//!
//! This module owns the registry: each model's `ListenerSet` of `Slot`s, as the
//! dispatcher sees them, and the queue options ([`WhenFull`], [`DEFAULT_CAPACITY`])
//! that a slot carries. Configuring and registering a listener is in `builder`, the
//! queue and thread options in `queue`, a closure listener's thread in `thread`, and the handle that removes one in
//! `subscription`.

mod builder;
mod queue;
mod subscription;
mod thread;

pub use builder::ListenerBuilder;
pub use subscription::Subscription;
pub(crate) use thread::panic_message;

use crate::emits::Emits;
use crate::emitter::Shared;
use crate::event::Event;
use crossbeam_channel::Sender;
use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The queue size of a listener unless [`ListenerBuilder::capacity`] says otherwise.
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
/// unless [`ListenerBuilder::stay_awake`] says otherwise: long enough to catch
/// events that come in a burst, short enough to cost nothing noticeable when they
/// come one at a time.
///
/// ```
/// assert_eq!(diesel_emitter::DEFAULT_STAY_AWAKE, std::time::Duration::from_micros(50));
/// ```
pub const DEFAULT_STAY_AWAKE: std::time::Duration = std::time::Duration::from_micros(50);

/// The longest [`ListenerBuilder::stay_awake`] accepted: a thread that spins longer
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
    #[default]
    Block,
    /// The event is dropped for this listener, counted in [`Stats::dropped`](crate::Stats)
    /// and logged; the committing thread goes on at once.
    Drop,
}

type Filter<M> = Box<dyn Fn(&Event<M>) -> bool + Send + Sync>;

/// Removes listener `id` of model `M`, releasing its broker subscription.
pub(crate) fn remove_listener<M: Emits>(shared: &Shared, id: u64) -> bool {
    let Some(slot) = shared
        .existing_listener_set::<M>()
        .and_then(|set| set.remove(id))
    else {
        return false;
    };
    shared.listener_removed();
    shared.detach_remote::<M>(&slot.reach);
    true
}

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

    pub(crate) fn remove(&self, id: u64) -> Option<Arc<Slot<M>>> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let removed = slots.iter().find(|s| s.id == id).cloned()?;
        *slots = slots.iter().filter(|s| s.id != id).cloned().collect();
        Some(removed)
    }

    pub(crate) fn clear(&self) -> usize {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let n = slots.len();
        *slots = Arc::from(Vec::new());
        n
    }
}

/// Type-erased access to a [`ListenerSet`], for shutdown.
pub(crate) trait AnyListenerSet: Any + Send + Sync {
    fn clear(&self) -> usize;
}

impl<M: Emits> AnyListenerSet for ListenerSet<M> {
    fn clear(&self) -> usize {
        ListenerSet::clear(self)
    }
}
