//! The outbox on MariaDB (`MYSQL_URL`, default `mysql://root@127.0.0.1:3306`):
//! events written by the committing transaction, published by relays that claim
//! rows with `FOR UPDATE SKIP LOCKED`, deleted after the broker's PUBACK, never
//! written by a rollback. Remote listeners hear them over the shared broker.

mod broker;

use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;
use diesel_emitter::crossbeam_channel::Receiver;
use diesel_emitter::outbox::OutboxConfig;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::Outbox;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

diesel::table! {
    ledger (id) {
        id -> Integer,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = ledger, check_for_backend(diesel::mysql::Mysql))]
struct Entry {
    id: i32,
    name: String,
}

/// A database of the test's own with `ledger` and the outbox tables.
struct Db {
    url: String,
    name: String,
}

fn server_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

impl Db {
    fn new(test: &str) -> Db {
        let name = broker::unique_prefix(&format!("outbox_{test}")).replace(['/', '-'], "_");
        let name: String = name.chars().take(64).collect();
        let mut admin = MysqlConnection::establish(&format!("{}/test", server_url()))
            .expect("MariaDB answers at MYSQL_URL or 127.0.0.1:3306");
        admin
            .batch_execute(&format!("CREATE DATABASE `{name}`"))
            .unwrap();
        let db = Db {
            url: format!("{}/{name}", server_url()),
            name,
        };
        let mut conn = db.plain();
        conn.batch_execute(
            "CREATE TABLE ledger (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY, name TEXT NOT NULL)",
        )
        .unwrap();
        Outbox::<MysqlConnection>::create_tables(&mut conn, "diesel_emitter_outbox").unwrap();
        db
    }

    fn plain(&self) -> MysqlConnection {
        MysqlConnection::establish(&self.url).unwrap()
    }

    fn outbox(&self) -> OutboxConfig {
        Outbox::<MysqlConnection>::url(&self.url).poll_interval(Duration::from_millis(50))
    }

    fn outbox_rows(&self) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query("SELECT COUNT(*) AS n FROM diesel_emitter_outbox")
            .get_result::<Count>(&mut self.plain())
            .unwrap()
            .n
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut admin) = MysqlConnection::establish(&format!("{}/test", server_url())) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}

fn emitter(db: &Db, prefix: &str, name: &str, relay: bool) -> Emitter {
    Emitter::builder()
        .node_id(broker::node_name(name))
        .mqtt(MqttConfig::new(broker::SHARED_URL).topic_prefix(prefix))
        .outbox(db.outbox().relay(relay).batch(50))
        .build()
        .expect("the emitter with a MySQL outbox builds")
}

fn receiver(prefix: &str) -> (Emitter, Receiver<Event<Entry>>) {
    let emitter = broker::node(
        "receiver",
        MqttConfig::new(broker::SHARED_URL).topic_prefix(prefix),
    );
    let remote = emitter.on::<Entry>().remote_only(true).subscribe();
    (emitter, remote)
}

/// Waits until `rx` has `n` distinct row names; returns (received, distinct names).
fn collect(rx: &Receiver<Event<Entry>>, n: usize) -> (usize, HashSet<String>) {
    broker::collect_distinct(rx, n, WAIT, |event| event.row.name)
}

#[test]
fn committed_writes_reach_a_remote_node_through_the_outbox_and_rollbacks_write_nothing() {
    let db = Db::new("commit");
    let prefix = broker::unique_prefix("mysql_outbox");
    let (receiver, remote) = receiver(&prefix);
    let writer = emitter(&db, &prefix, "writer", true);
    broker::connected(&[&receiver, &writer]);
    let mut conn = EmittingConnection::new(db.plain(), writer.clone());

    // Outside a transaction: an implicit one carries the row and its outbox row.
    diesel::insert_into(ledger::table)
        .values(ledger::name.eq("a"))
        .execute(&mut conn)
        .unwrap();
    conn.transaction(|c| {
        diesel::insert_into(ledger::table)
            .values(ledger::name.eq("b"))
            .execute(c)?;
        diesel::update(ledger::table)
            .set(ledger::name.eq("c"))
            .execute(c)
    })
    .unwrap();
    let rolled_back: QueryResult<()> = conn.transaction(|c| {
        diesel::insert_into(ledger::table)
            .values(ledger::name.eq("ghost"))
            .execute(c)?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(rolled_back.is_err());

    let mut seen: Vec<(Action, String)> = (0..4)
        .map(|_| remote.recv_timeout(WAIT).expect("an event"))
        .map(|e| (e.action, e.row.name))
        .collect();
    seen.sort_by_key(|(action, name)| (action.as_str(), name.clone()));
    let expected = [
        (Action::Insert, "a"),
        (Action::Insert, "b"),
        (Action::Update, "c"),
        (Action::Update, "c"),
    ];
    assert_eq!(seen, expected.map(|(a, n)| (a, n.to_owned())));
    assert!(
        broker::eventually(WAIT, || db.outbox_rows() == 0),
        "published rows are deleted"
    );
    writer.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(
        writer.stats().outbox_published,
        4,
        "the rollback wrote nothing"
    );
    receiver.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn two_relays_share_one_outbox_without_publishing_a_row_twice() {
    let db = Db::new("tworelays");
    let prefix = broker::unique_prefix("mysql_tworelays");
    let (receiver, remote) = receiver(&prefix);
    let (one, two) = (
        emitter(&db, &prefix, "relay1", true),
        emitter(&db, &prefix, "relay2", true),
    );
    broker::connected(&[&receiver, &one, &two]);
    let silent = emitter(&db, &prefix, "writer", false);
    let mut conn = EmittingConnection::new(db.plain(), silent.clone());
    for chunk in 0..10 {
        let rows: Vec<_> = (0..100)
            .map(|i| ledger::name.eq(format!("c{chunk}_{i}")))
            .collect();
        conn.transaction(|c| diesel::insert_into(ledger::table).values(&rows).execute(c))
            .unwrap();
    }

    let (received, names) = collect(&remote, 1000);
    assert_eq!(names.len(), 1000, "every event arrives");
    assert!(broker::eventually(WAIT, || db.outbox_rows() == 0));
    for e in [&one, &two, &silent] {
        e.shutdown(Duration::from_secs(5)).unwrap();
    }
    assert_eq!(
        one.stats().outbox_published + two.stats().outbox_published,
        1000,
        "each row published once"
    );
    assert_eq!(received, 1000, "no copy reached the application");
    receiver.shutdown(Duration::from_secs(5)).unwrap();
}
