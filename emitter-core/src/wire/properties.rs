//! Property tests of the wire format: whatever arrives, decoding returns a value or
//! an error and never panics; whatever the emitter sends decodes to what it sent.

use super::envelope::{encode, Envelope, EnvelopeError};
use super::topic::{event_topic, is_valid_level};
use crate::{Action, Emits, Event, EventMeta, Source};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Row {
    id: i64,
    name: String,
    score: Option<f64>,
    tags: Vec<String>,
}

impl Emits for Row {
    const TABLE: &'static str = "rows";
    const COLUMNS: &'static [&'static str] = &["id", "name", "score", "tags"];
    const PRIMARY_KEY: &'static [&'static str] = &["id"];
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Insert),
        Just(Action::Update),
        Just(Action::Delete)
    ]
}

/// A topic level we accept: no `/`, wildcards or NUL, not empty.
fn level() -> impl Strategy<Value = String> {
    "[^/+#\u{0}]{1,24}"
}

/// A node id an emitter accepts: topic-level characters, no control characters.
fn node_id() -> impl Strategy<Value = String> {
    "[^/+#\\p{Cc}]{1,24}"
}

fn row() -> impl Strategy<Value = Row> {
    (
        any::<i64>(),
        any::<String>(),
        // JSON has no NaN or infinity; finite floats must come back bit for bit.
        proptest::option::of(any::<f64>().prop_filter("finite", |f| f.is_finite())),
        proptest::collection::vec(any::<String>(), 0..4),
    )
        .prop_map(|(id, name, score, tags)| Row {
            id,
            name,
            score,
            tags,
        })
}

fn event() -> impl Strategy<Value = Event<Row>> {
    (
        row(),
        action(),
        any::<u128>(),
        node_id(),
        any::<u64>(),
        // Microseconds: the envelope's precision.
        0u64..4_102_444_800_000_000,
        proptest::sample::subsequence(Row::COLUMNS.to_vec(), 0..=Row::COLUMNS.len()),
    )
        .prop_map(|(row, action, id, origin, seq, micros, changed)| {
            let meta = EventMeta {
                id: uuid::Uuid::from_u128(id),
                table: Row::TABLE,
                origin: origin.into(),
                seq,
                source: Source::Local,
                committed_at: UNIX_EPOCH + Duration::from_micros(micros),
            };
            Event::new(action, row, meta, Arc::from(changed))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_arbitrary_bytes_on_an_arbitrary_topic_never_panics(
        prefix in any::<String>(),
        topic in any::<String>(),
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = Envelope::decode(&prefix, &topic, &payload);
    }

    #[test]
    fn decoding_a_damaged_envelope_never_panics(
        event in event(),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut payload = encode(&event).expect("encode");
        for (at, byte) in cuts {
            let i = at.index(payload.len());
            payload[i] = byte;
        }
        let topic = event_topic("diesel/events", Row::TABLE, event.action);
        let _ = Envelope::decode("diesel/events", &topic, &payload);
    }

    #[test]
    fn every_sent_event_decodes_to_what_was_sent(event in event(), prefix in "[a-z]{1,8}(/[a-z]{1,8}){0,2}") {
        let payload = encode(&event).expect("encode");
        let topic = event_topic(&prefix, Row::TABLE, event.action);

        let decoded = Envelope::decode(&prefix, &topic, &payload).expect("decode");

        prop_assert_eq!(decoded.id, event.meta.id);
        prop_assert_eq!(&decoded.origin, &*event.meta.origin);
        prop_assert_eq!(decoded.seq, event.meta.seq);
        prop_assert_eq!((decoded.table.as_str(), decoded.action), (Row::TABLE, event.action));
        prop_assert_eq!(decoded.committed_at, event.meta.committed_at);
        prop_assert_eq!(&decoded.changed, &event.changed().to_vec());
        prop_assert_eq!(decoded.row_as::<Row>().expect("row"), event.row);
    }

    #[test]
    fn an_envelope_on_another_tables_or_actions_topic_is_rejected(
        event in event(),
        table in level(),
        other in action(),
    ) {
        let payload = encode(&event).expect("encode");
        let topic = event_topic("p", &table, other);
        let result = Envelope::decode("p", &topic, &payload);
        if table != Row::TABLE {
            prop_assert!(
                matches!(result, Err(EnvelopeError::TableMismatch { .. })),
                "expected TableMismatch, got {:?}",
                result
            );
        } else if other != event.action {
            prop_assert!(
                matches!(result, Err(EnvelopeError::ActionMismatch { .. })),
                "expected ActionMismatch, got {:?}",
                result
            );
        } else {
            prop_assert!(result.is_ok());
        }
    }

    #[test]
    fn topics_parse_only_under_their_prefix_with_a_valid_table_and_action(
        prefix in any::<String>(),
        topic in any::<String>(),
    ) {
        // Whatever parses names a valid table and one of the three actions, and
        // rebuilds into the same topic.
        if let Some((table, action)) = super::topic::parse_topic(&prefix, &topic) {
            prop_assert!(is_valid_level(table));
            prop_assert_eq!(event_topic(&prefix, table, action), topic);
        }
    }
}

#[test]
fn a_future_timestamp_and_the_epoch_both_survive_the_round_trip() {
    for at in [
        UNIX_EPOCH,
        SystemTime::now() + Duration::from_secs(86_400 * 365),
    ] {
        let micros = at
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_micros();
        let at = UNIX_EPOCH + Duration::from_micros(micros as u64);
        let event = Event::new(
            Action::Insert,
            Row {
                id: 1,
                name: String::new(),
                score: None,
                tags: vec![],
            },
            EventMeta {
                id: uuid::Uuid::nil(),
                table: Row::TABLE,
                origin: "n".into(),
                seq: 0,
                source: Source::Local,
                committed_at: at,
            },
            Arc::from(Vec::new()),
        );
        let payload = encode(&event).expect("encode");
        let decoded = Envelope::decode("p", "p/rows/insert", &payload).expect("decode");
        assert_eq!(decoded.committed_at, at);
    }
}
