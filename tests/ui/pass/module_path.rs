use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

mod schema {
    diesel::table! {
        users (id) {
            id -> Int4,
            name -> Text,
        }
    }
}

mod models {
    use super::*;

    #[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
    #[diesel(table_name = crate::schema::users)]
    pub struct User {
        pub id: i32,
        pub name: String,
    }
}

fn main() {
    assert_eq!(<models::User as Emits>::TABLE, "users");
    assert_eq!(<models::User as Emits>::COLUMNS, &["id", "name"]);
    assert_eq!(<models::User as Emits>::PRIMARY_KEY, &["id"]);
}
