//! Where one event's time goes between a commit and another node's listener.
//!
//! Each step of the path marks its end with a TRACE event on the target
//! [`HOP_TARGET`] carrying one field, `hop`, named after the step (the names are
//! [`HOPS`]). Nothing is recorded unless a `tracing` subscriber enables that target:
//! off, a mark costs what a disabled `tracing` call costs (one atomic load). The
//! `mqtt` bench collects the marks with its own subscriber and prints the time of
//! each step, so that a latency figure comes with its breakdown, measured.
//!
//! The steps, in order, with the thread that marks each:
//!
//! | hop | thread | what ends there |
//! |---|---|---|
//! | `handed` | committing | the commit reached the publisher's buffer (before it wakes the publisher) |
//! | `taken` | publisher | the publisher has it (the hand-over, with its wake-up) |
//! | `encoded` | publisher | the MQTT message is built (JSON, topic, signature) |
//! | `to_paho` | publisher | Paho has the publish |
//! | `relay_read` | relay | the relay read Paho's bytes |
//! | `relay_sent` | relay | the relay wrote them to the broker |
//! | `received` | Paho's receive thread | the listening node's stream has the message from Paho |
//! | `checked` | Paho's receive thread | the envelope is decoded and checked, not a duplicate |
//! | `queued` | Paho's receive thread | every listener's queue has the event |
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

/// Marks the end of the step `$hop` (one of [`HOPS`]).
macro_rules! hop {
    ($hop:literal) => {
        tracing::trace!(target: "emitter_mqtt::hop", hop = $hop)
    };
}
pub(crate) use hop;
