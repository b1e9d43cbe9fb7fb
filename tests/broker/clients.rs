//! The Mosquitto command-line clients: a `mosquitto_sub` read on a thread,
//! `mosquitto_pub`, and the envelopes and rows they carry.

use super::*;

/// A `mosquitto_sub` on `<prefix>/#`, one output line per message, read on a
/// thread. It is known to be subscribed once a probe published on
/// `<prefix>/__probe` came back. Killed on drop.
pub struct Sub {
    child: ChildGuard,
    lines: Receiver<String>,
    probe_topic: String,
}

impl Sub {
    /// `mosquitto_sub -h 127.0.0.1 -p <port> -q 1 -t '<prefix>/#' <extra args>`; every
    /// output line must begin with the topic (use `-v` or an `-F` format starting with `%t`).
    pub fn start(port: u16, prefix: &str, extra: &[&str]) -> Sub {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
            .args(["-t", &format!("{prefix}/#")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mosquitto_sub");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let sub = Sub {
            child: ChildGuard::new(child),
            lines,
            probe_topic: format!("{prefix}/__probe"),
        };
        sub.await_subscribed(port);
        sub
    }

    fn await_subscribed(&self, port: u16) {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            mosquitto_pub(port, &self.probe_topic, b"probe", &[]);
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                assert!(
                    line.starts_with(&self.probe_topic),
                    "unexpected line before the probe: {line}"
                );
                return;
            }
        }
        panic!("mosquitto_sub did not receive its probe within {TIMEOUT:?}");
    }

    /// The next line that is not a probe, waiting at most `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.lines.recv_deadline(deadline).ok()?;
            if !line.starts_with(&self.probe_topic) {
                return Some(line);
            }
        }
    }

    /// The next line, or a panic after [`TIMEOUT`].
    #[track_caller]
    pub fn expect_line(&self) -> String {
        self.next(TIMEOUT)
            .unwrap_or_else(|| panic!("mosquitto_sub printed nothing within {TIMEOUT:?}"))
    }

    /// Publishes a sentinel on `<prefix>/__sentinel` and returns every line before it.
    pub fn lines_until_sentinel(&self, port: u16, prefix: &str) -> Vec<String> {
        let topic = format!("{prefix}/__sentinel");
        let token = fake_uuid();
        mosquitto_pub(port, &topic, token.as_bytes(), &[]);
        let mut before = Vec::new();
        loop {
            let line = self.expect_line();
            if line.starts_with(&topic) && line.contains(&token) {
                return before;
            }
            before.push(line);
        }
    }
}

/// `mosquitto_pub -q 1` of `payload` (from stdin, so any size) on `topic`; panics
/// unless it succeeds within [`TIMEOUT`].
pub fn mosquitto_pub(port: u16, topic: &str, payload: &[u8], extra: &[&str]) {
    let mut child = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-s",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mosquitto_pub");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(payload).expect("write the payload");
    }
    let mut guard = ChildGuard::new(child);
    let status = wait_exit(&mut guard.child, TIMEOUT).expect("mosquitto_pub finishes in time");
    if !status.success() {
        let mut err = String::new();
        if let Some(mut stderr) = guard.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        panic!("mosquitto_pub on {topic} failed ({status}): {err}");
    }
}

/// An envelope as the wire format documents it.
pub fn envelope(
    id: &str,
    origin: &str,
    seq: u64,
    table: &str,
    action: &str,
    row: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "v": 1,
        "id": id,
        "origin": origin,
        "seq": seq,
        "table": table,
        "action": action,
        "committed_at": "2024-05-06T07:08:09.123456Z",
        "changed": ["id", "name", "email", "active"],
        "row": row,
    })
}

/// A `users` row in its serde form.
pub fn user_row(id: i32, name: &str) -> serde_json::Value {
    serde_json::json!({ "id": id, "name": name, "email": format!("{name}@example.com"), "active": true })
}

/// Whether `path` exists and is a file.
pub fn is_file(path: &Path) -> bool {
    path.is_file()
}

/// Inserts a user without RETURNING (the emitting connection captures the row itself).
pub fn write(conn: &mut Conn, name: &str) {
    let n = diesel::insert_into(users::table)
        .values((
            users::name.eq(name),
            users::email.eq(format!("{name}@example.com")),
            users::active.eq(true),
        ))
        .execute(conn)
        .expect("the database write succeeds whatever the broker does");
    assert_eq!(n, 1);
}
