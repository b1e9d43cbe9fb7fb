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
use crate::transport::{RemoteSink, Route, Transport};
use crate::wire::{Checked, EnvelopeError};
use crossbeam_channel::{SendError, TrySendError};
use std::any::{Any, TypeId};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

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

/// Delivers an event that came from the broker to the listeners of `M` that
/// `wants` it.
pub(crate) fn deliver_remote<M: Emits>(
    to: Outlets<'_>,
    event: Event<M>,
    wants: impl Fn(&Slot<M>) -> bool,
) {
    if let Some(slots) = snapshot::<M>(to.registry) {
        // Not a listener's thread: the broker's stream.
        deliver_to(to, None, &slots, event, wants);
    }
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

/// Queues `event` for the listeners in `slots` that `wants` it and whose actions
/// and filter match; true when one of them was gone (and is now removed).
fn deliver_to<M: Emits>(
    to: Outlets<'_>,
    me: Option<u64>,
    slots: &[Arc<Slot<M>>],
    event: Event<M>,
    wants: impl Fn(&Slot<M>) -> bool,
) -> bool {
    // The event is cloned for every matching listener but the last, which takes it.
    let mut previous: Option<&Arc<Slot<M>>> = None;
    let mut closed = Vec::new();
    for slot in slots.iter() {
        if !wants(slot) || !matches(to.counters, slot, &event) {
            continue;
        }
        if let Some(prev) = previous.replace(slot) {
            if !send(to.counters, me, prev, event.clone()) {
                closed.push(prev.id);
            }
        }
    }
    if let Some(last) = previous {
        if !send(to.counters, me, last, event) {
            closed.push(last.id);
        }
    }
    let any_closed = !closed.is_empty();
    for id in closed {
        if let Some(slot) = to.registry.remove::<M>(id) {
            detach::<M>(to.transport, &slot.reach);
        }
    }
    any_closed
}

/// Queues `event` for one listener; false when the listener is gone.
fn send<M>(counters: &Counters, me: Option<u64>, slot: &Slot<M>, event: Event<M>) -> bool {
    let counts_queue = slot.kind == Kind::Closure;
    if counts_queue {
        counters.enqueued();
    }
    let result = match slot.when_full {
        WhenFull::Block => send_waiting(slot, event, me == Some(slot.id)),
        WhenFull::Drop => slot.tx.try_send(event).map_err(|e| match e {
            TrySendError::Full(_) => true,
            TrySendError::Disconnected(_) => false,
        }),
    };
    match result {
        Ok(()) => {
            if !counts_queue {
                counters.delivered();
            }
            true
        }
        Err(still_open) => {
            if counts_queue {
                counters.dequeued(1);
            }
            counters.dropped(1);
            if still_open {
                tracing::warn!(listener = %slot.label, "listener queue full; event dropped (WhenFull::Drop)");
            } else if slot.mark_closed() {
                tracing::debug!(listener = %slot.label, "listener receiver dropped; removing it");
            }
            still_open
        }
    }
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

/// Delivers remote events of model `M` from one broker stream.
pub(crate) struct ModelSink<M> {
    emitter: std::sync::Weak<dyn Outlet>,
    _model: std::marker::PhantomData<fn() -> M>,
}

impl<M> ModelSink<M> {
    pub(crate) fn new(emitter: std::sync::Weak<dyn Outlet>) -> Self {
        ModelSink {
            emitter,
            _model: std::marker::PhantomData,
        }
    }
}

impl<M: Emits> RemoteSink for ModelSink<M> {
    fn deliver(
        &self,
        envelope: &Checked<'_>,
        origin: &Arc<str>,
        group: Option<&str>,
    ) -> Result<(), EnvelopeError> {
        let Some(emitter) = self.emitter.upgrade() else {
            return Ok(());
        };
        let event = envelope.to_event::<M>(origin)?;
        deliver_remote(emitter.outlets(), event, |slot| {
            match (&slot.reach, group) {
                (Reach::Remote, None) => true,
                (Reach::Group(mine), Some(theirs)) => &**mine == theirs,
                _ => false,
            }
        });
        Ok(())
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
