//! Delivery: handing numbered events to the listeners that want them, and to the
//! broker.
//!
//! Dispatch knows the listener registry and the counters, and of the broker only
//! what the [`Transport`] trait says; it does not know the emitter or how commits are numbered
//! (`commit.rs` drives it, one batch at a time, in `seq` order).

use crate::action::Source;
use crate::emits::Emits;
use crate::event::{Event, EventMeta};
use crate::listener::{current_listener, Kind, Reach, Registry, Slot, WhenFull};
use crate::stats::Counters;
use crate::transport::{Route, Transport};
use crossbeam_channel::{SendError, TrySendError};
use std::any::{Any, TypeId};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

mod remote;

pub(crate) use remote::ModelSink;

/// What delivery works with, lent by the emitter.
#[derive(Clone, Copy)]
pub(crate) struct Outlets<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) counters: &'a Counters,
    pub(crate) transport: Option<&'a dyn Transport>,
}

/// Lends [`Outlets`]; the emitter implements it (a trait, so that the broker
/// stream's sink can hold the emitter weakly without knowing its type).
pub(crate) trait Outlet: Send + Sync {
    fn outlets(&self) -> Outlets<'_>;
}

/// The delivery of numbered events, batch after batch.
pub(crate) struct Delivery<'a> {
    to: Outlets<'a>,
    /// The closure listener whose thread delivers, when it is one of this
    /// registry's: its own full queue must not block it (see `send`).
    me: Option<u64>,
    listeners: ListenerCache,
}

/// The listeners of the model delivered last, kept from one batch to the next
/// by the thread that has the delivery turn: a commit's events are mostly rows of
/// one table, and one commit follows another, so they are looked up again only
/// when the model or the registry's generation changes rather than for every
/// row (a lock, a map lookup and reference counts each time; the benches show it).
/// Whoever removes a listener makes the sequencer forget the cache afterwards
/// (`Sequencer::forget_listeners`), and the turn keeps it only while current.
#[derive(Default)]
pub(crate) struct ListenerCache(Option<Listeners>);

impl ListenerCache {
    /// Whether no listener was added or removed since the snapshot. A snapshot
    /// keeps its listeners' senders alive, and a removed closure listener's thread
    /// ends only when the last one goes: a stale one must not be kept.
    pub(crate) fn is_current(&self, registry: &Registry) -> bool {
        self.0
            .as_ref()
            .is_some_and(|l| l.generation == registry.generation())
    }
}

/// A snapshot of one model's listeners, type-erased.
struct Listeners {
    model: TypeId,
    generation: u64,
    /// `Option<Arc<[Arc<Slot<M>>]>>`: `None` when the model has no listener set.
    slots: Box<dyn Any + Send>,
}

type Slots<M> = Arc<[Arc<Slot<M>>]>;

impl<'a> Delivery<'a> {
    pub(crate) fn new(to: Outlets<'a>, me: Option<u64>, listeners: ListenerCache) -> Self {
        Delivery { to, me, listeners }
    }

    /// The listener cache, for the next batch.
    pub(crate) fn into_cache(self) -> ListenerCache {
        self.listeners
    }

    /// Hands `event` to the broker, if there is one.
    pub(crate) fn publish<M: Emits>(&self, event: &Event<M>) {
        if let Some(transport) = self.to.transport {
            transport.publish(Box::new(event.clone()));
        }
    }

    /// Queues `event` for every listener of `M` that takes this node's events and
    /// whose actions and filter match.
    pub(crate) fn local<M: Emits>(&mut self, event: Event<M>) {
        let model = TypeId::of::<M>();
        // Read before the snapshot: a change after it makes the next event look
        // again.
        let generation = self.to.registry.generation();
        let cached = &mut self.listeners.0;
        if cached.as_ref().map(|l| (l.model, l.generation)) != Some((model, generation)) {
            *cached = Some(Listeners {
                model,
                generation,
                slots: Box::new(snapshot::<M>(self.to.registry)),
            });
        }
        let slots = cached
            .as_ref()
            .and_then(|l| l.slots.downcast_ref::<Option<Slots<M>>>());
        let Some(Some(slots)) = slots else {
            return;
        };
        // A listener that went away is removed from the registry, which changes
        // its generation: the next event looks the listeners up again.
        deliver_to(self.to, self.me, slots, event, |slot| slot.local);
    }
}

fn snapshot<M: Emits>(registry: &Registry) -> Option<Slots<M>> {
    registry
        .existing_listener_set::<M>()
        .map(|set| set.snapshot())
}

/// The local event number `seq` of the emitter `origin`, instance `instance`.
pub(crate) fn local_meta<M: Emits>(
    seq: u64,
    instance: u64,
    origin: &Arc<str>,
    committed_at: SystemTime,
) -> EventMeta {
    EventMeta {
        id: event_id(instance, seq),
        table: M::TABLE,
        origin: origin.clone(),
        seq,
        source: Source::Local,
        committed_at,
    }
}

/// Event ids are UUIDv8: 60 random bits fixed per emitter instance, then the
/// sequence number. Unique without a random draw per event.
pub(crate) fn event_id(instance: u64, seq: u64) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&instance.to_be_bytes());
    bytes[8..].copy_from_slice(&seq.to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn matches<M>(counters: &Counters, slot: &Slot<M>, event: &Event<M>) -> bool {
    if slot.actions & event.action.bit() == 0 {
        return false;
    }
    let Some(filter) = &slot.filter else {
        return true;
    };
    match catch_unwind(AssertUnwindSafe(|| filter(event))) {
        Ok(keep) => keep,
        Err(payload) => {
            // Offered to the listener and never handed over: dropped, so that every
            // offered event is either delivered or dropped.
            counters.panicked();
            counters.dropped(1);
            tracing::error!(
                listener = %slot.label,
                event = %event.meta.id,
                panic = %crate::listener::panic_message(payload.as_ref()),
                "listener filter panicked; event dropped for it"
            );
            false
        }
    }
}

/// Offers `event` to each listener in `slots` that `wants` it and whose actions
/// and filter match: cloned for every one but the last, which takes it.
fn for_each_match<M: Emits>(
    counters: &Counters,
    slots: &[Arc<Slot<M>>],
    event: Event<M>,
    wants: impl Fn(&Slot<M>) -> bool,
    mut offer: impl FnMut(&Arc<Slot<M>>, Event<M>),
) {
    let mut previous: Option<&Arc<Slot<M>>> = None;
    for slot in slots.iter() {
        if !wants(slot) || !matches(counters, slot, &event) {
            continue;
        }
        if let Some(prev) = previous.replace(slot) {
            offer(prev, event.clone());
        }
    }
    if let Some(last) = previous {
        offer(last, event);
    }
}

/// Queues `event` for the listeners in `slots` that `wants` it and whose actions
/// and filter match; true when one of them was gone (and is now removed).
fn deliver_to<M: Emits>(
    to: Outlets<'_>,
    me: Option<u64>,
    slots: &[Arc<Slot<M>>],
    event: Event<M>,
    wants: impl Fn(&Slot<M>) -> bool,
) -> bool {
    let mut gone = Vec::new();
    for_each_match(to.counters, slots, event, wants, |slot, event| {
        if let Offer::Gone = send(to.counters, me, slot, event, true) {
            gone.push(slot.id);
        }
    });
    remove_gone::<M>(to, gone)
}

/// Removes the listeners `gone` found gone and releases their broker routes;
/// true when there was one.
fn remove_gone<M: Emits>(to: Outlets<'_>, gone: Vec<u64>) -> bool {
    let any = !gone.is_empty();
    for id in gone {
        if let Some(slot) = to.registry.remove::<M>(id) {
            detach::<M>(to.transport, &slot.reach);
        }
    }
    any
}

/// What became of an event offered to one listener.
enum Offer<M> {
    /// Queued, or dropped (and counted) by a full [`WhenFull::Drop`] queue.
    Done,
    /// The listener is gone.
    Gone,
    /// Its [`WhenFull::Block`] queue is full, or its backlog holds events, and the
    /// sender may not wait: the event, given back.
    Back(Event<M>),
}

/// Why a queue did not take an event.
enum Refused<M> {
    Full,
    Gone,
    Back(Event<M>),
}

/// Queues `event` for one listener; with `may_wait` false a full
/// [`WhenFull::Block`] queue gives it back instead of waiting.
fn send<M>(
    counters: &Counters,
    me: Option<u64>,
    slot: &Slot<M>,
    event: Event<M>,
    may_wait: bool,
) -> Offer<M> {
    let counts_queue = slot.kind == Kind::Closure;
    if counts_queue {
        counters.enqueued();
    }
    let result = match slot.when_full {
        WhenFull::Block if may_wait => {
            send_waiting(slot, event, me == Some(slot.id)).map_err(|_| Refused::Gone)
        }
        WhenFull::Block => send_now(slot, event),
        WhenFull::Drop => slot.tx.try_send(event).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Disconnected(_) => Refused::Gone,
        }),
    };
    let refused = match result {
        Ok(()) => {
            if !counts_queue {
                counters.delivered();
            }
            return Offer::Done;
        }
        Err(refused) => refused,
    };
    if counts_queue {
        counters.dequeued(1);
    }
    match refused {
        Refused::Back(event) => Offer::Back(event),
        Refused::Full => {
            counters.dropped(1);
            tracing::warn!(listener = %slot.label, "listener queue full; event dropped (WhenFull::Drop)");
            Offer::Done
        }
        Refused::Gone => {
            counters.dropped(1);
            if slot.mark_closed() {
                tracing::debug!(listener = %slot.label, "listener receiver dropped; removing it");
            }
            Offer::Gone
        }
    }
}

/// [`WhenFull::Block`] for a sender that may not wait: a full queue gives the
/// event back, and so does a backlog that holds events (the queue must not pass
/// them; see [`send_waiting`]).
fn send_now<M>(slot: &Slot<M>, event: Event<M>) -> Result<(), Refused<M>> {
    if slot.backlog.is_held() {
        return Err(Refused::Back(event));
    }
    slot.tx.try_send(event).map_err(|e| match e {
        TrySendError::Full(event) => Refused::Back(event),
        TrySendError::Disconnected(_) => Refused::Gone,
    })
}

/// [`WhenFull::Block`]: waits for room in the queue, unless the listener's own
/// thread is the sender (`own`): then a full queue sends the event to the
/// listener's backlog, as it does every later one while the backlog holds events
/// (see [`Backlog`](crate::listener::Backlog) for the order and the wake-ups).
/// `Err(false)` when the listener is gone.
fn send_waiting<M>(slot: &Slot<M>, event: Event<M>, own: bool) -> Result<(), bool> {
    let backlog = &slot.backlog;
    let event = if backlog.is_held() {
        if own {
            match backlog.push_behind(event) {
                Ok(()) => return Ok(()),
                Err(event) => event,
            }
        } else {
            backlog.wait_empty();
            event
        }
    } else {
        event
    };
    if !own {
        return slot.tx.send(event).map_err(|SendError(_)| false);
    }
    match slot.tx.try_send(event) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(event)) => {
            backlog.push(event);
            Ok(())
        }
        Err(TrySendError::Disconnected(_)) => Err(false),
    }
}

/// Whether this thread is a closure listener of `registry`, and which.
pub(crate) fn listener_thread(registry: &Registry) -> Option<u64> {
    current_listener(registry.id())
}

/// The broker route a listener with `reach` needs, if any.
pub(crate) fn route<M: Emits>(reach: &Reach) -> Option<Route<'_>> {
    let group = match reach {
        Reach::None => return None,
        Reach::Remote => None,
        Reach::Group(group) => Some(group),
    };
    Some(Route {
        group,
        table: M::TABLE,
        model: TypeId::of::<M>(),
    })
}

/// Releases the broker route that a removed listener of `M` with `reach` held.
pub(crate) fn detach<M: Emits>(transport: Option<&dyn Transport>, reach: &Reach) {
    if let (Some(transport), Some(route)) = (transport, route::<M>(reach)) {
        transport.detach(route);
    }
}
