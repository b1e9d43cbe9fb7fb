//! Signed envelopes (`MqttConfig::signing_key`): nodes holding the key hear each
//! other; unsigned, altered, foreign-key and replayed payloads are dropped and
//! counted. Forgeries are injected with `mosquitto_pub` on the shared broker.

mod broker;

use broker::*;
use diesel_emitter::crossbeam_channel::Receiver;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use std::time::Duration;

const KEY: &[u8] = b"a 32-byte key for the test suite";

fn signed(prefix: &str, key: &[u8]) -> MqttConfig {
    MqttConfig::new(SHARED_URL)
        .topic_prefix(prefix)
        .signing_key(key)
}

/// On a prefix of the test's own: a writer `a` signing with [`KEY`], a node `b`
/// whose `remote_only` listener is `rx`, and `mosquitto_sub` watching the wire.
struct Nodes {
    prefix: String,
    sub: Sub,
    a: Emitter,
    b: Emitter,
    rx: Receiver<Event<User>>,
}

impl Nodes {
    /// `b` gets `b_config`, given the prefix.
    fn start(test: &str, b_config: impl FnOnce(&str) -> MqttConfig) -> Nodes {
        let prefix = unique_prefix(test);
        let sub = Sub::start(SHARED_PORT, &prefix, &["-F", "%t\t%p"]);
        let a = node("a", signed(&prefix, KEY));
        let b = node("b", b_config(&prefix));
        let rx = b.on::<User>().remote_only(true).subscribe();
        connected(&[&a, &b]);
        Nodes {
            prefix,
            sub,
            a,
            b,
            rx,
        }
    }

    /// Inserts a user through `a`; returns the topic and payload seen on the wire.
    fn write(&self, name: &str) -> (String, String) {
        insert(&mut Db::new("signing").conn(&self.a), name, true);
        let line = self.sub.expect_line();
        let (topic, payload) = line.split_once('\t').expect("topic, tab, payload");
        (topic.to_owned(), payload.to_owned())
    }

    fn finish(self) {
        shutdown_all(&[&self.a, &self.b]);
    }
}

#[test]
fn nodes_holding_the_key_hear_each_others_signed_events() {
    let nodes = Nodes::start("signed_flow", |p| signed(p, KEY));

    let (_, payload) = nodes.write("ada");

    assert_eq!(recv(&nodes.rx).row.name, "ada");
    let envelope: serde_json::Value = serde_json::from_str(&payload).expect("JSON");
    let sig = envelope["sig"].as_str().expect("a sig member");
    assert!(
        sig.len() == 64 && sig.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sig}"
    );
    nodes.finish();
}

#[test]
fn unsigned_payloads_are_dropped_and_counted() {
    let nodes = Nodes::start("signed_unsigned", |p| signed(p, KEY));
    let forged = envelope(
        &fake_uuid(),
        "mallory",
        1,
        "users",
        "insert",
        user_row(1, "eve"),
    );

    let topic = format!("{}/users/insert", nodes.prefix);
    mosquitto_pub(SHARED_PORT, &topic, forged.to_string().as_bytes(), &[]);
    nodes.write("ada");

    assert_eq!(recv(&nodes.rx).row.name, "ada", "the forgery never arrives");
    assert_eq!(nodes.b.stats().remote_unsigned, 1);
    nodes.finish();
}

#[test]
fn altered_payloads_are_dropped_and_counted() {
    let nodes = Nodes::start("signed_altered", |p| signed(p, KEY));
    let (topic, genuine) = nodes.write("ada");
    assert_eq!(recv(&nodes.rx).row.name, "ada");

    let altered = genuine
        .replace("\"ada\"", "\"eve\"")
        .replace(&id_of(&genuine), &fake_uuid());
    assert_ne!(altered, genuine);
    mosquitto_pub(SHARED_PORT, &topic, altered.as_bytes(), &[]);
    nodes.write("grace");

    let next = recv(&nodes.rx);
    assert_eq!(next.row.name, "grace", "the altered copy never arrives");
    assert_eq!(nodes.b.stats().remote_bad_signature, 1);
    nodes.finish();
}

#[test]
fn a_node_with_another_key_drops_every_event_and_counts_it() {
    let nodes = Nodes::start("signed_other_key", |p| {
        signed(p, b"another key, also long enough!!!")
    });

    nodes.write("ada");

    assert!(
        eventually(TIMEOUT, || nodes.b.stats().remote_bad_signature == 1),
        "{:?}",
        nodes.b.stats()
    );
    assert_empty(&nodes.rx);
    nodes.finish();
}

#[test]
fn a_signed_event_replayed_after_the_replay_window_is_dropped_and_counted() {
    let window = Duration::from_secs(1);
    let nodes = Nodes::start("signed_replay_old", |p| {
        signed(p, KEY).replay_window(window)
    });
    let (topic, genuine) = nodes.write("ada");
    assert_eq!(recv(&nodes.rx).row.name, "ada");

    std::thread::sleep(window + Duration::from_millis(200));
    mosquitto_pub(SHARED_PORT, &topic, genuine.as_bytes(), &[]);

    assert!(
        eventually(TIMEOUT, || nodes.b.stats().remote_replayed == 1),
        "{:?}",
        nodes.b.stats()
    );
    assert_empty(&nodes.rx);
    nodes.finish();
}

#[test]
fn a_signed_event_replayed_within_the_window_is_dropped_by_its_id() {
    let nodes = Nodes::start("signed_replay_recent", |p| signed(p, KEY));
    let (topic, genuine) = nodes.write("ada");
    assert_eq!(recv(&nodes.rx).row.name, "ada");

    mosquitto_pub(SHARED_PORT, &topic, genuine.as_bytes(), &[]);

    assert!(
        eventually(TIMEOUT, || nodes.b.stats().remote_duplicates == 1),
        "{:?}",
        nodes.b.stats()
    );
    assert_empty(&nodes.rx);
    nodes.finish();
}

/// `envelope` as a node holding `key` signs it for `topic`: HMAC-SHA256 over the
/// topic, a NUL byte and the envelope, computed by the `openssl` command (the
/// README's recipe, in another implementation than the library's).
fn sign(topic: &str, envelope: &serde_json::Value, key: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let body = envelope.to_string();
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-mac", "HMAC", "-macopt"])
        .arg(format!("key:{}", std::str::from_utf8(key).unwrap()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut stdin = openssl.stdin.take().unwrap();
    stdin.write_all(topic.as_bytes()).unwrap();
    stdin.write_all(b"\0").unwrap();
    stdin.write_all(body.as_bytes()).unwrap();
    drop(stdin);
    let output = openssl.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let tag = text.trim().rsplit("= ").next().unwrap().to_owned();
    assert_eq!(tag.len(), 64, "{text}");
    format!("{},\"sig\":\"{tag}\"}}", &body[..body.len() - 1])
}

/// A correctly signed envelope of a new user, committed at `committed_at`.
fn signed_forgery(nodes: &Nodes, committed_at: &str) -> (String, String) {
    let topic = format!("{}/users/insert", nodes.prefix);
    let mut forged = envelope(
        &fake_uuid(),
        "node-from-the-future",
        1,
        "users",
        "insert",
        user_row(99, "marty"),
    );
    forged["committed_at"] = committed_at.into();
    let payload = sign(&topic, &forged, KEY);
    (topic, payload)
}

#[test]
fn a_signed_event_dated_beyond_the_clock_skew_is_refused_as_a_replay() {
    let nodes = Nodes::start("signed_future", |p| signed(p, KEY));
    let (topic, payload) = signed_forgery(&nodes, "2999-01-01T00:00:00Z");

    mosquitto_pub(SHARED_PORT, &topic, payload.as_bytes(), &[]);
    nodes.write("ada");

    assert_eq!(
        recv(&nodes.rx).row.name,
        "ada",
        "the event from 2999 never arrives"
    );
    let stats = nodes.b.stats();
    assert_eq!((stats.remote_replayed, stats.remote_bad_signature), (1, 0));
    nodes.finish();
}

#[test]
fn a_signed_event_dated_within_the_clock_skew_is_accepted() {
    let nodes = Nodes::start("signed_skew", |p| {
        signed(p, KEY).max_clock_skew(Duration::from_secs(60))
    });
    let soon = std::time::SystemTime::now() + Duration::from_secs(5);
    let soon = chrono::DateTime::<chrono::Utc>::from(soon)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (topic, payload) = signed_forgery(&nodes, &soon);

    mosquitto_pub(SHARED_PORT, &topic, payload.as_bytes(), &[]);

    let event = recv(&nodes.rx);
    assert_eq!(
        (event.row.name.as_str(), &*event.meta.origin),
        ("marty", "node-from-the-future")
    );
    nodes.finish();
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
