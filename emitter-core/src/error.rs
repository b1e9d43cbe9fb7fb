//! The error type of the emitter.

use std::time::Duration;

/// What can go wrong while building or shutting down an [`Emitter`](crate::Emitter).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node id is empty or contains characters that cannot travel in a topic or payload.
    #[error("invalid node id {0:?}: use 1 to 128 characters without `/`, `+`, `#`, NUL or control characters")]
    InvalidNodeId(String),
    /// A listener's queue capacity of zero was requested.
    #[error("listener capacity must be at least 1")]
    ZeroCapacity,
    /// [`Emitter::shutdown`](crate::Emitter::shutdown) ran out of time with events still queued.
    #[error(
        "shutdown timed out after {timeout:?} with {pending} events still queued for listeners"
    )]
    ShutdownTimeout {
        /// The timeout that was given.
        timeout: Duration,
        /// Events that had not reached their listeners.
        pending: u64,
    },
    /// A listener thread could not be started.
    #[error("could not start a listener thread: {0}")]
    Spawn(#[from] std::io::Error),
}
