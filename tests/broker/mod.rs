//! Helpers for the MQTT suites: brokers of their own (a Mosquitto process per test,
//! killed by a Drop guard; a NATS cluster in `nats`), the shared broker at
//! 127.0.0.1:1883 (and RabbitMQ's MQTT plugin in `rabbitmq`), unique topic
//! prefixes, SQLite files in temp dirs, the `users` model, bounded receives, and
//! `mosquitto_sub` / `mosquitto_pub` wrappers.
//!
//! Every test file uses a different subset of these helpers.
#![allow(dead_code)]

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::crossbeam_channel::{self, Receiver, RecvTimeoutError};
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::Debug;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod nats;
pub mod rabbitmq;
pub mod scale;

/// How long a test waits for something it expects (an event, a connection).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The broker every test of `tests/mqtt.rs` shares.
pub const SHARED_URL: &str = "mqtt://127.0.0.1:1883";
pub const SHARED_PORT: u16 = 1883;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

// ---------------------------------------------------------------- names

/// `<pid>-<counter>-<nanos>`: unique across threads, processes and runs.
pub fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos}", std::process::id())
}

/// A topic prefix of the test's own: `test/<pid>/<counter>/<nanos>/<test>`.
pub fn unique_prefix(test: &str) -> String {
    format!("test/{}/{test}", unique().replace('-', "/"))
}

/// A node id (also a client id base) unique to the test: `<name>-<pid>-<n>-<nanos>`.
pub fn node_name(name: &str) -> String {
    format!("{name}-{}", unique())
}

/// A UUID-shaped id (version 4 layout) without a uuid dependency.
pub fn fake_uuid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u128;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let x =
        nanos ^ (u128::from(std::process::id()) << 64) ^ (n << 96) ^ (n * 0x9e37_79b9_7f4a_7c15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (x >> 96) as u32,
        (x >> 80) as u16,
        (x >> 68) as u16 & 0xfff,
        (x >> 56) as u16 & 0xfff,
        x as u64 & 0xffff_ffff_ffff
    )
}

/// Whether `s` is a hyphenated, lowercase-or-uppercase hex UUID (8-4-4-4-12).
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

// ---------------------------------------------------------------- temp dirs

/// A directory of its own, removed when the guard drops (or, should this process
/// die without running Drop guards, by a [`Watchdog`]).
pub struct TempDir {
    pub path: PathBuf,
    _watchdog: Watchdog,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("diesel-emitter-mqtt-{tag}-{}", unique()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        let _watchdog = Watchdog::remove_dir(&path);
        TempDir { path, _watchdog }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------- processes

/// A free loopback port: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills process `pid` (SIGKILL) should this test process die without running its
/// Drop guards (an abort in a C library skips them): a `sh` that waits for EOF on
/// a pipe only this process holds. Dropping the watchdog disarms it.
pub struct Watchdog {
    sh: Child,
}

impl Watchdog {
    /// Kills `pid` if this process dies first.
    pub fn new(pid: u32) -> Watchdog {
        Watchdog::arm(Some(pid), None)
    }

    /// Removes `dir` if this process dies first.
    pub fn remove_dir(dir: &Path) -> Watchdog {
        Watchdog::arm(None, Some(dir))
    }

    fn arm(pid: Option<u32>, dir: Option<&Path>) -> Watchdog {
        let sh = Command::new("sh")
            .arg("-c")
            .arg(concat!(
                "cat >/dev/null; ",
                r#"if [ -n "$1" ]; then kill -KILL "$1" 2>/dev/null; fi; "#,
                // Give a killed broker a moment to let go of its files.
                r#"if [ -n "$2" ]; then sleep 1; rm -rf "$2"; fi"#
            ))
            .arg("sh")
            .arg(pid.map(|p| p.to_string()).unwrap_or_default())
            .arg(dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a watchdog");
        Watchdog { sh }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

/// Kills a child process (SIGKILL) when dropped, unless it already exited; a
/// [`Watchdog`] kills it if this process dies first.
pub struct ChildGuard {
    pub child: Child,
    watchdog: Option<Watchdog>,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        let watchdog = Some(Watchdog::new(child.id()));
        ChildGuard { child, watchdog }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.watchdog.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

// ---------------------------------------------------------------- brokers

/// How a test broker is configured, on top of the fixed settings
/// (`listener <port> 127.0.0.1`, `max_queued_messages 0`, `persistence true` in the
/// broker's temp dir, `log_dest file`).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub allow_anonymous: bool,
    /// Lines that belong to the listener (TLS files), written after `listener`.
    pub listener_lines: Vec<String>,
    /// Other global lines (`password_file ...`).
    pub global_lines: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            allow_anonymous: true,
            listener_lines: Vec::new(),
            global_lines: Vec::new(),
        }
    }
}

/// A Mosquitto process of the test's own on a free loopback port. Killed on drop.
pub struct Broker {
    pub port: u16,
    pub dir: TempDir,
    conf: PathBuf,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
}

impl Broker {
    /// Starts a broker with the default configuration (anonymous access).
    pub fn start() -> Broker {
        Broker::start_with(BrokerConfig::default())
    }

    pub fn start_with(config: BrokerConfig) -> Broker {
        let dir = TempDir::new("broker");
        let port = free_port();
        let mut conf = String::new();
        conf.push_str(&format!("listener {port} 127.0.0.1\n"));
        for line in &config.listener_lines {
            conf.push_str(line);
            conf.push('\n');
        }
        conf.push_str(&format!("allow_anonymous {}\n", config.allow_anonymous));
        for line in &config.global_lines {
            conf.push_str(line);
            conf.push('\n');
        }
        conf.push_str("max_queued_messages 0\n");
        conf.push_str("persistence true\n");
        conf.push_str(&format!("persistence_location {}/\n", dir.path.display()));
        conf.push_str(&format!(
            "log_dest file {}\n",
            dir.join("mosquitto.log").display()
        ));
        conf.push_str("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
        conf.push_str("connection_messages true\n");
        // Running as root, Mosquitto would switch to the `mosquitto` user, which
        // cannot write the temp dir.
        conf.push_str("user root\n");
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let mut broker = Broker {
            port,
            dir,
            conf: conf_path,
            child: None,
            watchdog: None,
        };
        broker.launch();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts the process and waits until it accepts TCP connections.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .expect("open the broker's stderr file");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start mosquitto");
        self.watchdog = Some(Watchdog::new(child.id()));
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if port_open(self.port) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                self.watchdog = None;
                panic!("mosquitto exited at start ({status}):\n{}", self.log());
            }
            if Instant::now() >= deadline {
                panic!(
                    "mosquitto did not listen on {} within {TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits (bounded) for the process to exit: Mosquitto saves its
    /// persistence file on the way out.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        drop(self.watchdog.take());
        sigterm(child.id());
        if wait_exit(&mut child, TIMEOUT).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mosquitto did not exit within {TIMEOUT:?} of SIGTERM");
        }
        let deadline = Instant::now() + TIMEOUT;
        while port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "port {} still open after the broker exited",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the broker again: same port, same configuration, same persistence.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// The broker's log (and stderr), for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        format!("{log}{err}")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.watchdog.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------- a broker that resets

/// A minimal MQTT broker in this process for one publishing client (CONNECT,
/// PUBLISH at QoS 0 or 1, PINGREQ, DISCONNECT; MQTT 3.1.1 and 5). Its first
/// `resets` connections end abruptly once `after` publishes arrived on each: it
/// stops reading while the client is still writing and closes the socket with
/// input unread, which makes the kernel answer with a TCP reset, so the client's
/// next writes fail. Later connections acknowledge everything. It records the `id`
/// of every event it acknowledged.
pub struct ResettingBroker {
    pub port: u16,
    state: Arc<Mutex<ResetState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ResetState {
    acked: HashSet<String>,
    resets: usize,
    connections: usize,
}

impl ResettingBroker {
    pub fn start(resets: usize, after: usize) -> ResettingBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(ResetState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let reset = {
                        let mut state = state.lock().unwrap();
                        state.connections += 1;
                        state.resets < resets
                    };
                    if let Ok(true) = serve_resetting(stream, reset.then_some(after), &state) {
                        state.lock().unwrap().resets += 1;
                    }
                }
            }
        });
        ResettingBroker {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The ids of the events acknowledged so far.
    pub fn acked(&self) -> HashSet<String> {
        self.state.lock().unwrap().acked.clone()
    }

    /// Connections reset so far.
    pub fn resets(&self) -> usize {
        self.state.lock().unwrap().resets
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

impl Drop for ResettingBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// One MQTT packet: (type, flags, body).
fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        len |= ((byte[0] & 0x7f) as usize) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok((first[0] >> 4, first[0] & 0x0f, body))
}

/// Serves one connection; true when it ended it with a reset.
fn serve_resetting(
    mut stream: TcpStream,
    reset_after: Option<usize>,
    state: &Mutex<ResetState>,
) -> std::io::Result<bool> {
    let (kind, _, connect) = read_packet(&mut stream)?;
    // CONNECT: protocol name (2 + 4 bytes), then the protocol level.
    if kind != 1 || connect.len() < 7 {
        return Ok(false);
    }
    let v5 = connect[6] == 5;
    stream.write_all(if v5 {
        &[0x20, 3, 0, 0, 0]
    } else {
        &[0x20, 2, 0, 0]
    })?;
    let mut publishes = 0;
    loop {
        let (kind, flags, body) = read_packet(&mut stream)?;
        match kind {
            3 => {
                publishes += 1;
                if reset_after.is_some_and(|after| publishes >= after) {
                    // Let the client's next publishes arrive unread, then close.
                    std::thread::sleep(Duration::from_millis(20));
                    return Ok(true);
                }
                let qos = (flags >> 1) & 3;
                let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                let mut at = 2 + topic_len;
                let packet_id = (qos > 0).then(|| [body[at], body[at + 1]]);
                if qos > 0 {
                    at += 2;
                }
                if v5 {
                    let (mut props, mut shift) = (0usize, 0);
                    loop {
                        let byte = body[at];
                        at += 1;
                        props |= ((byte & 0x7f) as usize) << shift;
                        if byte & 0x80 == 0 {
                            break;
                        }
                        shift += 7;
                    }
                    at += props;
                }
                let id = serde_json::from_slice::<serde_json::Value>(&body[at..])
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned));
                if let Some(id) = id {
                    state.lock().unwrap().acked.insert(id);
                }
                if let Some([hi, lo]) = packet_id {
                    stream.write_all(&[0x40, 2, hi, lo])?;
                }
            }
            12 => stream.write_all(&[0xd0, 0])?,
            14 => return Ok(false),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- model and database

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
        email -> Text,
        active -> Bool,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i32,
    pub name: String,
    pub email: String,
    pub active: bool,
}

// A second model, for tests that need two tables.
diesel::table! {
    posts (id) {
        id -> Integer,
        title -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = posts)]
pub struct Post {
    pub id: i32,
    pub title: String,
}

pub const POSTS_DDL: &str =
    "CREATE TABLE posts (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL)";

pub type Conn = EmittingConnection<SqliteConnection>;

pub const USERS_DDL: &str = "CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT 1
)";

/// A SQLite file (WAL) in a temp dir of its own, with the `users` table.
pub struct Db {
    pub path: String,
    _dir: TempDir,
}

impl Db {
    pub fn new(tag: &str) -> Db {
        let dir = TempDir::new(&format!("db-{tag}"));
        let path = dir.join("test.db").display().to_string();
        let mut plain = SqliteConnection::establish(&path).expect("open the SQLite file");
        plain
            .batch_execute(&format!("PRAGMA journal_mode = WAL; {USERS_DDL};"))
            .expect("create the users table");
        Db { path, _dir: dir }
    }

    /// An emitting connection for `emitter`.
    pub fn conn(&self, emitter: &Emitter) -> Conn {
        let mut conn = EmittingConnection::new(
            SqliteConnection::establish(&self.path).expect("open the SQLite file"),
            emitter.clone(),
        );
        // batch_execute is never captured.
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA synchronous = OFF;")
            .expect("pragmas");
        conn
    }
}

/// Inserts a user and returns the row as the database stored it.
pub fn insert(conn: &mut Conn, name: &str, active: bool) -> User {
    diesel::insert_into(users::table)
        .values((
            users::name.eq(name),
            users::email.eq(format!("{name}@example.com")),
            users::active.eq(active),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .expect("insert a user")
}

// ---------------------------------------------------------------- emitters

/// An emitter on the shared broker with `prefix`.
pub fn shared_node(name: &str, prefix: &str) -> Emitter {
    Emitter::builder()
        .node_id(node_name(name))
        .mqtt(MqttConfig::new(SHARED_URL).topic_prefix(prefix))
        .build()
        .expect("emitter builds")
}

/// An emitter with the given MQTT configuration and a unique node id.
pub fn node(name: &str, config: MqttConfig) -> Emitter {
    Emitter::builder()
        .node_id(node_name(name))
        .mqtt(config)
        .build()
        .expect("emitter builds")
}

/// `wait_connected` with [`TIMEOUT`], for every emitter given.
#[track_caller]
pub fn connected(emitters: &[&Emitter]) {
    for e in emitters {
        if let Err(error) = e.wait_connected(TIMEOUT) {
            panic!("{} did not connect: {error}", e.node_id());
        }
    }
}

/// Shuts every emitter down, asserting success.
#[track_caller]
pub fn shutdown_all(emitters: &[&Emitter]) {
    for e in emitters {
        if let Err(error) = e.shutdown(Duration::from_secs(5)) {
            panic!(
                "{} did not shut down cleanly: {error}; stats {:?}",
                e.node_id(),
                e.stats()
            );
        }
    }
}

// ---------------------------------------------------------------- receiving

/// The next event, waiting at most [`TIMEOUT`].
#[track_caller]
pub fn recv<T: Debug>(rx: &Receiver<Event<T>>) -> Event<T> {
    match rx.recv_timeout(TIMEOUT) {
        Ok(event) => event,
        Err(RecvTimeoutError::Timeout) => panic!("no event within {TIMEOUT:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("the listener's channel closed"),
    }
}

/// Asserts that nothing is waiting in `rx` right now.
#[track_caller]
pub fn assert_empty<T: Debug>(rx: &Receiver<Event<T>>) {
    if let Ok(event) = rx.try_recv() {
        panic!("expected no event, got {event:?}");
    }
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Microseconds since the Unix epoch.
pub fn unix_micros(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros()
}

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into
/// nanoseconds since the Unix epoch; None if it is not RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        (!part.is_empty() && part.bytes().all(|c| c.is_ascii_digit())).then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        if end == start || end - start > 9 {
            return None;
        }
        let frac = &s[start..end];
        nanos = format!("{frac:0<9}").parse().ok()?;
        i = end;
    }
    let offset_secs: i64 = match s.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let (h, m) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            let sign = if &rest[..1] == "-" { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

// ---------------------------------------------------------------- mosquitto clients

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
