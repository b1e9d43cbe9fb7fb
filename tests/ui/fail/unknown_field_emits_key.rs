use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    accounts (id) {
        id -> Int4,
        secret -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = accounts)]
struct Account {
    id: i32,
    #[emits(hide)]
    secret: String,
}

fn main() {}
