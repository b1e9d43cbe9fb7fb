//! `Emitter::shutdown`: what is queued is delivered, what comes after is counted as
//! dropped, and a timeout that is too short says so.

use super::*;

#[test]
fn shutdown_drains_every_queued_event_to_a_slow_listener() {
    const N: i64 = 200;
    let emitter = emitter();
    let (tx, rx) = unbounded();
    let (gate_tx, gate_rx) = bounded::<()>(0);
    let _sub = emitter.on::<Item>().listen(move |ev: &Event<Item>| {
        if ev.row.id == 1 {
            let _ = gate_rx.recv();
        }
        std::thread::sleep(Duration::from_millis(1));
        tx.send(ev.row.id).unwrap();
    });
    for id in 1..=N {
        insert(&emitter, id);
    }
    // The listener is held at event 1, so at least the other N - 1 are queued.
    assert!(emitter.stats().queued >= N as u64 - 1);
    drop(gate_tx);
    emitter.shutdown(LONG).unwrap();
    // Everything arrived before shutdown returned.
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    let stats = emitter.stats();
    assert_eq!(stats.delivered, N as u64);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.listeners, 0);
}

#[test]
fn shutdown_returns_timeout_error_when_the_timeout_is_too_short() {
    let emitter = emitter();
    let (started_tx, started_rx) = bounded::<()>(1);
    let (gate_tx, gate_rx) = bounded::<()>(0);
    let _sub = emitter.on::<Item>().listen(move |ev: &Event<Item>| {
        if ev.row.id == 1 {
            started_tx.send(()).unwrap();
            let _ = gate_rx.recv();
        }
    });
    for id in 1..=3 {
        insert(&emitter, id);
    }
    started_rx.recv_timeout(LONG).unwrap();
    let err = emitter.shutdown(Duration::from_millis(50)).unwrap_err();
    match err {
        Error::ShutdownTimeout { timeout, pending } => {
            assert_eq!(timeout, Duration::from_millis(50));
            // Events 2 and 3 wait behind the blocked one (which may count as well).
            assert!((2..=3).contains(&pending), "pending = {pending}");
        }
        other => panic!("expected ShutdownTimeout, got {other:?}"),
    }
    assert!(emitter.is_shut_down());
    drop(gate_tx);
    // A second call waits for the rest.
    emitter.shutdown(LONG).unwrap();
    assert_eq!(emitter.stats().delivered, 3);
}

#[test]
fn events_after_shutdown_are_counted_as_dropped() {
    let emitter = emitter();
    let rx = emitter.on::<Item>().subscribe();
    emitter.shutdown(LONG).unwrap();
    for id in 1..=3 {
        insert(&emitter, id);
    }
    emitter.commit([pending(Action::Update, 4), pending(Action::Delete, 5)]);
    let stats = emitter.stats();
    assert_eq!((stats.emitted, stats.dropped, stats.delivered), (5, 5, 0));
    assert!(rx.recv_timeout(LONG).is_err(), "the receiver has ended");
}

#[test]
fn subscribe_receiver_keeps_queued_events_then_ends_after_shutdown() {
    let emitter = emitter();
    let rx = emitter.on::<Item>().subscribe();
    insert(&emitter, 1);
    insert(&emitter, 2);
    emitter.shutdown(LONG).unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap().row.id, 1);
    assert_eq!(rx.recv_timeout(LONG).unwrap().row.id, 2);
    assert!(rx.recv_timeout(LONG).is_err());
}
