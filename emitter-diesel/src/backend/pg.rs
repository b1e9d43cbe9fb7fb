//! PostgreSQL: its registry, row decoding for both loading modes, the table's
//! columns from `pg_attribute`, and the inserted-row flag of upserts (`xmax = 0`,
//! which a partitioned table refuses).

use super::*;
use crate::model::{pg_registry, PgDecode};
use diesel::pg::{PgConnection, PgRowByRowLoadingMode};
use diesel::sql_types::Bool;

impl EmittingBackend for PgConnection {
    fn query_builder() -> diesel::pg::PgQueryBuilder {
        Default::default()
    }
    fn backend() -> diesel::pg::Pg {
        diesel::pg::Pg
    }
    type CaptureState = ();
    const PREPARE_REPEATED_WRITES: bool = true;
}

impl ModelsOf for PgConnection {
    type Decode = PgDecode;
    fn registry() -> &'static Registry<diesel::pg::Pg, PgDecode> {
        pg_registry()
    }
    // An inserted row version has no deleting transaction yet; one written by
    // the DO UPDATE branch carries the updating transaction's id in xmax.
    const INSERTED_FLAG: Option<UpsertFlag> = Some(UpsertFlag {
        inserted: ", (xmax = 0)",
        row_key: None,
    });
    const FAILED_STATEMENT_ABORTS_TRANSACTION: bool = true;

    fn table_columns(&mut self, table: &str) -> QueryResult<Option<Vec<String>>> {
        use diesel::RunQueryDsl;
        let rows: Vec<ColumnName> = diesel::sql_query(
            "SELECT a.attname::text AS name, (to_regclass($1) IS NOT NULL) AS found \
             FROM (SELECT 1) AS one \
             LEFT JOIN pg_attribute a ON a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        )
        .bind::<diesel::sql_types::Text, _>(table)
        .load(self)?;
        Ok(columns_found(rows))
    }

    // A partitioned table refuses system columns in RETURNING.
    fn supports_inserted_flag(&mut self, table: &str) -> QueryResult<bool> {
        use diesel::RunQueryDsl;
        let rows: Vec<Partitioned> = diesel::sql_query(
            "SELECT COALESCE((SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)), false) AS partitioned",
        )
        .bind::<diesel::sql_types::Text, _>(table)
        .load(self)?;
        Ok(!rows.first().is_some_and(|r| r.partitioned))
    }
}

#[derive(diesel::QueryableByName)]
struct Partitioned {
    #[diesel(sql_type = Bool)]
    partitioned: bool,
}

decode_rows!(PgConnection, DefaultLoadingMode, PgDecode, detached: true);
decode_rows!(PgConnection, PgRowByRowLoadingMode, PgDecode, detached: true);
