//! Listeners coming and going between commits: unsubscribing, dropped receivers, a
//! listener added between two commits.

use super::*;

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
