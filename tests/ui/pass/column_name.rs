use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    users (id) {
        id -> Int4,
        name -> Text,
        email -> Text,
        // The schema renames a column; COLUMNS must hold the database's name.
        #[sql_name = "type"]
        kind -> Text,
        active -> Bool,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User {
    id: i32,
    #[diesel(column_name = email)]
    mail: String,
    name: String,
    #[diesel(column_name = "kind")]
    role: String,
    #[diesel(treat_none_as_null = true, column_name = active)]
    enabled: bool,
}

fn main() {
    assert_eq!(<User as Emits>::TABLE, "users");
    assert_eq!(
        <User as Emits>::COLUMNS,
        &["id", "email", "name", "type", "active"]
    );
    assert_eq!(<User as Emits>::PRIMARY_KEY, &["id"]);
}
