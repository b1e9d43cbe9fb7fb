//! Two actix-cache servers, each a process of its own with its own cache, sharing one
//! PostgreSQL database (created for the test, dropped after it) and the Mosquitto
//! broker at 127.0.0.1:1883 (under a topic prefix of the test's own).
//!
//! Needs PostgreSQL at `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! a role that may create databases) and the broker.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

/// How soon after A answers a write B must serve the result (issue 5).
const FRESH_WITHIN: Duration = Duration::from_millis(100);

/// The pause between two reads while waiting for B to change its answer.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// How long a server may take to start: connect to the database and the broker.
const STARTUP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the behaviours

#[test]
fn b_serves_a_user_updated_through_a_within_100_ms_and_never_the_old_row_after() {
    let servers = Servers::start("update");
    let old = servers.a.create("Ada", "ada@example.com");
    let id = old["id"].as_i64().expect("the new user has an id");
    servers.b.expect_cached(id, &old);

    let response = servers.a.request(
        "PUT",
        &format!("/users/{id}"),
        Some(json!({ "name": "Ada Lovelace" })),
    );
    let answered = Instant::now();
    assert_eq!(response.status, 200, "update through A: {}", response.body);
    let new = response.json();
    assert_eq!(new["name"], "Ada Lovelace");

    let seen_after = servers.b.poll_until(id, answered, |r| {
        assert_eq!(r.status, 200, "B answers {}", r.body);
        let row = r.json();
        assert!(row == old || row == new, "B served neither row: {row}");
        row == new
    });
    eprintln!("B served the update {seen_after:?} after A answered");
    for _ in 0..50 {
        let r = servers.b.get(id);
        assert_eq!(
            (r.status, r.json()),
            (200, new.clone()),
            "once B served the new row it must never serve the old one"
        );
    }
    assert_eq!(
        servers.b.get(id).cache.as_deref(),
        Some("hit"),
        "B caches the new row"
    );
}

#[test]
fn b_stops_serving_a_user_deleted_through_a_within_100_ms() {
    let servers = Servers::start("delete");
    let user = servers.a.create("Grace", "grace@example.com");
    let id = user["id"].as_i64().expect("the new user has an id");
    servers.b.expect_cached(id, &user);

    let response = servers.a.request("DELETE", &format!("/users/{id}"), None);
    let answered = Instant::now();
    assert_eq!(response.status, 204, "delete through A: {}", response.body);

    let seen_after = servers.b.poll_until(id, answered, |r| {
        assert!(
            r.status == 404 || (r.status == 200 && r.json() == user),
            "B served neither the user nor a 404: {} {}",
            r.status,
            r.body
        );
        r.status == 404
    });
    eprintln!("B stopped serving the user {seen_after:?} after A answered");
    for _ in 0..50 {
        assert_eq!(
            servers.b.get(id).status,
            404,
            "once B said 404 it must never serve the deleted user again"
        );
    }
}

#[test]
fn b_serves_and_caches_a_user_created_through_a() {
    let servers = Servers::start("create");
    let user = servers.a.create("Edsger", "edsger@example.com");
    assert_eq!(user["name"], "Edsger");

    let id = user["id"].as_i64().expect("the new user has an id");
    servers.b.expect_cached(id, &user);
}

#[test]
fn a_server_serves_its_own_update_on_the_very_next_read() {
    let servers = Servers::start("own_write");
    let old = servers.a.create("Barbara", "barbara@example.com");
    let id = old["id"].as_i64().expect("the new user has an id");
    servers.a.expect_cached(id, &old);

    let response = servers.a.request(
        "PUT",
        &format!("/users/{id}"),
        Some(json!({ "email": "liskov@example.com" })),
    );
    assert_eq!(response.status, 200, "update through A: {}", response.body);

    let r = servers.a.get(id);
    assert_eq!((r.status, r.json()), (200, response.json()));
}

// ---------------------------------------------------------------- servers

/// Server A and server B, started together on one fresh database. Fields drop in
/// order: the servers are killed before their database is dropped.
struct Servers {
    a: Server,
    b: Server,
    _db: Database,
}

impl Servers {
    fn start(test: &str) -> Servers {
        let db = Database::create(test);
        let prefix = format!("test/actix-cache/{}/{test}", unique());
        let a = Server::spawn(&format!("{test}-a-{}", unique()), &db, &prefix);
        let b = Server::spawn(&format!("{test}-b-{}", unique()), &db, &prefix);
        let (a, b) = (a.wait_ready(), b.wait_ready());
        Servers { a, b, _db: db }
    }
}

/// An actix-cache process, killed when dropped.
struct Server {
    child: Child,
    /// `127.0.0.1:<port>`, once it printed `READY`.
    addr: String,
    stdout: mpsc::Receiver<String>,
}

impl Server {
    fn spawn(node: &str, db: &Database, prefix: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_actix-cache"))
            .args(["--port", "0", "--node", node, "--prefix", prefix])
            .args(["--pool-size", "2"])
            .env("DATABASE_URL", &db.url)
            .env("MQTT_URL", "mqtt://127.0.0.1:1883")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start actix-cache");
        let stdout = forward_lines(child.stdout.take().expect("piped stdout"), None);
        // Its log goes to this test's output, shown when the test fails.
        forward_lines(child.stderr.take().expect("piped stderr"), Some(node));
        Server {
            child,
            addr: String::new(),
            stdout,
        }
    }

    fn wait_ready(mut self) -> Server {
        let deadline = Instant::now() + STARTUP;
        while let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(wait) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("READY http://") {
                        self.addr = url.to_owned();
                        return self;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("actix-cache exited before READY: {:?}", self.child.wait())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
            }
        }
        panic!("actix-cache printed no READY within {STARTUP:?}");
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        http(&self.addr, method, path, body)
    }

    fn get(&self, id: i64) -> Response {
        self.request("GET", &format!("/users/{id}"), None)
    }

    fn create(&self, name: &str, email: &str) -> Value {
        let r = self.request(
            "POST",
            "/users",
            Some(json!({ "name": name, "email": email })),
        );
        assert_eq!(r.status, 201, "create: {}", r.body);
        r.json()
    }

    /// Reads the user twice: the first read fills the cache, the second is served from it.
    #[track_caller]
    fn expect_cached(&self, id: i64, user: &Value) {
        let first = self.get(id);
        assert_eq!((first.status, &first.json()), (200, user));
        assert_eq!(first.cache.as_deref(), Some("miss"));
        let second = self.get(id);
        assert_eq!((second.status, &second.json()), (200, user));
        assert_eq!(second.cache.as_deref(), Some("hit"));
    }

    /// Reads the user again and again until `done` accepts a response; fails if a
    /// request sent more than [`FRESH_WITHIN`] after `since` is not accepted. Returns
    /// how long after `since` the accepted request was sent.
    fn poll_until(
        &self,
        id: i64,
        since: Instant,
        mut done: impl FnMut(&Response) -> bool,
    ) -> Duration {
        loop {
            let sent = since.elapsed();
            let r = self.get(id);
            if done(&r) {
                return sent;
            }
            assert!(
                sent <= FRESH_WITHIN,
                "a request sent {sent:?} after A answered still got {} {}",
                r.status,
                r.body
            );
            // Leave the CPU to the servers and the broker that deliver the event.
            std::thread::sleep(POLL_EVERY);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends each line of `from` to the returned channel, or, given a `tag`, to stderr.
fn forward_lines(from: impl Read + Send + 'static, tag: Option<&str>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let tag = tag.map(str::to_owned);
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            match &tag {
                Some(tag) => eprintln!("[{tag}] {line}"),
                None => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

// ---------------------------------------------------------------- HTTP

struct Response {
    status: u16,
    /// The `x-cache` header: `hit` or `miss` on a found user.
    cache: Option<String>,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`). Enough for
/// this server's small, length-delimited responses; no client library needed.
fn http(addr: &str, method: &str, path: &str, body: Option<Value>) -> Response {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    // One write: pieces written separately would wait on Nagle's algorithm and the
    // server's delayed ACK, tens of milliseconds per request.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the response");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {raw:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let cache = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("x-cache"))
        .map(|(_, value)| value.trim().to_owned());
    Response {
        status,
        cache,
        body: body.to_owned(),
    }
}

// ---------------------------------------------------------------- database

/// A database of the test's own, dropped (with any connection still open) on drop.
struct Database {
    name: String,
    admin_url: String,
    url: String,
}

impl Database {
    fn create(test: &str) -> Database {
        let admin_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("actix_cache_{test}_{}", unique().replace('-', "_"));
        admin(&admin_url)
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create the test database");
        let url = with_database(&admin_url, &name);
        Database {
            name,
            admin_url,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = admin(&self.admin_url).batch_execute(&sql) {
            eprintln!("could not drop database {}: {e}", self.name);
        }
    }
}

fn admin(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"))
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..path_start])
}

/// `<pid>-<nanos>`: unique across tests of this run and across runs.
fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}
