use diesel::prelude::*;
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
struct User<N> {
    id: i32,
    name: N,
}

fn main() {}
