//! The error type of the emitter.

use std::time::Duration;

/// What can go wrong while building or shutting down an [`Emitter`](crate::Emitter).
///
/// ```
/// use diesel_emitter::{Emitter, Error};
///
/// match Emitter::builder().node_id("").build() {
///     Err(Error::InvalidNodeId(id)) => assert_eq!(id, ""),
///     other => panic!("expected InvalidNodeId, got {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node id is empty or contains characters that cannot travel in a topic or payload.
    #[error("invalid node id {0:?}: use 1 to 128 characters without `/`, `+`, `#`, NUL or control characters")]
    InvalidNodeId(String),
    /// A listener's queue capacity of zero was requested.
    #[error("listener capacity must be at least 1")]
    ZeroCapacity,
    /// A listener's queue of this capacity would take more than
    /// [`MAX_QUEUE_BYTES`](crate::MAX_QUEUE_BYTES): the queue is allocated in full
    /// when the listener registers.
    #[error(
        "listener capacity {requested} is too large: its queue would take more than {limit} bytes \
         ({slot_bytes} bytes per event of this model, allocated up front); at most {max} fit"
    )]
    CapacityTooLarge {
        /// The capacity asked for.
        requested: usize,
        /// The largest capacity accepted for this model.
        max: usize,
        /// What one queued event of this model takes, in bytes.
        slot_bytes: usize,
        /// [`MAX_QUEUE_BYTES`](crate::MAX_QUEUE_BYTES).
        limit: usize,
    },
    /// [`ListenerBuilder::stay_awake`](crate::ListenerBuilder::stay_awake) asked for
    /// longer than [`MAX_STAY_AWAKE`](crate::MAX_STAY_AWAKE).
    #[error("a listener may stay awake at most {max:?} after an event; {requested:?} was asked")]
    StayAwakeTooLong {
        /// The duration asked for.
        requested: std::time::Duration,
        /// The longest accepted.
        max: std::time::Duration,
    },
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
    /// A thread (listener, publisher, subscriber) could not be started.
    #[error("could not start a thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// The transport's configuration is invalid. The transport's own error type is
    /// inside: for MQTT an `MqttConfigError`, which
    /// [`transport_error`](Self::transport_error) gives back typed.
    #[error("invalid {transport} configuration: {source}")]
    Transport {
        /// The transport's name (`"MQTT"`).
        transport: &'static str,
        /// What is wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The broker did not accept a connection within `require_connection`'s timeout.
    #[error("MQTT broker {url} unreachable: {reason}")]
    BrokerUnreachable {
        /// The broker URL as configured.
        url: String,
        /// What the client reported.
        reason: String,
    },
    /// A remote listener (`remote_only` or `group`) on an emitter without a broker.
    #[error(
        "listener needs a broker (remote_only or group) but the emitter has no MQTT configured"
    )]
    NoBroker,
    /// A table name that cannot be an MQTT topic level.
    #[error("table name {0:?} is not a valid MQTT topic level (empty, or contains `/`, `+`, `#` or NUL)")]
    InvalidTopicLevel(&'static str),
    /// A group name that cannot be an MQTT topic level.
    #[error("group name {0:?} is not a valid MQTT topic level")]
    InvalidGroup(String),
    /// The outbox is misconfigured or its tables cannot be used.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl Error {
    /// The transport's own error inside [`Error::Transport`], if it is an `E`
    /// (with MQTT: `error.transport_error::<MqttConfigError>()`).
    ///
    /// ```
    /// use diesel_emitter::Error;
    ///
    /// let error = Error::Transport { transport: "demo", source: Box::new(std::fmt::Error) };
    /// assert!(error.transport_error::<std::fmt::Error>().is_some());
    /// assert!(error.transport_error::<std::io::Error>().is_none());
    /// assert_eq!(error.to_string(), "invalid demo configuration: an error occurred when formatting an argument");
    /// ```
    pub fn transport_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Transport { source, .. } => source.downcast_ref::<E>(),
            _ => None,
        }
    }
}

/// Why the outbox cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The outbox or dead-letter table does not exist (run the shipped SQL or migration).
    #[error("outbox table {table} is missing or unreadable ({reason}); create it with the SQL diesel-emitter ships (see `Outbox::create_sql`)")]
    MissingTable {
        /// The table that was looked for.
        table: String,
        /// What the database said.
        reason: String,
    },
    /// The table name is not a plain (optionally schema-qualified) SQL identifier.
    #[error(
        "invalid outbox table name {0:?}: use letters, digits and `_`, optionally `schema.table`"
    )]
    InvalidTable(String),
    /// The relay's database connection could not be opened.
    #[error("cannot connect the outbox relay to the database: {0}")]
    Connect(String),
    /// A statement on the outbox failed.
    #[error("outbox statement failed: {0}")]
    Database(String),
    /// The outbox needs a broker to publish to.
    #[error(
        "the outbox needs a broker: configure `EmitterBuilder::mqtt` (or `transport`) as well"
    )]
    NoBroker,
}
