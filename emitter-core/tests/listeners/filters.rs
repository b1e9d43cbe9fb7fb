//! Which events a listener gets (`actions`, `filter`) and what a panicking filter
//! or listener costs: a count, never the other listeners' events.

use super::*;

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
