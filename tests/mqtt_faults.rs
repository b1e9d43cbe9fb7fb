//! Broker trouble: a broker that is down at start, and one that is away long enough
//! for the offline buffer to overflow. Each test runs a Mosquitto of its own (killed
//! when the test ends, also on failure). Restarts mid-stream are in
//! `mqtt_broker_restart.rs`.

mod broker;

use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::{Error, Stats};
use std::time::{Duration, Instant};

#[test]
fn a_remote_listener_registered_while_the_broker_is_down_subscribes_once_it_is_up() {
    let mut broker = Broker::start();
    let prefix = unique_prefix("late_broker");
    let config = MqttConfig::new(broker.url()).topic_prefix(&prefix);
    broker.stop();

    let b = node("b", config.clone());
    let rx = b.on::<User>().remote_only(true).subscribe();
    assert!(
        b.wait_connected(Duration::from_millis(300)).is_err(),
        "not connected while the broker is down"
    );
    let a = node("a", config);
    broker.restart();
    connected(&[&a, &b]);
    let db = Db::new("late_broker");
    let mut conn = db.conn(&a);
    write(&mut conn, "hello");
    let event = recv(&rx);
    assert_eq!(
        (event.row.name.as_str(), &*event.meta.origin),
        ("hello", a.node_id())
    );
    a.shutdown(Duration::from_secs(5)).expect("A shuts down");
    b.shutdown(Duration::from_secs(5)).expect("B shuts down");
}

// ---------------------------------------------------------------- 14

#[test]
fn buffer_overflow_while_the_broker_is_down_is_counted_never_silent() {
    const WRITES: usize = 1_000;
    const BUFFER: usize = 100;
    let port = free_port();
    let a = node(
        "a",
        MqttConfig::new(format!("mqtt://127.0.0.1:{port}"))
            .topic_prefix(unique_prefix("overflow"))
            .buffer(BUFFER),
    );
    let local = a.on::<User>().subscribe();
    let db = Db::new("overflow");
    let mut conn = db.conn(&a);
    let started = Instant::now();
    for i in 0..WRITES {
        write(&mut conn, &format!("u{i}"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "writes never wait for the broker"
    );
    for i in 0..WRITES {
        assert_eq!(
            recv(&local).row.name,
            format!("u{i}"),
            "local listeners get every event"
        );
    }
    let stats = a.stats();
    assert_eq!(stats.emitted, WRITES as u64);
    assert_eq!(stats.publish_dropped, (WRITES - BUFFER) as u64, "{stats:?}");
    assert_eq!(stats.published, 0);

    let started = Instant::now();
    let result = a.shutdown(Duration::from_millis(500));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
    let stats = a.stats();
    let accounted = |s: &Stats| s.published + s.publish_dropped + s.publish_failed;
    if accounted(&stats) != stats.emitted {
        std::thread::sleep(Duration::from_secs(1));
        let later = a.stats();
        panic!(
            "every committed event must be accounted for once shutdown returns: \
             published + publish_dropped + publish_failed = {} of {} emitted; \
             shutdown returned {result:?}; {stats:?}; one second later: {} accounted ({later:?})",
            accounted(&stats),
            stats.emitted,
            accounted(&later)
        );
    }
    match result {
        Err(Error::ShutdownTimeout { pending, .. }) => assert_eq!(
            pending, BUFFER as u64,
            "shutdown reports the buffered events it could not publish; {stats:?}"
        ),
        other => panic!("expected ShutdownTimeout, got {other:?}"),
    }
}

#[test]
fn buffered_events_are_published_when_the_broker_returns_and_only_the_overflow_is_lost() {
    const WRITES: usize = 1_000;
    const BUFFER: usize = 100;
    let mut broker = Broker::start();
    let prefix = unique_prefix("buffered");
    let config = MqttConfig::new(broker.url()).topic_prefix(&prefix);
    // B's session outlives the outage, so it hears what A sends after it.
    let b = node("b", config.clone().client_id(node_name("b")));
    let b_rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&b]);
    broker.stop();

    let a = node("a", config.buffer(BUFFER));
    let db = Db::new("buffered");
    let mut conn = db.conn(&a);
    for i in 0..WRITES {
        write(&mut conn, &format!("u{i}"));
    }
    assert_eq!(a.stats().publish_dropped, (WRITES - BUFFER) as u64);
    broker.restart();

    let first: Vec<_> = (0..BUFFER).map(|_| recv(&b_rx)).collect();
    let names: Vec<_> = first.iter().map(|e| e.row.name.clone()).collect();
    let oldest: Vec<_> = (0..BUFFER).map(|i| format!("u{i}")).collect();
    assert_eq!(
        names, oldest,
        "the buffer keeps the oldest events, in order"
    );
    a.shutdown(Duration::from_secs(5))
        .expect("the buffered events are acknowledged");
    let stats = a.stats();
    assert_eq!(
        (stats.published, stats.publish_dropped, stats.publish_failed),
        (BUFFER as u64, (WRITES - BUFFER) as u64, 0),
        "{stats:?}"
    );
    assert!(
        b_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing beyond the buffer"
    );
    b.shutdown(Duration::from_secs(5)).expect("B shuts down");
}
