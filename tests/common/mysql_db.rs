//! The MySQL/MariaDB fixture of the shared tests (`common/neutral/`): a database of
//! the test's own on the server at `MYSQL_URL` (default `mysql://root@127.0.0.1:3306`),
//! dropped when the fixture drops.
//!
//! A test binary compiles it as its module `mysql_db`, next to `common`:
//!
//! ```ignore
//! #[path = "common/mysql_db.rs"]
//! mod mysql_db;
//! ```
//!
//! It has neither capability of the shared tests (`Returning` in
//! `neutral/returning.rs`, `DeferredConstraints` in `neutral/deferred.rs`): Diesel's MySQL
//! backend has no RETURNING in its query builder, and InnoDB checks foreign keys when
//! the statement runs (MariaDB and MySQL refuse `DEFERRABLE`).

use crate::common::*;
use crate::neutral::Neutral;
use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_emitter::prelude::*;
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

/// The server the tests use, without a database.
pub fn server_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

/// A database of its own for one test; dropped when the guard drops.
pub struct MysqlDb {
    pub name: String,
    pub url: String,
}

fn admin() -> MysqlConnection {
    MysqlConnection::establish(&format!("{}/test", server_url()))
        .expect("MariaDB answers at MYSQL_URL or 127.0.0.1:3306")
}

impl Harness for MysqlDb {
    type Plain = MysqlConnection;

    const USERS_DDL: &'static str = "CREATE TABLE users (
        id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        email VARCHAR(255) NOT NULL UNIQUE,
        active BOOLEAN NOT NULL DEFAULT TRUE
    ) ENGINE = InnoDB";
    const AUTO_ID: &'static str = "INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations/mysql");
    const R2D2_ROUNDS: usize = 20;

    fn new(test: &str) -> MysqlDb {
        // MySQL's identifiers are at most 64 characters.
        let name: String = unique_name(&format!("de_{test}"))
            .chars()
            .take(64)
            .collect();
        admin()
            .batch_execute(&format!("CREATE DATABASE `{name}`"))
            .expect("create the test database");
        MysqlDb {
            url: format!("{}/{name}", server_url()),
            name,
        }
    }

    fn plain(&self) -> MysqlConnection {
        MysqlConnection::establish(&self.url).expect("connect to the test database")
    }

    fn emitting(&self, emitter: &Emitter) -> EmittingConnection<MysqlConnection> {
        EmittingConnection::new(self.plain(), emitter.clone())
    }

    fn pool(&self, max_size: u32) -> Pool<ConnectionManager<EmittingConnection<MysqlConnection>>> {
        Pool::builder()
            .max_size(max_size)
            .build(ConnectionManager::new(&self.url))
            .unwrap()
    }

    /// A plain `transaction`: InnoDB locks rows as statements reach them.
    fn write_transaction<T>(
        conn: &mut EmittingConnection<MysqlConnection>,
        f: impl FnOnce(&mut EmittingConnection<MysqlConnection>) -> QueryResult<T>,
    ) -> QueryResult<T> {
        conn.transaction(f)
    }
}

/// The row whose unique email is `email`, read after an insert: MySQL has no
/// RETURNING in Diesel's query builder.
fn stored<C>(conn: &mut C, email: &str) -> QueryResult<User>
where
    C: Connection<Backend = diesel::mysql::Mysql> + diesel::connection::LoadConnection,
{
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
}

impl Neutral for MysqlDb {
    type IdConflict = diesel::dsl::DuplicatedKeys;
    // The check of the model against the table's columns, then the server's flavour
    // (`SELECT VERSION(), @@innodb_autoinc_lock_mode`).
    const SETUP_QUERIES: usize = 2;

    fn insert_user(
        conn: &mut EmittingConnection<MysqlConnection>,
        user: &NewUser,
    ) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(user)
            .execute(conn)?;
        stored(conn, &user.email)
    }

    fn seed_user(conn: &mut MysqlConnection, user: &NewUser) -> QueryResult<User> {
        diesel::insert_into(users::table)
            .values(user)
            .execute(conn)?;
        stored(conn, &user.email)
    }

    fn id_conflict() -> diesel::dsl::DuplicatedKeys {
        diesel::dsl::DuplicatedKeys
    }

    /// MySQL counts a row an upsert updated twice (`ON DUPLICATE KEY UPDATE`: 1 per
    /// inserted row, 2 per updated one), and so does the wrapper, as plain Diesel.
    fn upsert_count(inserted: usize, updated: usize) -> usize {
        inserted + 2 * updated
    }

    /// Diesel renders `on_conflict_do_nothing()` as `ON DUPLICATE KEY UPDATE id = id`
    /// on MySQL, and with `CLIENT_FOUND_ROWS` (which Diesel sets) a row left as it was
    /// counts 1.
    fn do_nothing_count(inserted: usize, conflicting: usize) -> usize {
        inserted + conflicting
    }
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        if let Err(e) = admin().batch_execute(&format!("DROP DATABASE IF EXISTS `{}`", self.name)) {
            eprintln!("could not drop database {}: {e}", self.name);
        }
    }
}
