//! The core of diesel-emitter: events, listeners and dispatch. It knows nothing of
//! Diesel and nothing of the network: the `emitter-diesel` crate captures writes and
//! hands them to [`Emitter::commit`], a transport (`emitter-mqtt`) carries events
//! between nodes through the [`transport`] seam, and the `diesel-emitter` facade
//! ties them together.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod action;
mod commit;
mod dispatch;
mod emits;
mod emitter;
mod error;
mod event;
pub mod integration;
mod listener;
pub mod outbox;
mod pending;
mod stats;
pub mod transport;
pub mod wire;

#[allow(deprecated)]
pub use action::Emit;
pub use action::{Action, Audience, Source};
pub use emits::Emits;
pub use emitter::{Emitter, EmitterBuilder, ListenerBuilder, Subscription};
pub use error::Error;
pub use event::{Event, EventMeta};
pub use listener::{
    WhenFull, DEFAULT_CAPACITY, DEFAULT_STAY_AWAKE, MAX_QUEUE_BYTES, MAX_STAY_AWAKE,
};
pub use stats::Stats;

/// Re-exported for [`ListenerBuilder::subscribe`]'s receiver type.
pub use crossbeam_channel;
