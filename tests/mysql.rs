//! `EmittingConnection<MysqlConnection>` against the MariaDB at 127.0.0.1:3306 (or
//! `MYSQL_URL`), every test in a database of its own: the write paths and
//! transactions, each behaviour run twice, as MariaDB captures it and as MySQL 8 does
//! (see `common/mysql_people.rs`), and the wrapper's plumbing (tables without a
//! model, scopes, r2d2, migrations).
//!
//! The capture's edge cases are in `mysql_capture_edges.rs`, `mysql_upserts.rs` and
//! `mysql_concurrency.rs`, type fidelity in `mysql_type_fidelity.rs`, and the
//! behaviours every backend shares in `mysql_neutral.rs`.

mod common;
#[path = "common/mysql_people.rs"]
mod mysql_people;

use common::{assert_empty, emitter, recv, recv_n};
use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel_emitter::prelude::*;
use diesel_migrations::MigrationHarness;
use mysql_people::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// A table without a model.
diesel::table! {
    notes (id) {
        id -> Integer,
        body -> Text,
    }
}

mysql_people::both_flavors!(
    insert_emits_one_insert_with_the_full_row_and_its_defaults,
    batch_insert_emits_one_insert_per_row,
    update_of_many_rows_emits_one_update_per_row_with_the_set_columns,
    update_matching_no_row_emits_nothing,
    delete_of_many_rows_emits_the_deleted_rows,
    save_changes_emits_one_update,
    rolled_back_savepoint_drops_only_its_own_events,
    rolled_back_transaction_delivers_nothing,
    failed_statement_in_a_transaction_delivers_nothing_and_the_commit_delivers_the_rest,
);

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

// ---------------------------------------------------------------- one flavor

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
