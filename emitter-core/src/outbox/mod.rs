//! The durable outbox: events written into a table by the transaction that caused
//! them, and a relay that publishes them from there.
//!
//! Without it, a committed event waits for the broker in memory, and a crash of the
//! process loses it. With it, the connection wrapper writes the transaction's events
//! into the outbox table just before the outermost COMMIT, so they exist exactly when
//! the data does; a relay thread (one per emitter, any number per database) claims
//! rows, publishes them, and deletes each once the broker acknowledged it. Local
//! listeners still hear events in-process, after the commit.
//!
//! This module owns the configuration, the store interface the relay talks to, and
//! the relay. The SQL lives with the connection types in `emitter-diesel`.

mod config;
pub(crate) mod relay;
mod store;

pub use config::{OutboxConfig, DEFAULT_TABLE};
pub use store::{
    validate_table, Backlog, ClaimScope, OutboxEntry, OutboxError, OutboxRow, OutboxStore,
};
