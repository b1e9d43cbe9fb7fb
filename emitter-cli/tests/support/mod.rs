//! What the `tail` tests share: models, publishing through an emitter or
//! `mosquitto_pub`, and a running `diesel-emitter tail` read line by line.
// Each test file uses some of these.
#![allow(dead_code)]

use emitter_core::integration::PendingEvent;
use emitter_core::{Action, Audience, Emits, Emitter};
use emitter_mqtt::{MqttBuilderExt, MqttConfig};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BROKER: &str = "mqtt://127.0.0.1:1883";
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: i32,
    pub name: String,
}

impl Emits for User {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static [&'static str] = &["id", "name"];
    const PRIMARY_KEY: &'static [&'static str] = &["id"];
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Post {
    pub id: i32,
    pub title: String,
}

impl Emits for Post {
    const TABLE: &'static str = "posts";
    const COLUMNS: &'static [&'static str] = &["id", "title"];
    const PRIMARY_KEY: &'static [&'static str] = &["id"];
}

pub fn user(action: Action, id: i32, name: &str, changed: &[&'static str]) -> PendingEvent {
    let row = User {
        id,
        name: name.to_owned(),
    };
    PendingEvent::new(action, row, changed.into(), Audience::All)
}

pub fn post(action: Action, id: i32, title: &str) -> PendingEvent {
    let row = Post {
        id,
        title: title.to_owned(),
    };
    PendingEvent::new(action, row, Post::COLUMNS.into(), Audience::All)
}

/// A topic prefix no other test (or run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "test/tail/{test}/{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Commits `events` on an emitter of node `origin` and waits until the broker has
/// taken every publish.
pub fn publish(prefix: &str, origin: &str, events: Vec<PendingEvent>) {
    let emitter = Emitter::builder()
        .node_id(origin)
        .mqtt(
            MqttConfig::new(BROKER)
                .topic_prefix(prefix)
                .require_connection(WAIT),
        )
        .build()
        .expect("emitter connects to the broker");
    emitter.commit(events);
    emitter.shutdown(WAIT).expect("every event published");
}

/// Publishes one raw payload with `mosquitto_pub`, at QoS 1.
pub fn mosquitto_pub(topic: &str, payload: &str) {
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "1883",
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub failed: {status}");
}

/// The README's example envelope, on table `users`, action `update`.
pub const README_ENVELOPE: &str = r#"{"v":1,"id":"8cdbf11c-eb97-8211-8000-000000000001","origin":"api-1","seq":42,"table":"users","action":"update","committed_at":"2026-11-26T20:00:00.123456Z","changed":["name"],"row":{"id":7,"name":"Ada","active":true}}"#;

/// Lines of a child's output, read by a thread of their own.
pub fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

/// A running `diesel-emitter tail`.
pub struct Tail {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    /// Every stderr line read so far.
    pub stderr_seen: Vec<String>,
}

impl Tail {
    /// Starts `diesel-emitter tail --prefix {prefix} {args}` and waits until it
    /// says its subscription is in place.
    pub fn start(prefix: &str, args: &[&str]) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_diesel-emitter"))
            .args(["tail", "--url", BROKER, "--prefix", prefix])
            .args(args)
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let mut tail = Tail {
            child,
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        };
        tail.wait_stderr(|line| line.starts_with("subscribed to "));
        tail
    }

    /// Reads stderr until a line satisfies `pred`; returns it.
    pub fn wait_stderr(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.stderr_seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!(
                        "stderr line not seen ({e:?}); stderr so far: {:?}",
                        self.stderr_seen
                    )
                }
            }
        }
    }

    /// The next stdout line.
    pub fn line(&mut self) -> String {
        match self.stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                panic!("no stdout line ({e:?}); stderr: {:?}", self.stderr_seen)
            }
        }
    }

    /// Sends SIGINT, waits for the exit; returns the status, the stdout lines not
    /// read yet and every stderr line.
    pub fn interrupt(mut self) -> (ExitStatus, Vec<String>, Vec<String>) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tail did not exit after SIGINT");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let rest = drain(&self.stdout);
        self.stderr_seen.extend(drain(&self.stderr));
        (status, rest, std::mem::take(&mut self.stderr_seen))
    }

    /// Interrupts a tail whose output was all read: it exits 0 with nothing left
    /// to print. Returns its stderr, whitespace squeezed.
    pub fn stop_cleanly(self) -> String {
        let (status, rest, stderr) = self.interrupt();
        assert!(status.success(), "{status:?}");
        assert!(rest.is_empty(), "{rest:?}");
        squeeze(&stderr.join("\n"))
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What is left in a finished child's stream (its reader thread sees EOF).
pub fn drain(rx: &Receiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) => out.push(line),
            Err(RecvTimeoutError::Disconnected) => return out,
            Err(RecvTimeoutError::Timeout) => panic!("output did not end"),
        }
    }
}

/// Whitespace runs as one space, to compare aligned text.
pub fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs the binary to its end; returns the status, stderr and how long it took.
pub fn run_to_end(args: &[&str]) -> (ExitStatus, String, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_diesel-emitter"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    (
        output.status,
        String::from_utf8(output.stderr).unwrap(),
        started.elapsed(),
    )
}
