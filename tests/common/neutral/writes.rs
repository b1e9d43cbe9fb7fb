//! Every write path: inserts, batch inserts, updates, deletes, `save_changes` and
//! upserts, each with one event per affected row.

use super::*;
use diesel::upsert::excluded;
use std::collections::HashMap;

pub fn insert_via_execute_emits_one_insert_event_with_the_full_row() {
    let db = Db::with_users("insert_execute");
    let emitter = emitter("insert_execute");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(users::table)
        .values(&NewUser::named("ann"))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 1);

    let ev = recv(&rx);
    let stored = all_users(&mut db.plain());
    assert_eq!(stored.len(), 1);
    assert_eq!(ev.action, Action::Insert);
    assert_eq!(ev.row, stored[0], "the event carries the row as stored");
    assert!(ev.row.id > 0, "the generated id is filled in");
    assert!(ev.row.active, "the DB default is filled in");
    assert_eq!(sorted(ev.changed()), sorted(&USER_COLUMNS));
    assert_eq!(ev.meta.table, "users");
    assert_eq!(ev.meta.source, Source::Local);
    assert_eq!(&*ev.meta.origin, emitter.node_id());
    assert_eq!(ev.meta.seq, 1);
    sentinel(&mut conn, &rx);
}

pub fn batch_insert_of_n_rows_emits_n_insert_events() {
    let db = Db::with_users("batch_insert");
    let emitter = emitter("batch_insert");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let names: Vec<String> = (0..25).map(|i| format!("user{i:02}")).collect();
    let rows: Vec<NewUser> = names.iter().map(|n| NewUser::named(n)).collect();
    let n = diesel::insert_into(users::table)
        .values(&rows)
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 25);

    let events = recv_n(&rx, 25);
    let mut got: Vec<String> = events.iter().map(|e| e.row.name.clone()).collect();
    got.sort();
    assert_eq!(got, names);
    assert!(events.iter().all(|e| e.action == Action::Insert));
    let ids: HashSet<i32> = events.iter().map(|e| e.row.id).collect();
    assert_eq!(ids.len(), 25);
    sentinel(&mut conn, &rx);
}

pub fn empty_batch_insert_returns_zero_and_emits_nothing() {
    let db = Db::with_users("empty_batch");
    let emitter = emitter("empty_batch");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::insert_into(users::table)
        .values(&Vec::<NewUser>::new())
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 0);
    sentinel(&mut conn, &rx);
}

pub fn update_of_many_rows_emits_one_update_per_row_with_the_set_columns() {
    let db = Db::with_users("update_many");
    let mut plain = db.plain();
    let seeded = seed(&mut plain, &["a", "b", "c", "d"]);
    diesel::update(users::table.find(seeded[3].id))
        .set(users::active.eq(false))
        .execute(&mut plain)
        .unwrap();
    let emitter = emitter("update_many");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::update(users::table.filter(users::active.eq(true)))
        .set((users::name.eq("renamed"), users::active.eq(false)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 3);

    let events = recv_n(&rx, 3);
    let after = all_users(&mut plain);
    let mut ids = Vec::new();
    for ev in &events {
        assert_eq!(ev.action, Action::Update);
        assert_eq!(sorted(ev.changed()), sorted(&["name", "active"]));
        assert_eq!(ev.row.name, "renamed");
        assert!(!ev.row.active);
        assert!(after.contains(&ev.row), "the row after the update");
        ids.push(ev.row.id);
    }
    ids.sort();
    assert_eq!(ids, vec![seeded[0].id, seeded[1].id, seeded[2].id]);
    sentinel(&mut conn, &rx);
}

pub fn one_changeset_type_with_different_fields_set_reports_each_statements_own_columns() {
    // `None` fields are left out of the SET list, so one Rust type renders
    // different SQL; each statement's plan must be its own.
    #[derive(AsChangeset)]
    #[diesel(table_name = users)]
    struct Patch {
        name: Option<String>,
        active: Option<bool>,
    }
    let db = Db::with_users("patch_types");
    let seeded = seed(&mut db.plain(), &["a"]);
    let emitter = emitter("patch_types");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let patches = [
        (Some("b"), None, vec!["name"]),
        (None, Some(false), vec!["active"]),
        (Some("c"), Some(true), vec!["active", "name"]),
        (Some("d"), None, vec!["name"]),
    ];
    for (name, active, changed) in patches {
        let patch = Patch {
            name: name.map(str::to_owned),
            active,
        };
        diesel::update(users::table.find(seeded[0].id))
            .set(&patch)
            .execute(&mut conn)
            .unwrap();
        let ev = recv(&rx);
        assert_eq!(sorted(ev.changed()), sorted(&changed));
        if let Some(name) = name {
            assert_eq!(ev.row.name, name);
        }
        if let Some(active) = active {
            assert_eq!(ev.row.active, active);
        }
    }
    sentinel(&mut conn, &rx);
}

pub fn update_matching_no_row_emits_nothing() {
    let db = Db::with_users("update_none");
    let emitter = emitter("update_none");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let n = diesel::update(users::table.filter(users::id.eq(-1)))
        .set(users::name.eq("nobody"))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 0);
    sentinel(&mut conn, &rx);
}

pub fn delete_of_many_rows_emits_the_deleted_rows() {
    let db = Db::with_users("delete_many");
    let seeded = seed(&mut db.plain(), &["a", "b", "c", "d"]);
    let emitter = emitter("delete_many");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let doomed: Vec<i32> = seeded[..3].iter().map(|u| u.id).collect();
    let n = diesel::delete(users::table.filter(users::id.eq_any(&doomed)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, 3);

    let mut events = recv_n(&rx, 3);
    events.sort_by_key(|e| e.row.id);
    for (ev, before) in events.iter().zip(&seeded[..3]) {
        assert_eq!(ev.action, Action::Delete);
        assert_eq!(&ev.row, before, "the deleted row as it was");
        assert_eq!(sorted(ev.changed()), sorted(&USER_COLUMNS));
    }
    assert_eq!(all_users(&mut db.plain()), vec![seeded[3].clone()]);
    sentinel(&mut conn, &rx);
}

pub fn save_changes_emits_one_update() {
    let db = Db::with_users("save_changes");
    let mut user = seed(&mut db.plain(), &["sam"]).remove(0);
    let emitter = emitter("save_changes");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    user.name = "samantha".into();
    let saved: User = (&user).save_changes(&mut conn).unwrap();
    assert_eq!(saved, user);

    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Update, &user));
    assert_eq!(sorted(ev.changed()), sorted(&["name", "email", "active"]));
    sentinel(&mut conn, &rx);
}

pub fn upsert_do_update_emits_insert_for_new_keys_and_update_for_existing_ones() {
    let db = Db::with_users("upsert_do_update");
    let seeded = seed(&mut db.plain(), &["old1", "old2"]);
    let emitter = emitter("upsert_do_update");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows = vec![
        (
            users::id.eq(1000),
            users::name.eq("new1"),
            users::email.eq("new1@example.com"),
            users::active.eq(true),
        ),
        (
            users::id.eq(seeded[0].id),
            users::name.eq("upd1"),
            users::email.eq("ignored1@example.com"),
            users::active.eq(true),
        ),
        (
            users::id.eq(1001),
            users::name.eq("new2"),
            users::email.eq("new2@example.com"),
            users::active.eq(false),
        ),
        (
            users::id.eq(seeded[1].id),
            users::name.eq("upd2"),
            users::email.eq("ignored2@example.com"),
            users::active.eq(true),
        ),
    ];
    let n = diesel::insert_into(users::table)
        .values(&rows)
        .on_conflict(Db::id_conflict())
        .do_update()
        .set(users::name.eq(excluded(users::name)))
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, Db::upsert_count(2, 2));

    let events: HashMap<i32, Event<User>> =
        recv_n(&rx, 4).into_iter().map(|e| (e.row.id, e)).collect();
    let stored: HashMap<i32, User> = all_users(&mut db.plain())
        .into_iter()
        .map(|u| (u.id, u))
        .collect();
    assert_eq!(events.len(), 4);
    for id in [1000, 1001] {
        let ev = &events[&id];
        assert_eq!(ev.action, Action::Insert, "{ev:?}");
        assert_eq!(sorted(ev.changed()), sorted(&USER_COLUMNS));
        assert_eq!(ev.row, stored[&id]);
    }
    for old in &seeded {
        let ev = &events[&old.id];
        assert_eq!(ev.action, Action::Update, "{ev:?}");
        assert_eq!(ev.changed(), ["name"]);
        assert_eq!(ev.row, stored[&old.id]);
        assert_eq!(
            ev.row.email, old.email,
            "only the DO UPDATE SET columns changed"
        );
    }
    sentinel(&mut conn, &rx);
}

pub fn upsert_do_nothing_emits_only_for_inserted_rows() {
    let db = Db::with_users("upsert_do_nothing");
    let seeded = seed(&mut db.plain(), &["old"]);
    let emitter = emitter("upsert_do_nothing");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let rows = vec![
        (
            users::id.eq(seeded[0].id),
            users::name.eq("clash"),
            users::email.eq("clash@example.com"),
        ),
        (
            users::id.eq(2000),
            users::name.eq("fresh"),
            users::email.eq("fresh@example.com"),
        ),
    ];
    let n = diesel::insert_into(users::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(&mut conn)
        .unwrap();
    assert_eq!(n, Db::do_nothing_count(1, 1));

    let ev = recv(&rx);
    assert_eq!(ev.action, Action::Insert);
    assert_eq!(
        (ev.row.id, ev.row.name.as_str(), ev.row.active),
        (2000, "fresh", true)
    );
    sentinel(&mut conn, &rx);
}
