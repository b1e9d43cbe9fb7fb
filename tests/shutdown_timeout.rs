//! A shutdown that runs out of time: what was still queued for a busy listener is
//! dropped and counted, never delivered after `shutdown` returned.

mod broker;

use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn after_a_timed_out_shutdown_a_busy_listener_is_called_no_more() {
    let emitter = Emitter::builder()
        .node_id(node_name("busy"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (inside_tx, inside) = mpsc::channel();
    let (gate_tx, gate) = mpsc::channel::<()>();
    let counted = calls.clone();
    let _busy = emitter.on::<User>().listen(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        let _ = inside_tx.send(());
        // Busy until the test lets it go.
        let _ = gate.recv();
    });
    let db = Db::new("busy");
    let mut conn = db.conn(&emitter);
    for i in 0..20 {
        insert(&mut conn, &format!("user-{i}"), true);
    }
    inside
        .recv_timeout(TIMEOUT)
        .expect("the listener is in its first call");

    match emitter.shutdown(Duration::from_millis(100)) {
        Err(Error::ShutdownTimeout { pending, .. }) => assert_eq!(pending, 20),
        other => panic!("expected ShutdownTimeout, got {other:?}"),
    }
    drop(gate_tx);

    assert!(
        eventually(TIMEOUT, || emitter.stats().queued == 0),
        "{:?}",
        emitter.stats()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only the call in progress");
    let stats = emitter.stats();
    assert_eq!((stats.delivered, stats.dropped), (1, 19));
}
