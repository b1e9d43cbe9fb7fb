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

mod clients;
mod model;
mod mosquitto;
pub mod nats;
mod process;
pub mod rabbitmq;
mod resetting;
pub mod scale;

// Each test file uses some of these.
#[allow(unused_imports)]
pub use {clients::*, model::*, mosquitto::*, process::*, resetting::*};

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

/// Receives from `rx` until `n` distinct `key`s came or `wait` passed; returns how
/// many events came (duplicates too) and the distinct keys.
pub fn collect_distinct<T, K: Eq + std::hash::Hash>(
    rx: &Receiver<Event<T>>,
    n: usize,
    wait: Duration,
    key: impl Fn(Event<T>) -> K,
) -> (usize, HashSet<K>) {
    let mut keys = HashSet::new();
    let mut received = 0;
    let deadline = Instant::now() + wait;
    while keys.len() < n {
        match rx.recv_deadline(deadline) {
            Ok(event) => {
                received += 1;
                keys.insert(key(event));
            }
            Err(_) => break,
        }
    }
    (received, keys)
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
