//! The wire envelope: one JSON object per event, versioned by `v`.
//!
//! `{"v":1,"id":"<uuid>","origin":"<node>","seq":42,"table":"users","action":"update",
//!   "committed_at":"<RFC 3339>","changed":["name"],"row":{...}}`

use crate::action::{Action, Source};
use crate::emits::Emits;
use crate::event::{Event, EventMeta};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

/// The envelope version this crate writes and reads.
pub const WIRE_VERSION: u32 = 1;

#[derive(Serialize)]
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
pub(crate) fn encode<M: Emits>(event: &Event<M>) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Outgoing {
        v: WIRE_VERSION,
        id: &event.meta.id,
        origin: &event.meta.origin,
        seq: event.meta.seq,
        table: event.meta.table,
        action: event.action,
        committed_at: humantime::format_rfc3339_micros(event.meta.committed_at).to_string(),
        changed: event.changed(),
        row: &event.row,
    })
}

/// The parts of an envelope every model shares, with the row left undecoded.
#[derive(Deserialize)]
pub(crate) struct Incoming<'a> {
    v: u32,
    pub(crate) id: Uuid,
    pub(crate) origin: &'a str,
    pub(crate) seq: u64,
    pub(crate) table: &'a str,
    pub(crate) action: Action,
    committed_at: &'a str,
    #[serde(default)]
    changed: Vec<&'a str>,
    #[serde(borrow)]
    row: &'a RawValue,
}

/// Why a received payload was not delivered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejected {
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("not an event envelope: {0}")]
    Malformed(serde_json::Error),
    #[error("envelope version {0} is not supported (this node reads version 1)")]
    Version(u32),
    #[error("committed_at {0:?} is not RFC 3339")]
    Timestamp(String),
    #[error("envelope for table {envelope:?} arrived on the topic of {topic:?}")]
    TableMismatch { envelope: String, topic: String },
    #[error("envelope action does not match its topic")]
    ActionMismatch,
    #[error("row does not decode into {model}: {error}")]
    Row {
        model: &'static str,
        error: serde_json::Error,
    },
}

/// An envelope that passed the checks shared by every model.
pub(crate) struct Checked<'a> {
    pub(crate) inner: Incoming<'a>,
    pub(crate) committed_at: SystemTime,
}

/// Parses and checks a payload received on the topic of `table`/`action`.
pub(crate) fn check<'a>(
    payload: &'a [u8],
    table: &str,
    action: Action,
    max: usize,
) -> Result<Checked<'a>, Rejected> {
    if payload.len() > max {
        return Err(Rejected::TooLarge(payload.len()));
    }
    // Read the version first, so a future envelope shape is reported as such.
    #[derive(Deserialize)]
    struct Version {
        v: u32,
    }
    let version: Version = serde_json::from_slice(payload).map_err(Rejected::Malformed)?;
    if version.v != WIRE_VERSION {
        return Err(Rejected::Version(version.v));
    }
    let inner: Incoming<'a> = serde_json::from_slice(payload).map_err(Rejected::Malformed)?;
    debug_assert_eq!(inner.v, WIRE_VERSION);
    if inner.table != table {
        return Err(Rejected::TableMismatch {
            envelope: inner.table.to_owned(),
            topic: table.to_owned(),
        });
    }
    if inner.action != action {
        return Err(Rejected::ActionMismatch);
    }
    let committed_at = humantime::parse_rfc3339_weak(inner.committed_at)
        .map_err(|_| Rejected::Timestamp(inner.committed_at.to_owned()))?;
    Ok(Checked {
        inner,
        committed_at,
    })
}

impl Checked<'_> {
    /// Decodes the row into `M` and builds the remote event.
    pub(crate) fn to_event<M: Emits>(&self, origin: &Arc<str>) -> Result<Event<M>, Rejected> {
        let row: M = serde_json::from_str(self.inner.row.get()).map_err(|error| Rejected::Row {
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
