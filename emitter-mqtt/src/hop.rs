//! Where one event's time goes between a commit and another node's listener.
//!
//! Each step of the path marks its end with a TRACE event on the target
//! [`HOP_TARGET`] carrying one field, `hop`, named after the step (the names are
//! [`HOPS`]). Nothing is recorded unless a `tracing` subscriber enables that target:
//! off, a mark costs what a disabled `tracing` call costs (one atomic load). The
//! `mqtt` bench collects the marks with a [`Recorder`] and prints the time of each
//! step, so that a latency figure comes with its breakdown, measured.
//!
//! The steps, in order, with the thread that marks each and the mark each is
//! timed from:
//!
//! | hop | thread | timed from | what ends there |
//! |---|---|---|---|
//! | `handed` | committing | the commit | the commit reached the publisher's buffer (before it wakes the publisher) |
//! | `taken` | committing or publisher | `handed` | the publish path has it (in the publisher's thread, after its wake-up) |
//! | `encoded` | committing or publisher | `taken` | the MQTT message is built (JSON, topic, signature) |
//! | `to_paho` | committing or publisher | `encoded` | Paho's publish call has returned |
//! | `relay_read` | relay | `encoded` | the relay read Paho's bytes |
//! | `relay_sent` | relay | `relay_read` | the relay wrote them to the broker |
//! | `received` | Paho's receive thread | `relay_read` | the listening node's stream has the message from Paho |
//! | `checked` | Paho's receive thread | `received` | the envelope is decoded and checked, not a duplicate |
//! | `queued` | Paho's receive thread | `checked` | every listener's queue has the event |
//!
//! `taken`, `encoded` and `to_paho` are marked on the committing thread when the
//! publish goes out directly (the publisher's lane is free), else on the
//! publisher's thread.
//!
//! A step is timed from the last mark that surely came before it. A mark made
//! after a call that hands the event to another thread or process can come after
//! that thread's own mark: Paho's send thread writes the publish, and the relay
//! reads and forwards it, before Paho's publish call returns to the thread that
//! marks `to_paho`; the broker can deliver to the listening node before the relay
//! thread, back from its write, marks `relay_sent`; a listener can take its event
//! before `queued` is marked. So `to_paho`, `relay_sent` and `queued` are beside
//! the path, each the time of its own call, and the steps after them are timed
//! from the mark before them ([`TIMED_FROM`]; a listener's arrival from
//! `checked`).
//!
//! The last three run on the stream's own thread instead when the event must wait
//! there (see the subscriber's inbox).

/// The `tracing` target of the hop marks.
pub const HOP_TARGET: &str = "emitter_mqtt::hop";

/// The hops, in path order.
pub const HOPS: [&str; 9] = [
    "handed",
    "taken",
    "encoded",
    "to_paho",
    "relay_read",
    "relay_sent",
    "received",
    "checked",
    "queued",
];

/// The mark each step of [`HOPS`] is timed from, as its index in [`HOPS`]; `None`
/// for the first, which is timed from the commit. `relay_read` is timed from
/// `encoded` and `received` from `relay_read`, because the marks between them
/// can come late (see the module's documentation).
pub const TIMED_FROM: [Option<usize>; HOPS.len()] = [
    None,
    Some(0),
    Some(1),
    Some(2),
    Some(2),
    Some(4),
    Some(4),
    Some(6),
    Some(7),
];

/// The mark a listener's arrival is timed from: `checked`, as its index in
/// [`HOPS`] (`queued` can come after the listener has its event).
pub const LISTENER_TIMED_FROM: usize = 7;

/// Whether the step `hop` (its index in [`HOPS`]) is beside the path: no later
/// step, and no listener's arrival, is timed from it, so its time overlaps theirs
/// (see the module's documentation).
///
/// ```
/// use emitter_mqtt::hop::{beside_the_path, HOPS};
/// let beside: Vec<&str> = (0..HOPS.len()).filter(|&hop| beside_the_path(hop)).map(|hop| HOPS[hop]).collect();
/// assert_eq!(beside, ["to_paho", "relay_sent", "queued"]);
/// ```
pub fn beside_the_path(hop: usize) -> bool {
    hop != LISTENER_TIMED_FROM && !TIMED_FROM.contains(&Some(hop))
}

/// A `tracing` subscriber that hands every hop mark to a closure, as the mark's
/// index in [`HOPS`], and takes nothing else: what a bench or a test installs to
/// collect the marks (`tracing::subscriber::set_global_default`).
///
/// ```
/// use emitter_mqtt::hop::{Recorder, HOPS};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let marks = seen.clone();
/// let recorder = Recorder::new(move |hop| marks.lock().unwrap().push(HOPS[hop]));
/// tracing::subscriber::with_default(recorder, || {
///     tracing::trace!(target: "emitter_mqtt::hop", hop = "queued");
///     tracing::info!("not a mark");
/// });
/// assert_eq!(*seen.lock().unwrap(), ["queued"]);
/// ```
pub struct Recorder<F>(F);

impl<F: Fn(usize) + Send + Sync + 'static> Recorder<F> {
    /// A recorder that calls `on_mark` with the index in [`HOPS`] of each mark.
    pub fn new(on_mark: F) -> Recorder<F> {
        Recorder(on_mark)
    }
}

impl<F: Fn(usize) + Send + Sync + 'static> tracing::Subscriber for Recorder<F> {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if metadata.target() == HOP_TARGET {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == HOP_TARGET
    }

    fn event(&self, event: &tracing::Event<'_>) {
        let mut hop = HopField(None);
        event.record(&mut hop);
        if let Some(index) = hop.0 {
            (self.0)(index);
        }
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The index in [`HOPS`] of a mark's `hop` field.
struct HopField(Option<usize>);

impl tracing::field::Visit for HopField {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "hop" {
            self.0 = HOPS.iter().position(|hop| *hop == value);
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// Marks the end of the step `$hop` (one of [`HOPS`]).
macro_rules! hop {
    ($hop:literal) => {
        tracing::trace!(target: "emitter_mqtt::hop", hop = $hop)
    };
}
pub(crate) use hop;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_timed_from_an_earlier_mark() {
        assert_eq!(TIMED_FROM[0], None);
        for (hop, from) in TIMED_FROM.iter().enumerate().skip(1) {
            assert!(from.is_some_and(|from| from < hop), "{}", HOPS[hop]);
        }
        assert_eq!(HOPS[LISTENER_TIMED_FROM], "checked");
    }
}
