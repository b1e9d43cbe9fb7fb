//! Repeated inserts run as statements kept prepared: Diesel prepares no `INSERT`
//! of an `Insertable` struct, so the server would parse and plan each one, with
//! the capture's `RETURNING`, again (see `plan::worth_preparing`).

use super::*;
use diesel::connection::CacheSize;

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The statements this session keeps prepared whose SQL starts with `prefix`.
fn kept_prepared<C>(conn: &mut C, prefix: &str) -> i64
where
    C: diesel::connection::LoadConnection<Backend = Pg>,
{
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE $1 || '%'",
    )
    .bind::<diesel::sql_types::Text, _>(prefix)
    .get_result::<Prepared>(conn)
    .unwrap()
    .n
}

/// The `INSERT`s this session keeps prepared.
fn prepared_inserts<C>(conn: &mut C) -> i64
where
    C: diesel::connection::LoadConnection<Backend = Pg>,
{
    kept_prepared(conn, "INSERT INTO")
}

fn insert(conn: &mut Conn, name: &str) -> usize {
    diesel::insert_into(users::table)
        .values(NewUser::named(name))
        .execute(conn)
        .unwrap()
}

#[test]
fn an_insert_run_again_is_kept_prepared_and_every_run_emits_its_row() {
    let db = Db::with_users("prepared_insert");
    let emitter = emitter("prepared_insert");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    assert_eq!(insert(&mut conn, "a"), 1);
    assert_eq!(
        prepared_inserts(&mut conn),
        0,
        "seen once: parsed as Diesel does"
    );
    assert_eq!(insert(&mut conn, "b"), 1);
    assert_eq!(insert(&mut conn, "c"), 1);
    assert_eq!(
        prepared_inserts(&mut conn),
        1,
        "seen again: one statement, kept"
    );

    let events = recv_n(&rx, 3);
    let names: Vec<&str> = events.iter().map(|e| e.row.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(events.iter().all(|e| e.action == Action::Insert));
    let rows: Vec<User> = events.into_iter().map(|e| e.row).collect();
    assert_eq!(rows, all_users(&mut db.plain()));
    sentinel(&mut conn, &rx);
}

#[test]
fn plain_diesel_keeps_no_insert_prepared() {
    // Why the capture does: without it, every insert is parsed and planned again.
    let db = Db::with_users("prepared_plain");
    let mut plain = db.plain();
    for name in ["a", "b", "c"] {
        diesel::insert_into(users::table)
            .values(NewUser::named(name))
            .execute(&mut plain)
            .unwrap();
    }
    assert_eq!(prepared_inserts(&mut plain), 0);
}

#[test]
fn a_connection_with_its_statement_cache_off_keeps_no_insert_prepared() {
    // PgBouncer's transaction mode needs the cache off; the capture follows it.
    let db = Db::with_users("prepared_cache_off");
    let emitter = emitter("prepared_cache_off");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);

    for name in ["a", "b", "c"] {
        assert_eq!(insert(&mut conn, name), 1);
    }
    assert_eq!(prepared_inserts(&mut conn), 0);
    let names: Vec<String> = recv_n(&rx, 3).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn a_column_added_after_the_insert_was_prepared_leaves_its_capture_exact() {
    let db = Db::with_users("prepared_altered");
    let emitter = emitter("prepared_altered");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    insert(&mut conn, "a");
    insert(&mut conn, "b");
    assert_eq!(prepared_inserts(&mut conn), 1);

    // The server plans the kept statement again; its RETURNING lists the model's
    // columns by name, so its result keeps its shape.
    conn.batch_execute("ALTER TABLE users ADD COLUMN note TEXT NOT NULL DEFAULT 'n'")
        .unwrap();
    assert_eq!(insert(&mut conn, "c"), 1);

    let events = recv_n(&rx, 3);
    assert_eq!(events[2].row.name, "c");
    assert_eq!(
        events.into_iter().map(|e| e.row).collect::<Vec<_>>(),
        all_users(&mut db.plain())
    );
}

#[test]
fn an_insert_kept_prepared_whose_column_changed_type_fails_once_then_runs_unprepared() {
    let db = Db::with_users("prepared_retyped");
    let emitter = emitter("prepared_retyped");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    insert(&mut conn, "a");
    insert(&mut conn, "b");
    conn.batch_execute("ALTER TABLE users ALTER COLUMN name TYPE varchar(200)")
        .unwrap();

    // The server refuses the kept statement: its result would change type.
    let refused = diesel::insert_into(users::table)
        .values(NewUser::named("c"))
        .execute(&mut conn);
    assert!(
        matches!(
            refused,
            Err(DieselError::DatabaseError(DatabaseErrorKind::Unknown, _))
        ),
        "{refused:?}"
    );
    // From then on the connection runs that insert unprepared, and it works.
    assert_eq!(insert(&mut conn, "d"), 1);
    assert_eq!(insert(&mut conn, "e"), 1);

    let names: Vec<String> = recv_n(&rx, 4).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["a", "b", "d", "e"]);
    sentinel(&mut conn, &rx);
}

#[test]
fn a_get_result_insert_run_again_is_kept_prepared_and_returns_its_rows() {
    let db = Db::with_users("prepared_get_result");
    let emitter = emitter("prepared_get_result");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let returned: Vec<User> = ["a", "b", "c"]
        .iter()
        .map(|name| insert_user(&mut conn, name))
        .collect();
    assert_eq!(prepared_inserts(&mut conn), 1);
    let rows: Vec<User> = recv_n(&rx, 3).into_iter().map(|e| e.row).collect();
    assert_eq!(rows, returned);
}

#[test]
fn an_update_run_again_is_kept_prepared_and_every_run_emits_its_row() {
    let db = Db::with_users("prepared_update");
    let emitter = emitter("prepared_update");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let user = insert_user(&mut conn, "a");
    for name in ["b", "c", "d"] {
        diesel::update(users::table.find(user.id))
            .set(users::name.eq(name))
            .execute(&mut conn)
            .unwrap();
    }
    assert_eq!(kept_prepared(&mut conn, "UPDATE"), 1);
    let events = recv_n(&rx, 4);
    let names: Vec<&str> = events.iter().map(|e| e.row.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert!(events[1..].iter().all(|e| e.action == Action::Update));
}

#[test]
fn a_connection_keeps_at_most_128_statements_prepared() {
    // Raw SQL with literals: every text is its own statement, each run twice.
    let db = Db::with_users("prepared_bounded");
    let emitter = emitter("prepared_bounded");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let user = insert_user(&mut conn, "a");
    for i in 0..150 {
        let sql = format!("UPDATE users SET name = 'n{i}' WHERE id = {}", user.id);
        for _ in 0..2 {
            assert_eq!(diesel::sql_query(&sql).execute(&mut conn), Ok(1));
        }
    }
    assert_eq!(kept_prepared(&mut conn, "UPDATE"), 128);
    let events = recv_n(&rx, 301);
    assert_eq!(
        events[300].row.name, "n149",
        "every update emitted, kept or not"
    );
}
