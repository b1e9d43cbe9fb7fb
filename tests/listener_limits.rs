//! Listener options a careless caller could pass: capacities no machine can hold
//! must come back as typed errors from `try_subscribe`/`try_listen` (never a panic
//! inside crossbeam or an aborted process), and a panicking listener must say in
//! the log why it panicked.

mod broker;
mod log_capture;

use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::{Error, MAX_QUEUE_BYTES};

fn local() -> Emitter {
    Emitter::builder()
        .node_id(node_name("local"))
        .build()
        .unwrap()
}

/// Both `try_` constructors refuse `capacity` with `CapacityTooLarge`, and the
/// largest capacity the error names fits in `MAX_QUEUE_BYTES`.
#[track_caller]
fn assert_refused(capacity: usize) {
    let emitter = local();
    let subscribed = emitter.on::<User>().capacity(capacity).try_subscribe();
    let listened = emitter.on::<User>().capacity(capacity).try_listen(|_| {});
    for result in [subscribed.map(drop), listened.map(drop)] {
        match result {
            Err(Error::CapacityTooLarge {
                requested,
                max,
                slot_bytes,
                limit,
            }) => {
                assert_eq!((requested, limit), (capacity, MAX_QUEUE_BYTES));
                assert!(max < capacity && max * slot_bytes <= MAX_QUEUE_BYTES);
            }
            other => panic!("expected CapacityTooLarge, got {other:?}"),
        }
    }
    assert_eq!(emitter.stats().listeners, 0, "nothing was registered");
}

#[test]
fn a_capacity_of_usize_max_is_a_typed_error_not_a_panic() {
    assert_refused(usize::MAX);
}

#[test]
fn a_capacity_of_2_to_the_40_is_a_typed_error_not_an_abort() {
    assert_refused(1 << 40);
}

#[test]
fn a_capacity_of_100_million_is_refused_before_16_gb_are_allocated() {
    assert_refused(100_000_000);
}

#[test]
fn a_panicking_listeners_log_line_carries_the_panic_message() {
    log_capture::start();
    let emitter = local();
    let (tx, survived) = std::sync::mpsc::channel();
    let _listener = emitter.on::<User>().name("fragile").listen(move |ev| {
        if ev.row.name == "boom" {
            panic!("cannot mail {}: the address is \u{1b}[31mred", ev.row.email);
        }
        tx.send(ev.row.name.clone()).unwrap();
    });
    let db = Db::new("panic");
    let mut conn = db.conn(&emitter);
    insert(&mut conn, "boom", true);
    // The listener handles events in order: once the next one arrived, the
    // panic before it was logged.
    insert(&mut conn, "sentinel", true);
    assert_eq!(survived.recv_timeout(TIMEOUT).unwrap(), "sentinel");

    let lines = log_capture::lines_containing("listener=fragile");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(r"panic=cannot mail boom@example.com: the address is \u{1b}[31mred"),
        "{}",
        lines[0]
    );
    assert_eq!(emitter.stats().panics, 1);
    emitter.shutdown(TIMEOUT).unwrap();
}
