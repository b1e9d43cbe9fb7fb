//! Broker restarts in the middle of a stream of committed writes: every event must
//! reach the remote listener exactly once (by id), resent events at most one
//! publish window late. The restart tests run a Mosquitto of their own; the reset
//! test a minimal broker in this process.
//!
//! These used to abort the process in about one run in four: Paho C 1.3.16 (bundled
//! by paho-mqtt 0.14) frees a QoS 1 publish's topic and payload when writing it
//! fails on a connection the broker reset (`MQTTAsync_processCommand`), although
//! the session's in-flight list still owns them; they were then resent from freed
//! memory and freed again (eclipse-paho/paho.mqtt.c #1621, #1622, #1532). The
//! publisher's Paho client now reaches the broker through a loopback relay that
//! never lets such a write fail (`emitter-core/src/mqtt/publisher.rs`, `relay`).

mod broker;

use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A broker of the test's own, a writer `a`, and `b` whose `remote_only` listener
/// `b_rx` has room for three times `total` events, all connected; and a database.
struct Restartable {
    broker: Broker,
    a: Emitter,
    b: Emitter,
    b_rx: diesel_emitter::crossbeam_channel::Receiver<Event<User>>,
    db: Db,
}

impl Restartable {
    fn start(test: &str, total: usize) -> Restartable {
        let broker = Broker::start();
        let config = MqttConfig::new(broker.url()).topic_prefix(unique_prefix(test));
        let a = node("a", config.clone());
        // An explicit client id: B's broker session (and what is queued for it)
        // outlives the restart; session_expiry keeps its default of one hour.
        let b = node("b", config.client_id(node_name("b")));
        let b_rx = b
            .on::<User>()
            .remote_only(true)
            .capacity(3 * total)
            .subscribe();
        connected(&[&a, &b]);
        Restartable {
            broker,
            a,
            b,
            b_rx,
            db: Db::new(test),
        }
    }
}

// ---------------------------------------------------------------- 13

#[test]
fn broker_restart_mid_stream_loses_nothing_and_duplicates_nothing() {
    const TOTAL: usize = 10_000;
    const STOP_AT: usize = 3_000;
    const RESTART_AT: usize = 6_000;
    let Restartable {
        mut broker,
        a,
        b,
        b_rx,
        db,
    } = Restartable::start("restart", TOTAL);
    let a_local = a.on::<User>().capacity(2 * TOTAL).subscribe();
    let mut conn = db.conn(&a);

    let started = Instant::now();
    let mut stopped_at = None;
    let mut downtime = Duration::ZERO;
    for i in 0..TOTAL {
        if i == STOP_AT {
            broker.stop();
            stopped_at = Some(Instant::now());
        }
        if i == RESTART_AT {
            let stopped = stopped_at.expect("stopped before");
            // Down long enough for both clients to notice and start retrying.
            let min_down = Duration::from_secs(2);
            if stopped.elapsed() < min_down {
                std::thread::sleep(min_down - stopped.elapsed());
            }
            downtime = stopped.elapsed();
            broker.restart();
        }
        write(&mut conn, &format!("u{i}"));
    }
    let writes_took = started.elapsed();

    let expected: Vec<_> = (0..TOTAL).map(|_| recv(&a_local).meta.id).collect();
    let mut seen: HashMap<_, usize> = HashMap::with_capacity(TOTAL);
    let mut order = Vec::with_capacity(TOTAL);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < TOTAL && Instant::now() < deadline {
        if let Ok(event) = b_rx.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(&*event.meta.origin, a.node_id());
            *seen.entry(event.meta.id).or_default() += 1;
            order.push(event.meta.seq);
        }
    }
    let all_received = started.elapsed();
    // No second copy of anything: one more write, the sentinel, takes the path every
    // event took (A's connection to the broker, the broker's to B, B's listener), and
    // MQTT keeps one publisher's messages in order on that path, so a copy of an
    // earlier event still on its way would reach B before the sentinel does.
    write(&mut conn, "sentinel");
    let sentinel = recv(&a_local).meta.id;
    let sentinel_arrived = loop {
        match b_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(event) if event.meta.id == sentinel => break true,
            Ok(event) => {
                *seen.entry(event.meta.id).or_default() += 1;
                order.push(event.meta.seq);
            }
            Err(_) => break false,
        }
    };
    let b_stats = b.stats();
    let out_of_order = order.windows(2).filter(|w| w[1] < w[0]).count();
    eprintln!(
        "broker restart: {TOTAL} writes in {writes_took:?} (broker down {downtime:?}), \
         all at B after {all_received:?}; B: {} duplicates dropped, {} reconnects, \
         {out_of_order} seq inversions; A: {:?}",
        b_stats.remote_duplicates,
        b_stats.broker_reconnects,
        a.stats()
    );
    let missing = expected.iter().filter(|id| !seen.contains_key(id)).count();
    assert_eq!(
        missing,
        0,
        "{missing} events never reached B; broker log:\n{}",
        broker.log()
    );
    assert!(sentinel_arrived, "the sentinel never reached B");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "{} events delivered more than once: {twice:?}",
        twice.len()
    );
    assert_eq!(seen.len(), TOTAL, "nothing but A's events");

    a.shutdown(Duration::from_secs(10))
        .expect("A shuts down with everything acknowledged");
    let stats = a.stats();
    // The TOTAL events and the sentinel.
    assert_eq!(stats.emitted, TOTAL as u64 + 1);
    assert_eq!(stats.published, TOTAL as u64 + 1, "{stats:?}");
    assert_eq!(
        (stats.publish_dropped, stats.publish_failed),
        (0, 0),
        "{stats:?}"
    );
    assert!(stats.broker_reconnects >= 1, "{stats:?}");
    b.shutdown(Duration::from_secs(5)).expect("B shuts down");
}

/// The exact path of the Paho C bug the publisher's relay guards against: a broker
/// whose connections end with a TCP reset while QoS 1 publishes stream out, so
/// that writes fail before Paho notices the connection is gone. Each reset used to
/// leave Paho's session owning freed memory (see `publisher::relay`).
#[test]
fn connections_reset_with_publishes_in_flight_lose_nothing() {
    const TOTAL: usize = 5_000;
    const RESETS: usize = 8;
    let broker = ResettingBroker::start(RESETS, 300);
    let a = node(
        "a",
        MqttConfig::new(broker.url()).topic_prefix(unique_prefix("reset")),
    );
    let a_local = a.on::<User>().capacity(TOTAL).subscribe();
    let db = Db::new("reset");
    let mut conn = db.conn(&a);
    for i in 0..TOTAL {
        write(&mut conn, &format!("u{i}"));
    }
    a.shutdown(Duration::from_secs(30))
        .expect("A shuts down with everything acknowledged");
    let stats = a.stats();
    assert_eq!(stats.published, TOTAL as u64, "{stats:?}");
    assert_eq!(
        (stats.publish_dropped, stats.publish_failed),
        (0, 0),
        "{stats:?}"
    );
    assert_eq!(broker.resets(), RESETS, "{stats:?}");
    let acked = broker.acked();
    let missing = (0..TOTAL)
        .map(|_| recv(&a_local).meta.id.to_string())
        .filter(|id| !acked.contains(id))
        .count();
    assert_eq!(missing, 0, "events the broker never acknowledged");
    eprintln!(
        "connection resets: {RESETS} resets over {} connections, {} reconnects",
        broker.connections(),
        stats.broker_reconnects
    );
}

#[test]
fn events_resent_after_a_broker_restart_arrive_at_most_one_window_late() {
    const TOTAL: usize = 5_000;
    let Restartable {
        mut broker,
        a,
        b,
        b_rx,
        db,
    } = Restartable::start("restart_order", TOTAL);
    let mut conn = db.conn(&a);
    for i in 0..TOTAL {
        if i == TOTAL / 2 {
            broker.stop();
        }
        if i == TOTAL * 3 / 4 {
            std::thread::sleep(Duration::from_secs(1));
            broker.restart();
        }
        write(&mut conn, &format!("u{i}"));
    }
    let mut seqs = Vec::with_capacity(TOTAL);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seqs.len() < TOTAL && Instant::now() < deadline {
        if let Ok(event) = b_rx.recv_timeout(Duration::from_millis(100)) {
            seqs.push(event.meta.seq);
        }
    }
    assert_eq!(seqs.len(), TOTAL, "all events arrive");
    // Across a broker outage, events cut off in flight are sent again after
    // reconnecting, and Paho also resends its session's unacknowledged publishes:
    // a resent event may arrive after newer ones, but never further back than one
    // publish window (README, limits). Outside outages order is strict (tests/mqtt.rs).
    let window = 500;
    let mut highest = 0;
    let mut late = Vec::new();
    for &seq in &seqs {
        if seq < highest {
            late.push((highest, seq));
        }
        highest = highest.max(seq);
    }
    assert!(
        late.iter().all(|(newest, seq)| newest - seq <= window),
        "a resent event arrived more than one window late: {:?}",
        &late[..late.len().min(10)]
    );
    a.shutdown(Duration::from_secs(10)).expect("A shuts down");
    b.shutdown(Duration::from_secs(5)).expect("B shuts down");
}
