//! SQLite: its registry, row decoding (rows borrow the statement, so they are
//! never detached), the table's columns from `pragma_table_info`, and the
//! inserted-row flag of upserts (`rowid = last_insert_rowid()`).

use super::*;
use crate::model::{sqlite_registry, SqliteDecode};
use diesel::connection::SimpleConnection;
use diesel::sql_types::Bool;
use diesel::sqlite::SqliteConnection;

impl EmittingBackend for SqliteConnection {
    fn query_builder() -> diesel::sqlite::SqliteQueryBuilder {
        Default::default()
    }
    fn backend() -> diesel::sqlite::Sqlite {
        diesel::sqlite::Sqlite
    }
    type CaptureState = ();
}

impl ModelsOf for SqliteConnection {
    type Decode = SqliteDecode;
    fn registry() -> &'static Registry<diesel::sqlite::Sqlite, SqliteDecode> {
        sqlite_registry()
    }
    // SQLite evaluates RETURNING as each row is written, so `last_insert_rowid()`
    // equals the row's rowid exactly when this statement inserted it, once the
    // value left over from earlier statements is reset (below).
    const INSERTED_FLAG: Option<UpsertFlag> = Some(UpsertFlag {
        inserted: ", (rowid = last_insert_rowid())",
        row_key: Some(", rowid"),
    });

    fn table_columns(&mut self, table: &str) -> QueryResult<Option<Vec<String>>> {
        use diesel::RunQueryDsl;
        let Some((schema, name)) = crate::classify::schema_and_name(table) else {
            return Ok(None);
        };
        let rows: Vec<ColumnName> = diesel::sql_query(
            "SELECT c.name AS name, \
                    EXISTS (SELECT 1 FROM pragma_table_list t WHERE t.name = ?1 AND (?2 IS NULL OR t.schema = ?2)) AS found \
             FROM (SELECT 1) AS one \
             LEFT JOIN pragma_table_info(?1, ?2) c",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(schema)
        .load(self)?;
        Ok(columns_found(rows))
    }

    // SQLite's names ignore case.
    fn same_column(have: &str, want: &str) -> bool {
        have.eq_ignore_ascii_case(want)
    }

    // A WITHOUT ROWID table has no rowid to compare.
    fn supports_inserted_flag(&mut self, table: &str) -> QueryResult<bool> {
        use diesel::RunQueryDsl;
        let parts = crate::classify::table_parts(table).unwrap_or_default();
        let name = parts.last().cloned().unwrap_or_default();
        let rows: Vec<WithoutRowid> = diesel::sql_query(
            "SELECT COALESCE(MAX(wr), 0) AS without_rowid FROM pragma_table_list WHERE name = ?",
        )
        .bind::<diesel::sql_types::Text, _>(name)
        .load(self)?;
        Ok(!rows.first().is_some_and(|r| r.without_rowid))
    }

    fn before_flagged_upsert(&mut self) -> QueryResult<()> {
        self.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS diesel_emitter_rowid_reset (id INTEGER PRIMARY KEY); \
             INSERT OR REPLACE INTO temp.diesel_emitter_rowid_reset (id) VALUES (-9223372036854775808);",
        )
    }
}

#[derive(diesel::QueryableByName)]
struct WithoutRowid {
    #[diesel(sql_type = Bool)]
    without_rowid: bool,
}

decode_rows!(SqliteConnection, DefaultLoadingMode, SqliteDecode, detached: false);
