use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    accounts (id) {
        id -> Int4,
        login -> Text,
        password_hash -> Text,
        recovery_codes -> Nullable<Text>,
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, PartialEq, Emits)]
#[diesel(table_name = accounts)]
struct Account {
    id: i32,
    login: String,
    #[emits(skip)]
    password_hash: String,
    #[emits(skip)]
    #[diesel(column_name = recovery_codes)]
    codes: Option<String>,
}

fn main() {
    assert_eq!(Account::SKIPPED, ["password_hash", "recovery_codes"]);
    let mut account = Account {
        id: 1,
        login: "ada".into(),
        password_hash: "$argon2id$...".into(),
        codes: Some("1234-5678".into()),
    };
    account.redact();
    assert_eq!(
        account,
        Account { id: 1, login: "ada".into(), password_hash: String::new(), codes: None }
    );
}
