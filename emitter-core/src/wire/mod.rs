//! The wire format: what every transport carries, and what the outbox stores.
//!
//! An event travels as one JSON envelope on the topic `{prefix}/{table}/{action}`.
//! This module owns both halves, encoding and checking, so that the outbox, the
//! `diesel-emitter tail` tool and any transport read and write the same bytes
//! without depending on a broker client.

mod envelope;
#[cfg(test)]
mod properties;
mod topic;

pub use envelope::{check, encode, Checked, Envelope, EnvelopeError, WIRE_VERSION};
pub use topic::{
    event_topic, is_valid_level, is_valid_node_id, parse_topic, table_filter, MAX_NODE_ID_LEN,
};
