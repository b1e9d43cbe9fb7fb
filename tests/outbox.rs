//! The durable outbox on PostgreSQL and SQLite: events written by the committing
//! transaction, published by the relay, deleted after the broker's PUBACK, never
//! written by a rollback, dead-lettered when the broker refuses them, and shared by
//! several relays without double work. Remote listeners run on other emitters over
//! the shared broker (unique prefixes) or a broker of the test's own.

mod broker;
mod common;
mod outbox_db;

use common::{Harness, PgSchema, SqliteDb};
use diesel::prelude::*;
use diesel_emitter::outbox::OutboxError;
use diesel_emitter::prelude::*;
use diesel_emitter::Error;
use outbox_db::*;
use std::time::Duration;

// ---------------------------------------------------------------- build

/// The tests both backends share, once per backend.
macro_rules! outbox_tests {
    ($backend:ident, $db:ty) => {
        mod $backend {
            use super::*;
            type H = $db;

            #[test]
            fn build_fails_when_the_outbox_table_is_missing() {
                let db = H::with_users("missing");
                let result = Emitter::builder()
                    .mqtt(MqttConfig::new(broker::SHARED_URL))
                    .outbox(db.outbox())
                    .build();
                match result {
                    Err(Error::Outbox(OutboxError::MissingTable { table, .. })) => {
                        assert_eq!(table, db.outbox_table())
                    }
                    other => panic!("expected a missing-table error, got {other:?}"),
                }
            }

            // ---------------------------------------------------------------- writing

            #[test]
            fn a_commit_writes_its_events_into_the_outbox_and_a_rollback_writes_none() {
                let db = H::with_outbox("commit");
                let emitter = writer(&db, &broker::unique_prefix("commit"), false);
                let local = emitter.on::<Account>().subscribe();
                let mut conn = db.emitting(&emitter);
                conn.transaction(|c| {
                    diesel::insert_into(accounts::table)
                        .values(&new_accounts(3, "a"))
                        .execute(c)
                })
                .expect("commit");
                let _ = conn.transaction(|c| {
                    diesel::insert_into(accounts::table)
                        .values(&new_accounts(2, "b"))
                        .execute(c)?;
                    Err::<(), _>(diesel::result::Error::RollbackTransaction)
                });
                assert_eq!(
                    db.outbox_rows(),
                    3,
                    "one row per committed event, none for the rollback"
                );
                let seqs: Vec<u64> = (0..3).map(|_| common::recv(&local).meta.seq).collect();
                assert_eq!(seqs, [1, 2, 3], "local listeners still hear the commit");
                common::assert_empty(&local);
                emitter.shutdown(Duration::from_secs(5)).expect("shutdown");
            }

            #[test]
            fn a_statement_outside_a_transaction_writes_its_outbox_rows_atomically() {
                let db = H::with_outbox("autocommit");
                let emitter = writer(&db, &broker::unique_prefix("autocommit"), false);
                let mut conn = db.emitting(&emitter);
                diesel::insert_into(accounts::table)
                    .values(&new_accounts(2, "auto"))
                    .execute(&mut conn)
                    .expect("insert");
                assert_eq!(conn.pending_events(), 0);
                assert_eq!(db.outbox_rows(), 2);
                // Local-only events never go to the broker, so they need no outbox row.
                conn.with_emit(Audience::LocalOnly, |c| {
                    diesel::delete(accounts::table).execute(c).expect("delete")
                });
                assert_eq!(db.outbox_rows(), 2);
                emitter.shutdown(Duration::from_secs(5)).expect("shutdown");
            }

            #[test]
            fn shutdown_with_the_broker_away_keeps_the_events_in_the_outbox() {
                let db = H::with_outbox("away");
                let emitter = Emitter::builder()
                    .node_id(broker::node_name("away"))
                    .mqtt(MqttConfig::new(format!(
                        "mqtt://127.0.0.1:{}",
                        broker::free_port()
                    )))
                    .outbox(db.outbox())
                    .build()
                    .expect("builds while no broker answers");
                let mut conn = db.emitting(&emitter);
                diesel::insert_into(accounts::table)
                    .values(&new_accounts(2, "away"))
                    .execute(&mut conn)
                    .expect("writes commit while no broker answers");
                emitter
                    .shutdown(Duration::from_secs(5))
                    .expect("nothing is left in memory to lose");
                assert_eq!(db.outbox_rows(), 2, "the events wait for the next relay");
            }

            // ---------------------------------------------------------------- relaying

            #[test]
            fn the_relay_publishes_each_row_once_and_deletes_it() {
                let db = H::with_outbox("relay");
                let prefix = broker::unique_prefix("relay");
                let (receiver, remote) =
                    receiver(MqttConfig::new(broker::SHARED_URL).topic_prefix(&prefix));
                let emitter = writer(&db, &prefix, true);
                broker::connected(&[&receiver, &emitter]);
                let mut conn = db.emitting(&emitter);
                for chunk in 0..10 {
                    H::write_transaction(&mut conn, |c| {
                        diesel::insert_into(accounts::table)
                            .values(&new_accounts(20, &format!("c{chunk}_")))
                            .execute(c)
                    })
                    .expect("commit");
                }
                let (received, ids) = collect_ids(&remote, 200);
                assert_eq!((received, ids.len()), (200, 200), "every event once");
                assert!(
                    broker::eventually(WAIT, || db.outbox_rows() == 0),
                    "acknowledged rows are deleted; {} left",
                    db.outbox_rows()
                );
                emitter.shutdown(Duration::from_secs(5)).expect("shutdown");
                let stats = emitter.stats();
                assert_eq!(
                    (stats.outbox_published, stats.outbox_dead_lettered),
                    (200, 0)
                );
                receiver.shutdown(Duration::from_secs(5)).expect("shutdown");
            }
        }
    };
}

outbox_tests!(pg, PgSchema);
outbox_tests!(sqlite, SqliteDb);

#[test]
fn an_outbox_without_a_broker_is_a_configuration_error() {
    let db = SqliteDb::with_outbox("nobroker");
    let result = Emitter::builder().outbox(db.outbox()).build();
    assert!(
        matches!(result, Err(Error::Outbox(OutboxError::NoBroker))),
        "{result:?}"
    );
}

#[test]
fn an_outbox_table_name_that_is_not_an_identifier_is_rejected() {
    let db = SqliteDb::with_users("badname");
    let result = Emitter::builder()
        .mqtt(MqttConfig::new(broker::SHARED_URL))
        .outbox(db.outbox().table("outbox; DROP TABLE users"))
        .build();
    assert!(
        matches!(result, Err(Error::Outbox(OutboxError::InvalidTable(_)))),
        "{result:?}"
    );
}

#[test]
fn pg_get_result_outside_a_transaction_returns_its_row_and_writes_the_outbox() {
    let db = PgSchema::with_outbox("getresult");
    let emitter = writer(&db, &broker::unique_prefix("getresult"), false);
    let mut conn = db.emitting(&emitter);
    let user: Account = diesel::insert_into(accounts::table)
        .values(NewAccount::named("ada"))
        .returning(Account::as_returning())
        .get_result(&mut conn)
        .expect("insert returning");
    assert_eq!(user.name, "ada");
    assert_eq!(db.outbox_rows(), 1);
    emitter.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn sqlite_get_result_outside_a_transaction_is_refused_before_it_writes() {
    let db = SqliteDb::with_outbox("getresult");
    let emitter = writer(&db, &broker::unique_prefix("getresult"), false);
    let mut conn = db.emitting(&emitter);
    let result = diesel::insert_into(accounts::table)
        .values(NewAccount::named("ada"))
        .returning(Account::as_returning())
        .get_result(&mut conn);
    let error = result.expect_err("refused").to_string();
    assert!(error.contains("inside a transaction"), "{error}");
    assert_eq!(db.rows_in("accounts"), 0, "nothing was written");
    let user = conn
        .transaction(|c| {
            diesel::insert_into(accounts::table)
                .values(NewAccount::named("ada"))
                .returning(Account::as_returning())
                .get_result(c)
        })
        .expect("inside a transaction it works");
    assert_eq!((user.name.as_str(), db.outbox_rows()), ("ada", 1));
    emitter.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn concurrent_writers_events_leave_the_outbox_in_seq_order() {
    let db = PgSchema::with_outbox("seq_order");
    let prefix = broker::unique_prefix("seq_order");
    let (receiver, remote) = receiver(MqttConfig::new(broker::SHARED_URL).topic_prefix(&prefix));
    let emitter = writer(&db, &prefix, true);
    broker::connected(&[&receiver, &emitter]);

    // Four threads commit at once: their transactions are numbered in one order
    // and may commit (and write their outbox rows) in another.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let mut conn = db.emitting(&emitter);
            std::thread::spawn(move || {
                for i in 0..100 {
                    conn.transaction(|c| {
                        diesel::insert_into(accounts::table)
                            .values(NewAccount::named(&format!("t{t}_{i}")))
                            .execute(c)
                    })
                    .expect("commit");
                }
            })
        })
        .collect();
    threads
        .into_iter()
        .for_each(|t| t.join().expect("writer thread"));

    let deadline = std::time::Instant::now() + WAIT;
    let mut seqs = Vec::new();
    while seqs.len() < 400 {
        match remote.recv_deadline(deadline) {
            Ok(event) => seqs.push(event.meta.seq),
            Err(_) => break,
        }
    }
    assert_eq!(seqs.len(), 400, "every event arrives");
    let inversions = seqs.windows(2).filter(|w| w[0] >= w[1]).count();
    assert_eq!(inversions, 0, "published in seq order: {seqs:?}");
    emitter.shutdown(Duration::from_secs(5)).expect("shutdown");
    receiver.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn two_relays_share_one_outbox_without_publishing_a_row_twice() {
    let db = PgSchema::with_outbox("tworelays");
    let prefix = broker::unique_prefix("tworelays");
    let (receiver, remote) = receiver(MqttConfig::new(broker::SHARED_URL).topic_prefix(&prefix));
    let relay = |name: &str| {
        Emitter::builder()
            .node_id(broker::node_name(name))
            .mqtt(MqttConfig::new(broker::SHARED_URL).topic_prefix(&prefix))
            .outbox(db.outbox().batch(50))
            .build()
            .expect("relay builds")
    };
    let (one, two) = (relay("relay1"), relay("relay2"));
    broker::connected(&[&receiver, &one, &two]);
    // The rows are written while both relays watch the table.
    let silent = writer(&db, &prefix, false);
    let mut conn = db.emitting(&silent);
    for chunk in 0..20 {
        conn.transaction(|c| {
            diesel::insert_into(accounts::table)
                .values(&new_accounts(100, &format!("c{chunk}_")))
                .execute(c)
        })
        .expect("commit");
    }
    let (received, ids) = collect_ids(&remote, 2000);
    assert_eq!(ids.len(), 2000, "every event arrives");
    assert!(broker::eventually(WAIT, || db.outbox_rows() == 0));
    for e in [&one, &two, &silent] {
        e.shutdown(Duration::from_secs(5)).expect("shutdown");
    }
    let published = one.stats().outbox_published + two.stats().outbox_published;
    assert_eq!(published, 2000, "each row published by exactly one relay");
    assert_eq!(received, 2000, "no copy reached the application");
    assert_eq!(
        receiver.stats().remote_duplicates,
        0,
        "no copy reached the broker"
    );
    receiver.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn events_wait_in_the_outbox_while_the_broker_is_down_and_arrive_after() {
    let db = PgSchema::with_outbox("outage");
    let mut own = broker::Broker::start();
    let config = MqttConfig::new(own.url()).topic_prefix("outage");
    // An explicit client id keeps the receiver's session (its subscription) across
    // the restart, so the relay cannot publish before anyone listens again.
    let (receiver, remote) = receiver(config.clone().client_id(broker::node_name("receiver")));
    let emitter = Emitter::builder()
        .node_id(broker::node_name("writer"))
        .mqtt(config)
        .outbox(db.outbox())
        .build()
        .expect("builds");
    broker::connected(&[&receiver, &emitter]);
    own.stop();
    assert!(broker::eventually(WAIT, || !emitter
        .stats()
        .broker_connected));
    let mut conn = db.emitting(&emitter);
    diesel::insert_into(accounts::table)
        .values(&new_accounts(100, "down"))
        .execute(&mut conn)
        .expect("writes go on while the broker is down");
    assert!(
        broker::eventually(WAIT, || emitter.stats().outbox_backlog == 100),
        "the backlog shows in stats: {:?}",
        emitter.stats()
    );
    assert!(emitter.stats().outbox_oldest.is_some());
    own.restart();
    let (received, ids) = collect_ids(&remote, 100);
    assert_eq!((received, ids.len()), (100, 100));
    assert!(broker::eventually(WAIT, || db.outbox_rows() == 0));
    assert!(broker::eventually(WAIT, || emitter.stats().outbox_backlog == 0));
    broker::shutdown_all(&[&emitter, &receiver]);
}

#[test]
fn a_row_over_the_brokers_max_packet_size_ends_in_the_dead_letter_table_and_the_rest_flow() {
    a_refused_row_ends_in_the_dead_letter_table("max_packet_size 2000", &["maximum packet size"]);
}

#[test]
fn a_row_over_the_brokers_message_size_limit_ends_in_the_dead_letter_table_and_the_rest_flow() {
    // Mosquitto answers with a PUBACK reason code, or closes the connection first.
    a_refused_row_ends_in_the_dead_letter_table(
        "message_size_limit 2000",
        &["refused it (Packet too large)", "message_size_limit"],
    );
}

/// A broker configured with `limit` refuses a 5,000-byte row; the reason recorded
/// for it contains one of `reasons`.
fn a_refused_row_ends_in_the_dead_letter_table(limit: &str, reasons: &[&str]) {
    let db = PgSchema::with_outbox("deadletter");
    let own = broker::Broker::start_with(broker::BrokerConfig {
        global_lines: vec![limit.into()],
        ..broker::BrokerConfig::default()
    });
    let config = MqttConfig::new(own.url()).topic_prefix("dead");
    let (receiver, remote) = receiver(config.clone());
    let emitter = Emitter::builder()
        .node_id(broker::node_name("writer"))
        .mqtt(config)
        .outbox(db.outbox().max_attempts(2))
        .build()
        .expect("builds");
    broker::connected(&[&receiver, &emitter]);
    let mut conn = db.emitting(&emitter);
    diesel::insert_into(accounts::table)
        .values(NewAccount::named(&"x".repeat(5000)))
        .execute(&mut conn)
        .expect("a large row commits");
    diesel::insert_into(accounts::table)
        .values(NewAccount::named("small"))
        .execute(&mut conn)
        .expect("a small row commits");
    assert_eq!(broker::recv(&remote).row.name, "small");
    assert!(
        broker::eventually(WAIT, || db.dead_letters() == 1 && db.outbox_rows() == 0),
        "outbox {} dead {}",
        db.outbox_rows(),
        db.dead_letters()
    );
    #[derive(QueryableByName)]
    struct Dead {
        #[diesel(sql_type = diesel::sql_types::Text)]
        reason: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        attempts: i32,
    }
    let dead: Vec<Dead> = diesel::sql_query(format!(
        "SELECT reason, attempts FROM {}_dead_letter",
        db.outbox_table()
    ))
    .load(&mut db.plain())
    .expect("read the dead letter");
    assert!(
        reasons.iter().any(|r| dead[0].reason.contains(r)),
        "{}",
        dead[0].reason
    );
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(emitter.stats().outbox_dead_lettered, 1);
    broker::shutdown_all(&[&emitter, &receiver]);
}

// ---------------------------------------------------------------- shipped migrations

use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

fn an_emitter_builds_on_tables_made_by_the_shipped_migration<H: OutboxDb>(
    migrations: EmbeddedMigrations,
    mut conn: impl MigrationHarness<<H::Plain as Connection>::Backend>,
    db: &H,
) {
    conn.run_pending_migrations(migrations)
        .expect("the shipped migration runs");
    let emitter = Emitter::builder()
        .mqtt(MqttConfig::new(broker::SHARED_URL))
        .outbox(db.outbox())
        .build()
        .expect("the tables the migration made are the ones the outbox needs");
    emitter.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn pg_an_emitter_builds_on_tables_made_by_the_shipped_migration() {
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("emitter-diesel/migrations/postgres");
    let db = PgSchema::with_users("migration");
    // The migration names the table unqualified: it lands in the schema on the
    // connection's search path, where `outbox_table()` looks for it.
    an_emitter_builds_on_tables_made_by_the_shipped_migration(MIGRATIONS, db.plain(), &db);
    assert_eq!(db.outbox_rows(), 0);
}

#[test]
fn sqlite_an_emitter_builds_on_tables_made_by_the_shipped_migration() {
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("emitter-diesel/migrations/sqlite");
    let db = SqliteDb::with_users("migration");
    an_emitter_builds_on_tables_made_by_the_shipped_migration(MIGRATIONS, db.plain(), &db);
    assert_eq!(db.outbox_rows(), 0);
}
