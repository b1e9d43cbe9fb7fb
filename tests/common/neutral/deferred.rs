//! The shared test of a COMMIT that fails: a foreign key checked at COMMIT. Compiled
//! only by the backends whose fixture has the [`DeferredConstraints`] capability
//! (PostgreSQL, SQLite): InnoDB checks every constraint when the statement runs, and
//! MariaDB and MySQL refuse `DEFERRABLE`, so there no COMMIT fails on a constraint.
//!
//! A test binary compiles it as its module `neutral_deferred`, next to `neutral`:
//!
//! ```ignore
//! #[path = "common/neutral/deferred.rs"]
//! mod neutral_deferred;
//! neutral_deferred::deferred_tests!();
//! ```

use super::neutral::*;
use super::Db;
use crate::common::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

/// Capability: a foreign key can be checked at COMMIT, so that COMMIT itself fails.
/// The fixture declares it (`impl neutral_deferred::DeferredConstraints for PgSchema {}`).
pub trait DeferredConstraints: Neutral {}

/// The fixture must declare the capability: a backend without it fails to compile here.
const _: fn() = || {
    fn capable<T: DeferredConstraints>() {}
    capable::<Db>();
};

/// Stamps out one `#[test]` per test of this file, as `neutral::shared_tests!` does.
macro_rules! deferred_tests {
    () => {
        #[test]
        fn failed_commit_on_a_deferred_foreign_key_delivers_nothing() {
            $crate::neutral_deferred::failed_commit_on_a_deferred_foreign_key_delivers_nothing()
        }
    };
}
pub(crate) use deferred_tests;

// A model whose table has a deferred foreign key.
diesel::table! {
    members (id) {
        id -> Int4,
        team_id -> Int4,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = members)]
struct Member {
    id: i32,
    team_id: i32,
}

pub fn failed_commit_on_a_deferred_foreign_key_delivers_nothing() {
    let db = Db::new("failed_commit_fk");
    db.plain()
        .batch_execute(&format!(
            "CREATE TABLE teams (id INTEGER PRIMARY KEY);
             CREATE TABLE members (
                id {},
                team_id INTEGER NOT NULL REFERENCES teams (id) DEFERRABLE INITIALLY DEFERRED
             );",
            Db::AUTO_ID
        ))
        .unwrap();
    let emitter = emitter("failed_commit_fk");
    let rx = emitter.on::<Member>().subscribe();
    let mut conn = db.emitting(&emitter);

    let result = conn.transaction(|c| {
        diesel::insert_into(members::table)
            .values(members::team_id.eq(42))
            .execute(c)?;
        assert_eq!(c.pending_events(), 1);
        Ok::<_, DieselError>(())
    });
    assert!(
        matches!(
            result,
            Err(DieselError::DatabaseError(
                DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        ),
        "COMMIT must fail: {result:?}"
    );
    assert_eq!(conn.pending_events(), 0);
    let stored: i64 = members::table.count().get_result(&mut db.plain()).unwrap();
    assert_eq!(stored, 0);

    // Sentinel: a valid member is the next event.
    db.plain()
        .batch_execute("INSERT INTO teams (id) VALUES (1)")
        .unwrap();
    let member: Member = diesel::insert_into(members::table)
        .values(members::team_id.eq(1))
        .get_result(&mut conn)
        .unwrap();
    let ev = recv(&rx);
    assert_eq!((ev.action, ev.row), (Action::Insert, member));
}
