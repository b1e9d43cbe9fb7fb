//! The outbox suite's database and nodes: the `accounts` table and its model, a
//! test database with the outbox tables on PostgreSQL or SQLite (`OutboxDb`), a
//! writing node with an outbox, and a node that hears it.

use crate::broker;
use crate::common::{self, Harness, PgSchema, SqliteDb};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::connection::OutboxBackend;
use diesel_emitter::crossbeam_channel::Receiver;
use diesel_emitter::outbox::OutboxConfig;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_emitter::Outbox;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(20);

// A table of this file's own: the helper modules each bring a model of `users`,
// and two models of one table mean two events per row.
diesel::table! {
    accounts (id) {
        id -> Integer,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = accounts)]
pub struct Account {
    pub id: i32,
    pub name: String,
}

#[derive(Insertable)]
#[diesel(table_name = accounts)]
pub struct NewAccount {
    pub name: String,
}

impl NewAccount {
    pub fn named(name: &str) -> Self {
        NewAccount {
            name: name.to_owned(),
        }
    }
}

/// A test database with the users table and the outbox tables.
pub trait OutboxDb: Harness<Plain: OutboxBackend> {
    /// The outbox table, qualified where the backend has schemas.
    fn outbox_table(&self) -> String;
    /// The outbox configuration for this database.
    fn outbox(&self) -> OutboxConfig;

    fn with_outbox(test: &str) -> Self {
        let db = Self::with_users(test);
        db.plain()
            .batch_execute(&format!(
                "CREATE TABLE accounts (id {}, name TEXT NOT NULL)",
                Self::AUTO_ID
            ))
            .expect("create the accounts table");
        Outbox::<Self::Plain>::create_tables(&mut db.plain(), &db.outbox_table())
            .expect("create the outbox tables");
        db
    }

    fn rows_in(&self, table: &str) -> i64;

    fn outbox_rows(&self) -> i64 {
        self.rows_in(&self.outbox_table())
    }

    fn dead_letters(&self) -> i64 {
        self.rows_in(&format!("{}_dead_letter", self.outbox_table()))
    }
}

impl OutboxDb for PgSchema {
    fn rows_in(&self, table: &str) -> i64 {
        common::count_rows(&mut self.plain(), table)
    }
    fn outbox_table(&self) -> String {
        format!("{}.diesel_emitter_outbox", self.name)
    }
    fn outbox(&self) -> OutboxConfig {
        Outbox::<PgConnection>::url(common::pg_url())
            .table(self.outbox_table())
            .poll_interval(Duration::from_millis(50))
    }
}

impl OutboxDb for SqliteDb {
    fn rows_in(&self, table: &str) -> i64 {
        common::count_rows(&mut self.plain(), table)
    }
    fn outbox_table(&self) -> String {
        "diesel_emitter_outbox".into()
    }
    fn outbox(&self) -> OutboxConfig {
        let url = self.url().to_owned();
        Outbox::<SqliteConnection>::connect_with(move || {
            let mut conn = SqliteConnection::establish(&url)?;
            conn.batch_execute("PRAGMA busy_timeout = 5000;")
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        })
        .table(self.outbox_table())
        .poll_interval(Duration::from_millis(50))
    }
}

pub fn writer(db: &impl OutboxDb, prefix: &str, relay: bool) -> Emitter {
    Emitter::builder()
        .node_id(broker::node_name("writer"))
        .mqtt(MqttConfig::new(broker::SHARED_URL).topic_prefix(prefix))
        .outbox(db.outbox().relay(relay))
        .build()
        .expect("the emitter with an outbox builds")
}

pub fn new_accounts(n: usize, tag: &str) -> Vec<NewAccount> {
    (0..n)
        .map(|i| NewAccount::named(&format!("{tag}{i}")))
        .collect()
}

/// Another node, hearing the accounts events of every other node through `config`.
pub fn receiver(config: MqttConfig) -> (Emitter, Receiver<Event<Account>>) {
    let emitter = broker::node("receiver", config);
    let remote = emitter.on::<Account>().remote_only(true).subscribe();
    (emitter, remote)
}

/// Waits until `rx` has `n` distinct event ids; returns (received, distinct).
pub fn collect_ids(rx: &Receiver<Event<Account>>, n: usize) -> (usize, HashSet<uuid::Uuid>) {
    broker::collect_distinct(rx, n, WAIT, |event| event.meta.id)
}
