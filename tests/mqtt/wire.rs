//! The wire as others see it: the documented envelope read by `mosquitto_sub`,
//! forged and malformed payloads dropped and counted, a redelivered envelope
//! delivered once.

use super::*;

#[test]
fn mosquitto_sub_receives_the_documented_envelope_of_an_update() {
    let prefix = unique_prefix("envelope");
    let sub = Sub::start(SHARED_PORT, &prefix, &["-V", "mqttv5", "-F", "%t\t%P\t%p"]);
    let a = shared_node("a", &prefix);
    let local = a.on::<User>().subscribe();
    connected(&[&a]);
    let db = Db::new("t7");
    let mut conn = db.conn(&a);
    let user = insert(&mut conn, "ada", true);
    let updated: User = diesel::update(users::table.find(user.id))
        .set((users::name.eq("ada lovelace"), users::active.eq(false)))
        .returning(User::as_returning())
        .get_result(&mut conn)
        .unwrap();
    let _inserted = recv(&local);
    let update = recv(&local);
    assert_eq!(update.action, Action::Update);

    let _insert_line = sub.expect_line();
    let line = sub.expect_line();
    let fields: Vec<&str> = line.splitn(3, '\t').collect();
    assert_eq!(fields.len(), 3, "topic, user properties, payload: {line}");
    let (topic, props, payload) = (fields[0], fields[1], fields[2]);
    assert_eq!(topic, format!("{prefix}/users/update"));
    assert_eq!(
        props,
        format!("origin:{}", a.node_id()),
        "MQTT 5 user property `origin`"
    );

    let v: serde_json::Value = serde_json::from_str(payload).expect("the payload is JSON");
    let obj = v.as_object().expect("one JSON object");
    assert_eq!(v["v"].as_u64(), Some(1), "v: {payload}");
    let id = v["id"].as_str().expect("id is a string");
    assert!(is_uuid(id), "id {id:?} is a UUID");
    assert_eq!(id, update.meta.id.to_string());
    assert_eq!(v["origin"].as_str(), Some(a.node_id()));
    assert_eq!(v["seq"].as_u64(), Some(update.meta.seq));
    assert_eq!(v["seq"].as_u64(), Some(2));
    assert_eq!(v["table"].as_str(), Some("users"));
    assert_eq!(v["action"].as_str(), Some("update"));
    let committed_at = v["committed_at"]
        .as_str()
        .expect("committed_at is a string");
    let nanos =
        parse_rfc3339(committed_at).unwrap_or_else(|| panic!("{committed_at:?} is not RFC 3339"));
    assert!(committed_at.ends_with('Z'), "UTC: {committed_at}");
    assert_eq!(
        nanos / 1000,
        unix_micros(update.meta.committed_at) as i128,
        "{committed_at}"
    );
    let mut changed: Vec<&str> = v["changed"]
        .as_array()
        .expect("changed is an array")
        .iter()
        .map(|c| c.as_str().expect("column names are strings"))
        .collect();
    changed.sort_unstable();
    assert_eq!(changed, ["active", "name"], "changed is the SET columns");
    assert_eq!(
        v["row"],
        serde_json::to_value(&updated).unwrap(),
        "row is the model's serde form"
    );
    assert_eq!(v["row"], serde_json::to_value(&update.row).unwrap());
    for key in [
        "v",
        "id",
        "origin",
        "seq",
        "table",
        "action",
        "committed_at",
        "changed",
        "row",
    ] {
        assert!(obj.contains_key(key), "missing {key}");
    }
    shutdown_all(&[&a]);
}

#[test]
fn bad_remote_payloads_are_dropped_and_counted_and_good_ones_still_flow() {
    let prefix = unique_prefix("bad_payloads");
    let a = shared_node("a", &prefix);
    let b = node(
        "b",
        MqttConfig::new(SHARED_URL)
            .topic_prefix(&prefix)
            .max_payload(1024),
    );
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);

    let insert_topic = format!("{prefix}/users/insert");
    let good = |seq| {
        envelope(
            &fake_uuid(),
            "injector",
            seq,
            "users",
            "insert",
            user_row(seq as i32, "x"),
        )
    };
    let mut v2 = good(2);
    v2["v"] = 2.into();
    let wrong_row = envelope(
        &fake_uuid(),
        "injector",
        3,
        "users",
        "insert",
        serde_json::json!({"id": "seven", "name": 1, "email": null, "active": "yes"}),
    );
    let other_table = envelope(
        &fake_uuid(),
        "injector",
        4,
        "posts",
        "insert",
        user_row(4, "x"),
    );
    let oversized = envelope(
        &fake_uuid(),
        "injector",
        5,
        "users",
        "insert",
        user_row(5, &"x".repeat(2000)),
    );
    let mut bad_time = good(6);
    bad_time["committed_at"] = "yesterday".into();
    let mut bad_id = good(7);
    bad_id["id"] = "not-a-uuid".into();
    let other_action = envelope(
        &fake_uuid(),
        "injector",
        8,
        "users",
        "delete",
        user_row(8, "x"),
    );
    let mut seq_string = good(9);
    seq_string["seq"] = "nine".into();
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("not JSON", insert_topic.clone(), b"hello, broker".to_vec()),
        ("JSON without fields", insert_topic.clone(), b"{}".to_vec()),
        ("JSON null", insert_topic.clone(), b"null".to_vec()),
        ("v: 2", insert_topic.clone(), v2.to_string().into_bytes()),
        (
            "wrong row types",
            insert_topic.clone(),
            wrong_row.to_string().into_bytes(),
        ),
        (
            "table mismatch",
            insert_topic.clone(),
            other_table.to_string().into_bytes(),
        ),
        (
            "oversized",
            insert_topic.clone(),
            oversized.to_string().into_bytes(),
        ),
        (
            "committed_at not RFC 3339",
            insert_topic.clone(),
            bad_time.to_string().into_bytes(),
        ),
        (
            "id not a UUID",
            insert_topic.clone(),
            bad_id.to_string().into_bytes(),
        ),
        (
            "action mismatch",
            insert_topic.clone(),
            other_action.to_string().into_bytes(),
        ),
        (
            "seq not a number",
            insert_topic.clone(),
            seq_string.to_string().into_bytes(),
        ),
        (
            "unknown action topic",
            format!("{prefix}/users/upsert"),
            good(10).to_string().into_bytes(),
        ),
        (
            "invalid UTF-8",
            insert_topic.clone(),
            vec![0xff, 0xfe, b'{', b'}'],
        ),
    ];
    assert!(
        cases[6].2.len() > 1024,
        "the oversized payload is over the limit"
    );
    for (_, topic, payload) in &cases {
        mosquitto_pub(SHARED_PORT, topic, payload, &[]);
    }
    let db = Db::new("t8");
    let mut conn = db.conn(&a);
    let row = insert(&mut conn, "good", true);
    let event = recv(&rx);
    assert_eq!(
        (event.row.clone(), &*event.meta.origin),
        (row, a.node_id()),
        "the first event delivered is the good one"
    );
    assert_empty(&rx);
    let stats = b.stats();
    assert_eq!(
        stats.remote_rejected,
        cases.len() as u64,
        "each bad payload counted once ({:?}): {stats:?}",
        cases.iter().map(|c| c.0).collect::<Vec<_>>()
    );
    assert_eq!(stats.remote_received, cases.len() as u64 + 1);
    assert_eq!((stats.panics, stats.remote_duplicates), (0, 0));
    shutdown_all(&[&a, &b]);
}

#[test]
fn a_redelivered_envelope_is_delivered_once_and_counted_as_duplicate() {
    let prefix = unique_prefix("dedup");
    let b = shared_node("b", &prefix);
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&b]);
    let topic = format!("{prefix}/users/insert");
    let id = fake_uuid();
    let payload = envelope(&id, "injector", 7, "users", "insert", user_row(7, "twice")).to_string();
    mosquitto_pub(SHARED_PORT, &topic, payload.as_bytes(), &[]);
    mosquitto_pub(SHARED_PORT, &topic, payload.as_bytes(), &[]);
    let sentinel_id = fake_uuid();
    let sentinel = envelope(
        &sentinel_id,
        "injector",
        8,
        "users",
        "insert",
        user_row(8, "sentinel"),
    )
    .to_string();
    mosquitto_pub(SHARED_PORT, &topic, sentinel.as_bytes(), &[]);

    let first = recv(&rx);
    assert_eq!(first.meta.id.to_string(), id);
    assert_eq!(
        (&*first.meta.origin, first.meta.seq, first.meta.source),
        ("injector", 7, Source::Remote)
    );
    assert_eq!(first.row.name, "twice");
    let second = recv(&rx);
    assert_eq!(
        second.meta.id.to_string(),
        sentinel_id,
        "the copy is not delivered"
    );
    assert_empty(&rx);
    let stats = b.stats();
    assert_eq!(
        (
            stats.remote_received,
            stats.remote_duplicates,
            stats.remote_rejected
        ),
        (3, 1, 0),
        "{stats:?}"
    );
    shutdown_all(&[&b]);
}
