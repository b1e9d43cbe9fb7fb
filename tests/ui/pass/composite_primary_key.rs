use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    memberships (user_id, group_id) {
        user_id -> Int4,
        group_id -> Int4,
        role -> Text,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = memberships, primary_key(user_id, group_id))]
struct Membership {
    user_id: i32,
    group_id: i32,
    role: String,
}

fn main() {
    assert_eq!(<Membership as Emits>::TABLE, "memberships");
    assert_eq!(
        <Membership as Emits>::COLUMNS,
        &["user_id", "group_id", "role"]
    );
    assert_eq!(<Membership as Emits>::PRIMARY_KEY, &["user_id", "group_id"]);
}
