use diesel::prelude::*;
use diesel_emitter::connection::model::{pg_registry, sqlite_registry};
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    users (id) {
        id -> Int4,
        name -> Text,
        email -> Text,
        active -> Bool,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    name: String,
    email: String,
    active: bool,
}

// A narrower view of the same table, registered next to the full model.
#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct UserName {
    id: i32,
    name: String,
}

fn main() {
    assert_eq!(<User as Emits>::TABLE, <UserName as Emits>::TABLE);
    assert_eq!(<User as Emits>::COLUMNS, &["id", "name", "email", "active"]);
    assert_eq!(<UserName as Emits>::COLUMNS, &["id", "name"]);

    // Both are registered for the table, once each, with every enabled backend.
    for models in [
        pg_registry().models("users").len(),
        sqlite_registry().models("users").len(),
    ] {
        assert_eq!(models, 2);
    }
}
