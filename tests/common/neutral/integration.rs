//! Diesel's machinery through the wrapper: r2d2 pools, migrations, two models on one
//! table, tables and columns renamed with `sql_name`.

use super::*;
use diesel::connection::SimpleConnection;
use diesel_migrations::MigrationHarness;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

// Two models on one table.
diesel::table! {
    profiles (id) {
        id -> Int4,
        name -> Text,
        bio -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = profiles)]
struct Profile {
    id: i32,
    name: String,
    bio: String,
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = profiles)]
struct ProfileName {
    id: i32,
    name: String,
}

// A table whose SQL name differs from its Rust name.
diesel::table! {
    #[sql_name = "app_accounts"]
    accounts (id) {
        id -> Int4,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = accounts)]
struct Account {
    id: i32,
    name: String,
}

// A column whose SQL name differs from its Rust name, read into a renamed field.
diesel::table! {
    labels (id) {
        id -> Int4,
        #[sql_name = "label_text"]
        text -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = labels)]
struct Label {
    id: i32,
    #[diesel(column_name = text)]
    caption: String,
}

// A model on diesel's migrations table: it must never emit.
diesel::table! {
    __diesel_schema_migrations (version) {
        version -> VarChar,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = __diesel_schema_migrations, primary_key(version))]
struct SchemaMigration {
    version: String,
}

pub fn r2d2_pool_delivers_every_event_once_with_increasing_seq_per_origin() {
    const THREADS: usize = 4;
    const ROUNDS: usize = Db::R2D2_ROUNDS;
    let db = Db::with_users("r2d2");
    let emitter = emitter("r2d2");
    let origin = emitter.node_id().to_owned();
    Emitter::set_global(emitter.clone());
    let rx = emitter.on::<User>().subscribe();

    let pool = Arc::new(db.pool(THREADS as u32));

    // Per thread: ROUNDS rounds; every third one is a transaction of two inserts and
    // an update, the others a single autocommit insert.
    let per_thread: usize = (0..ROUNDS).map(|i| if i % 3 == 0 { 3 } else { 1 }).sum();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let mut conn = pool.get().unwrap();
                    if i % 3 == 0 {
                        Db::write_transaction(&mut conn, |c| {
                            let u = insert_user(c, &format!("t{t}-{i:03}-a"));
                            insert_user(c, &format!("t{t}-{i:03}-b"));
                            diesel::update(users::table.find(u.id))
                                .set(users::active.eq(false))
                                .execute(c)
                        })
                        .unwrap();
                    } else {
                        insert_user(&mut conn, &format!("t{t}-{i:03}"));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }

    let total = THREADS * per_thread;
    let events: Vec<Event<User>> = recv_n(&rx, total)
        .into_iter()
        .filter(|e| *e.meta.origin == *origin)
        .collect();
    assert_eq!(events.len(), total);
    let ids: HashSet<_> = events.iter().map(|e| e.meta.id).collect();
    assert_eq!(ids.len(), total, "every event exactly once");
    assert_seq_increasing(&events);
    // Each thread's writes arrive in the order it committed them.
    for t in 0..THREADS {
        let prefix = format!("t{t}-");
        let mine: Vec<(Action, &str)> = events
            .iter()
            .filter(|e| e.row.name.starts_with(&prefix))
            .map(|e| (e.action, e.row.name.as_str()))
            .collect();
        assert_eq!(mine.len(), per_thread);
        let inserts: Vec<&str> = mine
            .iter()
            .filter(|(a, _)| *a == Action::Insert)
            .map(|(_, n)| *n)
            .collect();
        let mut in_order = inserts.clone();
        in_order.sort();
        assert_eq!(inserts, in_order, "thread {t} commit order");
    }
    // Nothing else arrives.
    let mut conn = pool.get().unwrap();
    sentinel(&mut conn, &rx);
}

pub fn migrations_through_an_emitting_connection_emit_nothing_and_later_writes_emit() {
    let db = Db::new("migrations");
    let emitter = emitter("migrations");
    let users_rx = emitter.on::<User>().subscribe();
    let migrations_rx = emitter.on::<SchemaMigration>().subscribe();
    let mut conn = db.emitting(&emitter);

    let applied = conn.run_pending_migrations(Db::MIGRATIONS).unwrap();
    assert_eq!(applied.len(), 1);
    assert_eq!(conn.applied_migrations().unwrap().len(), 1);
    assert_eq!(emitter.stats().emitted, 0);

    sentinel(&mut conn, &users_rx);
    assert_empty(&migrations_rx);
}

pub fn two_models_on_one_table_each_get_their_own_typed_event() {
    let db = Db::new("two_models");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE profiles (id {}, name TEXT NOT NULL, bio TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("two_models");
    let full = emitter.on::<Profile>().subscribe();
    let names = emitter.on::<ProfileName>().subscribe();
    let mut conn = db.emitting(&emitter);

    diesel::insert_into(profiles::table)
        .values((profiles::name.eq("pat"), profiles::bio.eq("hi")))
        .execute(&mut conn)
        .unwrap();
    let p: Profile = profiles::table
        .select(Profile::as_select())
        .first(&mut db.plain())
        .unwrap();
    let ev = recv(&full);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &p));
    let ev = recv(&names);
    assert_eq!(
        (ev.action, &ev.row),
        (
            Action::Insert,
            &ProfileName {
                id: p.id,
                name: "pat".into()
            }
        )
    );

    diesel::update(profiles::table.find(p.id))
        .set(profiles::name.eq("patricia"))
        .execute(&mut conn)
        .unwrap();
    let a = recv(&full);
    let b = recv(&names);
    assert_eq!(
        (a.action, a.row.name.as_str()),
        (Action::Update, "patricia")
    );
    assert_eq!(
        (b.action, b.row.name.as_str()),
        (Action::Update, "patricia")
    );
    assert_eq!(a.changed(), ["name"]);
    assert_eq!(b.changed(), ["name"]);
    assert_ne!(a.meta.id, b.meta.id);

    diesel::delete(profiles::table).execute(&mut conn).unwrap();
    assert_eq!(recv(&full).action, Action::Delete);
    assert_eq!(recv(&names).action, Action::Delete);
    assert_empty(&full);
    assert_empty(&names);
}

pub fn a_model_on_a_table_renamed_with_sql_name_emits() {
    let db = Db::new("sql_name");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE app_accounts (id {}, name TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("sql_name");
    let rx = emitter.on::<Account>().subscribe();
    let mut conn = db.emitting(&emitter);

    diesel::insert_into(accounts::table)
        .values(accounts::name.eq("acme"))
        .execute(&mut conn)
        .unwrap();
    let account: Account = accounts::table
        .select(Account::as_select())
        .first(&mut db.plain())
        .unwrap();
    let ev = recv(&rx);
    assert_eq!((ev.action, ev.row), (Action::Insert, account));
    // Events name the table as the `table!` declaration does.
    assert_eq!(ev.meta.table, "accounts");
}

pub fn a_column_renamed_with_sql_name_is_captured_and_reported_by_its_database_name() {
    let db = Db::new("column_sql_name");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE labels (id {}, label_text TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("column_sql_name");
    let rx = emitter.on::<Label>().subscribe();
    let mut conn = db.emitting(&emitter);

    diesel::insert_into(labels::table)
        .values(labels::text.eq("draft"))
        .execute(&mut conn)
        .unwrap();
    let label: Label = labels::table
        .select(Label::as_select())
        .first(&mut db.plain())
        .unwrap();
    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &label));
    assert_eq!(sorted(ev.changed()), sorted(&["id", "label_text"]));

    diesel::update(labels::table.find(label.id))
        .set(labels::text.eq("final"))
        .execute(&mut conn)
        .unwrap();
    let ev = recv(&rx);
    assert_eq!(
        (ev.action, ev.row.caption.as_str()),
        (Action::Update, "final")
    );
    assert_eq!(ev.changed(), ["label_text"]);
}
