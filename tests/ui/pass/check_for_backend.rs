use diesel::prelude::*;
use diesel_emitter::connection::model::{pg_registry, sqlite_registry, Registry};
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    users (id) {
        id -> Int4,
        name -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct PgUser {
    id: i32,
    name: String,
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite))]
struct SqliteUser {
    id: i32,
    name: String,
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite), table_name = users)]
struct BothUser {
    id: i32,
    name: String,
}

/// The models registered for `users`, by their type's last path segment.
fn registered<DB, D>(registry: &Registry<DB, D>) -> Vec<&'static str> {
    let mut names: Vec<_> = registry
        .models("users")
        .iter()
        .map(|m| (m.entry.type_name)().rsplit("::").next().unwrap())
        .collect();
    names.sort();
    names
}

fn main() {
    assert_eq!(<PgUser as Emits>::COLUMNS, &["id", "name"]);
    assert_eq!(<SqliteUser as Emits>::COLUMNS, &["id", "name"]);
    assert_eq!(<BothUser as Emits>::TABLE, "users");

    // Each model is registered with exactly the backends it lists.
    assert_eq!(registered(pg_registry()), ["BothUser", "PgUser"]);
    assert_eq!(registered(sqlite_registry()), ["BothUser", "SqliteUser"]);
}
