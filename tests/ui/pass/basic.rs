use diesel::prelude::*;
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

fn main() {
    assert_eq!(<User as Emits>::TABLE, "users");
    assert_eq!(<User as Emits>::COLUMNS, &["id", "name", "email", "active"]);
    assert_eq!(<User as Emits>::PRIMARY_KEY, &["id"]);
    assert_eq!(User::column("email"), Some("email"));
}
