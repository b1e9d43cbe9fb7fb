use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    users (id) {
        id -> Int4,
        name -> Text,
    }
}

#[derive(Queryable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = users)]
struct User(i32, String);

fn main() {}
