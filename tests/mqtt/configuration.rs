//! Configuration: typed errors, an unreachable broker, and remote features
//! without MQTT.

use super::*;

#[test]
fn configuration_errors_are_typed() {
    // The MQTT transport's own error, typed, inside `Error::Transport`.
    let build = |config: MqttConfig| {
        let built = Emitter::builder()
            .node_id(node_name("cfg"))
            .mqtt(config)
            .build();
        match built {
            Err(error) => Err(error.transport_error::<MqttConfigError>().cloned()),
            Ok(emitter) => Ok(emitter),
        }
    };
    for url in [
        "http://127.0.0.1:1883",
        "127.0.0.1:1883",
        "mqtt://",
        "mqtt://127.0.0.1:99999",
    ] {
        match build(MqttConfig::new(url)) {
            Err(Some(MqttConfigError::Url { url: given, .. })) => assert_eq!(given, url),
            other => panic!("{url}: expected MqttConfigError::Url, got {other:?}"),
        }
    }
    for prefix in ["app/+/events", "app/#", "", "a//b"] {
        match build(MqttConfig::new(SHARED_URL).topic_prefix(prefix)) {
            Err(Some(MqttConfigError::TopicPrefix(p))) => assert_eq!(p, prefix),
            other => panic!("{prefix:?}: expected MqttConfigError::TopicPrefix, got {other:?}"),
        }
    }
    match build(MqttConfig::new(SHARED_URL).qos(3)) {
        Err(Some(MqttConfigError::Qos(3))) => {}
        other => panic!("expected MqttConfigError::Qos(3), got {other:?}"),
    }
}

#[test]
fn require_connection_to_a_closed_port_is_broker_unreachable() {
    let port = free_port();
    let url = format!("mqtt://127.0.0.1:{port}");
    let started = Instant::now();
    let result = Emitter::builder()
        .node_id(node_name("req"))
        .mqtt(MqttConfig::new(&url).require_connection(Duration::from_secs(1)))
        .build();
    let took = started.elapsed();
    match result {
        Err(Error::BrokerUnreachable { url: given, .. }) => assert_eq!(given, url),
        other => panic!("expected BrokerUnreachable, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(3),
        "build() waited {took:?} for a 1 s require_connection"
    );
}

#[test]
fn a_down_broker_is_not_a_build_error_and_local_listeners_still_get_events() {
    let port = free_port();
    let a = node(
        "a",
        MqttConfig::new(format!("mqtt://127.0.0.1:{port}")).topic_prefix(unique_prefix("down")),
    );
    let local = a.on::<User>().subscribe();
    let remote_too = a.on::<User>().allow_remote(true).subscribe();
    let db = Db::new("t11");
    let mut conn = db.conn(&a);
    let started = Instant::now();
    let rows: Vec<User> = (0..5)
        .map(|i| insert(&mut conn, &format!("u{i}"), true))
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "writes are not slowed by the broker"
    );
    for row in &rows {
        assert_eq!(&recv(&local).row, row);
        let e = recv(&remote_too);
        assert_eq!((&e.row, e.meta.source), (row, Source::Local));
    }
    let stats = a.stats();
    assert!(!stats.broker_connected);
    assert_eq!((stats.emitted, stats.published), (5, 0));
    let started = Instant::now();
    let result = a.shutdown(Duration::from_millis(500));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown is bounded: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(result, Err(Error::ShutdownTimeout { pending: 5, .. })),
        "the 5 events that never reached the broker make shutdown report a timeout: {result:?}"
    );
    let stats = a.stats();
    assert_eq!(
        (stats.published, stats.publish_dropped, stats.publish_failed),
        (0, 0, 5),
        "unsent events are counted, never silent: {stats:?}"
    );
}

#[test]
fn remote_only_and_group_without_mqtt_are_no_broker_errors() {
    let e = Emitter::builder()
        .node_id(node_name("plain"))
        .build()
        .unwrap();
    assert!(matches!(
        e.on::<User>().remote_only(true).try_subscribe(),
        Err(Error::NoBroker)
    ));
    assert!(matches!(
        e.on::<User>().group("mailer").try_subscribe(),
        Err(Error::NoBroker)
    ));
    assert!(matches!(
        e.on::<User>().remote_only(true).try_listen(|_| {}),
        Err(Error::NoBroker)
    ));
    assert!(matches!(
        e.on::<User>().group("mailer").try_listen(|_| {}),
        Err(Error::NoBroker)
    ));
    assert!(matches!(
        e.wait_connected(Duration::from_millis(10)),
        Err(Error::NoBroker)
    ));
    assert_eq!(
        e.stats().listeners,
        0,
        "failed registrations leave no listener behind"
    );
    // allow_remote without a broker is a plain local listener.
    let rx = e.on::<User>().allow_remote(true).subscribe();
    let db = Db::new("t12");
    let mut conn = db.conn(&e);
    let row = insert(&mut conn, "solo", true);
    let ev = recv(&rx);
    assert_eq!((ev.row, ev.meta.source), (row, Source::Local));
    e.shutdown(Duration::from_secs(5)).unwrap();
}
