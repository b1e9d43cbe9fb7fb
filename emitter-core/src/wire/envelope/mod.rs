//! The wire envelope: one JSON object per event, versioned by `v`.
//!
//! `{"v":1,"id":"<uuid>","origin":"<node>","seq":42,"table":"users","action":"update",
//!   "committed_at":"<RFC 3339>","changed":["name"],"row":{...}}`

use crate::action::Action;
use crate::{
    action::Source,
    emits::Emits,
    event::{Event, EventMeta},
};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

/// The envelope version this crate writes and reads.
pub const WIRE_VERSION: u32 = 1;

#[derive(serde::Serialize)]
struct Outgoing<'a, T> {
    v: u32,
    id: &'a Uuid,
    origin: &'a str,
    seq: u64,
    table: &'a str,
    action: Action,
    committed_at: String,
    changed: &'a [&'static str],
    row: &'a T,
}

/// Encodes an event as its JSON envelope.
pub fn encode<M: Emits>(event: &Event<M>) -> serde_json::Result<Vec<u8>> {
    // `#[emits(skip)]` fields leave the process as their `Default`.
    let redacted;
    let row = if M::SKIPPED.is_empty() {
        &event.row
    } else {
        let mut copy = event.row.clone();
        copy.redact();
        redacted = copy;
        &redacted
    };
    // Sized for a typical envelope, so that it is written without regrowing.
    let mut json = Vec::with_capacity(512);
    serde_json::to_writer(
        &mut json,
        &Outgoing {
            v: WIRE_VERSION,
            id: &event.meta.id,
            origin: &event.meta.origin,
            seq: event.meta.seq,
            table: event.meta.table,
            action: event.action,
            committed_at: humantime::format_rfc3339_micros(event.meta.committed_at).to_string(),
            changed: event.changed(),
            row,
        },
    )?;
    Ok(json)
}

/// The parts of an envelope every model shares, with the row left undecoded.
///
/// Strings borrow from the payload unless they carry JSON escapes (`\t`, or the
/// `\u00e9` other encoders write for non-ASCII text); those are unescaped into owned
/// strings.
#[derive(Deserialize)]
pub(crate) struct Incoming<'a> {
    v: u32,
    pub(crate) id: Uuid,
    #[serde(borrow)]
    pub(crate) origin: Cow<'a, str>,
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) table: Cow<'a, str>,
    pub(crate) action: Action,
    #[serde(borrow)]
    committed_at: Cow<'a, str>,
    #[serde(default, borrow)]
    changed: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) row: &'a RawValue,
}

/// Why a payload is not an event envelope (or not one for a given topic or model).
///
/// [`Envelope::decode`] and [`Envelope::row_as`] return it; the emitter's own
/// subscriber drops (and counts in `Stats::remote_rejected`) the payloads it
/// describes.
///
/// ```
/// use emitter_core::wire::{Envelope, EnvelopeError};
/// let payload = br#"{"v":2,"id":"8cdbf11c-eb97-8211-8000-000000000001"}"#;
/// let error = Envelope::decode("diesel/events", "diesel/events/users/insert", payload)
///     .unwrap_err();
/// assert!(matches!(error, EnvelopeError::Version(2)));
/// assert_eq!(
///     error.to_string(),
///     "envelope version 2 is not supported (this build reads version 1)"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The topic is not `{prefix}/{table}/{action}` under the expected prefix.
    #[error(
        "topic {topic:?} is not `{prefix}/{{table}}/{{action}}` (action insert, update or delete)"
    )]
    Topic {
        /// The topic the payload arrived on.
        topic: String,
        /// The prefix that was expected.
        prefix: String,
    },
    /// The payload is larger than the receiver accepts (the emitter's
    /// `MqttConfig::max_payload`; [`Envelope::decode`] sets no limit).
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The payload is not UTF-8 JSON of the envelope's shape (a field is missing,
    /// has the wrong type, the id is not a UUID, the action is unknown, ...).
    #[error("not an event envelope: {0}")]
    Malformed(serde_json::Error),
    /// The envelope's `v` is not [`WIRE_VERSION`].
    #[error("envelope version {0} is not supported (this build reads version 1)")]
    Version(u32),
    /// `committed_at` is not an RFC 3339 timestamp.
    #[error("committed_at {0:?} is not RFC 3339")]
    Timestamp(String),
    /// The envelope's `origin` is not a valid node id (empty, longer than 128
    /// bytes, or with `/`, `+`, `#`, NUL or control characters), the rule every
    /// emitter's own node id follows.
    #[error("origin is not a valid node id: {0}")]
    Origin(&'static str),
    /// The envelope names another table than its topic.
    #[error("envelope for table {envelope:?} arrived on the topic of {topic:?}")]
    TableMismatch {
        /// The table in the envelope.
        envelope: String,
        /// The table in the topic.
        topic: String,
    },
    /// The envelope names another action than its topic.
    #[error("envelope action {envelope} arrived on a topic of action {topic}")]
    ActionMismatch {
        /// The action in the envelope.
        envelope: Action,
        /// The action in the topic.
        topic: Action,
    },
    /// The row does not deserialize into the requested type.
    #[error("row does not decode into {model}: {error}")]
    Row {
        /// The type the row was decoded into.
        model: &'static str,
        /// What serde_json reported.
        error: serde_json::Error,
    },
}

impl EnvelopeError {
    /// A short name of the reason, for the summarised log of dropped payloads.
    pub fn kind(&self) -> &'static str {
        match self {
            EnvelopeError::Topic { .. } => "topic",
            EnvelopeError::TooLarge(_) => "too large",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::Version(_) => "version",
            EnvelopeError::Timestamp(_) => "timestamp",
            EnvelopeError::Origin(_) => "origin",
            EnvelopeError::TableMismatch { .. } => "table mismatch",
            EnvelopeError::ActionMismatch { .. } => "action mismatch",
            EnvelopeError::Row { .. } => "row",
        }
    }
}

/// An envelope that passed the checks shared by every model, its row still JSON
/// text: what a transport hands to a [`RemoteSink`](crate::transport::RemoteSink).
pub struct Checked<'a> {
    pub(crate) inner: Incoming<'a>,
    pub(crate) committed_at: SystemTime,
}

impl<'a> Checked<'a> {
    /// The event's id, unique per event: receivers deduplicate by it.
    pub fn id(&self) -> Uuid {
        self.inner.id
    }

    /// The node that committed the event.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The event's action.
    pub fn action(&self) -> Action {
        self.inner.action
    }

    /// When the origin committed it.
    pub fn committed_at(&self) -> SystemTime {
        self.committed_at
    }

    /// The row, as the JSON text it arrived as.
    pub fn row_json(&self) -> &'a str {
        self.inner.row.get()
    }
}

/// Parses and checks a `payload` received on the topic of `table` and `action`,
/// refusing one longer than `max` bytes: the checks every model shares (version,
/// origin, topic agreement, timestamp), leaving the row undecoded.
pub fn check<'a>(
    payload: &'a [u8],
    table: &str,
    action: Action,
    max: usize,
) -> Result<Checked<'a>, EnvelopeError> {
    if payload.len() > max {
        return Err(EnvelopeError::TooLarge(payload.len()));
    }
    // One parse for a good envelope (it is most of a received event's CPU); only
    // one that does not parse is read again for its version, so that a future
    // envelope shape is reported as such.
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let inner: Incoming<'a> = match serde_json::from_slice(payload) {
        Ok(inner) => inner,
        Err(error) => {
            let version: Version =
                serde_json::from_slice(payload).map_err(EnvelopeError::Malformed)?;
            if version.v != WIRE_VERSION {
                return Err(EnvelopeError::Version(version.v));
            }
            return Err(EnvelopeError::Malformed(error));
        }
    };
    if inner.v != WIRE_VERSION {
        return Err(EnvelopeError::Version(inner.v));
    }
    if let Some(problem) = origin_problem(&inner.origin) {
        return Err(EnvelopeError::Origin(problem));
    }
    if inner.table != table {
        return Err(EnvelopeError::TableMismatch {
            envelope: inner.table.to_string(),
            topic: table.to_owned(),
        });
    }
    if inner.action != action {
        return Err(EnvelopeError::ActionMismatch {
            envelope: inner.action,
            topic: action,
        });
    }
    let committed_at = humantime::parse_rfc3339_weak(&inner.committed_at)
        .map_err(|_| EnvelopeError::Timestamp(inner.committed_at.to_string()))?;
    Ok(Checked {
        inner,
        committed_at,
    })
}

/// What is wrong with a remote `origin`, if anything. The text of the origin
/// itself stays out of the answer: it came from the network.
fn origin_problem(origin: &str) -> Option<&'static str> {
    if super::topic::is_valid_node_id(origin) {
        None
    } else if origin.is_empty() {
        Some("empty")
    } else if origin.len() > super::topic::MAX_NODE_ID_LEN {
        Some("longer than 128 bytes")
    } else {
        Some("contains `/`, `+`, `#`, NUL or a control character")
    }
}

impl Checked<'_> {
    /// Decodes the row into `M` and builds the remote event.
    pub fn to_event<M: Emits>(&self, origin: &Arc<str>) -> Result<Event<M>, EnvelopeError> {
        let row: M =
            serde_json::from_str(self.inner.row.get()).map_err(|error| EnvelopeError::Row {
                model: std::any::type_name::<M>(),
                error,
            })?;
        let changed: Arc<[&'static str]> = self
            .inner
            .changed
            .iter()
            .filter_map(|c| M::column(c))
            .collect();
        Ok(Event {
            action: self.inner.action,
            row,
            changed,
            meta: EventMeta {
                id: self.inner.id,
                table: M::TABLE,
                origin: origin.clone(),
                seq: self.inner.seq,
                source: Source::Remote,
                committed_at: self.committed_at,
            },
        })
    }
}

/// One event as it travels over MQTT, decoded without a model: what any Rust
/// consumer of the wire format reads (the `diesel-emitter tail` tool is one).
///
/// The row stays the JSON text it arrived as; read it with [`row_as`](Self::row_as)
/// or `serde_json`. Listeners that know the model get typed
/// [`Event`](crate::Event)s from the emitter instead.
///
/// ```
/// use emitter_core::wire::Envelope;
/// use emitter_core::Action;
///
/// let payload = br#"{"v":1,"id":"8cdbf11c-eb97-8211-8000-000000000001","origin":"api-1",
///   "seq":42,"table":"users","action":"update","committed_at":"2026-11-26T20:00:00.123456Z",
///   "changed":["name"],"row":{"id":7,"name":"Ada","active":true}}"#;
/// let envelope = Envelope::decode("diesel/events", "diesel/events/users/update", payload)?;
/// assert_eq!((envelope.table.as_str(), envelope.action), ("users", Action::Update));
/// assert_eq!((envelope.origin.as_str(), envelope.seq), ("api-1", 42));
/// assert_eq!(envelope.changed, ["name"]);
/// assert_eq!(envelope.row.get(), r#"{"id":7,"name":"Ada","active":true}"#);
/// # Ok::<(), emitter_core::wire::EnvelopeError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Envelope {
    /// The event's id, unique across nodes: deduplicate by it (QoS 1 is at least once).
    pub id: Uuid,
    /// The node id of the emitter that committed the write.
    pub origin: String,
    /// The per-origin sequence number, increasing in commit order.
    pub seq: u64,
    /// The table that was written.
    pub table: String,
    /// The kind of write.
    pub action: Action,
    /// When the write was committed.
    pub committed_at: SystemTime,
    /// The columns the statement assigned (empty if the sender left them out).
    pub changed: Vec<String>,
    /// The row after the write (the deleted row for `delete`), as JSON text exactly
    /// as received.
    pub row: Box<RawValue>,
}

impl Envelope {
    /// Decodes `payload`, received on `topic`, and checks it as the emitter's own
    /// subscriber does: the topic is `{prefix}/{table}/{action}`, the payload is a
    /// version-1 envelope, its table and action are the topic's, `committed_at` is
    /// RFC 3339. No size limit is applied.
    ///
    /// ```
    /// use emitter_core::wire::{Envelope, EnvelopeError};
    ///
    /// let error = Envelope::decode("app/events", "app/events/users/insert", b"{oops")
    ///     .unwrap_err();
    /// assert!(matches!(error, EnvelopeError::Malformed(_)));
    ///
    /// let error = Envelope::decode("app/events", "other/users/insert", b"{}").unwrap_err();
    /// assert!(matches!(error, EnvelopeError::Topic { .. }));
    /// ```
    pub fn decode(prefix: &str, topic: &str, payload: &[u8]) -> Result<Envelope, EnvelopeError> {
        let (table, action) =
            super::topic::parse_topic(prefix, topic).ok_or_else(|| EnvelopeError::Topic {
                topic: topic.to_owned(),
                prefix: prefix.to_owned(),
            })?;
        let checked = check(payload, table, action, usize::MAX)?;
        let inner = &checked.inner;
        Ok(Envelope {
            id: inner.id,
            origin: inner.origin.to_string(),
            seq: inner.seq,
            table: inner.table.to_string(),
            action: inner.action,
            committed_at: checked.committed_at,
            changed: inner.changed.iter().map(|c| c.to_string()).collect(),
            row: inner.row.to_owned(),
        })
    }

    /// Deserializes the row into `T` (the model, or any type of the same serde form).
    ///
    /// ```
    /// use emitter_core::wire::Envelope;
    ///
    /// #[derive(serde::Deserialize)]
    /// struct User { id: i32, name: String }
    ///
    /// let payload = br#"{"v":1,"id":"8cdbf11c-eb97-8211-8000-000000000001","origin":"api-1",
    ///   "seq":1,"table":"users","action":"insert","committed_at":"2026-11-26T20:00:00Z",
    ///   "changed":["id","name"],"row":{"id":7,"name":"Ada"}}"#;
    /// let envelope = Envelope::decode("diesel/events", "diesel/events/users/insert", payload)?;
    /// let user: User = envelope.row_as()?;
    /// assert_eq!((user.id, user.name.as_str()), (7, "Ada"));
    /// assert!(envelope.row_as::<Vec<i32>>().is_err());
    /// # Ok::<(), emitter_core::wire::EnvelopeError>(())
    /// ```
    pub fn row_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        serde_json::from_str(self.row.get()).map_err(|error| EnvelopeError::Row {
            model: std::any::type_name::<T>(),
            error,
        })
    }
}

#[cfg(test)]
mod tests;
