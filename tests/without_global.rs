//! Connections opened by `Connection::establish` before any `Emitter::set_global`:
//! their writes are counted, not silently sent nowhere. A test binary of its own,
//! as the global emitter is the process's.

mod common;

use common::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;

#[test]
fn writes_of_a_connection_established_without_a_global_emitter_are_counted_until_it_gets_one() {
    let db = SqliteDb::with_users("without_global");
    assert!(Emitter::try_global().is_none());
    assert_eq!(Emitter::writes_without_global(), 0);

    let mut conn = EmittingConnection::<SqliteConnection>::establish(db.url()).unwrap();
    conn.batch_execute("PRAGMA busy_timeout = 5000;").unwrap();
    for name in ["ada", "grace"] {
        diesel::insert_into(users::table)
            .values(&NewUser::named(name))
            .execute(&mut conn)
            .unwrap();
    }
    assert_eq!(Emitter::writes_without_global(), 2);

    let emitter = emitter("without_global");
    let rx = emitter.on::<User>().subscribe();
    conn.set_emitter(emitter);
    diesel::insert_into(users::table)
        .values(&NewUser::named("edsger"))
        .execute(&mut conn)
        .unwrap();

    assert_eq!(recv(&rx).row.name, "edsger");
    assert_eq!(
        Emitter::writes_without_global(),
        2,
        "an emitter of its own: not counted"
    );
}
