//! Listeners and scopes: a panicking or slow listener harms no one, `actions` and
//! `filter` choose what a listener sees, `with_emit` scopes choose who hears a write.

use super::*;

pub fn panicking_listener_keeps_receiving_and_harms_no_one() {
    let db = Db::with_users("panicking_listener");
    let emitter = emitter("panicking_listener");
    let everything = emitter.on::<User>().subscribe();
    let (tx, survived) = crossbeam_channel::unbounded::<String>();
    let _sub = emitter.on::<User>().listen(move |ev: &Event<User>| {
        if ev.row.name.starts_with("boom") {
            panic!("listener panics on purpose for {}", ev.row.name);
        }
        tx.send(ev.row.name.clone()).unwrap();
    });
    let mut conn = db.emitting(&emitter);

    let names = ["ok1", "boom1", "ok2", "boom2", "ok3"];
    for name in names {
        let n = diesel::insert_into(users::table)
            .values(NewUser::named(name))
            .execute(&mut conn)
            .unwrap();
        assert_eq!(n, 1, "the write succeeds whatever the listener does");
    }

    let got: Vec<String> = (0..3)
        .map(|_| {
            survived
                .recv_timeout(TIMEOUT)
                .expect("the listener survives")
        })
        .collect();
    assert_eq!(got, ["ok1", "ok2", "ok3"]);
    // ok3 was handled after boom2, on the same listener thread: both panics are counted.
    assert_eq!(emitter.stats().panics, 2);
    let all: Vec<String> = recv_n(&everything, 5)
        .into_iter()
        .map(|e| e.row.name)
        .collect();
    assert_eq!(all, names, "the other listener gets everything");
    assert_eq!(all_users(&mut db.plain()).len(), 5);
}

pub fn full_queue_with_drop_policy_drops_and_counts_without_blocking_the_write() {
    let db = Db::with_users("when_full_drop");
    let emitter = emitter("when_full_drop");
    let (started_tx, started) = crossbeam_channel::unbounded::<String>();
    let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
    let _sub = emitter
        .on::<User>()
        .capacity(1)
        .when_full(WhenFull::Drop)
        .listen(move |ev: &Event<User>| {
            started_tx.send(ev.row.name.clone()).unwrap();
            gate.recv().unwrap();
        });
    let mut conn = db.emitting(&emitter);

    insert_user(&mut conn, "w1");
    // The listener holds w1 and waits at the gate: its queue is empty.
    assert_eq!(started.recv_timeout(TIMEOUT).unwrap(), "w1");
    insert_user(&mut conn, "w2"); // fills the queue (capacity 1)
    for name in ["w3", "w4", "w5"] {
        insert_user(&mut conn, name); // dropped, and the write is not held up
    }
    assert_eq!(emitter.stats().dropped, 3);
    gate_tx.send(()).unwrap();
    assert_eq!(started.recv_timeout(TIMEOUT).unwrap(), "w2");
    gate_tx.send(()).unwrap();
    insert_user(&mut conn, "w6");
    assert_eq!(started.recv_timeout(TIMEOUT).unwrap(), "w6");
    gate_tx.send(()).unwrap();
    assert_eq!(all_users(&mut db.plain()).len(), 6);
}

pub fn listener_with_actions_sees_only_those_actions() {
    let db = Db::with_users("actions");
    let emitter = emitter("actions");
    let deletes = emitter.on::<User>().actions([Action::Delete]).subscribe();
    let mut conn = db.emitting(&emitter);

    let u = insert_user(&mut conn, "victim");
    diesel::update(users::table.find(u.id))
        .set(users::name.eq("victim2"))
        .execute(&mut conn)
        .unwrap();
    diesel::delete(users::table.find(u.id))
        .execute(&mut conn)
        .unwrap();
    // A subscribe() receiver is filled before the write returns, in commit order:
    // had the insert or update matched, it would come first.
    let ev = recv(&deletes);
    assert_eq!(
        (ev.action, ev.row.name.as_str()),
        (Action::Delete, "victim2")
    );
    assert_empty(&deletes);
}

pub fn listener_with_a_filter_sees_only_matching_rows() {
    let db = Db::with_users("filter");
    let emitter = emitter("filter");
    let (tx, active_rx) = crossbeam_channel::unbounded::<Event<User>>();
    let sub = emitter
        .on::<User>()
        .actions([Action::Insert, Action::Update])
        .filter(|ev| ev.row.active)
        .capacity(100)
        .when_full(WhenFull::Block)
        .listen(move |ev: &Event<User>| tx.send(ev.clone()).unwrap());
    let mut conn = db.emitting(&emitter);

    diesel::insert_into(users::table)
        .values((
            users::name.eq("idle"),
            users::email.eq("idle@example.com"),
            users::active.eq(false),
        ))
        .execute(&mut conn)
        .unwrap();
    let idle = users::table
        .filter(users::email.eq("idle@example.com"))
        .select(User::as_select())
        .first(&mut db.plain())
        .unwrap();
    insert_user(&mut conn, "busy");
    diesel::update(users::table.find(idle.id))
        .set(users::active.eq(true))
        .execute(&mut conn)
        .unwrap();
    diesel::delete(users::table.filter(users::name.eq("busy")))
        .execute(&mut conn)
        .unwrap();
    insert_user(&mut conn, "last");

    let got: Vec<(Action, String)> = (0..3)
        .map(|_| {
            let ev = active_rx.recv_timeout(TIMEOUT).expect("an event");
            assert!(ev.row.active);
            (ev.action, ev.row.name)
        })
        .collect();
    assert_eq!(
        got,
        [
            (Action::Insert, "busy".to_owned()),
            (Action::Update, "idle".to_owned()),
            (Action::Insert, "last".to_owned()),
        ]
    );
    sub.unsubscribe();
    assert_eq!(emitter.stats().listeners, 0);
    insert_user(&mut conn, "after-unsubscribe");
    // The removed listener's thread ends and drops `tx`: the channel disconnects
    // without anything more in it.
    assert_eq!(
        active_rx.recv_timeout(TIMEOUT).map(|e| e.row.name),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    );
}

pub fn with_emit_local_only_delivers_to_local_listeners() {
    let db = Db::with_users("local_only");
    let emitter = emitter("local_only");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user = conn.with_emit(Audience::LocalOnly, |c| insert_user(c, "local"));
    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &user));
    sentinel(&mut conn, &rx);
}

pub fn with_emit_remote_only_delivers_nothing_to_local_listeners() {
    let db = Db::with_users("remote_only");
    let emitter = emitter("remote_only");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.with_emit(Audience::RemoteOnly, |c| {
        insert_user(c, "remote");
        c.transaction(|c| {
            insert_user(c, "remote-tx");
            Ok::<_, DieselError>(())
        })
        .unwrap();
    });
    sentinel(&mut conn, &rx);
}

pub fn events_keep_the_mode_of_the_scope_they_were_written_in() {
    let db = Db::with_users("scope_in_tx");
    let emitter = emitter("scope_in_tx");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        c.with_emit(Audience::RemoteOnly, |c| insert_user(c, "hidden"));
        c.without_events(|c| insert_user(c, "off"));
        insert_user(c, "visible");
        Ok::<_, DieselError>(())
    })
    .unwrap();
    let ev = recv(&rx);
    assert_eq!(ev.row.name, "visible");
    sentinel(&mut conn, &rx);
}

pub fn emit_mode_is_restored_after_the_scope() {
    let db = Db::with_users("mode_restored");
    let emitter = emitter("mode_restored");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    assert_eq!(conn.emit_mode(), Audience::All);
    conn.with_emit(Audience::LocalOnly, |c| {
        c.without_events(|c| assert_eq!(c.emit_mode(), Audience::Off));
        assert_eq!(c.emit_mode(), Audience::LocalOnly);
    });
    assert_eq!(conn.emit_mode(), Audience::All);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        conn.without_events(|_| panic!("a scope that panics"))
    }));
    assert!(panicked.is_err());
    assert_eq!(
        conn.emit_mode(),
        Audience::All,
        "restored after a panic too"
    );

    // The restored mode emits.
    let user = insert_user(&mut conn, "after");
    let ev = recv(&rx);
    assert_eq!(ev.row, user);
}
