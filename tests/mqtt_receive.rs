//! Remote events handed to listeners on Paho's receive thread, which must never
//! wait there: full `WhenFull::Block` queues, listeners that publish, and an
//! emitter dropped while events arrive. Against the shared Mosquitto.
//!
//! A scenario that hangs fails its test rather than the whole run: each runs on
//! its own thread, waited for at most `deadline::DEADLINE`.

mod broker;
mod deadline;

use broker::*;
use deadline::within_deadline;
use diesel::connection::SimpleConnection;
use std::sync::mpsc;
use std::time::Duration;

/// The names of `n` users inserted on `conn`, in commit order.
fn insert_users(conn: &mut Conn, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| insert(conn, &format!("{tag}-{i}"), true).name)
        .collect()
}

/// [`insert_users`] with a pause after each, longer than the receiver's burst gap
/// (100 µs): each event then reaches its listeners on Paho's receive thread,
/// unless something is ahead of it on the stream's thread.
fn insert_users_paced(conn: &mut Conn, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let name = insert(conn, &format!("{tag}-{i}"), true).name;
            std::thread::sleep(Duration::from_micros(400));
            name
        })
        .collect()
}

#[test]
fn a_slow_listener_with_a_full_block_queue_gets_every_remote_event_in_order() {
    within_deadline("slow_block_listener", || {
        const N: usize = 300;
        let prefix = unique_prefix("slow_block");
        let a = shared_node("a", &prefix);
        let b = shared_node("b", &prefix);
        let (slow_tx, slow_rx) = mpsc::channel();
        let _slow = b
            .on::<User>()
            .remote_only(true)
            .capacity(2)
            .listen(move |event| {
                std::thread::sleep(Duration::from_millis(1));
                let _ = slow_tx.send(event.row.name.clone());
            });
        let fast = b.on::<User>().remote_only(true).subscribe();
        connected(&[&a, &b]);
        let db = Db::new("slow_block");
        let mut conn = db.conn(&a);
        let sent = insert_users_paced(&mut conn, "u", N);

        let slow: Vec<String> = (0..N)
            .map(|_| {
                slow_rx
                    .recv_timeout(TIMEOUT)
                    .expect("the slow listener's event")
            })
            .collect();
        assert_eq!(slow, sent, "the slow listener, whose queue was full");
        let fast: Vec<String> = (0..N).map(|_| recv(&fast).row.name).collect();
        assert_eq!(fast, sent, "the other listener of the same stream");
        let stats = b.stats();
        assert_eq!(stats.dropped, 0, "{stats:?}");
        assert_eq!(stats.remote_received, N as u64, "{stats:?}");
        shutdown_all(&[&a, &b]);
    });
}

#[test]
fn a_remote_listener_that_publishes_while_its_queue_is_full_does_not_deadlock() {
    within_deadline("publishing_listener", || {
        const N: usize = 100;
        let prefix = unique_prefix("publishing_listener");
        let a = shared_node("a", &prefix);
        let b = shared_node("b", &prefix);
        let heard_on_a = a.on::<Post>().remote_only(true).subscribe();

        // B writes a post, through its own emitter, for every user event it
        // hears from A: each publishes through Paho while more events arrive and
        // its one-event queue stays full.
        let b_db = Db::new("publishing_listener_b");
        let mut b_conn = b_db.conn(&b);
        b_conn.batch_execute(POSTS_DDL).unwrap();
        let _writer = b
            .on::<User>()
            .remote_only(true)
            .capacity(1)
            .listen(move |event| {
                // Slower than events come, so that its queue fills.
                std::thread::sleep(Duration::from_millis(1));
                insert_post(&mut b_conn, &format!("about {}", event.row.name));
            });
        connected(&[&a, &b]);
        let a_db = Db::new("publishing_listener_a");
        let mut a_conn = a_db.conn(&a);
        let sent = insert_users_paced(&mut a_conn, "u", N);

        let titles: Vec<String> = (0..N).map(|_| recv(&heard_on_a).row.title).collect();
        let expected: Vec<String> = sent.iter().map(|name| format!("about {name}")).collect();
        assert_eq!(titles, expected);
        shutdown_all(&[&a, &b]);
    });
}

#[test]
fn dropping_an_emitter_while_remote_events_arrive_returns() {
    within_deadline("drop_while_receiving", || {
        let prefix = unique_prefix("drop_while_receiving");
        let a = shared_node("a", &prefix);
        let db = Db::new("drop_while_receiving");
        let mut conn = db.conn(&a);
        for round in 0..5 {
            let b = shared_node("b", &prefix);
            let heard = b.on::<User>().remote_only(true).subscribe();
            connected(&[&a, &b]);
            insert_users(&mut conn, &format!("before-{round}"), 1);
            recv(&heard);
            // More arrive while B goes: each of its deliveries may hold B's last
            // handle, which must not be dropped on Paho's thread.
            let flood = std::thread::scope(|scope| {
                let writer =
                    scope.spawn(|| insert_users_paced(&mut conn, &format!("during-{round}"), 50));
                drop(b);
                writer.join().expect("the writer")
            });
            assert_eq!(flood.len(), 50);
            drop(heard);
        }
        shutdown_all(&[&a]);
    });
}
