//! Who hears a committed write over the broker: the writing node's listeners
//! once as local, other nodes' as remote; audiences; rollbacks; actions and
//! filters on remote events; the broker subscription's lifetime; shutdown and
//! small in-flight windows losing nothing.

use super::*;

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

    insert(&mut conn, "before", true);
    assert_eq!(recv(&users_rx).row.name, "before");
    insert_post(&mut conn, "p1");
    assert_eq!(recv(&posts_rx).row.title, "p1");
    assert_eq!(b.stats().remote_received, 2);

    sub.unsubscribe();
    for i in 0..3 {
        insert(&mut conn, &format!("while-away-{i}"), true);
    }
    insert_post(&mut conn, "p2");
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
    insert_post(&mut conn, "p3");
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
    insert(&mut conn, "first", true);
    assert_eq!(recv(&users_rx).row.name, "first");
    assert_eq!(b.stats().listeners, 2);

    drop(users_rx);
    // The dropped receiver is noticed at the next event, on B's subscriber thread,
    // which then releases the broker subscription.
    insert(&mut conn, "noticed", true);
    insert_post(&mut conn, "p1");
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
    insert_post(&mut conn, "p2");
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
