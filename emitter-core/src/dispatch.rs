//! Dispatch: turning a commit's pending events into typed events for listeners.
//!
//! A commit is dispatched under the emitter's commit lock, which also hands out the
//! sequence numbers, so every listener sees events in the order they were numbered
//! and per-origin `seq` never goes backwards, whichever thread committed.

use crate::action::{Emit, Source};
use crate::emits::Emits;
use crate::emitter::Shared;
use crate::event::{Event, EventMeta};
use crate::listener::{Kind, Slot, WhenFull};
use crate::pending::Change;
use crossbeam_channel::{SendError, TrySendError};
use std::any::{Any, TypeId};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

/// The state of one commit's dispatch.
pub(crate) struct Dispatch<'a> {
    shared: &'a Shared,
    next_seq: &'a mut u64,
    committed_at: SystemTime,
    /// The listeners of the model dispatched last: a commit's events are mostly
    /// rows of one table, so they are looked up once per commit and table rather
    /// than once per row (a lock, a map lookup and reference counts each time).
    listeners: Option<Listeners>,
}

/// A snapshot of one model's listeners, type-erased.
struct Listeners {
    model: TypeId,
    /// `Option<Arc<[Arc<Slot<M>>]>>`: `None` when the model has no listener set.
    slots: Box<dyn Any>,
}

impl<'a> Dispatch<'a> {
    pub(crate) fn new(shared: &'a Shared, next_seq: &'a mut u64, committed_at: SystemTime) -> Self {
        Dispatch {
            shared,
            next_seq,
            committed_at,
            listeners: None,
        }
    }

    pub(crate) fn typed<M: Emits>(&mut self, change: Change<M>, emit: Emit) {
        *self.next_seq += 1;
        let event = numbered(change, *self.next_seq, self.shared, self.committed_at);
        if emit.reaches_remote() {
            self.shared.publish(&event);
        }
        if !emit.reaches_local() {
            return;
        }
        let model = TypeId::of::<M>();
        if self.listeners.as_ref().map(|l| l.model) != Some(model) {
            self.listeners = Some(Listeners {
                model,
                slots: Box::new(snapshot::<M>(self.shared)),
            });
        }
        let shared = self.shared;
        let slots = self
            .listeners
            .as_ref()
            .and_then(|l| l.slots.downcast_ref::<Option<Slots<M>>>());
        let Some(Some(slots)) = slots else {
            return;
        };
        if deliver_to(shared, slots, event, |slot| slot.local) {
            // A listener went away: the next event looks the listeners up again.
            self.listeners = None;
        }
    }
}

type Slots<M> = Arc<[Arc<Slot<M>>]>;

fn snapshot<M: Emits>(shared: &Shared) -> Option<Slots<M>> {
    shared
        .existing_listener_set::<M>()
        .map(|set| set.snapshot())
}

/// The local event `change` becomes as number `seq` of this emitter.
pub(crate) fn numbered<M: Emits>(
    change: Change<M>,
    seq: u64,
    shared: &Shared,
    committed_at: SystemTime,
) -> Event<M> {
    Event {
        action: change.action,
        row: change.row,
        changed: change.changed,
        meta: EventMeta {
            id: event_id(shared.instance, seq),
            table: M::TABLE,
            origin: shared.node_id.clone(),
            seq,
            source: Source::Local,
            committed_at,
        },
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

fn matches<M>(shared: &Shared, slot: &Slot<M>, event: &Event<M>) -> bool {
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
            shared.counters.panicked();
            shared.counters.dropped(1);
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

/// Queues `event` for every listener of `M` that `wants` it and whose actions and
/// filter match.
pub(crate) fn deliver<M: Emits>(
    shared: &Shared,
    event: Event<M>,
    wants: impl Fn(&Slot<M>) -> bool,
) {
    if let Some(slots) = snapshot::<M>(shared) {
        deliver_to(shared, &slots, event, wants);
    }
}

/// [`deliver`] to the listeners in `slots`; true when one of them was gone (and
/// is now removed).
fn deliver_to<M: Emits>(
    shared: &Shared,
    slots: &[Arc<Slot<M>>],
    event: Event<M>,
    wants: impl Fn(&Slot<M>) -> bool,
) -> bool {
    // The event is cloned for every matching listener but the last, which takes it.
    let mut previous: Option<&Arc<Slot<M>>> = None;
    let mut closed = Vec::new();
    for slot in slots.iter() {
        if !wants(slot) || !matches(shared, slot, &event) {
            continue;
        }
        if let Some(prev) = previous.replace(slot) {
            if !send(shared, prev, event.clone()) {
                closed.push(prev.id);
            }
        }
    }
    if let Some(last) = previous {
        if !send(shared, last, event) {
            closed.push(last.id);
        }
    }
    let any_closed = !closed.is_empty();
    for id in closed {
        crate::listener::remove_listener::<M>(shared, id);
    }
    any_closed
}

/// Queues `event` for one listener; false when the listener is gone.
fn send<M>(shared: &Shared, slot: &Slot<M>, event: Event<M>) -> bool {
    let counts_queue = slot.kind == Kind::Closure;
    if counts_queue {
        shared.counters.enqueued();
    }
    let result = match slot.when_full {
        WhenFull::Block => slot.tx.send(event).map_err(|SendError(_)| false),
        WhenFull::Drop => slot.tx.try_send(event).map_err(|e| match e {
            TrySendError::Full(_) => true,
            TrySendError::Disconnected(_) => false,
        }),
    };
    match result {
        Ok(()) => {
            if !counts_queue {
                shared.counters.delivered();
            }
            true
        }
        Err(still_open) => {
            if counts_queue {
                shared.counters.dequeued(1);
            }
            shared.counters.dropped(1);
            if still_open {
                tracing::warn!(listener = %slot.label, "listener queue full; event dropped (WhenFull::Drop)");
            } else if slot.mark_closed() {
                tracing::debug!(listener = %slot.label, "listener receiver dropped; removing it");
            }
            still_open
        }
    }
}

/// Delivers remote events of model `M` from one broker stream.
pub(crate) struct ModelSink<M> {
    shared: std::sync::Weak<Shared>,
    _model: std::marker::PhantomData<fn() -> M>,
}

impl<M> ModelSink<M> {
    pub(crate) fn new(shared: std::sync::Weak<Shared>) -> Self {
        ModelSink {
            shared,
            _model: std::marker::PhantomData,
        }
    }
}

impl<M: Emits> crate::transport::RemoteSink for ModelSink<M> {
    fn deliver(
        &self,
        envelope: &crate::wire::Checked<'_>,
        origin: &Arc<str>,
        group: Option<&str>,
    ) -> Result<(), crate::wire::EnvelopeError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let event = envelope.to_event::<M>(origin)?;
        deliver(&shared, event, |slot| match (&slot.reach, group) {
            (crate::listener::Reach::Remote, None) => true,
            (crate::listener::Reach::Group(mine), Some(theirs)) => &**mine == theirs,
            _ => false,
        });
        Ok(())
    }
}
