//! Upserts and INSERT IGNORE on MySQL, each run as MariaDB captures them and as
//! MySQL 8 does: `Insert` for new keys, `Update` for existing ones (also when the
//! update changed nothing), nothing for a row left alone.

mod common;
#[path = "common/mysql_people.rs"]
mod mysql_people;

use common::{assert_empty, emitter, recv, recv_n};
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use mysql_people::*;

mysql_people::both_flavors!(
    upsert_emits_insert_for_new_keys_and_update_for_existing_ones,
    upsert_that_changes_nothing_emits_one_update,
    insert_ignore_emits_only_the_rows_it_inserted,
    on_conflict_do_nothing_emits_only_the_rows_it_inserted,
);

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
    let n = diesel::insert_into(people::table)
        .values(&rows)
        .on_conflict(diesel::dsl::DuplicatedKeys)
        .do_update()
        .set(people::name.eq(diesel::upsert::excluded(people::name)))
        .execute(&mut conn)
        .unwrap();

    // As plain Diesel reports it: MySQL counts 2 for the updated row, 1 for the new one.
    assert_eq!(n, 3);
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

fn on_conflict_do_nothing_emits_only_the_rows_it_inserted(flavor: Flavor) {
    let db = Db::with_people("do_nothing");
    seed(&db, &["a"]);
    let emitter = emitter("do_nothing");
    let rx = emitter.on::<Person>().subscribe();
    let mut conn = db.emitting(&emitter, flavor);

    // Diesel renders `ON DUPLICATE KEY UPDATE `people`.`id` = `people`.`id``: row 1
    // is left as it was.
    let rows = vec![
        (people::id.eq(1), people::name.eq("clash")),
        (people::id.eq(2), people::name.eq("new")),
    ];
    let n = diesel::insert_into(people::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(&mut conn)
        .unwrap();

    // With CLIENT_FOUND_ROWS the row left alone counts 1, as with plain Diesel.
    assert_eq!(n, 2);
    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.id, ev.row.name.as_str()),
        (Action::Insert, 2, "new")
    );
    assert_empty(&rx);
}
