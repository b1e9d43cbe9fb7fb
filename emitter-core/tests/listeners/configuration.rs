//! Settings that are refused with a typed error, and the process-wide emitter.

use super::*;

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
