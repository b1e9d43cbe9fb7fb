//! Rows larger than the broker accepts: a clear, counted failure, never a silent
//! drop, never a stuck publisher. Each test runs a Mosquitto of its own with a
//! small limit.

mod broker;

use broker::*;
use diesel_emitter::prelude::*;

/// On a broker configured with `limit`, a 5 kB row fails, counted, and the small
/// row committed after it still reaches a remote listener.
#[track_caller]
fn assert_oversized_event_fails_and_later_events_flow(limit: &str, test: &str) {
    let broker = Broker::start_with(BrokerConfig {
        global_lines: vec![limit.to_owned()],
        ..BrokerConfig::default()
    });
    let config = MqttConfig::new(broker.url()).topic_prefix(unique_prefix(test));
    let a = node("a", config.clone());
    let b = node("b", config);
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let db = Db::new(test);
    let mut conn = db.conn(&a);

    insert(&mut conn, &"x".repeat(5_000), true);
    let small = insert(&mut conn, "small", true);

    assert_eq!(recv(&rx).row, small, "the later event arrives");
    assert!(
        eventually(TIMEOUT, || a.stats().publish_failed == 1),
        "the oversized event is counted as failed: {:?}",
        a.stats()
    );
    // B can hear the small event before A has read the broker's PUBACK for it.
    assert!(
        eventually(TIMEOUT, || a.stats().published == 1),
        "{:?}",
        a.stats()
    );
    assert_empty(&rx);
    shutdown_all(&[&a, &b]);
}

#[test]
fn an_event_over_the_brokers_message_size_limit_is_counted_and_later_events_flow() {
    // Mosquitto 2.0 refuses the publish with a PUBACK reason code and closes the
    // connection, often before the client has read the PUBACK; the publisher gives
    // the message up after it was the oldest in flight at three lost connections.
    assert_oversized_event_fails_and_later_events_flow("message_size_limit 2000", "size_limit");
}

#[test]
fn an_event_over_the_brokers_max_packet_size_is_counted_and_later_events_flow() {
    // The broker would disconnect a client that sends it; its CONNACK announces the
    // limit, so the publisher never sends it (and does not reconnect for ever).
    assert_oversized_event_fails_and_later_events_flow("max_packet_size 2000", "packet_size");
}
