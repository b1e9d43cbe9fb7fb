//! `diesel-emitter tail` end to end, against the Mosquitto at 127.0.0.1:1883: the
//! binary runs as a child process, real emitters (and `mosquitto_pub`) publish, and
//! each test has a topic prefix of its own.

mod support;

use emitter_core::wire::Envelope;
use emitter_core::{Action, Emits};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

#[test]
fn json_prints_each_payload_exactly_as_received_one_per_line() {
    let prefix = unique_prefix("json_exact");
    let mut tail = Tail::start(&prefix, &["--json"]);
    // A sender's own spacing is kept: the line is the payload, byte for byte.
    let spaced = README_ENVELOPE.replace(r#""seq":42,"#, r#""seq": 43, "#);
    mosquitto_pub(&format!("{prefix}/users/update"), README_ENVELOPE);
    mosquitto_pub(&format!("{prefix}/users/update"), &spaced);
    assert_eq!(tail.line(), README_ENVELOPE);
    assert_eq!(tail.line(), spaced);
    let (status, rest, _) = tail.interrupt();
    assert!(status.success());
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn json_prints_an_emitters_events_as_envelopes_in_commit_order() {
    let prefix = unique_prefix("json_emitter");
    let mut tail = Tail::start(&prefix, &["--json"]);
    publish(
        &prefix,
        "api-1",
        vec![
            user(Action::Insert, 1, "Ada", User::COLUMNS),
            user(Action::Update, 1, "Ada L.", &["name"]),
            post(Action::Delete, 9, "old"),
        ],
    );
    let expected = [
        ("users", Action::Insert, 1),
        ("users", Action::Update, 2),
        ("posts", Action::Delete, 3),
    ];
    for (table, action, seq) in expected {
        let line = tail.line();
        let topic = format!("{prefix}/{table}/{action}");
        let envelope = Envelope::decode(&prefix, &topic, line.as_bytes()).unwrap();
        assert_eq!(
            (envelope.origin.as_str(), envelope.seq),
            ("api-1", seq),
            "{line}"
        );
    }
    let (status, rest, _) = tail.interrupt();
    assert!(status.success());
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn table_filter_prints_only_that_tables_events() {
    let prefix = unique_prefix("table_filter");
    let mut tail = Tail::start(&prefix, &["--json", "--table", "users"]);
    publish(
        &prefix,
        "api-1",
        vec![
            post(Action::Insert, 1, "first"),
            user(Action::Insert, 1, "Ada", User::COLUMNS),
            post(Action::Insert, 2, "second"),
        ],
    );
    assert!(tail.line().contains(r#""table":"users""#));
    // A later event of a table we see: had the second post been printed, it would
    // come first.
    publish(
        &prefix,
        "api-1",
        vec![user(Action::Delete, 1, "Ada", User::COLUMNS)],
    );
    assert!(tail.line().contains(r#""action":"delete""#));
    let stderr = tail.stop_cleanly();
    assert!(!stderr.contains("posts"), "{stderr}");
}

#[test]
fn action_filter_prints_only_those_actions() {
    let prefix = unique_prefix("action_filter");
    let mut tail = Tail::start(&prefix, &["--json", "--action", "delete"]);
    publish(
        &prefix,
        "api-1",
        vec![
            user(Action::Insert, 1, "Ada", User::COLUMNS),
            user(Action::Update, 1, "Ada L.", &["name"]),
            user(Action::Delete, 1, "Ada L.", User::COLUMNS),
        ],
    );
    assert!(tail.line().contains(r#""action":"delete""#));
    let stderr = tail.stop_cleanly();
    assert!(stderr.contains("1 event, 2 filtered out"), "{stderr}");
}

#[test]
fn origin_filter_prints_only_that_nodes_events() {
    let prefix = unique_prefix("origin_filter");
    let mut tail = Tail::start(&prefix, &["--json", "--origin", "node-b"]);
    publish(
        &prefix,
        "node-a",
        vec![user(Action::Insert, 1, "from a", User::COLUMNS)],
    );
    publish(
        &prefix,
        "node-b",
        vec![user(Action::Insert, 2, "from b", User::COLUMNS)],
    );
    let line = tail.line();
    assert!(line.contains(r#""origin":"node-b""#), "{line}");
    let stderr = tail.stop_cleanly();
    assert!(stderr.contains("1 event, 1 filtered out"), "{stderr}");
}

#[test]
fn human_format_shows_time_origin_seq_table_action_changed_and_row() {
    let prefix = unique_prefix("human");
    let mut tail = Tail::start(&prefix, &[]);
    mosquitto_pub(&format!("{prefix}/users/update"), README_ENVELOPE);
    assert_eq!(
        tail.line(),
        r#"2026-11-26T20:00:00.123456Z api-1 #42 users update [name] {"id":7,"name":"Ada","active":true}"#
    );
}

#[test]
fn human_format_is_plain_on_a_pipe_and_coloured_with_color_always() {
    let prefix = unique_prefix("colour");
    let mut plain = Tail::start(&prefix, &[]);
    let mut coloured = Tail::start(&prefix, &["--color", "always"]);
    mosquitto_pub(&format!("{prefix}/users/update"), README_ENVELOPE);
    assert!(!plain.line().contains('\x1b'));
    let line = coloured.line();
    assert!(line.contains("\x1b[1;33mupdate\x1b[0m"), "{line:?}");
}

#[test]
fn a_bad_payload_is_reported_on_stderr_and_tail_goes_on() {
    let prefix = unique_prefix("bad_payload");
    let mut tail = Tail::start(&prefix, &["--json"]);
    let topic = format!("{prefix}/users/update");
    mosquitto_pub(&topic, "not json");
    mosquitto_pub(&topic, README_ENVELOPE);
    let report = tail.wait_stderr(|l| l.starts_with("rejected payload"));
    assert!(
        report.starts_with(&format!(
            "rejected payload on {topic}: not an event envelope:"
        )),
        "{report}"
    );
    assert_eq!(tail.line(), README_ENVELOPE);
    let (status, _, stderr) = tail.interrupt();
    assert!(status.success());
    let stderr = squeeze(&stderr.join("\n"));
    assert!(stderr.contains("1 event, 1 rejected payload"), "{stderr}");
}

#[test]
fn sigint_prints_counts_per_table_and_action_and_exits_zero() {
    let prefix = unique_prefix("sigint");
    let mut tail = Tail::start(&prefix, &["--json"]);
    publish(
        &prefix,
        "api-1",
        vec![
            user(Action::Insert, 1, "Ada", User::COLUMNS),
            user(Action::Insert, 2, "Grace", User::COLUMNS),
            user(Action::Update, 1, "Ada L.", &["name"]),
            post(Action::Delete, 9, "old"),
        ],
    );
    for _ in 0..4 {
        tail.line();
    }
    let (status, rest, stderr) = tail.interrupt();
    assert_eq!(status.code(), Some(0));
    assert!(rest.is_empty(), "{rest:?}");
    let summary: Vec<String> = stderr
        .iter()
        .skip_while(|l| !l.starts_with("diesel-emitter tail:"))
        .map(|l| squeeze(l))
        .collect();
    assert_eq!(
        summary,
        [
            "diesel-emitter tail: 4 events",
            "posts 1 (delete 1)",
            "users 3 (insert 2, update 1)",
        ]
    );
}

#[test]
fn an_unreachable_broker_fails_fast_with_one_clear_line() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("mqtt://127.0.0.1:{port}");
    let (status, stderr, took) = run_to_end(&["tail", "--url", &url, "--connect-timeout", "2"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "diesel-emitter: cannot reach the broker at {url}: connection refused by 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn an_unresolvable_host_is_named_as_such() {
    let url = "mqtt://no-such-host.invalid:1883";
    let (status, stderr, _) = run_to_end(&["tail", "--url", url, "--connect-timeout", "2"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "diesel-emitter: cannot reach the broker at {url}: cannot resolve host no-such-host.invalid"
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_url_fails_with_one_clear_line() {
    let (status, stderr, _) = run_to_end(&["tail", "--url", "http://x"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "diesel-emitter: bad broker URL \"http://x\": unsupported scheme; use mqtt://, mqtts://, tcp:// or ssl://\n"
    );
}

#[test]
fn a_table_that_is_not_one_topic_level_is_refused() {
    let (status, stderr, _) = run_to_end(&["tail", "--table", "users/+"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--table \"users/+\" is not a table name"),
        "{stderr}"
    );
}

/// A Mosquitto of the test's own on a free loopback port that lets in only the
/// user `tail` with the password `right`. Killed on drop.
struct AuthBroker {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl AuthBroker {
    fn start() -> AuthBroker {
        let dir = std::env::temp_dir().join(format!(
            "diesel-emitter-cli-auth-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = dir.join("passwd");
        let status = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&passwd)
            .args(["tail", "right"])
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\n",
                passwd.display()
            ),
        )
        .unwrap();
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the test broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        AuthBroker {
            child,
            dir,
            url: format!("mqtt://127.0.0.1:{port}"),
        }
    }

    /// `diesel-emitter tail` against this broker as user `tail`, the password
    /// given only in `MQTT_PASSWORD`.
    fn tail(&self, password: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_diesel-emitter"));
        command
            .args(["tail", "--url", &self.url, "--username", "tail"])
            .args(["--connect-timeout", "3"])
            .env("MQTT_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

impl Drop for AuthBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_password_can_come_from_mqtt_password_instead_of_the_command_line() {
    let broker = AuthBroker::start();
    let mut child = broker.tail("right").spawn().expect("the binary starts");
    let stderr = lines(child.stderr.take().unwrap());
    let deadline = Instant::now() + WAIT;
    let subscribed = loop {
        match stderr.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with("subscribed to ") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        subscribed,
        "tail logged in with the password from MQTT_PASSWORD"
    );
}

#[test]
fn a_wrong_password_from_mqtt_password_fails_with_one_clear_line() {
    let broker = AuthBroker::start();
    let output = broker.tail("wrong").output().expect("the binary runs");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "diesel-emitter: the broker at {} refused the connection: ",
            broker.url
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong"),
        "the password is not printed: {stderr}"
    );
}
