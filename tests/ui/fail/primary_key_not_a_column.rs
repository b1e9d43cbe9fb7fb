use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    memberships (user_id, group_id) {
        user_id -> Int4,
        group_id -> Int4,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = memberships, primary_key(user_id, group))]
struct Membership {
    user_id: i32,
    group_id: i32,
}

fn main() {}
