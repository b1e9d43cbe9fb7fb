//! Full queues (`WhenFull::Drop` counts, `WhenFull::Block` loses nothing) and a
//! listener thread that polls or sleeps (`stay_awake`).

use super::*;

#[test]
fn when_full_drop_drops_and_counts_with_a_blocked_listener() {
    let emitter = emitter();
    let (started_tx, started_rx) = bounded::<i64>(16);
    let (gate_tx, gate_rx) = bounded::<()>(0);
    let _sub = emitter
        .on::<Item>()
        .capacity(1)
        .when_full(WhenFull::Drop)
        .listen(move |ev: &Event<Item>| {
            started_tx.send(ev.row.id).unwrap();
            if ev.row.id == 1 {
                // Blocked until the test opens the gate (or drops it).
                let _ = gate_rx.recv();
            }
        });
    insert(&emitter, 1);
    // The listener holds event 1 and is blocked: its queue is empty.
    assert_eq!(started_rx.recv_timeout(LONG).unwrap(), 1);
    insert(&emitter, 2); // fills the queue of one
    for id in 3..=5 {
        insert(&emitter, id); // dropped
    }
    assert_eq!(emitter.stats().dropped, 3);
    drop(gate_tx);
    emitter.shutdown(LONG).unwrap();
    assert_eq!(started_rx.try_iter().collect::<Vec<_>>(), [2]);
    let stats = emitter.stats();
    assert_eq!((stats.emitted, stats.delivered, stats.dropped), (5, 2, 3));
    assert_eq!(stats.emitted, stats.delivered + stats.dropped);
    assert_eq!(stats.queued, 0);
}

#[test]
fn when_full_block_with_a_slow_listener_loses_nothing() {
    const N: i64 = 50;
    let emitter = emitter();
    let (tx, rx) = unbounded();
    let _sub = emitter
        .on::<Item>()
        .capacity(1)
        .listen(move |ev: &Event<Item>| {
            std::thread::sleep(Duration::from_millis(1));
            tx.send(ev.row.id).unwrap();
        });
    for id in 1..=N {
        insert(&emitter, id);
    }
    emitter.shutdown(LONG).unwrap();
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    let stats = emitter.stats();
    assert_eq!((stats.emitted, stats.delivered, stats.dropped), (50, 50, 0));
}

#[test]
fn a_listener_that_stays_awake_or_sleeps_at_once_gets_every_event_in_order() {
    for stay_awake in [Duration::ZERO, emitter_core::MAX_STAY_AWAKE] {
        let emitter = emitter();
        let (tx, rx) = unbounded();
        let sub = emitter
            .on::<Item>()
            .stay_awake(stay_awake)
            .listen(move |ev: &Event<Item>| tx.send(ev.row.id).unwrap());
        // Bursts and gaps: some events find the thread polling, some asleep.
        for id in 0..200 {
            insert(&emitter, id);
            if id % 50 == 0 {
                std::thread::sleep(stay_awake + Duration::from_millis(2));
            }
        }
        let got: Vec<i64> = (0..200).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
        assert_eq!(
            got,
            (0..200).collect::<Vec<_>>(),
            "stay_awake {stay_awake:?}"
        );
        sub.unsubscribe();
    }
}
