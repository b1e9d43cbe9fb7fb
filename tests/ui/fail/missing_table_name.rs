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
struct User {
    id: i32,
    name: String,
}

fn main() {}
