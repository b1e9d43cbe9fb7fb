//! A committing thread hands its event to Paho itself when the publisher thread has
//! nothing waiting, and to the publisher's buffer otherwise (see emitter-mqtt's
//! `publisher::lane`). Whichever way each event goes, remote listeners must see
//! every event once, in commit order.

mod broker;

use broker::*;
use diesel_emitter::prelude::*;
use std::thread;
use std::time::Duration;

#[test]
fn concurrent_writers_events_reach_the_remote_listener_once_in_commit_order() {
    const WRITERS: usize = 4;
    const EACH: usize = 250;
    let prefix = unique_prefix("publish_order");
    // A small window: the publisher thread often has events waiting, so direct and
    // buffered publishes take turns.
    let writer = node(
        "writer",
        MqttConfig::new(SHARED_URL)
            .topic_prefix(&prefix)
            .max_inflight(4),
    );
    let listener = shared_node("listener", &prefix);
    let rx = listener.on::<User>().remote_only(true).subscribe();
    connected(&[&writer, &listener]);
    let db = Db::new("publish_order");
    thread::scope(|scope| {
        for w in 0..WRITERS {
            let mut conn = db.conn(&writer);
            scope.spawn(move || {
                for i in 0..EACH {
                    insert(&mut conn, &format!("w{w}-{i}"), true);
                    if i % 50 == 0 {
                        // Lets the window drain, so that the next events go direct.
                        thread::sleep(Duration::from_millis(2));
                    }
                }
            });
        }
    });
    let total = WRITERS * EACH;
    let seqs: Vec<u64> = (0..total).map(|_| recv(&rx).meta.seq).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "an event arrived twice"
    );
    shutdown_all(&[&writer, &listener]);
    let stats = writer.stats();
    assert_eq!(
        (stats.published, stats.publish_failed, stats.publish_dropped),
        (total as u64, 0, 0),
        "{stats:?}"
    );
}
