//! Listeners that write through an `EmittingConnection` of their own emitter (an
//! audit row, a projection), with `WhenFull::Block` queues that fill up: every
//! write and every event must get through, on SQLite and on PostgreSQL.
//!
//! A commit never waits on a listener's queue while it keeps other commits out,
//! and a listener's own writes never wait on its own queue (`commit.rs` in
//! emitter-core says how). Before that, both scenarios here deadlocked. A deadlock
//! must fail the test rather than hang it: each scenario runs on its own thread
//! and the test waits for it at most `deadline::DEADLINE`.

mod common;
mod deadline;

use common::*;
use deadline::within_deadline;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Writer threads, and rows each writes.
const WRITERS: usize = 4;
const ROWS: usize = 40;

diesel::table! {
    audit (id) {
        id -> Int4,
        user_id -> Int4,
    }
}

/// What the audit listener writes for every user event.
#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = audit)]
struct Audit {
    id: i32,
    user_id: i32,
}

/// The scenarios, once per backend: Diesel's insert statements are typed by
/// backend, so each backend gets its own copy (as `common/neutral.rs` does).
macro_rules! on_backend {
    ($module:ident, $db:ty) => {
        mod $module {
            use super::*;

            type Db = $db;

            /// An empty database with `users` and `audit`.
            fn database(test: &str) -> Db {
                let db = Db::with_users(test);
                db.plain()
                    .batch_execute(&format!(
                        "CREATE TABLE audit (id {}, user_id INTEGER NOT NULL)",
                        Db::AUTO_ID
                    ))
                    .expect("create audit");
                db
            }

            /// `WRITERS` threads insert `ROWS` users each while a listener with a queue of
            /// one, `WhenFull::Block`, writes an audit row through the same emitter for every
            /// user event. Every user event reaches the listener once, every audit row is
            /// written and its event delivered, nothing is dropped.
            fn four_writers_and_a_writing_listener(test: &'static str) {
                within_deadline(test, move || {
                    let db = Arc::new(database(test));
                    let emitter = emitter(test);
                    let audits = emitter.on::<Audit>().subscribe();
                    let seen = Arc::new(AtomicUsize::new(0));
                    let mut audit_conn = db.emitting(&emitter);
                    let counter = seen.clone();
                    let _listener = emitter
                        .on::<User>()
                        .capacity(1)
                        .when_full(WhenFull::Block)
                        .listen(move |event| {
                            diesel::insert_into(audit::table)
                                .values(audit::user_id.eq(event.row.id))
                                .execute(&mut audit_conn)
                                .expect("the listener's audit write");
                            counter.fetch_add(1, Ordering::SeqCst);
                        });

                    let writers: Vec<_> = (0..WRITERS)
                        .map(|w| {
                            let db = db.clone();
                            let emitter = emitter.clone();
                            std::thread::spawn(move || {
                                let mut conn = db.emitting(&emitter);
                                for i in 0..ROWS {
                                    diesel::insert_into(users::table)
                                        .values(NewUser::named(&format!("w{w}_{i}")))
                                        .execute(&mut conn)
                                        .expect("a writer's insert");
                                }
                            })
                        })
                        .collect();
                    for writer in writers {
                        writer.join().expect("a writer finished");
                    }

                    let total = WRITERS * ROWS;
                    let audited = recv_n(&audits, total);
                    let mut audited_users: Vec<i32> =
                        audited.iter().map(|e| e.row.user_id).collect();
                    audited_users.sort_unstable();
                    audited_users.dedup();
                    assert_eq!(audited_users.len(), total, "one audit row per user event");
                    assert_seq_increasing(&audited);
                    emitter.shutdown(Duration::from_secs(10)).expect("shutdown");

                    assert_eq!(seen.load(Ordering::SeqCst), total);
                    assert_eq!(count_rows(&mut db.plain(), "audit"), total as i64);
                    let stats = emitter.stats();
                    assert_eq!(stats.dropped, 0);
                    assert_eq!(stats.emitted, 2 * total as u64, "users and audit rows");
                    assert_eq!(
                        stats.delivered,
                        2 * total as u64,
                        "each user event to the listener, each audit event to the receiver"
                    );
                    assert_eq!(stats.queued, 0);
                });
            }

            /// A listener with a queue of one writes two users for every user event it
            /// receives (rows named `w..`), and receives its own writes too: the second write
            /// finds its own queue full while only it could empty it. Its writes go on, and
            /// it gets all its events, in order.
            fn own_writes_on_a_full_queue(test: &'static str) {
                within_deadline(test, move || {
                    let db = database(test);
                    let emitter = emitter(test);
                    let (names_tx, names) = mpsc::channel();
                    let mut echo_conn = db.emitting(&emitter);
                    let _listener = emitter
                        .on::<User>()
                        .capacity(1)
                        .when_full(WhenFull::Block)
                        .listen(move |event| {
                            let name = event.row.name.clone();
                            if name.starts_with('w') {
                                for echo in ["a", "b"] {
                                    diesel::insert_into(users::table)
                                        .values(NewUser::named(&format!("echo_{echo}_{name}")))
                                        .execute(&mut echo_conn)
                                        .expect("the listener's own write");
                                }
                            }
                            names_tx
                                .send((event.meta.seq, name))
                                .expect("the test listens");
                        });

                    let mut conn = db.emitting(&emitter);
                    for i in 0..ROWS {
                        diesel::insert_into(users::table)
                            .values(NewUser::named(&format!("w{i}")))
                            .execute(&mut conn)
                            .expect("an insert");
                    }
                    let received: Vec<(u64, String)> = (0..3 * ROWS)
                        .map(|_| {
                            names
                                .recv_timeout(TIMEOUT)
                                .expect("the listener got every event")
                        })
                        .collect();
                    emitter.shutdown(Duration::from_secs(10)).expect("shutdown");

                    for pair in received.windows(2) {
                        assert!(pair[0].0 < pair[1].0, "in seq order: {pair:?}");
                    }
                    let writes = received.iter().filter(|(_, n)| n.starts_with('w')).count();
                    assert_eq!(writes, ROWS);
                    assert_eq!(count_rows(&mut db.plain(), "users"), 3 * ROWS as i64);
                    let stats = emitter.stats();
                    assert_eq!(stats.dropped, 0);
                    assert_eq!(
                        (stats.emitted, stats.delivered),
                        (3 * ROWS as u64, 3 * ROWS as u64)
                    );
                });
            }

            #[test]
            fn a_listener_writing_on_every_event_under_a_full_queue_does_not_deadlock_four_writers()
            {
                four_writers_and_a_writing_listener(concat!("lw_four_", stringify!($module)));
            }

            #[test]
            fn a_listeners_own_writes_never_block_on_its_own_full_queue() {
                own_writes_on_a_full_queue(concat!("lw_own_", stringify!($module)));
            }
        }
    };
}

on_backend!(sqlite, SqliteDb);
on_backend!(postgres, PgSchema);
