//! Delivery of events that came from the broker: the sink a broker stream holds
//! for each model, which decodes the row and queues the event for the remote
//! listeners, waiting where a listener asks for it, or (on the network client's
//! own thread) never.

use super::{for_each_match, remove_gone, send, snapshot, Offer, Outlet, Outlets};
use crate::emits::Emits;
use crate::event::Event;
use crate::listener::{Reach, Slot};
use crate::transport::{Deferred, RemoteSink};
use crate::wire::{Checked, EnvelopeError};
use std::sync::Arc;

/// Events that full queues gave back, with the listener each is for.
type Waiting<M> = Vec<(Arc<Slot<M>>, Event<M>)>;

/// Delivers remote events of model `M` from one broker stream to the listeners
/// of the emitter `O`, which it holds weakly: the stream must not keep the
/// emitter alive.
pub(crate) struct ModelSink<M, O> {
    emitter: std::sync::Weak<O>,
    _model: std::marker::PhantomData<fn() -> M>,
}

impl<M, O> ModelSink<M, O> {
    pub(crate) fn new(emitter: std::sync::Weak<O>) -> Self {
        ModelSink {
            emitter,
            _model: std::marker::PhantomData,
        }
    }
}

/// Whether a listener with `reach` hears remote events of `group` (`None`: the
/// plain stream, every other node's events).
fn hears(reach: &Reach, group: Option<&str>) -> bool {
    match (reach, group) {
        (Reach::Remote, None) => true,
        (Reach::Group(mine), Some(theirs)) => &**mine == theirs,
        _ => false,
    }
}

impl<M: Emits, O: Outlet + 'static> RemoteSink for ModelSink<M, O> {
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
        deliver_remote(emitter.outlets(), event, |slot| hears(&slot.reach, group));
        Ok(())
    }

    fn deliver_now(
        &self,
        envelope: &Checked<'_>,
        origin: &Arc<str>,
        group: Option<&str>,
    ) -> Result<Option<Deferred>, EnvelopeError> {
        // Decoded first: an error must not return past the emitter's handle.
        let event = envelope.to_event::<M>(origin)?;
        let Some(emitter) = self.emitter.upgrade() else {
            return Ok(None);
        };
        let (waiting, mut gone) =
            offer_now(emitter.outlets(), event, |slot| hears(&slot.reach, group));
        if waiting.is_empty() && gone.is_empty() {
            // Never the emitter's last handle dropped here: its drop may destroy
            // the very network client whose thread this is.
            return Ok(Arc::into_inner(emitter).map(|last| Deferred::new(move || drop(last))));
        }
        Ok(Some(Deferred::new(move || {
            let to = emitter.outlets();
            for (slot, event) in waiting {
                if let Offer::Gone = send(to.counters, None, &slot, event, true) {
                    gone.push(slot.id);
                }
            }
            remove_gone::<M>(to, gone);
        })))
    }
}

/// Offers a remote `event` to the listeners of `M` that `wants` it without
/// waiting: what a full [`WhenFull::Block`] queue gave back, and the ids of the
/// listeners found gone (to be removed where waiting is allowed).
fn offer_now<M: Emits>(
    to: Outlets<'_>,
    event: Event<M>,
    wants: impl Fn(&Slot<M>) -> bool,
) -> (Waiting<M>, Vec<u64>) {
    let mut waiting = Vec::new();
    let mut gone = Vec::new();
    if let Some(slots) = snapshot::<M>(to.registry) {
        for_each_match(to.counters, &slots, event, wants, |slot, event| {
            let offer = send(to.counters, None, slot, event, false);
            match offer {
                Offer::Done => {}
                Offer::Gone => gone.push(slot.id),
                Offer::Back(event) => waiting.push((slot.clone(), event)),
            }
        });
    }
    (waiting, gone)
}

/// Delivers an event that came from the broker to the listeners of `M` that
/// `wants` it.
fn deliver_remote<M: Emits>(to: Outlets<'_>, event: Event<M>, wants: impl Fn(&Slot<M>) -> bool) {
    if let Some(slots) = snapshot::<M>(to.registry) {
        // Not a listener's thread: the broker's stream.
        super::deliver_to(to, None, &slots, event, wants);
    }
}
