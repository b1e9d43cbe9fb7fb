//! MariaDB over loopback (`MYSQL_URL`, default `mysql://root@127.0.0.1:3306`, in a
//! database of its own): each write through an `EmittingConnection<MysqlConnection>`
//! (events on, one counting closure listener) side by side with the same statement
//! on a plain `MysqlConnection`, interleaved ABBA in one run.
//!
//! Two more lines per write show the floor of the capture technique: `RETURNING
//! alone` (the plain statement with MariaDB's RETURNING, rows loaded) for inserts
//! and deletes, and `update+read alone` for updates: the statements the capture
//! runs (BEGIN, the update, `SELECT <columns> ... <same WHERE> FOR UPDATE`, COMMIT),
//! sent by hand on a plain connection; `round trip` and `empty transaction` give
//! what one statement's round trip and a BEGIN/COMMIT pair cost on their own. `as MySQL 8` runs the emitting side with
//! `capture_without_returning`, the technique MySQL 8 gets.
//!
//! `cargo bench --bench mysql` (about a minute).

mod common;

use common::users::{counting_emitter, users, NewUser};
use common::{header, interleaved_as};
use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Text};
use diesel_emitter::prelude::*;
use std::sync::atomic::Ordering::Relaxed;

const BULK_ROWS: i32 = 10_000;
const BATCH_ROWS: usize = 1_000;

#[derive(QueryableByName)]
#[allow(dead_code)]
struct Row {
    #[diesel(sql_type = Integer)]
    id: i32,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    email: String,
    #[diesel(sql_type = Bool)]
    active: bool,
}

#[derive(QueryableByName)]
#[allow(dead_code)]
struct Id {
    #[diesel(sql_type = Integer)]
    id: i32,
}

struct Bench {
    admin: MysqlConnection,
    emitting: EmittingConnection<MysqlConnection>,
    mysql8: EmittingConnection<MysqlConnection>,
    plain: MysqlConnection,
    emitter: Emitter,
    counted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    next: i32,
}

impl Bench {
    fn new() -> Bench {
        let server =
            std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        let mut admin =
            MysqlConnection::establish(&format!("{server}/test")).expect("MariaDB answers");
        admin
            .batch_execute(
                "DROP DATABASE IF EXISTS emitter_bench; CREATE DATABASE emitter_bench; USE emitter_bench;
                 CREATE TABLE users (id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
                     name VARCHAR(255) NOT NULL, email VARCHAR(255) NOT NULL,
                     active BOOLEAN NOT NULL) ENGINE = InnoDB;",
            )
            .expect("create the benchmark table");
        let url = format!("{server}/emitter_bench");
        let open = || MysqlConnection::establish(&url).expect("connect");
        let (emitter, counted) = counting_emitter(diesel_emitter::DEFAULT_STAY_AWAKE);
        let mut mysql8 = EmittingConnection::new(open(), emitter.clone());
        mysql8.capture_without_returning();
        Bench {
            admin,
            emitting: EmittingConnection::new(open(), emitter.clone()),
            mysql8,
            plain: open(),
            emitter,
            counted,
            next: 0,
        }
    }

    fn setup(&mut self, sql: &str) {
        self.admin.batch_execute(sql).expect("setup");
    }

    fn settle(&self) {
        while self.counted.load(Relaxed) < self.emitter.stats().emitted {
            std::thread::yield_now();
        }
    }

    fn fill(&mut self, rows: i32) {
        self.setup(&format!(
            "TRUNCATE users; INSERT INTO users (id, name, email, active)
             SELECT seq, CONCAT('u', seq), CONCAT('u', seq, '@example.com'), TRUE FROM seq_1_to_{rows};"
        ));
    }
}

fn new_user(i: i32) -> NewUser {
    NewUser {
        name: format!("u{i}"),
        email: format!("u{i}@example.com"),
        active: true,
    }
}

/// The capture's statements for an update whose WHERE reads no column it sets, sent
/// by hand on a plain connection: BEGIN, the update, its rows read with the same
/// WHERE (`FOR UPDATE`), COMMIT. Diesel's DSL, so both statements are prepared once
/// and cached, as the capture's are (a `sql_query` is prepared and closed each time,
/// two more round trips).
fn update_and_read(conn: &mut MysqlConnection, id: Option<i32>, name: &str) {
    conn.transaction(|c| {
        let rows: Vec<(i32, String, String, bool)> = match id {
            Some(id) => {
                diesel::update(users::table.filter(users::id.eq(id)))
                    .set(users::name.eq(name))
                    .execute(c)?;
                users::table
                    .filter(users::id.eq(id))
                    .select((users::id, users::name, users::email, users::active))
                    .for_update()
                    .load(c)?
            }
            None => {
                diesel::update(users::table)
                    .set(users::name.eq(name))
                    .execute(c)?;
                users::table
                    .select((users::id, users::name, users::email, users::active))
                    .for_update()
                    .load(c)?
            }
        };
        std::hint::black_box(rows);
        QueryResult::Ok(())
    })
    .unwrap();
}

fn main() {
    let mut b = Bench::new();
    header("MariaDB 10.11, loopback, autocommit");
    let rounds = 30;
    let per = 40;

    // Single-row insert.
    let insert = |b: &mut Bench, side: u8| {
        b.next += 1;
        let user = new_user(b.next);
        match side {
            0 => diesel::insert_into(users::table).values(&user).execute(&mut b.emitting),
            1 => diesel::insert_into(users::table).values(&user).execute(&mut b.plain),
            2 => diesel::insert_into(users::table).values(&user).execute(&mut b.mysql8),
            _ => diesel::sql_query("INSERT INTO users (name, email, active) VALUES (?, ?, ?) RETURNING id, name, email, active")
                .bind::<Text, _>(&user.name)
                .bind::<Text, _>(&user.email)
                .bind::<Bool, _>(true)
                .load::<Row>(&mut b.plain)
                .map(|r| r.len()),
        }
        .unwrap();
    };
    let empty = |b: &mut Bench| {
        b.settle();
        b.setup("TRUNCATE users");
    };
    interleaved_as(
        &mut b,
        "insert 1 row",
        ["emitting", "plain"],
        rounds,
        per,
        empty,
        |b, e| insert(b, if e { 0 } else { 1 }),
    );
    interleaved_as(
        &mut b,
        "insert 1 row",
        ["as MySQL 8", "plain"],
        rounds,
        per,
        empty,
        |b, e| insert(b, if e { 2 } else { 1 }),
    );
    interleaved_as(
        &mut b,
        "insert 1 row",
        ["RETURNING alone", "plain"],
        rounds,
        per,
        empty,
        |b, e| insert(b, if e { 3 } else { 1 }),
    );

    // Single-row update by key.
    b.fill(1_000);
    let update = |b: &mut Bench, side: u8| {
        b.next += 1;
        let id = b.next % 1_000 + 1;
        let name = format!("n{}", b.next);
        let stmt = diesel::update(users::table.find(id)).set(users::name.eq(&name));
        match side {
            0 => stmt.execute(&mut b.emitting).map(drop),
            1 => stmt.execute(&mut b.plain).map(drop),
            _ => {
                update_and_read(&mut b.plain, Some(id), &name);
                Ok(())
            }
        }
        .unwrap();
    };
    interleaved_as(
        &mut b,
        "update 1 row by key",
        ["emitting", "plain"],
        rounds,
        per,
        |b: &mut Bench| b.settle(),
        |b, e| update(b, if e { 0 } else { 1 }),
    );
    interleaved_as(
        &mut b,
        "update 1 row by key",
        ["update+read alone", "plain"],
        rounds,
        per,
        |b: &mut Bench| b.settle(),
        |b, e| update(b, if e { 2 } else { 1 }),
    );
    // What one round trip costs (a prepared `SELECT 1`, cached), and what a COMMIT
    // that flushes nothing costs (`BEGIN`, `COMMIT` of an empty transaction): the
    // floor of the capture is the plain update plus BEGIN, one more statement and the
    // COMMIT's round trip.
    interleaved_as(
        &mut b,
        "round trip",
        ["SELECT 1", "plain update"],
        rounds,
        per,
        |b: &mut Bench| b.settle(),
        |b, e| {
            if e {
                diesel::select(1.into_sql::<Integer>())
                    .get_result::<i32>(&mut b.plain)
                    .map(drop)
                    .unwrap();
            } else {
                update(b, 1);
            }
        },
    );
    interleaved_as(
        &mut b,
        "empty transaction",
        ["BEGIN+COMMIT", "plain update"],
        rounds,
        per,
        |b: &mut Bench| b.settle(),
        |b, e| {
            if e {
                b.plain.transaction(|_| QueryResult::Ok(())).unwrap();
            } else {
                update(b, 1);
            }
        },
    );

    // The same update inside a transaction: 20 statements per COMMIT, so the extra
    // round trips show instead of the commit's flush to disk.
    interleaved_as(
        &mut b,
        "update by key, 20 per tx",
        ["emitting", "plain"],
        rounds,
        2,
        |b: &mut Bench| b.settle(),
        |b, e| {
            if e {
                b.emitting.transaction(|c| {
                    for _ in 0..20 {
                        b.next += 1;
                        let id = b.next % 1_000 + 1;
                        diesel::update(users::table.find(id))
                            .set(users::name.eq(format!("t{id}")))
                            .execute(c)?;
                    }
                    QueryResult::Ok(())
                })
            } else {
                b.plain.transaction(|c| {
                    for _ in 0..20 {
                        b.next += 1;
                        let id = b.next % 1_000 + 1;
                        diesel::update(users::table.find(id))
                            .set(users::name.eq(format!("t{id}")))
                            .execute(c)?;
                    }
                    QueryResult::Ok(())
                })
            }
            .unwrap();
        },
    );

    // Single-row delete by key: each block deletes rows the prepare step inserted.
    let refill = |b: &mut Bench| {
        b.settle();
        b.fill(per as i32 * 2);
        b.next = 0;
    };
    let delete = |b: &mut Bench, side: u8| {
        b.next += 1;
        let id = b.next;
        match side {
            0 => diesel::delete(users::table.find(id)).execute(&mut b.emitting),
            1 => diesel::delete(users::table.find(id)).execute(&mut b.plain),
            2 => diesel::delete(users::table.find(id)).execute(&mut b.mysql8),
            _ => diesel::sql_query(
                "DELETE FROM users WHERE id = ? RETURNING id, name, email, active",
            )
            .bind::<Integer, _>(id)
            .load::<Row>(&mut b.plain)
            .map(|r| r.len()),
        }
        .unwrap();
    };
    interleaved_as(
        &mut b,
        "delete 1 row by key",
        ["emitting", "plain"],
        rounds,
        per,
        refill,
        |b, e| delete(b, if e { 0 } else { 1 }),
    );
    interleaved_as(
        &mut b,
        "delete 1 row by key",
        ["as MySQL 8", "plain"],
        rounds,
        per,
        refill,
        |b, e| delete(b, if e { 2 } else { 1 }),
    );
    interleaved_as(
        &mut b,
        "delete 1 row by key",
        ["RETURNING alone", "plain"],
        rounds,
        per,
        refill,
        |b, e| delete(b, if e { 3 } else { 1 }),
    );

    // 1,000-row batch insert.
    let batch: Vec<NewUser> = (0..BATCH_ROWS as i32).map(new_user).collect();
    interleaved_as(
        &mut b,
        "insert 1,000 rows",
        ["emitting", "plain"],
        10,
        2,
        empty,
        |b, e| {
            if e {
                diesel::insert_into(users::table)
                    .values(&batch)
                    .execute(&mut b.emitting)
            } else {
                diesel::insert_into(users::table)
                    .values(&batch)
                    .execute(&mut b.plain)
            }
            .unwrap();
        },
    );
    interleaved_as(
        &mut b,
        "insert 1,000 rows",
        ["as MySQL 8", "plain"],
        10,
        2,
        empty,
        |b, e| {
            if e {
                diesel::insert_into(users::table)
                    .values(&batch)
                    .execute(&mut b.mysql8)
            } else {
                diesel::insert_into(users::table)
                    .values(&batch)
                    .execute(&mut b.plain)
            }
            .unwrap();
        },
    );

    // 10,000-row update.
    b.fill(BULK_ROWS);
    let bulk = |b: &mut Bench, side: u8| {
        b.next += 1;
        let name = format!("bulk{}", b.next);
        let stmt = diesel::update(users::table).set(users::name.eq(&name));
        match side {
            0 => stmt.execute(&mut b.emitting).map(drop),
            1 => stmt.execute(&mut b.plain).map(drop),
            _ => {
                update_and_read(&mut b.plain, None, &name);
                Ok(())
            }
        }
        .unwrap();
    };
    interleaved_as(
        &mut b,
        "update 10,000 rows",
        ["emitting", "plain"],
        6,
        1,
        |b: &mut Bench| b.settle(),
        |b, e| bulk(b, if e { 0 } else { 1 }),
    );
    interleaved_as(
        &mut b,
        "update 10,000 rows",
        ["update+read alone", "plain"],
        6,
        1,
        |b: &mut Bench| b.settle(),
        |b, e| bulk(b, if e { 2 } else { 1 }),
    );

    b.settle();
    b.setup("DROP DATABASE IF EXISTS emitter_bench");
}
