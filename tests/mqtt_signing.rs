//! Signed envelopes (`MqttConfig::signing_key`): nodes holding the key hear each
//! other; unsigned, altered, foreign-key and replayed payloads are dropped and
//! counted. Forgeries are injected with `mosquitto_pub` on the shared broker.

mod broker;

use broker::*;
use diesel_emitter::prelude::*;
use std::time::Duration;

const KEY: &[u8] = b"a 32-byte key for the test suite";

fn signed(prefix: &str, key: &[u8]) -> MqttConfig {
    MqttConfig::new(SHARED_URL)
        .topic_prefix(prefix)
        .signing_key(key)
}

/// Inserts a user through `a` and returns the signed payload `sub` saw for it.
fn insert_and_capture(a: &Emitter, sub: &Sub, name: &str) -> (String, String) {
    let db = Db::new("signing");
    insert(&mut db.conn(a), name, true);
    let line = sub.expect_line();
    let (topic, payload) = line.split_once('\t').expect("topic, tab, payload");
    (topic.to_owned(), payload.to_owned())
}

#[test]
fn nodes_holding_the_key_hear_each_others_signed_events() {
    let prefix = unique_prefix("signed_flow");
    let sub = Sub::start(SHARED_PORT, &prefix, &["-F", "%t\t%p"]);
    let a = node("a", signed(&prefix, KEY));
    let b = node("b", signed(&prefix, KEY));
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);

    let (_, payload) = insert_and_capture(&a, &sub, "ada");

    assert_eq!(recv(&rx).row.name, "ada");
    let envelope: serde_json::Value = serde_json::from_str(&payload).expect("JSON");
    let sig = envelope["sig"].as_str().expect("a sig member");
    assert!(
        sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sig}"
    );
    shutdown_all(&[&a, &b]);
}

#[test]
fn unsigned_payloads_are_dropped_and_counted() {
    let prefix = unique_prefix("signed_unsigned");
    let a = node("a", signed(&prefix, KEY));
    let b = node("b", signed(&prefix, KEY));
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let forged = envelope(
        &fake_uuid(),
        "mallory",
        1,
        "users",
        "insert",
        user_row(1, "eve"),
    );

    mosquitto_pub(
        SHARED_PORT,
        &format!("{prefix}/users/insert"),
        forged.to_string().as_bytes(),
        &[],
    );
    insert(&mut Db::new("signing").conn(&a), "ada", true);

    assert_eq!(recv(&rx).row.name, "ada", "the forgery never arrives");
    assert_eq!(b.stats().remote_unsigned, 1);
    shutdown_all(&[&a, &b]);
}

#[test]
fn altered_payloads_are_dropped_and_counted() {
    let prefix = unique_prefix("signed_altered");
    let sub = Sub::start(SHARED_PORT, &prefix, &["-F", "%t\t%p"]);
    let a = node("a", signed(&prefix, KEY));
    let b = node("b", signed(&prefix, KEY));
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let (topic, genuine) = insert_and_capture(&a, &sub, "ada");
    assert_eq!(recv(&rx).row.name, "ada");

    let altered = genuine
        .replace("\"ada\"", "\"eve\"")
        .replace(&id_of(&genuine), &fake_uuid());
    assert_ne!(altered, genuine);
    mosquitto_pub(SHARED_PORT, &topic, altered.as_bytes(), &[]);
    insert(&mut Db::new("signing").conn(&a), "grace", true);

    assert_eq!(
        recv(&rx).row.name,
        "grace",
        "the altered copy never arrives"
    );
    assert_eq!(b.stats().remote_bad_signature, 1);
    shutdown_all(&[&a, &b]);
}

#[test]
fn a_node_with_another_key_drops_every_event_and_counts_it() {
    let prefix = unique_prefix("signed_other_key");
    let a = node("a", signed(&prefix, KEY));
    let c = node("c", signed(&prefix, b"another key, also long enough!!!"));
    let rx = c.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &c]);

    insert(&mut Db::new("signing").conn(&a), "ada", true);

    assert!(
        eventually(TIMEOUT, || c.stats().remote_bad_signature == 1),
        "{:?}",
        c.stats()
    );
    assert_empty(&rx);
    shutdown_all(&[&a, &c]);
}

#[test]
fn a_signed_event_replayed_after_the_replay_window_is_dropped_and_counted() {
    let prefix = unique_prefix("signed_replay_old");
    let sub = Sub::start(SHARED_PORT, &prefix, &["-F", "%t\t%p"]);
    let window = Duration::from_secs(1);
    let a = node("a", signed(&prefix, KEY));
    let b = node("b", signed(&prefix, KEY).replay_window(window));
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let (topic, genuine) = insert_and_capture(&a, &sub, "ada");
    assert_eq!(recv(&rx).row.name, "ada");

    std::thread::sleep(window + Duration::from_millis(200));
    mosquitto_pub(SHARED_PORT, &topic, genuine.as_bytes(), &[]);

    assert!(
        eventually(TIMEOUT, || b.stats().remote_replayed == 1),
        "{:?}",
        b.stats()
    );
    assert_empty(&rx);
    shutdown_all(&[&a, &b]);
}

#[test]
fn a_signed_event_replayed_within_the_window_is_dropped_by_its_id() {
    let prefix = unique_prefix("signed_replay_recent");
    let sub = Sub::start(SHARED_PORT, &prefix, &["-F", "%t\t%p"]);
    let a = node("a", signed(&prefix, KEY));
    let b = node("b", signed(&prefix, KEY));
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let (topic, genuine) = insert_and_capture(&a, &sub, "ada");
    assert_eq!(recv(&rx).row.name, "ada");

    mosquitto_pub(SHARED_PORT, &topic, genuine.as_bytes(), &[]);

    assert!(
        eventually(TIMEOUT, || b.stats().remote_duplicates == 1),
        "{:?}",
        b.stats()
    );
    assert_empty(&rx);
    shutdown_all(&[&a, &b]);
}

#[test]
fn a_signing_key_shorter_than_16_bytes_is_a_configuration_error() {
    let refused = Emitter::builder()
        .mqtt(signed("p", b"short"))
        .build()
        .expect_err("a 5-byte key is refused");
    assert_eq!(
        refused.to_string(),
        "invalid MQTT configuration: signing key of 5 bytes is too short: use at least 16 bytes"
    );
}

/// The `id` of an envelope, as written in it.
fn id_of(payload: &str) -> String {
    let envelope: serde_json::Value = serde_json::from_str(payload).expect("JSON");
    envelope["id"].as_str().expect("an id").to_owned()
}
