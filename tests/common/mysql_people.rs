//! The fixture of the MySQL capture tests (`tests/mysql*.rs`): a database of the
//! test's own on the server at `MYSQL_URL` (default `mysql://root@127.0.0.1:3306`),
//! the `people` model, and the two ways a connection captures (`Flavor`): as on
//! MariaDB (RETURNING for inserts and deletes) and as on MySQL 8
//! (`capture_without_returning`: every write locked and read back by key), so that
//! the MySQL 8 technique is exercised on a MariaDB server too.
//!
//! A test binary compiles it as its module `mysql_people`:
//!
//! ```ignore
//! #[path = "common/mysql_people.rs"]
//! mod mysql_people;
//! use mysql_people::*;
//! mysql_people::both_flavors!(a_behaviour, another_behaviour);
//! ```
//!
//! Every test file uses a different subset of these helpers.
#![allow(dead_code)]

use crate::common::unique_name;
use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};
use serde::{Deserialize, Serialize};

pub type Conn = EmittingConnection<MysqlConnection>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations/mysql");

diesel::table! {
    people (id) {
        id -> Integer,
        name -> Text,
        active -> Bool,
    }
}

#[derive(
    Queryable,
    Selectable,
    Identifiable,
    AsChangeset,
    Serialize,
    Deserialize,
    Clone,
    Debug,
    PartialEq,
    Emits,
)]
#[diesel(table_name = people, check_for_backend(diesel::mysql::Mysql))]
pub struct Person {
    pub id: i32,
    pub name: String,
    pub active: bool,
}

// A table without a model.
diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

pub const PEOPLE_DDL: &str = "CREATE TABLE people (
    id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE
) ENGINE = InnoDB";

/// A database of the test's own, dropped when the test ends.
pub struct Db {
    pub url: String,
    pub name: String,
}

pub fn server_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

impl Db {
    pub fn new(test: &str) -> Db {
        let name = format!("emitter_{}", unique_name(test))
            .chars()
            .take(64)
            .collect::<String>();
        let mut admin = MysqlConnection::establish(&format!("{}/test", server_url()))
            .expect("MariaDB answers at MYSQL_URL or 127.0.0.1:3306");
        admin
            .batch_execute(&format!("CREATE DATABASE `{name}`"))
            .unwrap();
        Db {
            url: format!("{}/{name}", server_url()),
            name,
        }
    }

    pub fn with_people(test: &str) -> Db {
        let db = Db::new(test);
        db.plain().batch_execute(PEOPLE_DDL).unwrap();
        db
    }

    pub fn plain(&self) -> MysqlConnection {
        MysqlConnection::establish(&self.url).unwrap()
    }

    pub fn emitting(&self, emitter: &Emitter, flavor: Flavor) -> Conn {
        let mut conn = EmittingConnection::new(self.plain(), emitter.clone());
        if flavor == Flavor::WithoutReturning {
            conn.capture_without_returning();
        }
        conn
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut admin) = MysqlConnection::establish(&format!("{}/test", server_url())) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}

/// How the connection captures: as on MariaDB, or as on MySQL 8.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Flavor {
    Mariadb,
    WithoutReturning,
}

/// One `#[test]` per flavor for each behaviour.
macro_rules! both_flavors {
    ($($name:ident),* $(,)?) => {
        mod mariadb {
            $(#[test] fn $name() { super::$name(super::Flavor::Mariadb) })*
        }
        mod without_returning {
            $(#[test] fn $name() { super::$name(super::Flavor::WithoutReturning) })*
        }
    };
}
pub(crate) use both_flavors;

pub fn seed(db: &Db, names: &[&str]) -> Vec<Person> {
    let mut conn = db.plain();
    for name in names {
        diesel::insert_into(people::table)
            .values(people::name.eq(*name))
            .execute(&mut conn)
            .unwrap();
    }
    people::table.order(people::id).load(&mut conn).unwrap()
}

pub fn sorted(mut events: Vec<Event<Person>>) -> Vec<Event<Person>> {
    events.sort_by_key(|e| e.row.id);
    events
}
