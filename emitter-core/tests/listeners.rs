//! Listener behaviour of the emitter alone (no database): filters, panics, queues,
//! unsubscribing, shutdown, ordering, metadata and configuration errors.
//!
//! Tests synchronise through channels and barriers; the only sleeps are inside
//! deliberately slow listeners.

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use emitter_core::integration::PendingEvent;
use emitter_core::{Action, Audience, Emits, Emitter, Error, Event, Source, WhenFull};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    id: i64,
    name: String,
    active: bool,
}

impl Emits for Item {
    const TABLE: &'static str = "items";
    const COLUMNS: &'static [&'static str] = &["id", "name", "active"];
    const PRIMARY_KEY: &'static [&'static str] = &["id"];
}

const LONG: Duration = Duration::from_secs(10);

fn emitter() -> Emitter {
    Emitter::builder().node_id("test-node").build().unwrap()
}

fn item(id: i64) -> Item {
    Item {
        id,
        name: format!("item {id}"),
        active: id % 2 == 0,
    }
}

fn pending(action: Action, id: i64) -> PendingEvent {
    PendingEvent::new(action, item(id), Item::COLUMNS.into(), Audience::All)
}

/// Commits one insert of `item(id)`.
fn insert(emitter: &Emitter, id: i64) {
    emitter.commit([pending(Action::Insert, id)]);
}

/// Everything already in `rx`, as (action, id).
fn drain(rx: &Receiver<Event<Item>>) -> Vec<(Action, i64)> {
    rx.try_iter().map(|ev| (ev.action, ev.row.id)).collect()
}

/// A closure listener that forwards each event's id to the returned receiver.
fn forwarding(emitter: &Emitter) -> (emitter_core::Subscription, Receiver<i64>) {
    let (tx, rx) = unbounded();
    let sub = emitter.on::<Item>().listen(move |ev: &Event<Item>| {
        tx.send(ev.row.id).unwrap();
    });
    (sub, rx)
}

#[test]
fn actions_filter_delivers_only_the_chosen_actions() {
    let emitter = emitter();
    let rx = emitter
        .on::<Item>()
        .actions([Action::Insert, Action::Delete])
        .subscribe();
    let all = emitter.on::<Item>().subscribe();
    emitter.commit([
        pending(Action::Insert, 1),
        pending(Action::Update, 2),
        pending(Action::Delete, 3),
    ]);
    assert_eq!(drain(&rx), [(Action::Insert, 1), (Action::Delete, 3)]);
    assert_eq!(
        drain(&all),
        [
            (Action::Insert, 1),
            (Action::Update, 2),
            (Action::Delete, 3)
        ]
    );
}

#[test]
fn filter_closure_delivers_only_matching_events() {
    let emitter = emitter();
    let rx = emitter.on::<Item>().filter(|ev| ev.row.active).subscribe();
    for id in 1..=6 {
        insert(&emitter, id);
    }
    let ids: Vec<i64> = drain(&rx).into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, [2, 4, 6]);
    let stats = emitter.stats();
    assert_eq!((stats.emitted, stats.delivered, stats.dropped), (6, 3, 0));
}

#[test]
fn panicking_filter_counts_a_panic_and_a_drop_and_skips_only_that_listener() {
    let emitter = emitter();
    let before = emitter.on::<Item>().filter(|ev| ev.row.id > 0).subscribe();
    let panicky = emitter
        .on::<Item>()
        .filter(|ev| {
            if ev.row.id == 2 {
                panic!("filter panics on purpose");
            }
            true
        })
        .subscribe();
    let after = emitter.on::<Item>().subscribe();
    for id in 1..=3 {
        insert(&emitter, id);
    }
    let ids = |rx| -> Vec<i64> { drain(rx).into_iter().map(|(_, id)| id).collect() };
    assert_eq!(ids(&panicky), [1, 3], "only the panicking event is skipped");
    assert_eq!(ids(&before), [1, 2, 3]);
    assert_eq!(ids(&after), [1, 2, 3]);
    let stats = emitter.stats();
    assert_eq!(stats.panics, 1);
    assert_eq!(stats.listeners, 3, "the panicking filter's listener stays");
    assert_eq!(stats.dropped, 1, "the event it never got counts as dropped");
    assert_eq!(stats.delivered + stats.dropped, 3 * stats.emitted);
}

#[test]
fn panicking_listener_keeps_receiving_and_panics_are_counted() {
    let emitter = emitter();
    let (tx, rx) = unbounded();
    let _sub = emitter.on::<Item>().listen(move |ev: &Event<Item>| {
        tx.send(ev.row.id).unwrap();
        if ev.row.id % 2 == 1 {
            panic!("listener panics on purpose");
        }
    });
    for id in 1..=4 {
        insert(&emitter, id);
    }
    let seen: Vec<i64> = (0..4).map(|_| rx.recv_timeout(LONG).unwrap()).collect();
    assert_eq!(seen, [1, 2, 3, 4]);
    emitter.shutdown(LONG).unwrap();
    let stats = emitter.stats();
    assert_eq!(stats.panics, 2);
    assert_eq!(
        stats.delivered, 4,
        "a panicking call still counts as delivered"
    );
    assert_eq!(stats.dropped, 0);
}

#[test]
fn unsubscribe_stops_later_events() {
    let emitter = emitter();
    let (sub, rx) = forwarding(&emitter);
    let other = emitter.on::<Item>().subscribe();
    insert(&emitter, 1);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), 1);
    assert_eq!(emitter.stats().listeners, 2);
    sub.unsubscribe();
    assert_eq!(emitter.stats().listeners, 1);
    insert(&emitter, 2);
    emitter.shutdown(LONG).unwrap();
    // The listener's thread has ended, so its sender is gone: nothing more arrives.
    assert_eq!(rx.iter().collect::<Vec<_>>(), Vec::<i64>::new());
    assert_eq!(drain(&other), [(Action::Insert, 1), (Action::Insert, 2)]);
    assert_eq!(emitter.stats().dropped, 0);
}

#[test]
fn dropping_a_receiver_removes_the_listener_and_counts_the_event_dropped() {
    let emitter = emitter();
    let rx = emitter.on::<Item>().subscribe();
    insert(&emitter, 1);
    assert_eq!(drain(&rx), [(Action::Insert, 1)]);
    drop(rx);
    assert_eq!(
        emitter.stats().listeners,
        1,
        "noticed only at the next event"
    );
    insert(&emitter, 2);
    let stats = emitter.stats();
    assert_eq!(stats.listeners, 0);
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.delivered, 1);
    insert(&emitter, 3);
    assert_eq!(emitter.stats().dropped, 1, "the listener is gone for good");
}

#[test]
fn a_receiver_dropped_before_a_commit_of_many_events_is_counted_once_and_the_others_get_all() {
    let emitter = emitter();
    let gone = emitter.on::<Item>().subscribe();
    let kept = emitter.on::<Item>().subscribe();
    drop(gone);
    emitter.commit((1..=3).map(|id| pending(Action::Insert, id)));
    assert_eq!(
        drain(&kept),
        [
            (Action::Insert, 1),
            (Action::Insert, 2),
            (Action::Insert, 3)
        ]
    );
    let stats = emitter.stats();
    assert_eq!((stats.listeners, stats.dropped, stats.delivered), (1, 1, 3));
}

#[test]
fn a_listener_added_between_commits_gets_the_next_commit_whole() {
    let emitter = emitter();
    let first = emitter.on::<Item>().subscribe();
    emitter.commit((1..=2).map(|id| pending(Action::Insert, id)));
    let second = emitter.on::<Item>().subscribe();
    emitter.commit((3..=4).map(|id| pending(Action::Insert, id)));
    assert_eq!(drain(&first).len(), 4);
    assert_eq!(drain(&second), [(Action::Insert, 3), (Action::Insert, 4)]);
}

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

#[test]
fn seq_increases_per_origin_and_per_thread_commit_order_is_kept() {
    const THREADS: i64 = 4;
    const PER_THREAD: i64 = 2_000;
    let emitter = emitter();
    // A closure listener, with a queue smaller than the total so committers block too.
    let (tx, rx): (Sender<Event<Item>>, _) = unbounded();
    let _sub = emitter
        .on::<Item>()
        .capacity(64)
        .listen(move |ev: &Event<Item>| tx.send(ev.clone()).unwrap());
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let emitter = emitter.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    // The id says which thread and in which order it committed.
                    insert(&emitter, t * 1_000_000 + i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    emitter.shutdown(LONG).unwrap();
    let events: Vec<Event<Item>> = rx.try_iter().collect();
    assert_eq!(events.len(), (THREADS * PER_THREAD) as usize);
    for pair in events.windows(2) {
        assert!(
            pair[0].meta.seq < pair[1].meta.seq,
            "seq goes {} then {}",
            pair[0].meta.seq,
            pair[1].meta.seq
        );
    }
    assert_eq!(events[0].meta.seq, 1);
    assert_eq!(
        events.last().unwrap().meta.seq,
        (THREADS * PER_THREAD) as u64
    );
    let mut next: HashMap<i64, i64> = HashMap::new();
    for ev in &events {
        let (t, i) = (ev.row.id / 1_000_000, ev.row.id % 1_000_000);
        let expected = next.entry(t).or_insert(0);
        assert_eq!(i, *expected, "thread {t}'s commits arrive in order");
        *expected += 1;
    }
    assert!(next.values().all(|&n| n == PER_THREAD));
}

#[test]
fn meta_fields_carry_origin_table_source_and_unique_ids() {
    let emitter = emitter();
    let rx = emitter.on::<Item>().subscribe();
    let before = SystemTime::now();
    emitter.commit([pending(Action::Insert, 1), pending(Action::Update, 2)]);
    for id in 3..=100 {
        insert(&emitter, id);
    }
    let after = SystemTime::now();
    let events: Vec<Event<Item>> = rx.try_iter().collect();
    assert_eq!(events.len(), 100);
    let mut ids = HashSet::new();
    for (n, ev) in events.iter().enumerate() {
        assert_eq!(&*ev.meta.origin, "test-node");
        assert_eq!(&*ev.meta.origin, emitter.node_id());
        assert_eq!(ev.meta.table, "items");
        assert_eq!(ev.meta.source, Source::Local);
        assert_eq!(ev.meta.seq, n as u64 + 1);
        assert!(before <= ev.meta.committed_at && ev.meta.committed_at <= after);
        assert_eq!(ev.changed(), Item::COLUMNS);
        assert!(ids.insert(ev.meta.id), "event id {} repeats", ev.meta.id);
    }
    assert_eq!(
        events[0].meta.committed_at, events[1].meta.committed_at,
        "events of one commit share its time"
    );
    // Ids are unique across emitters too, even with the same node id.
    let other = self::emitter();
    let rx2 = other.on::<Item>().subscribe();
    insert(&other, 1);
    let ev = rx2.try_recv().unwrap();
    assert_eq!(ev.meta.seq, 1);
    assert!(!ids.contains(&ev.meta.id));
}

#[test]
fn invalid_node_ids_are_rejected() {
    let too_long = "n".repeat(129);
    for bad in ["", "api/1", "api+1", "api#1", "nul\0", too_long.as_str()] {
        match Emitter::builder().node_id(bad).build() {
            Err(Error::InvalidNodeId(id)) => assert_eq!(id, bad),
            other => panic!("node id {bad:?}: expected InvalidNodeId, got {other:?}"),
        }
    }
    let longest = "n".repeat(128);
    for good in ["api-1", "node_1.eu-west", longest.as_str()] {
        let emitter = Emitter::builder().node_id(good).build().unwrap();
        assert_eq!(emitter.node_id(), good);
    }
    let random = Emitter::builder().build().unwrap();
    assert!(!random.node_id().is_empty());
}

#[test]
fn zero_capacity_is_rejected_by_try_listen() {
    let emitter = emitter();
    let result = emitter.on::<Item>().capacity(0).try_listen(|_| {});
    assert!(matches!(result, Err(Error::ZeroCapacity)), "got {result:?}");
    assert_eq!(emitter.stats().listeners, 0);
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

#[test]
fn stay_awake_beyond_the_maximum_is_rejected_by_try_listen() {
    let emitter = emitter();
    let too_long = emitter_core::MAX_STAY_AWAKE + Duration::from_micros(1);
    let refused = emitter.on::<Item>().stay_awake(too_long).try_listen(|_| {});
    assert!(
        matches!(refused, Err(Error::StayAwakeTooLong { requested, max })
            if requested == too_long && max == emitter_core::MAX_STAY_AWAKE),
        "{refused:?}"
    );
    assert_eq!(emitter.stats().listeners, 0, "nothing was registered");
}

#[test]
fn global_returns_the_emitter_given_to_set_global() {
    // The only test in this binary that touches the process-wide emitter.
    let first = Emitter::builder().node_id("global-1").build().unwrap();
    let second = Emitter::builder().node_id("global-2").build().unwrap();
    Emitter::set_global(first.clone());
    assert_eq!(Emitter::global().node_id(), "global-1");
    Emitter::set_global(second.clone());
    let global = Emitter::global();
    assert_eq!(global.node_id(), "global-2");
    // The same emitter, not a copy with the same configuration: it shares listeners.
    let rx = global.on::<Item>().subscribe();
    insert(&second, 7);
    assert_eq!(rx.try_recv().unwrap().row.id, 7);
    assert_eq!(second.stats().listeners, 1);
    assert_eq!(first.stats().listeners, 0);
}
