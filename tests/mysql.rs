//! `EmittingConnection<MysqlConnection>` against the MariaDB at 127.0.0.1:3306 (or
//! `MYSQL_URL`): every test gets a database of its own.
//!
//! Most behaviours run twice: as MariaDB captures them (RETURNING for inserts and
//! deletes) and as MySQL 8 does (`capture_without_returning`: every write locked
//! and read back by key), so the MySQL 8 technique is exercised on this server too.

mod broker;
mod common;

use common::{assert_empty, emitter, recv, recv_n, unique_name};
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::mysql::{Mysql, MysqlConnection};
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_emitter::prelude::*;
use diesel_emitter::Event;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

type Conn = EmittingConnection<MysqlConnection>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations/mysql");

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
struct Person {
    id: i32,
    name: String,
    active: bool,
}

// A table without a model.
diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

const PEOPLE_DDL: &str = "CREATE TABLE people (
    id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE
) ENGINE = InnoDB";

/// A database of the test's own, dropped when the test ends.
struct Db {
    url: String,
    name: String,
}

fn server_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

impl Db {
    fn new(test: &str) -> Db {
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

    fn with_people(test: &str) -> Db {
        let db = Db::new(test);
        db.plain().batch_execute(PEOPLE_DDL).unwrap();
        db
    }

    fn plain(&self) -> MysqlConnection {
        MysqlConnection::establish(&self.url).unwrap()
    }

    fn emitting(&self, emitter: &Emitter, flavor: Flavor) -> Conn {
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
enum Flavor {
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

both_flavors!(
    insert_emits_one_insert_with_the_full_row_and_its_defaults,
    batch_insert_emits_one_insert_per_row,
    update_of_many_rows_emits_one_update_per_row_with_the_set_columns,
    update_whose_where_reads_the_column_it_sets_emits_exactly_the_rows_it_changed,
    update_matching_no_row_emits_nothing,
    delete_of_many_rows_emits_the_deleted_rows,
    delete_with_limit_emits_exactly_the_rows_it_deleted,
    upsert_emits_insert_for_new_keys_and_update_for_existing_ones,
    upsert_that_changes_nothing_emits_one_update,
    insert_ignore_emits_only_the_rows_it_inserted,
    save_changes_emits_one_update,
    rolled_back_savepoint_drops_only_its_own_events,
    rolled_back_transaction_delivers_nothing,
    concurrent_updates_of_overlapping_rows_emit_exactly_the_rows_each_updated,
    update_that_changes_the_primary_key_runs_untouched_and_is_counted,
    composite_keys_are_locked_and_read_back_as_tuples,
    failed_statement_in_a_transaction_delivers_nothing_and_the_commit_delivers_the_rest,
    a_row_that_does_not_decode_counts_as_a_capture_error_only_once_committed,
);

fn seed(db: &Db, names: &[&str]) -> Vec<Person> {
    let mut conn = db.plain();
    for name in names {
        diesel::insert_into(people::table)
            .values(people::name.eq(*name))
            .execute(&mut conn)
            .unwrap();
    }
    people::table.order(people::id).load(&mut conn).unwrap()
}

fn sorted(mut events: Vec<Event<Person>>) -> Vec<Event<Person>> {
    events.sort_by_key(|e| e.row.id);
    events
}

fn insert_emits_one_insert_with_the_full_row_and_its_defaults(flavor: Flavor) {
    let db = Db::with_people("insert");
    let emitter = emitter("insert");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let n = diesel::insert_into(people::table)
        .values(people::name.eq("ann"))
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 1);
    let ev = recv(&rx);
    assert_eq!(ev.action, Action::Insert);
    assert_eq!(
        ev.row,
        Person {
            id: 1,
            name: "ann".into(),
            active: true
        }
    );
    assert_eq!(ev.changed(), &["id", "name", "active"]);
    assert_empty(&rx);
}

fn batch_insert_emits_one_insert_per_row(flavor: Flavor) {
    let db = Db::with_people("batch");
    let emitter = emitter("batch");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let rows: Vec<_> = (0..5).map(|i| people::name.eq(format!("p{i}"))).collect();
    let n = diesel::insert_into(people::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 5);
    let events = sorted(recv_n(&rx, 5));
    let names: Vec<_> = events
        .iter()
        .map(|e| (e.row.id, e.row.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [(1, "p0"), (2, "p1"), (3, "p2"), (4, "p3"), (5, "p4")]
    );
    assert!(events.iter().all(|e| e.action == Action::Insert));
    assert_empty(&rx);
}

fn update_of_many_rows_emits_one_update_per_row_with_the_set_columns(flavor: Flavor) {
    let db = Db::with_people("update_many");
    seed(&db, &["a", "b", "c"]);
    let emitter = emitter("update_many");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let n = diesel::update(people::table.filter(people::id.ge(2)))
        .set(people::name.eq("z"))
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 2);
    let events = sorted(recv_n(&rx, 2));
    assert_eq!(
        events.iter().map(|e| e.row.clone()).collect::<Vec<_>>(),
        [
            Person {
                id: 2,
                name: "z".into(),
                active: true
            },
            Person {
                id: 3,
                name: "z".into(),
                active: true
            }
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.action == Action::Update && e.changed() == ["name"]));
    assert_empty(&rx);
}

fn update_whose_where_reads_the_column_it_sets_emits_exactly_the_rows_it_changed(flavor: Flavor) {
    let db = Db::with_people("where_reads_set");
    seed(&db, &["a", "b", "c", "d"]);
    diesel::update(people::table.filter(people::id.eq(2)))
        .set(people::active.eq(false))
        .execute(&mut db.plain())
        .unwrap();
    let emitter = emitter("where_reads_set");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    // Afterwards no row matches the WHERE any more: reading back by the WHERE
    // would find nothing, by key it finds the three rows.
    let n = diesel::update(people::table.filter(people::active.eq(true)))
        .set(people::active.eq(false))
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 3);
    let ids: Vec<_> = sorted(recv_n(&rx, 3))
        .iter()
        .map(|e| (e.row.id, e.row.active))
        .collect();
    assert_eq!(ids, [(1, false), (3, false), (4, false)]);
    assert_empty(&rx);
}

fn update_matching_no_row_emits_nothing(flavor: Flavor) {
    let db = Db::with_people("update_none");
    seed(&db, &["a"]);
    let emitter = emitter("update_none");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let n = diesel::update(people::table.filter(people::id.eq(99)))
        .set(people::name.eq("z"))
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 0);
    assert_empty(&rx);
    assert_eq!(emitter.stats().capture_errors, 0);
}

fn delete_of_many_rows_emits_the_deleted_rows(flavor: Flavor) {
    let db = Db::with_people("delete_many");
    let seeded = seed(&db, &["a", "b", "c"]);
    let emitter = emitter("delete_many");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let n = diesel::delete(people::table.filter(people::id.le(2)))
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 2);
    let events = sorted(recv_n(&rx, 2));
    assert_eq!(
        events.iter().map(|e| e.row.clone()).collect::<Vec<_>>(),
        seeded[..2]
    );
    assert!(events.iter().all(|e| e.action == Action::Delete));
    assert_empty(&rx);
}

/// `DELETE ... LIMIT n`, which Diesel's DSL does not render: a statement of the
/// application's own.
#[derive(QueryId)]
struct DeleteLimited<S>(S, u32);

impl<S: QueryFragment<Mysql>> QueryFragment<Mysql> for DeleteLimited<S> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(&format!(" ORDER BY `people`.`id` DESC LIMIT {}", self.1));
        Ok(())
    }
}

impl<S, C: Connection<Backend = Mysql>> RunQueryDsl<C> for DeleteLimited<S> {}

fn delete_with_limit_emits_exactly_the_rows_it_deleted(flavor: Flavor) {
    let db = Db::with_people("delete_limit");
    let seeded = seed(&db, &["a", "b", "c", "d"]);
    let emitter = emitter("delete_limit");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let n = DeleteLimited(
        diesel::delete(people::table.filter(people::active.eq(true))),
        2,
    )
    .execute(&mut conn)
    .unwrap();

    assert_eq!(n, 2);
    let left: Vec<Person> = people::table
        .order(people::id)
        .load(&mut db.plain())
        .unwrap();
    assert_eq!(left, seeded[..2]);
    let deleted: Vec<_> = sorted(recv_n(&rx, 2)).into_iter().map(|e| e.row).collect();
    assert_eq!(deleted, seeded[2..]);
    assert_empty(&rx);
}

fn upsert_emits_insert_for_new_keys_and_update_for_existing_ones(flavor: Flavor) {
    let db = Db::with_people("upsert");
    seed(&db, &["a", "b"]);
    let emitter = emitter("upsert");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let rows = vec![
        (people::id.eq(2), people::name.eq("b2")),
        (people::id.eq(3), people::name.eq("c")),
    ];
    diesel::insert_into(people::table)
        .values(&rows)
        .on_conflict(diesel::dsl::DuplicatedKeys)
        .do_update()
        .set(people::name.eq(diesel::upsert::excluded(people::name)))
        .execute(&mut conn)
        .unwrap();

    let events = sorted(recv_n(&rx, 2));
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.action,
                e.row.id,
                e.row.name.as_str(),
                e.changed().to_vec(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Action::Update, 2, "b2", vec!["name"]),
            (Action::Insert, 3, "c", vec!["id", "name", "active"]),
        ]
    );
    assert_empty(&rx);
}

fn upsert_that_changes_nothing_emits_one_update(flavor: Flavor) {
    let db = Db::with_people("upsert_noop");
    seed(&db, &["a"]);
    let emitter = emitter("upsert_noop");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    diesel::insert_into(people::table)
        .values((people::id.eq(1), people::name.eq("a")))
        .on_conflict(diesel::dsl::DuplicatedKeys)
        .do_update()
        .set(people::name.eq(diesel::upsert::excluded(people::name)))
        .execute(&mut conn)
        .unwrap();

    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.id, ev.row.name.as_str()),
        (Action::Update, 1, "a")
    );
    assert_empty(&rx);
}

fn insert_ignore_emits_only_the_rows_it_inserted(flavor: Flavor) {
    let db = Db::with_people("insert_ignore");
    seed(&db, &["a"]);
    let emitter = emitter("insert_ignore");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let rows = vec![
        (people::id.eq(1), people::name.eq("dup")),
        (people::id.eq(2), people::name.eq("new")),
    ];
    let n = diesel::insert_or_ignore_into(people::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 1);
    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.id, ev.row.name.as_str()),
        (Action::Insert, 2, "new")
    );
    assert_empty(&rx);
}

fn save_changes_emits_one_update(flavor: Flavor) {
    let db = Db::with_people("save_changes");
    let mut person = seed(&db, &["a"]).remove(0);
    let emitter = emitter("save_changes");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    person.name = "renamed".into();
    let saved: Person = person.save_changes(&mut conn).unwrap();

    assert_eq!(saved, person);
    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Update, &person));
    assert_empty(&rx);
}

fn rolled_back_savepoint_drops_only_its_own_events(flavor: Flavor) {
    let db = Db::with_people("savepoint");
    let emitter = emitter("savepoint");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    conn.transaction(|c| {
        diesel::insert_into(people::table)
            .values(people::name.eq("kept"))
            .execute(c)?;
        let inner: QueryResult<()> = c.transaction(|c| {
            diesel::insert_into(people::table)
                .values(people::name.eq("dropped"))
                .execute(c)?;
            diesel::update(people::table)
                .set(people::active.eq(false))
                .execute(c)?;
            Err(diesel::result::Error::RollbackTransaction)
        });
        assert!(inner.is_err());
        assert_empty(&rx);
        QueryResult::Ok(())
    })
    .unwrap();

    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.name.as_str(), ev.row.active),
        (Action::Insert, "kept", true)
    );
    assert_empty(&rx);
}

fn rolled_back_transaction_delivers_nothing(flavor: Flavor) {
    let db = Db::with_people("rollback");
    seed(&db, &["a"]);
    let emitter = emitter("rollback");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let result: QueryResult<()> = conn.transaction(|c| {
        diesel::insert_into(people::table)
            .values(people::name.eq("ghost"))
            .execute(c)?;
        diesel::update(people::table)
            .set(people::name.eq("x"))
            .execute(c)?;
        diesel::delete(people::table).execute(c)?;
        assert_eq!(c.pending_events(), 5, "an insert, two updates, two deletes");
        Err(diesel::result::Error::RollbackTransaction)
    });

    assert!(result.is_err());
    assert_eq!(conn.pending_events(), 0);
    assert_empty(&rx);
}

/// Four threads update overlapping ranges of rows, many times: each statement's
/// events are exactly the rows of its range (never a row it did not touch, never
/// one missing), with the value it wrote.
fn concurrent_updates_of_overlapping_rows_emit_exactly_the_rows_each_updated(flavor: Flavor) {
    const ROWS: i32 = 40;
    const ROUNDS: usize = 25;
    let db = Db::with_people("concurrent");
    let names: Vec<String> = (0..ROWS).map(|i| format!("r{i}")).collect();
    seed(&db, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let emitter = emitter("concurrent");
    let rx = emitter.on::<Person>().subscribe();

    let writers: Vec<_> = (0..4)
        .map(|t: i32| {
            let mut conn = db.emitting(&emitter, flavor);
            std::thread::spawn(move || {
                let (low, high) = (t * 8 + 1, t * 8 + 16);
                let mut written = 0;
                for round in 0..ROUNDS {
                    let tag = format!("t{t}-{round}");
                    // Half the rounds select their rows by a column another thread sets.
                    let n = if round % 2 == 0 {
                        diesel::update(people::table.filter(people::id.between(low, high)))
                            .set(people::name.eq(&tag))
                            .execute(&mut conn)
                    } else {
                        diesel::update(
                            people::table
                                .filter(people::id.between(low, high))
                                .filter(people::active.eq(true).or(people::active.eq(false))),
                        )
                        .set((people::name.eq(&tag), people::active.eq(round % 4 == 1)))
                        .execute(&mut conn)
                    }
                    .unwrap();
                    assert_eq!(n, 16);
                    written += n;
                }
                written
            })
        })
        .collect();
    let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();

    let events = recv_n(&rx, written);
    let mut by_tag: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for ev in &events {
        assert_eq!(ev.action, Action::Update);
        by_tag
            .entry(ev.row.name.clone())
            .or_default()
            .insert(ev.row.id);
    }
    assert_eq!(by_tag.len(), 4 * ROUNDS);
    for (tag, ids) in by_tag {
        let t: i32 = tag[1..tag.find('-').unwrap()].parse().unwrap();
        let expected: BTreeSet<i32> = (t * 8 + 1..=t * 8 + 16).collect();
        assert_eq!(ids, expected, "rows of {tag}");
    }
    assert_empty(&rx);
    assert_eq!(emitter.stats().capture_errors, 0);
}

fn update_that_changes_the_primary_key_runs_untouched_and_is_counted(flavor: Flavor) {
    let db = Db::with_people("update_key");
    seed(&db, &["a", "b"]);
    let emitter = emitter("update_key");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    let n = diesel::update(people::table.filter(people::id.eq(2)))
        .set(people::id.eq(people::id + 100))
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 1);
    let ids: Vec<i32> = people::table
        .select(people::id)
        .order(people::id)
        .load(&mut db.plain())
        .unwrap();
    assert_eq!(ids, [1, 102]);
    assert_empty(&rx);
    assert_eq!(emitter.stats().uncaptured_writes, 1);
}

diesel::table! {
    seats (hall, number) {
        hall -> Integer,
        number -> Integer,
        taken -> Bool,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = seats, primary_key(hall, number), check_for_backend(diesel::mysql::Mysql))]
struct Seat {
    hall: i32,
    number: i32,
    taken: bool,
}

fn composite_keys_are_locked_and_read_back_as_tuples(flavor: Flavor) {
    let db = Db::new("composite");
    db.plain()
        .batch_execute(
            "CREATE TABLE seats (hall INTEGER NOT NULL, number INTEGER NOT NULL, \
             taken BOOLEAN NOT NULL, PRIMARY KEY (hall, number)) ENGINE = InnoDB",
        )
        .unwrap();
    let emitter = emitter("composite");
    let rx = emitter.on::<Seat>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);
    let seat = |hall, number| Seat {
        hall,
        number,
        taken: false,
    };

    let rows: Vec<_> = [(1, 1), (1, 2), (2, 1)]
        .iter()
        .map(|&(h, n)| {
            (
                seats::hall.eq(h),
                seats::number.eq(n),
                seats::taken.eq(false),
            )
        })
        .collect();
    diesel::insert_into(seats::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();
    let inserted: Vec<Seat> = recv_n(&rx, 3).into_iter().map(|e| e.row).collect();
    assert_eq!(inserted.len(), 3);
    // The WHERE reads the column it sets: keys are locked first, as (hall, number).
    diesel::update(
        seats::table
            .filter(seats::taken.eq(false))
            .filter(seats::hall.eq(1)),
    )
    .set(seats::taken.eq(true))
    .execute(&mut conn)
    .unwrap();
    let mut updated: Vec<Seat> = recv_n(&rx, 2).into_iter().map(|e| e.row).collect();
    updated.sort_by_key(|s| (s.hall, s.number));
    assert_eq!(
        updated,
        [
            Seat {
                taken: true,
                ..seat(1, 1)
            },
            Seat {
                taken: true,
                ..seat(1, 2)
            }
        ]
    );
    // An upsert on a composite key: (2, 1) exists, (2, 2) does not.
    diesel::insert_into(seats::table)
        .values(&vec![
            (
                seats::hall.eq(2),
                seats::number.eq(1),
                seats::taken.eq(true),
            ),
            (
                seats::hall.eq(2),
                seats::number.eq(2),
                seats::taken.eq(true),
            ),
        ])
        .on_conflict(diesel::dsl::DuplicatedKeys)
        .do_update()
        .set(seats::taken.eq(diesel::upsert::excluded(seats::taken)))
        .execute(&mut conn)
        .unwrap();
    let mut upserted: Vec<_> = recv_n(&rx, 2)
        .into_iter()
        .map(|e| (e.action, e.row.number))
        .collect();
    upserted.sort_by_key(|(_, number)| *number);
    assert_eq!(upserted, [(Action::Update, 1), (Action::Insert, 2)]);
    diesel::delete(seats::table.filter(seats::hall.eq(2)))
        .execute(&mut conn)
        .unwrap();
    let mut deleted: Vec<_> = recv_n(&rx, 2)
        .into_iter()
        .map(|e| (e.action, e.row.number))
        .collect();
    deleted.sort_by_key(|(_, number)| *number);
    assert_eq!(deleted, [(Action::Delete, 1), (Action::Delete, 2)]);
    assert_empty(&rx);
    assert_eq!(emitter.stats().capture_errors, 0);
}

fn failed_statement_in_a_transaction_delivers_nothing_and_the_commit_delivers_the_rest(
    flavor: Flavor,
) {
    let db = Db::with_people("failed_statement");
    seed(&db, &["a"]);
    let emitter = emitter("failed_statement");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    conn.transaction(|c| {
        diesel::update(people::table)
            .set(people::name.eq("b"))
            .execute(c)?;
        // A duplicate key: MySQL fails the statement, not the transaction.
        let duplicate = diesel::insert_into(people::table)
            .values((people::id.eq(1), people::name.eq("dup")))
            .execute(c);
        assert!(duplicate.is_err());
        QueryResult::Ok(())
    })
    .unwrap();

    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.id, ev.row.name.as_str()),
        (Action::Update, 1, "b")
    );
    assert_empty(&rx);
}

fn a_row_that_does_not_decode_counts_as_a_capture_error_only_once_committed(flavor: Flavor) {
    // `name` holds bytes that are not UTF-8, which the model's String refuses.
    let db = Db::new("decode_failure");
    db.plain()
        .batch_execute(
            "CREATE TABLE people (
                id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
                name VARBINARY(255) NOT NULL,
                active BOOLEAN NOT NULL DEFAULT TRUE
            ) ENGINE = InnoDB;
            INSERT INTO people (name) VALUES (0xFF);",
        )
        .unwrap();
    let emitter = emitter("decode_failure");
    let mut conn = db.emitting(&emitter, flavor);
    let update = || diesel::update(people::table).set(people::active.eq(false));

    let rolled_back: QueryResult<()> = conn.transaction(|c| {
        assert_eq!(update().execute(c)?, 1);
        Err(diesel::result::Error::RollbackTransaction)
    });
    assert!(rolled_back.is_err());
    assert_eq!(emitter.stats().capture_errors, 0, "no row was committed");

    conn.transaction(|c| update().execute(c)).unwrap();
    assert_eq!(
        emitter.stats().capture_errors,
        1,
        "the committed row is counted"
    );
}

// ---------------------------------------------------------------- one flavor

#[test]
fn a_multi_row_insert_mixing_explicit_and_generated_keys_emits_every_row_on_mariadb() {
    let db = Db::with_people("mixed_keys");
    let emitter = emitter("mixed_keys");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, Flavor::Mariadb);

    let rows = vec![
        (Some(people::id.eq(10)), people::name.eq("ten")),
        (None, people::name.eq("generated")),
        (Some(people::id.eq(5)), people::name.eq("five")),
    ];
    let n = diesel::insert_into(people::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 3);
    let rows: Vec<_> = sorted(recv_n(&rx, 3))
        .iter()
        .map(|e| (e.row.id, e.row.name.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (5, "five".into()),
            (10, "ten".into()),
            (11, "generated".into())
        ]
    );
}

#[test]
fn a_multi_row_insert_mixing_explicit_and_generated_keys_without_returning_runs_and_is_counted() {
    let db = Db::with_people("mixed_keys_mysql");
    let emitter = emitter("mixed_keys_mysql");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, Flavor::WithoutReturning);

    let rows = vec![
        (Some(people::id.eq(10)), people::name.eq("ten")),
        (None, people::name.eq("generated")),
    ];
    let n = diesel::insert_into(people::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();

    assert_eq!(n, 2, "the write runs as plain Diesel runs it");
    assert_empty(&rx);
    assert_eq!(emitter.stats().uncaptured_writes, 1);
}

/// Counts the statements a connection runs.
#[derive(Clone, Default)]
struct Statements(Arc<AtomicUsize>);

impl Instrumentation for Statements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::FinishQuery { .. } = event {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn writes_on_a_table_without_a_model_run_as_one_plain_statement() {
    let db = Db::new("no_model");
    db.plain()
        .batch_execute("CREATE TABLE notes (id INTEGER NOT NULL PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    let emitter = emitter("no_model");
    let mut conn = db.emitting(&emitter, Flavor::Mariadb);
    let statements = Statements::default();
    conn.set_instrumentation(statements.clone());

    diesel::insert_into(notes::table)
        .values((notes::id.eq(1), notes::body.eq("x")))
        .execute(&mut conn)
        .unwrap();
    diesel::update(notes::table)
        .set(notes::body.eq("y"))
        .execute(&mut conn)
        .unwrap();
    diesel::delete(notes::table).execute(&mut conn).unwrap();

    assert_eq!(statements.0.load(Ordering::Relaxed), 3);
    assert_eq!(emitter.stats().emitted, 0);
}

#[test]
fn without_events_runs_the_write_and_emits_nothing() {
    let db = Db::with_people("without_events");
    let emitter = emitter("without_events");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, Flavor::Mariadb);

    conn.without_events(|c| {
        diesel::insert_into(people::table)
            .values(people::name.eq("quiet"))
            .execute(c)
    })
    .unwrap();

    assert_empty(&rx);
    assert_eq!(
        people::table
            .count()
            .get_result::<i64>(&mut db.plain())
            .unwrap(),
        1
    );
}

#[test]
fn r2d2_pool_and_migrations_work_through_the_global_emitter() {
    let db = Db::new("r2d2");
    let emitter = emitter("r2d2");
    Emitter::set_global(emitter.clone());
    let rx = emitter.on::<Person>().subscribe();
    let pool = Pool::builder()
        .max_size(2)
        .build(ConnectionManager::<Conn>::new(&db.url))
        .unwrap();
    let mut conn = pool.get().unwrap();

    conn.run_pending_migrations(MIGRATIONS).unwrap();
    assert_empty(&rx);
    diesel::insert_into(people::table)
        .values(people::name.eq("pooled"))
        .execute(&mut conn)
        .unwrap();

    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.name.as_str()),
        (Action::Insert, "pooled")
    );
    assert_eq!(&*ev.meta.origin, emitter.node_id());
}

// ---------------------------------------------------------------- type fidelity

mod types {
    diesel::table! {
        samples (id) {
            id -> Unsigned<Bigint>,
            tiny -> TinyInt,
            small -> SmallInt,
            big -> BigInt,
            unsigned_int -> Unsigned<Integer>,
            amount -> Numeric,
            at_local -> Datetime,
            stamp -> Timestamp,
            day -> Date,
            clock -> Time,
            bytes -> Blob,
            body -> Text,
            doc -> Json,
            flag -> Bool,
            ratio -> Double,
            note -> Nullable<Text>,
        }
    }
}

#[derive(
    Queryable, Selectable, Insertable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits,
)]
#[diesel(table_name = types::samples, check_for_backend(diesel::mysql::Mysql))]
struct Sample {
    id: u64,
    tiny: i8,
    small: i16,
    big: i64,
    unsigned_int: u32,
    amount: bigdecimal::BigDecimal,
    at_local: chrono::NaiveDateTime,
    stamp: chrono::NaiveDateTime,
    day: chrono::NaiveDate,
    clock: chrono::NaiveTime,
    bytes: Vec<u8>,
    body: String,
    doc: serde_json::Value,
    flag: bool,
    ratio: f64,
    note: Option<String>,
}

const SAMPLES_DDL: &str = "CREATE TABLE samples (
    id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
    tiny TINYINT NOT NULL,
    small SMALLINT NOT NULL,
    big BIGINT NOT NULL,
    unsigned_int INT UNSIGNED NOT NULL,
    amount DECIMAL(38, 18) NOT NULL,
    at_local DATETIME(6) NOT NULL,
    stamp TIMESTAMP(6) NOT NULL,
    day DATE NOT NULL,
    clock TIME(6) NOT NULL,
    bytes BLOB NOT NULL,
    body TEXT NOT NULL,
    doc JSON NOT NULL,
    flag BOOLEAN NOT NULL,
    ratio DOUBLE NOT NULL,
    note TEXT NULL
) ENGINE = InnoDB";

fn sample() -> Sample {
    use std::str::FromStr;
    let at = |s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    Sample {
        id: u64::MAX,
        tiny: i8::MIN,
        small: i16::MIN,
        big: i64::MIN,
        unsigned_int: u32::MAX,
        amount: bigdecimal::BigDecimal::from_str("-12345678901234567890.000000000123456789")
            .unwrap(),
        at_local: at("2026-02-28 23:59:59.999999"),
        stamp: at("2030-01-19 03:14:07.000001"),
        day: chrono::NaiveDate::from_ymd_opt(1000, 1, 1).unwrap(),
        clock: chrono::NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap(),
        bytes: vec![0, 159, 146, 150, 255],
        body: "quote \" and \\ backslash, ünïcode 🚀".into(),
        doc: serde_json::json!({"nested": {"list": [1, 2.5, null, "x"]}, "emoji": "ü 🚀"}),
        flag: true,
        ratio: 0.1 + 0.2,
        note: None,
    }
}

#[test]
fn every_column_type_arrives_at_a_remote_node_as_the_database_stored_it() {
    type_fidelity(Flavor::Mariadb);
}

#[test]
fn every_column_type_arrives_at_a_remote_node_as_the_database_stored_it_without_returning() {
    type_fidelity(Flavor::WithoutReturning);
}

fn type_fidelity(flavor: Flavor) {
    use broker::{connected, node, shutdown_all, unique_prefix, SHARED_URL};
    let db = Db::new("types");
    db.plain()
        .batch_execute("SET time_zone = '+00:00'")
        .unwrap();
    db.plain().batch_execute(SAMPLES_DDL).unwrap();
    let config = MqttConfig::new(SHARED_URL).topic_prefix(unique_prefix("mysql_types"));
    let a = node("a", config.clone());
    let b = node("b", config);
    let remote = b.on::<Sample>().remote_only(true).subscribe();
    connected(&[&a, &b]);
    let mut conn = db.emitting(&a, flavor);

    diesel::insert_into(types::samples::table)
        .values(&sample())
        .execute(&mut conn)
        .unwrap();
    let stored: Sample = types::samples::table.first(&mut db.plain()).unwrap();
    let mut changed = stored.clone();
    changed.note = Some("set".into());
    diesel::update(types::samples::table)
        .set(types::samples::note.eq(&changed.note))
        .execute(&mut conn)
        .unwrap();

    let inserted = broker::recv(&remote);
    assert_eq!((inserted.action, &inserted.row), (Action::Insert, &stored));
    let updated = broker::recv(&remote);
    assert_eq!((updated.action, &updated.row), (Action::Update, &changed));
    shutdown_all(&[&a, &b]);
}
