//! Payloads forged the way an attacker who may publish on the broker would, sent
//! through a real Mosquitto with `mosquitto_pub`: none may cost a later event its
//! delivery, reach a listener with a forged origin, or flood or forge the log.

mod broker;
mod log_capture;

use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

/// On a prefix of the test's own on the shared broker: a writer `a`, a node `b`
/// whose `remote_only` listener is `rx`, and `mosquitto_sub` watching the wire.
struct Nodes {
    prefix: String,
    sub: Sub,
    a: Emitter,
    b: Emitter,
    rx: diesel_emitter::crossbeam_channel::Receiver<Event<User>>,
    db: Db,
}

impl Nodes {
    fn start(test: &str) -> Nodes {
        let prefix = unique_prefix(test);
        let sub = Sub::start(SHARED_PORT, &prefix, &["-F", "%t\t%p"]);
        let a = shared_node("a", &prefix);
        let b = shared_node("b", &prefix);
        let rx = b.on::<User>().remote_only(true).subscribe();
        connected(&[&a, &b]);
        Nodes {
            prefix,
            sub,
            a,
            b,
            rx,
            db: Db::new(test),
        }
    }

    /// Inserts a user through `a`; returns the envelope seen on the wire.
    fn write(&self, name: &str) -> serde_json::Value {
        insert(&mut self.db.conn(&self.a), name, true);
        let line = self.sub.expect_line();
        let (_, payload) = line.split_once('\t').expect("topic, tab, payload");
        serde_json::from_str(payload).expect("JSON")
    }

    fn forge(&self, payload: &serde_json::Value) {
        let topic = format!("{}/users/insert", self.prefix);
        mosquitto_pub(SHARED_PORT, &topic, payload.to_string().as_bytes(), &[]);
    }

    fn finish(self) {
        shutdown_all(&[&self.a, &self.b]);
    }
}

#[test]
fn a_payload_that_does_not_decode_does_not_use_up_the_id_of_the_event_it_names() {
    let nodes = Nodes::start("id_burn");
    let first = nodes.write("ada");
    assert_eq!(recv(&nodes.rx).row.name, "ada");
    // Ids are a per-node prefix and a counter: the next one is easy to tell.
    let first_id: uuid::Uuid = first["id"].as_str().unwrap().parse().unwrap();
    let next_id = uuid::Uuid::from_u128(first_id.as_u128() + 1);

    let undecodable = envelope(
        &next_id.to_string(),
        "mallory",
        2,
        "users",
        "insert",
        serde_json::json!({ "id": "not a number" }),
    );
    nodes.forge(&undecodable);
    nodes.write("grace");

    let next = recv(&nodes.rx);
    assert_eq!((next.row.name.as_str(), next.meta.id), ("grace", next_id));
    let stats = nodes.b.stats();
    assert_eq!((stats.remote_rejected, stats.remote_duplicates), (1, 0));
    nodes.finish();
}

#[test]
fn remote_origins_that_could_not_be_node_ids_are_rejected_and_counted() {
    let nodes = Nodes::start("origins");
    let long = "o".repeat(100 * 1024);
    for (i, origin) in ["", long.as_str(), "api-1\nWARN forged log line"]
        .into_iter()
        .enumerate()
    {
        let row = user_row(100 + i as i32, "eve");
        nodes.forge(&envelope(&fake_uuid(), origin, 1, "users", "insert", row));
    }
    nodes.write("ada");

    let next = recv(&nodes.rx);
    assert_eq!(
        next.row.name, "ada",
        "no forged origin reached the listener"
    );
    assert_eq!(next.meta.origin.as_ref(), nodes.a.node_id());
    assert_eq!(nodes.b.stats().remote_rejected, 3);
    nodes.finish();
}

#[test]
fn a_flood_of_garbage_is_counted_exactly_and_logged_in_a_few_escaped_summary_lines() {
    const FLOOD: u64 = 50_000;
    log_capture::start();
    // A broker of its own: the shared one drops QoS 1 messages beyond 1,000 queued.
    let broker = Broker::start();
    let prefix = unique_prefix("flood");
    let config = MqttConfig::new(broker.url()).topic_prefix(&prefix);
    let a = node("a", config.clone());
    let b = node("b", config);
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    // Serde quotes what it cannot read: every other line asks the terminal that
    // shows the log for a new title and a cleared screen.
    let hostile = r#"{"v":1,"id":"8cdbf11c-eb97-8211-8000-000000000001","origin":"x","seq":1,"table":"users","action":"\u001b]0;owned\u0007\u001b[2J","committed_at":"2026-01-01T00:00:00Z","row":{}}"#;
    let mut lines = String::new();
    for i in 0..FLOOD {
        if i % 2 == 0 {
            lines.push_str(hostile);
        } else {
            lines.push_str(&format!("garbage {i}"));
        }
        lines.push('\n');
    }
    let started = Instant::now();
    let mut flood = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
        .args(["-t", &format!("{prefix}/users/insert"), "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub starts");
    flood
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(flood.wait().unwrap().success());
    let db = Db::new("flood");
    insert(&mut db.conn(&a), "sentinel", true);

    assert_eq!(recv(&rx).row.name, "sentinel", "good events still arrive");
    assert_eq!(b.stats().remote_rejected, FLOOD, "every payload counted");
    shutdown_all(&[&a, &b]);
    let took = started.elapsed();

    let summaries = log_capture::lines_containing(&prefix);
    let logged: u64 = summaries
        .iter()
        .map(|line| {
            let n = line.split(" dropped=").nth(1).expect("a dropped= field");
            n.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    eprintln!(
        "{FLOOD} garbage payloads in {took:?}: {} log lines, e.g. {:?}",
        summaries.len(),
        summaries.last()
    );
    assert_eq!(
        logged, FLOOD,
        "the summaries add up to every payload dropped"
    );
    let most = 2 + took.as_secs() / 10;
    assert!(
        summaries.len() as u64 <= most,
        "{} lines for {took:?}: more than one per 10 s (and the last)",
        summaries.len()
    );
    for line in &summaries {
        assert!(
            !line.contains(['\u{1b}', '\u{7}', '\n']),
            "raw control characters in {line:?}"
        );
    }
    assert!(
        summaries.iter().any(|l| l.contains(r"\u{1b}]0;owned\u{7}")),
        "the reason is shown, escaped: {summaries:?}"
    );
}
