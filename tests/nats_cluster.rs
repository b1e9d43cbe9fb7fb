//! Remote events across a broker that scales out: a two-node NATS cluster
//! (JetStream, NATS's MQTT 3.1.1 interface, routes on loopback) of each test's own,
//! started by `broker::nats` and killed when the test ends, also on failure.
//!
//! NATS speaks MQTT 3.1.1 only (an MQTT 5 CONNECT is refused with "unacceptable
//! protocol version"), so every emitter here uses `Protocol::V311`.

mod broker;
mod log_capture;

use broker::nats::NatsCluster;
use broker::scale::{check_group_refused, check_two_writers_crossing};
use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Protocol;
use std::time::Instant;

fn nats_config(cluster: &NatsCluster, node: usize, prefix: &str) -> MqttConfig {
    MqttConfig::new(cluster.url(node))
        .protocol(Protocol::V311)
        .topic_prefix(prefix)
}

#[test]
fn remote_events_cross_a_two_node_nats_cluster_exactly_once_in_order_per_origin() {
    let started = Instant::now();
    let cluster = NatsCluster::start(2);
    let formed = started.elapsed();
    let prefix = unique_prefix("nats");
    // Two origins committing through node 1, one listener on node 2.
    let crossed = check_two_writers_crossing(
        "nats",
        &|| nats_config(&cluster, 0, &prefix),
        nats_config(&cluster, 1, &prefix),
        &|| cluster.log(),
    );
    eprintln!(
        "NATS cluster formed in {formed:?}; {crossed} events crossed; whole test {:?}",
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
    // NATS 2.9 grants `$share/mailer/...` as an ordinary topic and delivers nothing
    // through it: the group's probe never comes back.
    let group = reader.on::<User>().group("mailer").subscribe();
    connected(&[&writer]);
    let db = Db::new("nats-group");
    let mut conn = db.conn(&writer);
    check_group_refused(
        log_capture::lines_containing,
        &mut conn,
        &reader,
        &cluster.url(1),
        &plain,
        &group,
        &|| cluster.log(),
    );
    shutdown_all(&[&writer, &reader]);
    eprintln!("group refusal on NATS: {:?}", started.elapsed());
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

/// A service that may only read under the prefix (the README's ACL example, read
/// by another service) cannot publish the probes, which proves nothing: its group
/// is not refused, and receives.
#[test]
fn a_group_without_the_right_to_publish_its_probes_is_not_refused() {
    log_capture::start();
    let secrets = TempDir::new("acl-group");
    let passwd = secrets.join("passwd");
    for (i, (user, password)) in [("shop", "shop-secret"), ("billing", "billing-secret")]
        .iter()
        .enumerate()
    {
        let mut cmd = std::process::Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd.arg(&passwd).args([user, password]).status();
        assert!(status.is_ok_and(|s| s.success()), "mosquitto_passwd failed");
    }
    let acl = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/mosquitto/acl");
    let broker = Broker::start_with(BrokerConfig {
        allow_anonymous: false,
        global_lines: vec![
            format!("password_file {}", passwd.display()),
            format!("acl_file {}", acl.display()),
        ],
        ..BrokerConfig::default()
    });
    let shop_events = MqttConfig::new(broker.url())
        .protocol(Protocol::V311)
        .topic_prefix("shop/events");
    let shop = node(
        "shop",
        shop_events.clone().credentials("shop", "shop-secret"),
    );
    let billing = node(
        "billing",
        shop_events.credentials("billing", "billing-secret"),
    );
    let group = billing.on::<User>().group("invoicing").subscribe();
    // Mosquitto (with the README's `max_queued_messages 0`) closes the connection
    // of a client whose publish its ACL denies: three such connections in a row
    // end the check without a verdict, and the group is served.
    connected(&[&shop, &billing]);
    let warned = log_capture::lines_containing(&broker.url());
    assert!(
        warned.iter().any(|l| l.starts_with("WARN")
            && l.contains("cannot check that the broker honours MQTT shared subscriptions")),
        "no warning: {warned:?}"
    );
    let db = Db::new("acl-group");
    let mut conn = db.conn(&shop);
    insert(&mut conn, "ordered", true);
    assert_eq!(recv(&group).row.name, "ordered");
    assert_eq!(billing.stats().groups_refused, 0, "{:?}", billing.stats());
    shutdown_all(&[&shop, &billing]);
}
