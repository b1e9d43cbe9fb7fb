//! The envelope decoder's unit tests: every check, on payloads written by hand.

use super::*;

const PREFIX: &str = "diesel/events";

fn payload(v: u32, table: &str, action: &str) -> Vec<u8> {
    format!(
        r#"{{"v":{v},"id":"8cdbf11c-eb97-8211-8000-000000000001","origin":"api-1","seq":42,"table":"{table}","action":"{action}","committed_at":"2026-11-26T20:00:00.123456Z","changed":["name"],"row":{{"id":7,"name":"Ada"}}}}"#
    )
    .into_bytes()
}

#[test]
fn strings_escaped_by_other_encoders_decode_to_their_text() {
    // Python's json.dumps, for one, writes non-ASCII text as \u escapes.
    let payload = br#"{"v":1,"id":"8cdbf11c-eb97-8211-8000-000000000001","origin":"caf\u00e9-1","seq":1,"table":"users","action":"insert","committed_at":"2026-11-26T20:00:00Z","changed":["na\u006de"],"row":{}}"#;
    let envelope = Envelope::decode(PREFIX, "diesel/events/users/insert", payload).unwrap();
    assert_eq!(
        (envelope.origin.as_str(), envelope.changed),
        ("café-1", vec!["name".to_owned()])
    );
}

#[test]
fn decode_reads_every_field_of_a_valid_envelope() {
    let envelope = Envelope::decode(
        PREFIX,
        "diesel/events/users/update",
        &payload(1, "users", "update"),
    )
    .unwrap();
    assert_eq!(
        envelope.id.to_string(),
        "8cdbf11c-eb97-8211-8000-000000000001"
    );
    assert_eq!(envelope.origin, "api-1");
    assert_eq!(envelope.seq, 42);
    assert_eq!(envelope.table, "users");
    assert_eq!(envelope.action, Action::Update);
    assert_eq!(
        humantime::format_rfc3339_micros(envelope.committed_at).to_string(),
        "2026-11-26T20:00:00.123456Z"
    );
    assert_eq!(envelope.changed, ["name"]);
    assert_eq!(envelope.row.get(), r#"{"id":7,"name":"Ada"}"#);
}

#[test]
fn decode_rejects_another_version() {
    let error = Envelope::decode(
        PREFIX,
        "diesel/events/users/update",
        &payload(2, "users", "update"),
    )
    .unwrap_err();
    assert!(matches!(error, EnvelopeError::Version(2)), "{error}");
}

#[test]
fn decode_rejects_malformed_json() {
    let error =
        Envelope::decode(PREFIX, "diesel/events/users/update", br#"{"v":1,"id":"#).unwrap_err();
    assert!(matches!(error, EnvelopeError::Malformed(_)), "{error}");
}

#[test]
fn decode_rejects_an_envelope_missing_a_field() {
    let error = Envelope::decode(PREFIX, "diesel/events/users/update", br#"{"v":1}"#).unwrap_err();
    assert!(error.to_string().contains("missing field"), "{error}");
}

#[test]
fn decode_rejects_a_table_other_than_the_topics() {
    let error = Envelope::decode(
        PREFIX,
        "diesel/events/posts/update",
        &payload(1, "users", "update"),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"envelope for table "users" arrived on the topic of "posts""#
    );
}

#[test]
fn decode_rejects_an_action_other_than_the_topics() {
    let error = Envelope::decode(
        PREFIX,
        "diesel/events/users/delete",
        &payload(1, "users", "update"),
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            EnvelopeError::ActionMismatch {
                envelope: Action::Update,
                topic: Action::Delete
            }
        ),
        "{error}"
    );
}

#[test]
fn decode_rejects_a_topic_outside_the_prefix() {
    let error =
        Envelope::decode(PREFIX, "other/users/update", &payload(1, "users", "update")).unwrap_err();
    assert!(matches!(error, EnvelopeError::Topic { .. }), "{error}");
}

#[test]
fn decode_rejects_an_origin_that_could_not_be_a_node_id() {
    let long = "o".repeat(100 * 1024);
    for (origin, problem) in [
        ("", "empty"),
        (long.as_str(), "longer than 128 bytes"),
        ("api-1\\nforged log line", "contains"),
        ("\\u001b]0;owned\\u0007", "contains"),
    ] {
        let text = String::from_utf8(payload(1, "users", "update"))
            .unwrap()
            .replace(r#""origin":"api-1""#, &format!(r#""origin":"{origin}""#));
        let error =
            Envelope::decode(PREFIX, "diesel/events/users/update", text.as_bytes()).unwrap_err();
        assert!(matches!(error, EnvelopeError::Origin(_)), "{error}");
        assert!(error.to_string().contains(problem), "{error}");
    }
}

#[test]
fn decode_rejects_a_bad_timestamp() {
    let text = String::from_utf8(payload(1, "users", "update"))
        .unwrap()
        .replace("2026-11-26T20:00:00.123456Z", "yesterday");
    let error =
        Envelope::decode(PREFIX, "diesel/events/users/update", text.as_bytes()).unwrap_err();
    assert!(matches!(error, EnvelopeError::Timestamp(_)), "{error}");
}
