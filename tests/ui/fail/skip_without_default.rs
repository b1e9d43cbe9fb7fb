use diesel::prelude::*;
use diesel_emitter::prelude::*;
use serde::{Deserialize, Serialize};

diesel::table! {
    accounts (id) {
        id -> Int4,
        secret -> Text,
    }
}

/// Loads from a text column but has no `Default`.
#[derive(Serialize, Deserialize, Clone, Debug, diesel::deserialize::FromSqlRow)]
struct Secret(String);

impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::sqlite::Sqlite> for Secret {
    fn from_sql(bytes: diesel::sqlite::SqliteValue<'_, '_, '_>) -> diesel::deserialize::Result<Self> {
        <String as diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::sqlite::Sqlite>>::from_sql(bytes).map(Secret)
    }
}

#[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
#[diesel(table_name = accounts, check_for_backend(diesel::sqlite::Sqlite))]
struct Account {
    id: i32,
    #[emits(skip)]
    secret: Secret,
}

fn main() {}
