//! Remote events across a broker that scales out: a two-node NATS cluster
//! (JetStream, NATS's MQTT 3.1.1 interface, routes on loopback) of each test's own,
//! started by `broker::nats` and killed when the test ends, also on failure.
//!
//! NATS speaks MQTT 3.1.1 only (an MQTT 5 CONNECT is refused with "unacceptable
//! protocol version"), so every emitter here uses `Protocol::V311`.

mod broker;
mod log_capture;

use broker::nats::NatsCluster;
use broker::*;
use diesel_emitter::crossbeam_channel::Receiver;
use diesel_emitter::prelude::*;
use diesel_emitter::Protocol;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn nats_config(cluster: &NatsCluster, node: usize, prefix: &str) -> MqttConfig {
    MqttConfig::new(cluster.url(node))
        .protocol(Protocol::V311)
        .topic_prefix(prefix)
}

/// Writes `warmup-<n>` rows through `conn` until `rx` has received one, and
/// returns the number written. A SUBACK from node 2 does not say that node 1 has
/// heard of the subscription yet (interest travels over the route on its own
/// time): an event committed before that is not lost by our code but never
/// routed. Events that did arrive are in `rx` and are checked with the rest.
fn warm_up(conn: &mut Conn, rx: &Receiver<Event<User>>, cluster: &NatsCluster) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    let mut written = 0;
    loop {
        insert(conn, &format!("warmup-{written}"), true);
        written += 1;
        // Left in `rx`; 200 ms is how often to knock while waiting, not a proof.
        if eventually(Duration::from_millis(200), || !rx.is_empty()) {
            return written;
        }
        assert!(
            Instant::now() < deadline,
            "no event crossed the cluster within {TIMEOUT:?}:\n{}",
            cluster.log()
        );
    }
}

#[test]
fn remote_events_cross_a_two_node_nats_cluster_exactly_once_in_order_per_origin() {
    const PER_WRITER: usize = 250;
    let started = Instant::now();
    let cluster = NatsCluster::start(2);
    let formed = started.elapsed();
    let prefix = unique_prefix("nats");
    // Two origins committing through node 1, one listener on node 2.
    let writers = [
        node("writer-a", nats_config(&cluster, 0, &prefix)),
        node("writer-b", nats_config(&cluster, 0, &prefix)),
    ];
    let reader = node("reader", nats_config(&cluster, 1, &prefix));
    let remote = reader.on::<User>().remote_only(true).subscribe();
    connected(&[&writers[0], &writers[1], &reader]);

    let db = Db::new("nats");
    let mut conns: Vec<Conn> = writers.iter().map(|w| db.conn(w)).collect();
    // The first event through the route proves the subscription has reached node 1,
    // for every publisher there.
    warm_up(&mut conns[0], &remote, &cluster);

    // Both writers at once, each on its own thread, so their events interleave.
    std::thread::scope(|s| {
        for (w, conn) in conns.iter_mut().enumerate() {
            s.spawn(move || {
                for i in 0..PER_WRITER {
                    insert(conn, &format!("w{w}-{i}"), true);
                }
            });
        }
    });
    // A sentinel per writer, committed after its batch: when it arrives, anything
    // the batch would bring twice (a QoS 1 redelivery that escaped deduplication)
    // has arrived before it, since each origin's events arrive in commit order.
    for (w, conn) in conns.iter_mut().enumerate() {
        insert(conn, &format!("sentinel-{w}"), true);
    }

    let mut by_origin: HashMap<String, Vec<Event<User>>> = HashMap::new();
    let mut sentinels = 0;
    while sentinels < writers.len() {
        let event = match remote.recv_timeout(TIMEOUT) {
            Ok(event) => event,
            Err(_) => panic!(
                "events stopped arriving: {:?} so far; reader {:?}\n{}",
                by_origin
                    .iter()
                    .map(|(o, v)| (o, v.len()))
                    .collect::<Vec<_>>(),
                reader.stats(),
                cluster.log()
            ),
        };
        assert_eq!(event.meta.source, Source::Remote);
        if event.row.name.starts_with("sentinel-") {
            sentinels += 1;
        }
        by_origin
            .entry(event.meta.origin.to_string())
            .or_default()
            .push(event);
    }

    let arrived: usize = by_origin.values().map(Vec::len).sum();
    for (w, writer) in writers.iter().enumerate() {
        let events = by_origin
            .remove(writer.node_id())
            .unwrap_or_else(|| panic!("nothing arrived from {}", writer.node_id()));
        let seqs: Vec<u64> = events.iter().map(|e| e.meta.seq).collect();
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "{}: seq not increasing: {seqs:?}",
            writer.node_id()
        );
        // Warm-ups first (those written before the route carried them are not
        // here), then the batch in commit order, each once, then the sentinel.
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.row.name.as_str())
            .skip_while(|n| n.starts_with("warmup-"))
            .collect();
        let expected: Vec<String> = (0..PER_WRITER)
            .map(|i| format!("w{w}-{i}"))
            .chain([format!("sentinel-{w}")])
            .collect();
        assert_eq!(
            names,
            expected,
            "{}: not every event exactly once in commit order",
            writer.node_id()
        );
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.meta.id).collect();
        assert_eq!(ids.len(), events.len(), "an event id arrived twice");
    }
    assert!(
        by_origin.is_empty(),
        "events of unknown origins: {by_origin:?}"
    );
    assert!(remote.is_empty(), "an event after the sentinels");

    let stats = reader.stats();
    assert_eq!(stats.remote_rejected, 0, "{stats:?}");
    // Every message the reader took from the broker reached the listener once:
    // QoS 1 redeliveries, if any, were recognised by their event id.
    assert_eq!(
        stats.remote_received - stats.remote_duplicates,
        arrived as u64,
        "{stats:?}"
    );
    for writer in &writers {
        let stats = writer.stats();
        assert_eq!(
            (stats.publish_dropped, stats.publish_failed),
            (0, 0),
            "{stats:?}"
        );
    }
    let mut all: Vec<&Emitter> = writers.iter().collect();
    all.push(&reader);
    shutdown_all(&all);
    eprintln!(
        "nats cluster formed in {formed:?}; {} events crossed; whole test {:?}",
        2 * PER_WRITER + 2,
        started.elapsed()
    );
}

#[test]
fn a_group_on_nats_is_reported_refused_and_plain_remote_listeners_keep_receiving() {
    log_capture::start();
    let started = Instant::now();
    let cluster = NatsCluster::start(2);
    let prefix = unique_prefix("nats-group");
    let writer = node("writer", nats_config(&cluster, 0, &prefix));
    let reader = node("reader", nats_config(&cluster, 1, &prefix));
    let plain = reader.on::<User>().remote_only(true).subscribe();
    let group = reader.on::<User>().group("mailer").subscribe();
    connected(&[&writer]);

    // NATS 2.9 grants `$share/mailer/...` as an ordinary topic and delivers nothing
    // through it: the group's probe never comes back, and that is reported.
    assert!(
        eventually(TIMEOUT, || reader.stats().groups_refused == 1),
        "the group was not reported refused: {:?}\n{}",
        reader.stats(),
        cluster.log()
    );
    let logged = log_capture::lines_containing(&cluster.url(1));
    assert!(
        logged.iter().any(|l| l.starts_with("ERROR")
            && l.contains("does not honour MQTT shared subscriptions")
            && l.contains("mailer")),
        "no error logged: {logged:?}"
    );
    eprintln!("{}", logged.join("\n"));
    // Its listeners would wait for nothing, so the emitter does not claim to be ready.
    assert!(reader.wait_connected(Duration::from_millis(300)).is_err());

    // The plain stream, a client of its own, still receives every event, in order.
    let db = Db::new("nats-group");
    let mut conn = db.conn(&writer);
    warm_up(&mut conn, &plain, &cluster);
    plain.try_iter().for_each(drop);
    for i in 0..20 {
        insert(&mut conn, &format!("after-{i}"), true);
    }
    let names: Vec<String> = (0..20).map(|_| recv(&plain).row.name).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    assert_eq!(names, expected);
    // On NATS the group's subscription matches no topic: nothing reached it.
    assert!(group.is_empty(), "the group received events on NATS");
    let stats = reader.stats();
    assert_eq!(stats.groups_refused, 1, "reported once: {stats:?}");
    assert_eq!(
        stats.remote_rejected, 0,
        "the probe is not screened as an event: {stats:?}"
    );

    shutdown_all(&[&writer, &reader]);
    eprintln!("group refusal test took {:?}", started.elapsed());
}

/// The same probe on a broker with shared subscriptions (Mosquitto, MQTT 3.1.1 as
/// on NATS) comes back: no refusal, and the group receives.
#[test]
fn a_group_on_mosquitto_is_not_refused() {
    let broker = Broker::start();
    let prefix = unique_prefix("mosquitto-group");
    let config = || {
        MqttConfig::new(broker.url())
            .protocol(Protocol::V311)
            .topic_prefix(&prefix)
    };
    let writer = node("writer", config());
    let member = node("member", config());
    let group = member.on::<User>().group("mailer").subscribe();
    // Ready only once the probe came back through the shared subscription: from
    // then on the verdict cannot turn into a refusal.
    connected(&[&writer, &member]);
    assert_eq!(member.stats().groups_refused, 0, "{:?}", member.stats());
    let db = Db::new("mosquitto-group");
    let mut conn = db.conn(&writer);
    insert(&mut conn, "mailed", true);
    assert_eq!(recv(&group).row.name, "mailed");
    let stats = member.stats();
    assert_eq!(
        (stats.groups_refused, stats.remote_rejected),
        (0, 0),
        "{stats:?}"
    );
    shutdown_all(&[&writer, &member]);
}
