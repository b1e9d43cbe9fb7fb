//! MySQL and MariaDB: the registry, row decoding and the table's columns; the
//! capture itself, which cannot append RETURNING, is in `crate::mysql`.

use super::*;
use crate::model::{mysql_registry, MysqlDecode};
use diesel::mysql::{Mysql, MysqlConnection};

impl EmittingBackend for MysqlConnection {
    fn query_builder() -> <Mysql as Backend>::QueryBuilder {
        Default::default()
    }
    fn backend() -> Mysql {
        Mysql
    }
    type CaptureState = crate::mysql::CaptureState;

    // MySQL has no RETURNING, so Diesel never loads rows from a write there.
    const CAPTURE_LOADS: bool = false;

    #[allow(private_interfaces)]
    fn capture_write<T>(
        conn: &mut EmittingConnection<Self>,
        source: &T,
        plan: &Arc<Plan<Mysql, MysqlDecode>>,
    ) -> Option<QueryResult<usize>>
    where
        T: QueryFragment<Mysql> + QueryId,
    {
        Some(crate::mysql::capture_write(conn, source, plan))
    }
}

impl ModelsOf for MysqlConnection {
    type Decode = MysqlDecode;
    fn registry() -> &'static Registry<Mysql, MysqlDecode> {
        mysql_registry()
    }
    // Upserts are told apart by the keys that existed before the statement
    // (see `crate::mysql`), not by a flag in the returned row.
    const INSERTED_FLAG: Option<UpsertFlag> = None;

    fn table_columns(&mut self, table: &str) -> QueryResult<Option<Vec<String>>> {
        use diesel::RunQueryDsl;
        let Some((schema, name)) = crate::classify::schema_and_name(table) else {
            return Ok(None);
        };
        let rows: Vec<ColumnName> = diesel::sql_query(
            "SELECT c.column_name AS name, \
                    EXISTS (SELECT 1 FROM information_schema.tables t \
                            WHERE t.table_schema = COALESCE(?, DATABASE()) AND t.table_name = ?) AS found \
             FROM (SELECT 1) AS one \
             LEFT JOIN information_schema.columns c \
               ON c.table_schema = COALESCE(?, DATABASE()) AND c.table_name = ?",
        )
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(schema.clone())
        .bind::<diesel::sql_types::Text, _>(&name)
        .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(schema)
        .bind::<diesel::sql_types::Text, _>(&name)
        .load(self)?;
        Ok(columns_found(rows))
    }

    // MySQL's column names ignore case.
    fn same_column(have: &str, want: &str) -> bool {
        have.eq_ignore_ascii_case(want)
    }
}

// A MySQL row holds its own copy of its values.
decode_rows!(MysqlConnection, DefaultLoadingMode, MysqlDecode, call: decode, detached: true);
