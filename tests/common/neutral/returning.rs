//! The shared tests of Diesel's own RETURNING: `get_result` on an insert, `.returning()`
//! on inserts and updates. Compiled only by the backends whose fixture has the
//! [`Returning`] capability (PostgreSQL, SQLite): Diesel's MySQL backend has no
//! RETURNING in its query builder, so this file does not compile there. (MariaDB's
//! RETURNING on inserts and deletes is the capture's, checked in `statements.rs`.)
//!
//! A test binary compiles it as its module `neutral_returning`, next to `neutral`:
//!
//! ```ignore
//! #[path = "common/neutral/returning.rs"]
//! mod neutral_returning;
//! neutral_returning::returning_tests!();
//! ```

use super::neutral::*;
use super::Db;
use crate::common::*;
use diesel::prelude::*;
use diesel_emitter::prelude::*;

/// Capability: Diesel's query builder has RETURNING on this backend. The fixture
/// declares it (`impl neutral_returning::Returning for PgSchema {}`).
pub trait Returning: Neutral {}

/// The fixture must declare the capability: a backend without it fails to compile here.
const _: fn() = || {
    fn capable<T: Returning>() {}
    capable::<Db>();
};

/// Stamps out one `#[test]` per test of this file, as `neutral::shared_tests!` does.
macro_rules! returning_tests {
    () => {
        $crate::neutral_returning::returning_tests!(
            insert_get_result_returns_the_row_and_emits_it,
            insert_returning_id_returns_the_id_and_the_event_has_the_full_row,
            update_get_results_returns_the_rows_and_emits_them,
            get_result_on_a_many_row_update_still_emits_every_row,
        );
    };
    ($($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $crate::neutral_returning::$name()
            }
        )*
    };
}
pub(crate) use returning_tests;

pub fn insert_get_result_returns_the_row_and_emits_it() {
    let db = Db::with_users("insert_get_result");
    let emitter = emitter("insert_get_result");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let user: User = diesel::insert_into(users::table)
        .values(&NewUser::named("bob"))
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(user.name, "bob");
    assert_eq!(all_users(&mut db.plain()), vec![user.clone()]);

    let ev = recv(&rx);
    assert_eq!((ev.action, &ev.row), (Action::Insert, &user));
    sentinel(&mut conn, &rx);
}

pub fn insert_returning_id_returns_the_id_and_the_event_has_the_full_row() {
    let db = Db::with_users("insert_returning_id");
    let emitter = emitter("insert_returning_id");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let id: i32 = diesel::insert_into(users::table)
        .values(&NewUser::named("cid"))
        .returning(users::id)
        .get_result(&mut conn)
        .unwrap();

    let stored = all_users(&mut db.plain());
    assert_eq!(stored.len(), 1);
    assert_eq!(
        id, stored[0].id,
        "the caller's RETURNING gets the right value"
    );
    let ev = recv(&rx);
    assert_eq!(ev.action, Action::Insert);
    assert_eq!(ev.row, stored[0]);
    sentinel(&mut conn, &rx);
}

pub fn update_get_results_returns_the_rows_and_emits_them() {
    // (SQLite cannot return the rows of a batch insert: Diesel runs it row by row.
    // `insert_get_results_emits_one_event_per_returned_row` is PostgreSQL's.)
    let db = Db::with_users("update_get_results");
    let seeded = seed(&mut db.plain(), &["a", "b"]);
    let emitter = emitter("update_get_results");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    let updated: Vec<User> = diesel::update(users::table)
        .set(users::email.eq(users::name.concat("@new.example")))
        .returning(User::as_returning())
        .get_results(&mut conn)
        .unwrap();
    assert_eq!(updated.len(), seeded.len());

    let rows: Vec<User> = recv_n(&rx, 2).into_iter().map(|e| e.row).collect();
    assert_eq!(rows, updated);
    sentinel(&mut conn, &rx);
}

pub fn get_result_on_a_many_row_update_still_emits_every_row() {
    let db = Db::with_users("update_get_result_many");
    seed(&mut db.plain(), &["a", "b", "c"]);
    let emitter = emitter("update_get_result_many");
    let rx = emitter.on::<User>().subscribe();
    let mut conn = db.emitting(&emitter);

    // get_result reads only the first returned row; the statement changed three.
    let first: User = diesel::update(users::table)
        .set(users::active.eq(false))
        .returning(User::as_returning())
        .get_result(&mut conn)
        .unwrap();
    assert!(!first.active);

    let events = recv_n(&rx, 3);
    assert!(events.iter().any(|e| e.row == first));
    assert!(events
        .iter()
        .all(|e| e.action == Action::Update && !e.row.active));
    sentinel(&mut conn, &rx);
}
