//! The SQL that runs: untouched on tables without a model, in scopes without events
//! and through `inner_mut()`; the statement itself (with the capture's addition)
//! on a model's table; prepared statements shared with the plain connection.

use super::*;
use diesel::connection::SimpleConnection;

pub fn writes_on_a_table_without_a_model_run_exactly_the_plain_sql() {
    let db = Db::new("no_model_sql");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE notes (id {}, body TEXT NOT NULL)",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("no_model_sql");
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = || diesel::insert_into(notes::table).values(notes::body.eq("hello"));
    let expected = diesel::debug_query::<Backend, _>(&insert()).to_string();
    assert_eq!(insert().execute(&mut conn).unwrap(), 1);
    assert_eq!(log.take(), vec![expected]);

    let update = || diesel::update(notes::table).set(notes::body.eq("bye"));
    let expected = diesel::debug_query::<Backend, _>(&update()).to_string();
    assert_eq!(update().execute(&mut conn).unwrap(), 1);
    assert_eq!(log.take(), vec![expected]);

    let delete = || diesel::delete(notes::table.filter(notes::body.eq("bye")));
    let expected = diesel::debug_query::<Backend, _>(&delete()).to_string();
    assert_eq!(delete().execute(&mut conn).unwrap(), 1);
    let queries = log.take();
    assert_eq!(queries, vec![expected]);
    assert!(!has_returning(&queries[0]));
    assert_eq!(emitter.stats().emitted, 0);
}

pub fn writes_on_a_model_table_append_returning() {
    let db = Db::with_users("model_sql");
    let emitter = emitter("model_sql");
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = |name: &str| diesel::insert_into(users::table).values(NewUser::named(name));
    // The first write on a model's table per connection also reads the table's
    // columns, to check the model against it.
    insert("first").execute(&mut conn).unwrap();
    let first = log.take();
    assert_eq!(
        first.len(),
        Db::SETUP_QUERIES + 1,
        "the column check (and on MySQL the server's flavour), then the insert: {first:?}"
    );
    let insert_sql = &first[Db::SETUP_QUERIES];
    assert!(has_returning(insert_sql), "{insert_sql}");

    let plain = diesel::debug_query::<Backend, _>(&insert("r")).to_string();
    assert!(!has_returning(&plain));
    insert("r").execute(&mut conn).unwrap();
    let queries = log.take();
    assert_eq!(queries.len(), 1, "{queries:?}");
    assert!(has_returning(&queries[0]), "{}", queries[0]);
    assert!(
        sql_part(&queries[0]).starts_with(sql_part(&plain)),
        "the statement itself is unchanged: {} vs {plain}",
        queries[0]
    );
}

pub fn the_same_statement_alternating_plain_and_emitting_always_counts_one_and_emits_only_when_emitting(
) {
    let db = Db::with_users("prepared_cache");
    let emitter = emitter("prepared_cache");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let plan = [
        ("p1", false),
        ("e1", true),
        ("e2", true),
        ("p2", false),
        ("p3", false),
        ("e3", true),
        ("p4", false),
        ("e4", true),
        ("e5", true),
        ("p5", false),
    ];
    // One closure: every call returns the same statement type (the same query id).
    let stmt = |name: &str| {
        diesel::insert_into(users::table).values((
            users::name.eq(name.to_owned()),
            users::email.eq(format!("{name}@example.com")),
        ))
    };
    for (name, emitting) in plan {
        let n = if emitting {
            stmt(name).execute(&mut conn)
        } else {
            stmt(name).execute(conn.inner_mut())
        }
        .unwrap();
        assert_eq!(n, 1, "{name}");
    }

    let emitted: Vec<&str> = plan.iter().filter(|p| p.1).map(|p| p.0).collect();
    let got: Vec<String> = recv_n(&rx, emitted.len())
        .into_iter()
        .map(|e| e.row.name)
        .collect();
    assert_eq!(got, emitted);
    sentinel(&mut conn, &rx);
    assert_eq!(all_users(&mut db.plain()).len(), plan.len() + 1);
}

pub fn without_events_emits_nothing_and_runs_the_sql_unchanged() {
    let db = Db::with_users("without_events");
    let emitter = emitter("without_events");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);
    let log = QueryLog::install(&mut conn);

    let insert = || diesel::insert_into(users::table).values(NewUser::named("quiet"));
    let expected = diesel::debug_query::<Backend, _>(&insert()).to_string();
    let n = conn
        .without_events(|c| {
            assert_eq!(c.emit_mode(), Audience::Off);
            insert().execute(c)
        })
        .unwrap();
    assert_eq!(n, 1);
    let queries = log.take();
    assert_eq!(queries, vec![expected]);
    assert!(!has_returning(&queries[0]));
    assert_eq!(conn.emit_mode(), Audience::All);
    sentinel(&mut conn, &rx);
}

pub fn inner_mut_writes_emit_nothing() {
    let db = Db::with_users("inner_mut");
    let emitter = emitter("inner_mut");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    seed(conn.inner_mut(), &["a", "b"]);
    diesel::update(users::table)
        .set(users::active.eq(false))
        .execute(conn.inner_mut())
        .unwrap();
    diesel::delete(users::table)
        .execute(conn.inner_mut())
        .unwrap();
    sentinel(&mut conn, &rx);
    assert_eq!(emitter.stats().emitted, 1);
}
