//! The seam between the core and a broker client: what a commit hands over, what a
//! remote event brings back, and a shutdown.
//!
//! The core numbers and delivers events and knows no network. A transport (the
//! MQTT one lives in the `emitter-mqtt` crate) implements [`Transport`]; its
//! configuration implements [`TransportConfig`], which
//! [`EmitterBuilder::transport`](crate::EmitterBuilder::transport) takes. Events go
//! out as [`Outgoing`] messages, encoded on the transport's own thread; remote
//! envelopes come back through the [`RemoteSink`] a listener registered. The outbox
//! relay publishes through the same trait.
//!
//! This module is for transport authors; applications never name it.

use crate::emits::Emits;
use crate::error::Error;
use crate::event::Event;
pub use crate::listener::thread::panic_message;
use crate::stats::Stats;
use crate::wire::{Checked, EnvelopeError};
use std::any::TypeId;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A transport's configuration: starts the transport when the emitter is built.
pub trait TransportConfig: fmt::Debug + Send + Sync + 'static {
    /// Checks the configuration and starts the transport for the node `node`.
    fn start(&self, node: &Node) -> Result<Arc<dyn Transport>, Error>;
}

/// Who the emitter is, for a transport to name its clients after.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Node {
    /// The node id, `origin` of this emitter's events.
    pub id: Arc<str>,
    /// A random number drawn for this emitter instance (event ids start with it).
    pub instance: u64,
}

/// A running transport, owned by one emitter.
pub trait Transport: Send + Sync {
    /// Takes a committed event for the broker without waiting: a transport buffers
    /// it (and counts and logs what it must drop) and publishes it on its own thread.
    fn publish(&self, event: Box<dyn Outgoing>);

    /// Takes `event`, waiting up to `timeout` for room in the buffer; gives it back
    /// if there is none (the outbox relay then leaves the row in its table).
    fn publish_waiting(
        &self,
        event: Box<dyn Outgoing>,
        timeout: Duration,
    ) -> Result<(), Box<dyn Outgoing>>;

    /// Starts hearing remote events of `route`'s model: `sink` makes the sink the
    /// first listener of that model on that route needs.
    fn attach(
        &self,
        route: Route<'_>,
        sink: &mut dyn FnMut() -> Arc<dyn RemoteSink>,
    ) -> Result<(), Error>;

    /// Releases one [`attach`](Self::attach) of `route`.
    fn detach(&self, route: Route<'_>);

    /// Whether published events reach the broker now (the outbox relay claims rows
    /// only then).
    fn is_publishing(&self) -> bool;

    /// Whether publishing works and every attached route is subscribed.
    fn is_ready(&self) -> bool;

    /// The broker address as configured, for error messages.
    fn url(&self) -> &str;

    /// Publishes what is buffered until `deadline`, then stops every thread.
    fn close(&self, deadline: Instant) -> Closed;

    /// Fills the transport's counters into `stats`.
    fn fill_stats(&self, stats: &mut Stats);
}

/// What [`Transport::close`] reports.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Closed {
    /// Events the broker had not acknowledged by the deadline.
    pub unsent: u64,
    /// Whether every thread of the transport ended.
    pub stopped: bool,
}

/// Which remote events a listener needs.
#[derive(Copy, Clone, Debug)]
pub struct Route<'a> {
    /// `None`: every other node's events; `Some(group)`: the group's share of
    /// every node's events (each event reaches one member of the group).
    pub group: Option<&'a Arc<str>>,
    /// The model's table.
    pub table: &'static str,
    /// The model's type, so that two models of one table get their own sinks.
    pub model: TypeId,
}

/// An event on its way to the broker, encoded on the transport's thread.
pub trait Outgoing: Send {
    /// The table of the event.
    fn table(&self) -> &str;
    /// The topic under `prefix` ([`event_topic`](crate::wire::event_topic)).
    fn topic(&self, prefix: &str) -> String;
    /// The envelope.
    fn encode(&self) -> serde_json::Result<Vec<u8>>;
    /// Who wants to hear how the publish ended (the outbox relay does).
    fn into_receipt(self: Box<Self>) -> Option<Box<dyn Receipt>> {
        None
    }
}

/// Told once whether the broker acknowledged a publish (`Ok`) or it failed for good
/// (`Err` with the reason). Not told when the transport stops with it unsent.
pub trait Receipt: Send {
    /// The publish ended with `outcome`.
    fn settled(self: Box<Self>, outcome: Result<(), String>);
}

impl<M: Emits> Outgoing for Event<M> {
    fn table(&self) -> &str {
        M::TABLE
    }
    fn topic(&self, prefix: &str) -> String {
        crate::wire::event_topic(prefix, M::TABLE, self.action)
    }
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        crate::wire::encode(self)
    }
}

/// Delivers a checked envelope to the remote listeners of one model.
pub trait RemoteSink: Send + Sync {
    /// Decodes the row and hands the event to the listeners that want it: those of
    /// `group`, or with `None` those that hear every other node.
    fn deliver(
        &self,
        envelope: &Checked<'_>,
        origin: &Arc<str>,
        group: Option<&str>,
    ) -> Result<(), EnvelopeError>;

    /// Does what [`deliver`](Self::deliver) does without ever waiting, for a
    /// transport that delivers on its network client's own thread (which must not
    /// block: a listener that commits would wait for that very thread). A
    /// [`WhenFull::Block`](crate::WhenFull) listener whose queue is full, and the
    /// removal of a listener found gone, are left in the returned [`Deferred`],
    /// which the transport must [finish](Deferred::finish) on a thread that may
    /// wait, before it delivers any later event of the same stream (each
    /// listener's order depends on it).
    fn deliver_now(
        &self,
        envelope: &Checked<'_>,
        origin: &Arc<str>,
        group: Option<&str>,
    ) -> Result<Option<Deferred>, EnvelopeError>;
}

/// What [`RemoteSink::deliver_now`] could not do without waiting. It also holds the
/// emitter when the delivery held its last handle: the emitter is then dropped by
/// [`finish`](Self::finish), on the thread that may wait, not on the network
/// client's (whose client the emitter's drop may destroy).
#[must_use = "a deferred delivery holds events for listeners: finish it"]
pub struct Deferred(Box<dyn FnOnce() + Send>);

impl Deferred {
    pub(crate) fn new(rest: impl FnOnce() + Send + 'static) -> Deferred {
        Deferred(Box::new(rest))
    }

    /// Delivers what was left, waiting for room where a listener asks for it.
    pub fn finish(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}
