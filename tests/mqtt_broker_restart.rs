//! Broker restarts in the middle of a stream of committed writes: every event must
//! reach the remote listener exactly once (by id), resent events at most one
//! publish window late. Each test runs a Mosquitto of its own.
//!
//! KNOWN FAILING, not part of `cargo test`: Paho C 1.3.16 (bundled by paho-mqtt
//! 0.14) corrupts its heap when the broker goes away with QoS 1 publishes in flight
//! (eclipse-paho/paho.mqtt.c #1532, #1621, #1622), and the process aborts in about
//! one run in four. Run it by hand with
//! `cargo test --test mqtt_broker_restart`; it is declared `test = false` in
//! Cargo.toml until the bridge no longer depends on that code path.

mod broker;

use broker::*;
use diesel_emitter::prelude::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- 13

#[test]
fn broker_restart_mid_stream_loses_nothing_and_duplicates_nothing() {
    const TOTAL: usize = 10_000;
    const STOP_AT: usize = 3_000;
    const RESTART_AT: usize = 6_000;
    let mut broker = Broker::start();
    let prefix = unique_prefix("restart");
    let config = MqttConfig::new(broker.url()).topic_prefix(&prefix);
    let a = node("a", config.clone());
    // An explicit client id: B's broker session (and what is queued for it)
    // outlives the restart; session_expiry keeps its default of one hour.
    let b = node("b", config.client_id(node_name("b")));
    let b_rx = b
        .on::<User>()
        .remote_only(true)
        .capacity(3 * TOTAL)
        .subscribe();
    let a_local = a.on::<User>().capacity(2 * TOTAL).subscribe();
    connected(&[&a, &b]);
    let db = Db::new("restart");
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
    // A second copy of anything would arrive right behind.
    std::thread::sleep(Duration::from_millis(500));
    for event in b_rx.try_iter() {
        *seen.entry(event.meta.id).or_default() += 1;
        order.push(event.meta.seq);
    }
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
    assert_eq!(stats.emitted, TOTAL as u64);
    assert_eq!(stats.published, TOTAL as u64, "{stats:?}");
    assert_eq!(
        (stats.publish_dropped, stats.publish_failed),
        (0, 0),
        "{stats:?}"
    );
    assert!(stats.broker_reconnects >= 1, "{stats:?}");
    b.shutdown(Duration::from_secs(5)).expect("B shuts down");
}

#[test]
fn events_resent_after_a_broker_restart_arrive_at_most_one_window_late() {
    const TOTAL: usize = 5_000;
    let mut broker = Broker::start();
    let prefix = unique_prefix("restart_order");
    let config = MqttConfig::new(broker.url()).topic_prefix(&prefix);
    let a = node("a", config.clone());
    let b = node("b", config.client_id(node_name("b")));
    let b_rx = b
        .on::<User>()
        .remote_only(true)
        .capacity(3 * TOTAL)
        .subscribe();
    connected(&[&a, &b]);
    let db = Db::new("restart_order");
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
