//! The MySQL capture's edge cases, each run as MariaDB captures it and as MySQL 8
//! does: an update whose WHERE reads a column it sets, a delete with LIMIT, an update
//! of the primary key, composite keys, a row that does not decode, and multi-row
//! inserts mixing explicit and generated keys.

mod common;
#[path = "common/mysql_people.rs"]
mod mysql_people;

use common::{assert_empty, emitter, recv_n};
use diesel::connection::SimpleConnection;
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel_emitter::prelude::*;
use mysql_people::*;
use serde::{Deserialize, Serialize};

mysql_people::both_flavors!(
    update_whose_where_reads_the_column_it_sets_emits_exactly_the_rows_it_changed,
    delete_with_limit_emits_exactly_the_rows_it_deleted,
    update_that_changes_the_primary_key_runs_untouched_and_is_counted,
    composite_keys_are_locked_and_read_back_as_tuples,
    a_row_that_does_not_decode_counts_as_a_capture_error_only_once_committed,
);

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
