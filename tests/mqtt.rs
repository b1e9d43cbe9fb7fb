//! MQTT integration tests against the shared Mosquitto at 127.0.0.1:1883.
//!
//! Every test uses a topic prefix of its own (`test/<pid>/<n>/<nanos>/<test>`), so the
//! tests run in parallel, repeatedly, and beside other users of the broker.

mod broker;

use broker::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::{Error, MqttConfigError};
use diesel_emitter::{Event, Source};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

// ---------------------------------------------------------------- 1

#[test]
fn insert_on_a_reaches_b_as_remote_with_meta_and_row_and_a_sees_it_once_as_local() {
    let prefix = unique_prefix("insert_reaches_b");
    let a = shared_node("a", &prefix);
    let b = shared_node("b", &prefix);
    let a_all = a.on::<User>().allow_remote(true).subscribe();
    let b_remote = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);

    let db = Db::new("t1");
    let mut conn_a = db.conn(&a);
    let row = insert(&mut conn_a, "ada", true);

    let local = recv(&a_all);
    assert_eq!(local.meta.source, Source::Local);
    assert_eq!(local.row, row);

    let remote = recv(&b_remote);
    assert_eq!(remote.meta.source, Source::Remote);
    assert_eq!(remote.action, Action::Insert);
    assert_eq!(&*remote.meta.origin, a.node_id());
    assert_eq!(remote.meta.table, "users");
    assert_eq!(remote.meta.id, local.meta.id);
    assert_eq!(remote.meta.seq, local.meta.seq);
    assert_eq!(remote.meta.seq, 1, "first event of a fresh emitter");
    assert_eq!(remote.row, row, "the full row travels");
    assert_eq!(remote.changed(), local.changed());
    let mut changed = remote.changed().to_vec();
    changed.sort_unstable();
    assert_eq!(changed, ["active", "email", "id", "name"]);
    assert_eq!(
        unix_micros(remote.meta.committed_at),
        unix_micros(local.meta.committed_at),
        "committed_at survives the trip to the microsecond"
    );
    assert_eq!(
        remote
            .meta
            .committed_at
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 1000,
        0,
        "nothing below the microsecond is invented"
    );

    // No echo: B writes a sentinel only after it received A's event, so the broker
    // took A's publish first and delivers it to A's subscriber before the sentinel.
    let mut conn_b = db.conn(&b);
    let sentinel = insert(&mut conn_b, "sentinel", true);
    let next = recv(&a_all);
    assert_eq!(
        (next.row.name.as_str(), next.meta.source, &*next.meta.origin),
        ("sentinel", Source::Remote, b.node_id()),
        "A's own event must not come back to it as remote before the sentinel"
    );
    assert_eq!(next.row, sentinel);
    assert_empty(&a_all);
    assert_empty(&b_remote);
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------- 2

#[test]
fn local_only_writes_are_not_published_and_remote_only_writes_skip_local_listeners() {
    let prefix = unique_prefix("emit_scopes");
    let a = shared_node("a", &prefix);
    let b = shared_node("b", &prefix);
    let a_local = a.on::<User>().subscribe();
    let b_remote = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let db = Db::new("t2");
    let mut conn = db.conn(&a);

    conn.with_emit(Audience::LocalOnly, |c| insert(c, "local-only", true));
    assert_eq!(recv(&a_local).row.name, "local-only");
    insert(&mut conn, "sentinel-1", true);
    assert_eq!(recv(&a_local).row.name, "sentinel-1");
    let first = recv(&b_remote);
    assert_eq!(
        first.row.name, "sentinel-1",
        "the LocalOnly write must not be published"
    );

    conn.with_emit(Audience::RemoteOnly, |c| insert(c, "remote-only", true));
    let remote = recv(&b_remote);
    assert_eq!(
        (remote.row.name.as_str(), remote.meta.source),
        ("remote-only", Source::Remote)
    );
    assert_eq!(&*remote.meta.origin, a.node_id());
    insert(&mut conn, "sentinel-2", true);
    assert_eq!(
        recv(&a_local).row.name,
        "sentinel-2",
        "the RemoteOnly write must not reach A's local listener"
    );
    assert_eq!(recv(&b_remote).row.name, "sentinel-2");
    assert_empty(&a_local);
    assert_empty(&b_remote);

    shutdown_all(&[&a, &b]);
    let stats = a.stats();
    assert_eq!(stats.emitted, 4);
    assert_eq!(
        stats.published, 3,
        "sentinel-1, remote-only, sentinel-2: {stats:?}"
    );
    assert_eq!((stats.publish_dropped, stats.publish_failed), (0, 0));
}

// ---------------------------------------------------------------- 3

#[test]
fn rolled_back_transaction_is_never_published() {
    let prefix = unique_prefix("rollback");
    let sub = Sub::start(SHARED_PORT, &prefix, &["-v"]);
    let a = shared_node("a", &prefix);
    connected(&[&a]);
    let db = Db::new("t3");
    let mut conn = db.conn(&a);

    let rolled_back = conn.transaction::<(), _, _>(|c| {
        insert(c, "ghost-1", true);
        diesel::update(users::table)
            .set(users::active.eq(false))
            .execute(c)?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(rolled_back.is_err());
    // A savepoint rolled back inside a committed transaction is dropped as well.
    conn.transaction::<(), diesel::result::Error, _>(|c| {
        let _ = c.transaction::<(), _, _>(|c| {
            insert(c, "ghost-2", true);
            Err(diesel::result::Error::RollbackTransaction)
        });
        Ok(())
    })
    .expect("outer transaction commits");
    insert(&mut conn, "sentinel", true);

    let line = sub.expect_line();
    let (topic, payload) = line.split_once(' ').expect("`topic payload`");
    assert_eq!(topic, format!("{prefix}/users/insert"));
    let envelope: serde_json::Value = serde_json::from_str(payload).expect("JSON payload");
    assert_eq!(
        envelope["row"]["name"], "sentinel",
        "only the sentinel is published, got {line}"
    );
    let rest = sub.lines_until_sentinel(SHARED_PORT, &prefix);
    assert!(rest.is_empty(), "nothing else is published: {rest:?}");
    shutdown_all(&[&a]);
    assert_eq!(a.stats().published, 1);
}

// ---------------------------------------------------------------- 4

#[test]
fn actions_and_filter_apply_to_remote_events() {
    let prefix = unique_prefix("actions_filter");
    let a = shared_node("a", &prefix);
    let b = shared_node("b", &prefix);
    let updates = b
        .on::<User>()
        .remote_only(true)
        .actions([Action::Update])
        .subscribe();
    let active = b
        .on::<User>()
        .remote_only(true)
        .filter(|e| e.row.active)
        .subscribe();
    let keep_ins_del = b
        .on::<User>()
        .allow_remote(true)
        .actions([Action::Insert, Action::Delete])
        .filter(|e| e.row.name.starts_with("keep"))
        .subscribe();
    // Registered last, so it is handed every event after the others.
    let all = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let db = Db::new("t4");
    let mut conn = db.conn(&a);

    let keep = insert(&mut conn, "keep-1", true); // 1 insert, active
    let drop = insert(&mut conn, "drop-2", false); // 2 insert, inactive
    diesel::update(users::table.find(keep.id))
        .set(users::active.eq(false))
        .execute(&mut conn)
        .unwrap(); // 3
    diesel::update(users::table.find(drop.id))
        .set(users::active.eq(true))
        .execute(&mut conn)
        .unwrap(); // 4
    diesel::delete(users::table.find(keep.id))
        .execute(&mut conn)
        .unwrap(); // 5 (row inactive)
    diesel::delete(users::table.find(drop.id))
        .execute(&mut conn)
        .unwrap(); // 6 (row active)

    let summary = |e: &Event<User>| (e.action, e.row.name.clone(), e.meta.source);
    let everything: Vec<_> = (0..6).map(|_| summary(&recv(&all))).collect();
    let r = Source::Remote;
    assert_eq!(
        everything,
        vec![
            (Action::Insert, "keep-1".into(), r),
            (Action::Insert, "drop-2".into(), r),
            (Action::Update, "keep-1".into(), r),
            (Action::Update, "drop-2".into(), r),
            (Action::Delete, "keep-1".into(), r),
            (Action::Delete, "drop-2".into(), r),
        ]
    );
    let drain = |rx: &diesel_emitter::crossbeam_channel::Receiver<Event<User>>| -> Vec<(Action, String, Source)> {
        rx.try_iter().map(|e| summary(&e)).collect()
    };
    assert_eq!(
        drain(&updates),
        vec![
            (Action::Update, "keep-1".into(), r),
            (Action::Update, "drop-2".into(), r)
        ]
    );
    assert_eq!(
        drain(&active),
        vec![
            (Action::Insert, "keep-1".into(), r),
            (Action::Update, "drop-2".into(), r),
            (Action::Delete, "drop-2".into(), r)
        ]
    );
    assert_eq!(
        drain(&keep_ins_del),
        vec![
            (Action::Insert, "keep-1".into(), r),
            (Action::Delete, "keep-1".into(), r)
        ]
    );
    shutdown_all(&[&a, &b]);
}

// ---------------------------------------------------------------- 5

#[test]
fn unsubscribing_the_last_remote_listener_releases_the_broker_subscription() {
    let prefix = unique_prefix("unsubscribe");
    let a = shared_node("a", &prefix);
    let b = shared_node("b", &prefix);
    let (tx, users_rx) = diesel_emitter::crossbeam_channel::unbounded();
    let sub = b
        .on::<User>()
        .remote_only(true)
        .listen(move |e: &Event<User>| {
            let _ = tx.send(e.clone());
        });
    // A listener on another table of the same stream (same client, same
    // connection): the broker delivers A's publishes to it in order, so once a
    // post arrives every user event published before it has arrived too.
    let posts_rx = b.on::<Post>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let db = Db::new("t5");
    let mut conn = db.conn(&a);
    conn.batch_execute(POSTS_DDL).unwrap();
    let post = |conn: &mut Conn, title: &str| {
        diesel::insert_into(posts::table)
            .values(posts::title.eq(title))
            .execute(conn)
            .unwrap();
    };

    insert(&mut conn, "before", true);
    assert_eq!(recv(&users_rx).row.name, "before");
    post(&mut conn, "p1");
    assert_eq!(recv(&posts_rx).row.title, "p1");
    assert_eq!(b.stats().remote_received, 2);

    sub.unsubscribe();
    for i in 0..3 {
        insert(&mut conn, &format!("while-away-{i}"), true);
    }
    post(&mut conn, "p2");
    assert_eq!(recv(&posts_rx).row.title, "p2");
    assert_eq!(
        b.stats().remote_received,
        3,
        "after the last users listener left, the broker must not send B users events any more"
    );
    assert!(
        users_rx.try_recv().is_err(),
        "an unsubscribed listener gets nothing"
    );

    let again = b.on::<User>().remote_only(true).subscribe();
    connected(&[&b]);
    insert(&mut conn, "after", true);
    assert_eq!(recv(&again).row.name, "after");
    post(&mut conn, "p3");
    assert_eq!(recv(&posts_rx).row.title, "p3");
    assert_eq!(b.stats().remote_received, 5);
    assert_empty(&again);
    shutdown_all(&[&a, &b]);
}

#[test]
fn dropping_the_last_remote_receiver_releases_the_subscription_at_the_next_event() {
    let prefix = unique_prefix("drop_receiver");
    let a = shared_node("a", &prefix);
    let b = shared_node("b", &prefix);
    let users_rx = b.on::<User>().remote_only(true).subscribe();
    let posts_rx = b.on::<Post>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let db = Db::new("t5b");
    let mut conn = db.conn(&a);
    conn.batch_execute(POSTS_DDL).unwrap();
    let post = |conn: &mut Conn, title: &str| {
        diesel::insert_into(posts::table)
            .values(posts::title.eq(title))
            .execute(conn)
            .unwrap();
    };
    insert(&mut conn, "first", true);
    assert_eq!(recv(&users_rx).row.name, "first");
    assert_eq!(b.stats().listeners, 2);

    drop(users_rx);
    // The dropped receiver is noticed at the next event, on B's subscriber thread,
    // which then releases the broker subscription.
    insert(&mut conn, "noticed", true);
    post(&mut conn, "p1");
    assert_eq!(recv(&posts_rx).row.title, "p1", "B's stream keeps working");
    assert_eq!(
        b.stats().listeners,
        1,
        "the dropped receiver's listener is gone"
    );
    let received = b.stats().remote_received;
    assert_eq!(received, 3);
    for i in 0..3 {
        insert(&mut conn, &format!("unheard-{i}"), true);
    }
    post(&mut conn, "p2");
    assert_eq!(recv(&posts_rx).row.title, "p2");
    assert_eq!(
        b.stats().remote_received,
        received + 1,
        "no users events reach B any more"
    );
    shutdown_all(&[&a, &b]);
}

#[test]
fn shutdown_publishes_everything_committed_before_it() {
    const N: usize = 2_000;
    let prefix = unique_prefix("shutdown_flush");
    let a = shared_node("a", &prefix);
    let b = shared_node("b", &prefix);
    let rx = b.on::<User>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let db = Db::new("flush");
    let mut conn = db.conn(&a);
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        for i in 0..N {
            diesel::insert_into(users::table)
                .values((
                    users::name.eq(format!("u{i}")),
                    users::email.eq("e"),
                    users::active.eq(true),
                ))
                .execute(c)?;
        }
        Ok(())
    })
    .unwrap();
    // Straight after the commit: most of the 2,000 are still queued for the broker.
    a.shutdown(Duration::from_secs(10))
        .expect("everything is acknowledged within the timeout");
    let stats = a.stats();
    assert_eq!(
        (stats.emitted, stats.published, stats.publish_failed),
        (N as u64, N as u64, 0),
        "{stats:?}"
    );
    let seqs: Vec<u64> = (0..N).map(|_| recv(&rx).meta.seq).collect();
    assert_eq!(
        seqs,
        (1..=N as u64).collect::<Vec<_>>(),
        "all of them, in commit order"
    );
    shutdown_all(&[&b]);
}

#[test]
fn small_in_flight_windows_publish_every_event_in_commit_order() {
    // A full window waits for an eighth of itself to be acknowledged: with 1,
    // 3 and 16 publishes in flight that is 1, 1 and 2 acknowledgements.
    const N: usize = 300;
    for window in [1, 3, 16] {
        let prefix = unique_prefix(&format!("window_{window}"));
        let a = node(
            "a",
            MqttConfig::new(SHARED_URL)
                .topic_prefix(&prefix)
                .max_inflight(window),
        );
        let b = shared_node("b", &prefix);
        let rx = b.on::<User>().remote_only(true).subscribe();
        connected(&[&a, &b]);
        let db = Db::new(&format!("window{window}"));
        let mut conn = db.conn(&a);
        for i in 0..N {
            insert(&mut conn, &format!("u{i}"), true);
        }
        let seqs: Vec<u64> = (0..N).map(|_| recv(&rx).meta.seq).collect();
        assert_eq!(seqs, (1..=N as u64).collect::<Vec<_>>(), "window {window}");
        shutdown_all(&[&a, &b]);
        let stats = a.stats();
        assert_eq!(
            (stats.published, stats.publish_failed),
            (N as u64, 0),
            "{stats:?}"
        );
    }
}

// ---------------------------------------------------------------- 6

#[test]
fn group_members_each_handle_every_event_exactly_once_across_the_group() {
    const PER_WRITER: usize = 40;
    let prefix = unique_prefix("group");
    let a = shared_node("a", &prefix);
    let members: Vec<Emitter> = (1..=3)
        .map(|i| shared_node(&format!("mailer{i}"), &prefix))
        .collect();
    let group_rx: Vec<_> = members
        .iter()
        .map(|m| m.on::<User>().group("mailer").subscribe())
        .collect();
    let mut all: Vec<&Emitter> = members.iter().collect();
    all.push(&a);
    connected(&all);
    // Every writer's local listener records the ids it committed.
    let writers: Vec<&Emitter> = vec![&a, &members[0], &members[2]];
    let local_rx: Vec<_> = writers.iter().map(|w| w.on::<User>().subscribe()).collect();

    let db = Db::new("t6");
    let mut conns: Vec<Conn> = writers.iter().map(|w| db.conn(w)).collect();
    for i in 0..PER_WRITER {
        for (w, conn) in conns.iter_mut().enumerate() {
            insert(conn, &format!("w{w}-{i}"), true);
        }
    }
    let mut expected = HashSet::new();
    for rx in &local_rx {
        for _ in 0..PER_WRITER {
            expected.insert(recv(rx).meta.id);
        }
    }
    let total = writers.len() * PER_WRITER;
    assert_eq!(expected.len(), total);

    let mut handled: Vec<Vec<Event<User>>> = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + TIMEOUT;
    while handled.iter().map(Vec::len).sum::<usize>() < total && Instant::now() < deadline {
        for (i, rx) in group_rx.iter().enumerate() {
            handled[i].extend(rx.try_iter());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Nothing extra (a second delivery): sentinels. MQTT keeps the messages of one
    // publisher in order on their way to one subscriber, but the group spreads a
    // writer's events over its members, so one sentinel fences one (writer, member)
    // path only. Each writer in turn writes sentinels, one at a time and each awaited,
    // until every member has handled one of that writer's: then a copy of any event
    // still on its way would already have been handled. Sentinels are not counted.
    use diesel_emitter::crossbeam_channel::Select;
    let is_sentinel = |event: &Event<User>| event.row.name.starts_with("sentinel");
    let mut sentinels = 0;
    for (w, conn) in conns.iter_mut().enumerate() {
        let writer = writers[w].node_id();
        let mut fenced = vec![false; members.len()];
        for k in 0.. {
            assert!(
                k < 10 * members.len(),
                "writer {writer}'s sentinels reached only {fenced:?} of the members"
            );
            let name = format!("sentinel-{w}-{k}");
            insert(conn, &name, true);
            sentinels += 1;
            loop {
                let mut select = Select::new();
                for rx in &group_rx {
                    select.recv(rx);
                }
                let op = select
                    .select_timeout(TIMEOUT)
                    .unwrap_or_else(|_| panic!("{name} reached no member"));
                let i = op.index();
                let event = op.recv(&group_rx[i]).expect("the group listener is open");
                if is_sentinel(&event) {
                    assert_eq!(&*event.meta.origin, writer, "{event:?}");
                    assert_eq!(event.row.name, name, "sentinels one at a time");
                    fenced[i] = true;
                    break;
                }
                handled[i].push(event);
            }
            if fenced.iter().all(|f| *f) {
                break;
            }
        }
    }
    let mut count: HashMap<_, usize> = HashMap::new();
    for event in handled.iter().flatten() {
        *count.entry(event.meta.id).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events handled more than once: {twice:?}");
    let got: HashSet<_> = count.keys().copied().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} events handled by no member: {missing:?}",
        missing.len()
    );
    assert_eq!(got, expected);
    let own: usize = handled
        .iter()
        .flatten()
        .filter(|e| members.iter().any(|m| m.node_id() == &*e.meta.origin))
        .count();
    assert_eq!(
        own,
        2 * PER_WRITER,
        "events committed by members are handled by the group too"
    );
    eprintln!(
        "group split: {:?} ({sentinels} sentinels)",
        handled.iter().map(Vec::len).collect::<Vec<_>>()
    );
    shutdown_all(&all);
}

// ---------------------------------------------------------------- 7

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

// ---------------------------------------------------------------- 8

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

// ---------------------------------------------------------------- 9

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

// ---------------------------------------------------------------- 10

/// `target/<profile>/examples/multi_server`, next to the `deps` dir of this test
/// binary. `cargo test --test mqtt` does not build examples, so ask Cargo for it
/// (a no-op when it is up to date).
fn multi_server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    let profile_dir = deps.parent().expect("profile dir");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "diesel-emitter",
        "--example",
        "multi_server",
        "--manifest-path",
    ])
    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let mut child = ChildGuard::new(cmd.spawn().expect("run cargo build --example multi_server"));
    let status =
        wait_exit(&mut child.child, Duration::from_secs(600)).expect("cargo build finishes");
    assert!(
        status.success(),
        "cargo build --example multi_server failed"
    );
    let binary = profile_dir.join("examples").join("multi_server");
    assert!(is_file(&binary), "{} exists", binary.display());
    binary
}

#[test]
fn two_processes_multi_server_example_listener_hears_the_writer() {
    let binary = multi_server_binary();
    let prefix = unique_prefix("multi_server");
    let observer = Sub::start(SHARED_PORT, &prefix, &["-v"]);

    let mut listener = ChildGuard::new(
        Command::new(&binary)
            .args(["listen", "--count", "9", "--node", "l1"])
            .env("MQTT_PREFIX", &prefix)
            .env("MQTT_URL", SHARED_URL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the listener"),
    );
    let stdout = listener.child.stdout.take().expect("piped stdout");
    let (tx, lines) = diesel_emitter::crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the listener prints READY");
    assert_eq!(ready, "READY");

    let mut writer = ChildGuard::new(
        Command::new(&binary)
            .args(["write", "--count", "3", "--node", "w1"])
            .env("MQTT_PREFIX", &prefix)
            .env("MQTT_URL", SHARED_URL)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer"),
    );
    let status = wait_exit(&mut writer.child, Duration::from_secs(30))
        .expect("the writer finishes within 30 s");
    let mut out = String::new();
    std::io::Read::read_to_string(writer.child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "writer failed: {status}\n{out}");
    assert!(
        out.contains("published 9 events (0 failed)"),
        "writer output:\n{out}"
    );
    // The writer's SQLite file (the example names it after the node).
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("multi-server-w1.db{suffix}");
        let _ = std::fs::remove_file(std::env::temp_dir().join(name));
    }

    let events: Vec<String> = (0..9)
        .map(|i| {
            lines
                .recv_timeout(TIMEOUT)
                .unwrap_or_else(|_| panic!("EVENT line {} within {TIMEOUT:?}", i + 1))
        })
        .collect();
    let status =
        wait_exit(&mut listener.child, TIMEOUT).expect("the listener exits after 9 events");
    assert!(status.success(), "listener failed: {status}");
    assert!(
        lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing after 9 events"
    );

    let mut seqs = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in events.iter().enumerate() {
        // EVENT <id> <origin> <seq> <action> <row as JSON>
        let parts: Vec<&str> = line.splitn(6, ' ').collect();
        assert_eq!(parts.len(), 6, "{line}");
        assert_eq!(parts[0], "EVENT", "{line}");
        assert!(is_uuid(parts[1]), "{line}");
        assert!(ids.insert(parts[1].to_owned()), "id twice: {line}");
        assert_eq!(parts[2], "w1", "{line}");
        seqs.push(parts[3].parse::<u64>().expect("seq is a number"));
        assert_eq!(parts[4], ["insert", "update", "delete"][i % 3], "{line}");
        let row: serde_json::Value = serde_json::from_str(parts[5]).expect("row is JSON");
        assert_eq!(row["name"], format!("user-{}", i / 3), "{line}");
        assert_eq!(
            row["active"],
            i % 3 == 0,
            "inserted active, then updated to inactive: {line}"
        );
    }
    assert_eq!(seqs, (1..=9).collect::<Vec<u64>>());

    // The observer saw the same nine publishes and nothing else: no ghost.
    let seen = observer.lines_until_sentinel(SHARED_PORT, &prefix);
    assert_eq!(seen.len(), 9, "{seen:#?}");
    assert!(seen.iter().all(|l| !l.contains("ghost")), "{seen:#?}");
}

// ---------------------------------------------------------------- 11

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

// ---------------------------------------------------------------- 12

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
