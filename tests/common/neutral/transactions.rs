//! After commit only: events wait for the outermost COMMIT, savepoints keep or drop
//! their own, and nothing arrives for work that was rolled back or failed.

use super::*;
use diesel::result::DatabaseErrorKind;

pub fn transaction_delivers_nothing_before_commit_and_everything_after() {
    let db = Db::with_users("tx_commit");
    let emitter = emitter("tx_commit");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "t1");
        insert_user(c, "t2");
        diesel::update(users::table)
            .set(users::active.eq(false))
            .execute(c)?;
        assert_empty(&rx);
        assert_eq!(c.pending_events(), 4);
        Ok::<_, DieselError>(())
    })
    .unwrap();
    assert_eq!(conn.pending_events(), 0);

    let events = recv_n(&rx, 4);
    let got: Vec<(Action, &str)> = events
        .iter()
        .map(|e| (e.action, e.row.name.as_str()))
        .collect();
    assert_eq!(
        got[..2],
        [(Action::Insert, "t1"), (Action::Insert, "t2")],
        "commit order"
    );
    assert!(got[2..].iter().all(|(a, _)| *a == Action::Update));
    assert_seq_increasing(&events);
    sentinel(&mut conn, &rx);
}

pub fn rolled_back_transaction_delivers_nothing() {
    assert_rolled_back_transaction_delivers_nothing("tx_rollback", |conn, body| {
        conn.transaction(body)
    });
}

pub fn rolled_back_savepoint_drops_only_its_own_events() {
    let db = Db::with_users("savepoint_rollback");
    let emitter = emitter("savepoint_rollback");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "outer1");
        let inner = c.transaction(|c| {
            insert_user(c, "inner");
            assert_eq!(c.pending_events(), 2);
            Err::<(), _>(DieselError::RollbackTransaction)
        });
        assert!(inner.is_err());
        assert_eq!(c.pending_events(), 1, "the savepoint's event is gone");
        insert_user(c, "outer2");
        Ok::<_, DieselError>(())
    })
    .unwrap();

    let names: Vec<String> = recv_n(&rx, 2).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["outer1", "outer2"]);
    let stored: Vec<String> = all_users(&mut db.plain())
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(stored, ["outer1", "outer2"]);
    sentinel(&mut conn, &rx);
}

pub fn released_savepoint_merges_into_the_outer_commit() {
    let db = Db::with_users("savepoint_release");
    let emitter = emitter("savepoint_release");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "outer1");
        c.transaction(|c| {
            insert_user(c, "inner");
            Ok::<_, DieselError>(())
        })?;
        assert_empty(&rx);
        assert_eq!(
            c.pending_events(),
            2,
            "the released savepoint's event waits"
        );
        insert_user(c, "outer2");
        Ok::<_, DieselError>(())
    })
    .unwrap();

    let events = recv_n(&rx, 3);
    let names: Vec<&str> = events.iter().map(|e| e.row.name.as_str()).collect();
    assert_eq!(names, ["outer1", "inner", "outer2"]);
    assert_seq_increasing(&events);
    sentinel(&mut conn, &rx);
}

pub fn failed_statement_in_a_savepoint_drops_its_events_and_the_outer_commit_delivers_the_rest() {
    let db = Db::with_users("savepoint_failed_statement");
    let emitter = emitter("savepoint_failed_statement");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.transaction(|c| {
        insert_user(c, "outer1");
        let inner = c.transaction(|c| {
            insert_user(c, "inner-ok");
            // The same email again: a unique violation aborts the savepoint.
            try_insert_user(c, "outer1")
        });
        assert!(
            matches!(
                inner,
                Err(DieselError::DatabaseError(
                    DatabaseErrorKind::UniqueViolation,
                    _
                ))
            ),
            "{inner:?}"
        );
        assert_eq!(c.pending_events(), 1);
        insert_user(c, "outer2");
        Ok::<_, DieselError>(())
    })
    .unwrap();

    let names: Vec<String> = recv_n(&rx, 2).into_iter().map(|e| e.row.name).collect();
    assert_eq!(names, ["outer1", "outer2"]);
    sentinel(&mut conn, &rx);
}

pub fn test_transaction_delivers_nothing() {
    let db = Db::with_users("test_transaction");
    let emitter = emitter("test_transaction");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    conn.test_transaction(|c| {
        insert_user(c, "never");
        assert_eq!(c.pending_events(), 1);
        Ok::<_, DieselError>(())
    });
    assert_eq!(conn.pending_events(), 0);
    assert!(all_users(&mut db.plain()).is_empty());
    sentinel(&mut conn, &rx);
}

pub fn failed_statement_delivers_nothing() {
    let db = Db::with_users("failed_statement");
    let existing = seed(&mut db.plain(), &["taken"]).remove(0);
    let emitter = emitter("failed_statement");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    // The first rows are fine, the last one violates the unique email.
    let rows = vec![
        NewUser::named("fine1"),
        NewUser::named("fine2"),
        NewUser {
            name: "dup".into(),
            email: existing.email.clone(),
        },
    ];
    let result = diesel::insert_into(users::table)
        .values(&rows)
        .execute(&mut conn);
    assert!(
        matches!(
            result,
            Err(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        ),
        "{result:?}"
    );
    assert_eq!(all_users(&mut db.plain()), vec![existing]);
    sentinel(&mut conn, &rx);
}
