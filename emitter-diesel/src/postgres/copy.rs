//! `COPY FROM` through the wrapper (`diesel::copy_from(t).from_insertable(..)` and
//! `.from_raw_data(..)`), with an `Insert` event for every copied row.
//!
//! Diesel sends the `COPY` itself and gives a wrapper no way to change its SQL or
//! read its rows, and `COPY` has no `RETURNING`. So for a table with an `Emits`
//! model, the copy runs in a transaction (a savepoint inside one) against a
//! temporary table of the same name and shape, which PostgreSQL's search path
//! finds before the real one (`pg_temp` comes first for tables). The copied rows
//! then move to the real table with `INSERT ... SELECT`, which the wrapper
//! captures as any insert, and the temporary table is dropped. Defaults are taken
//! from the real table (its sequences, identity columns as `nextval` of theirs),
//! so ids come out as a direct `COPY` would give them; triggers and constraints
//! act on the `INSERT`. Tables without a model are copied directly.

use crate::backend::ModelsOf;
use crate::classify::{render_table, table_parts};
use crate::connection::EmittingConnection;
use diesel::connection::{Connection, SimpleConnection};
use diesel::pg::{CopyFromQuery, Pg, PgConnection, PgQueryBuilder};
use diesel::prelude::ExecuteCopyFromDsl;
use diesel::query_builder::{QueryBuilder, QueryFragment};
use diesel::result::QueryResult;
use diesel::sql_types::{Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl, Table};
use emitter_core::Audience;

/// The temporary table's name once the copy has filled it, so that the table's
/// own name reaches the real table again.
const FILLED: &str = "diesel_emitter_copied_rows";

impl<T, A> ExecuteCopyFromDsl<EmittingConnection<PgConnection>> for CopyFromQuery<T, A>
where
    CopyFromQuery<T, A>: ExecuteCopyFromDsl<PgConnection>,
    <CopyFromQuery<T, A> as ExecuteCopyFromDsl<PgConnection>>::Error: From<diesel::result::Error>,
    T: Table + Default + QueryFragment<Pg>,
{
    type Error = <CopyFromQuery<T, A> as ExecuteCopyFromDsl<PgConnection>>::Error;

    fn execute(self, conn: &mut EmittingConnection<PgConnection>) -> Result<usize, Self::Error> {
        let mut builder = PgQueryBuilder::default();
        T::default().to_sql(&mut builder, &Pg)?;
        let table = builder.finish();
        conn.copy_from_captured(&table, |inner| {
            <Self as ExecuteCopyFromDsl<PgConnection>>::execute(self, inner)
        })
    }
}

/// A column of the real table, as the copy's `INSERT ... SELECT` needs it.
#[derive(QueryableByName)]
struct CopiedColumn {
    /// The table's schema-qualified, quoted name (the same on every row).
    #[diesel(sql_type = Text)]
    table: String,
    /// The column's quoted name.
    #[diesel(sql_type = Text)]
    name: String,
    /// `a` or `d` for an identity column (always or by default), else empty.
    #[diesel(sql_type = Text)]
    identity: String,
    /// Set for a generated column, which an `INSERT` may not name.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    generated: bool,
    /// The sequence behind a serial or identity column.
    #[diesel(sql_type = Nullable<Text>)]
    sequence: Option<String>,
}

impl EmittingConnection<PgConnection> {
    /// Runs `copy` (Diesel's own `COPY` on the inner connection) so that the rows it
    /// writes into `table` (rendered, e.g. `"users"`) become events.
    fn copy_from_captured<E>(
        &mut self,
        table: &str,
        copy: impl FnOnce(&mut PgConnection) -> Result<usize, E>,
    ) -> Result<usize, E>
    where
        E: From<diesel::result::Error>,
    {
        let parts = table_parts(table).unwrap_or_default();
        if self.emit_mode() == Audience::Off
            || PgConnection::registry().models_of(&parts).is_empty()
        {
            return copy(&mut self.inner);
        }
        let [name] = parts.as_slice() else {
            // A schema-qualified name bypasses the search path: no table can stand in.
            self.emitter()
                .record_uncaptured_write(table, "COPY into a schema-qualified table");
            return copy(&mut self.inner);
        };
        let columns = self.copied_columns(table)?;
        let Some(real) = columns.first().map(|c| c.table.clone()) else {
            // No such table: let the COPY fail as it would on a plain connection.
            return copy(&mut self.inner);
        };
        let shadow = render_table(std::slice::from_ref(name));
        self.transaction(|conn| {
            let mut setup =
                format!("CREATE TEMP TABLE {shadow} (LIKE {real} INCLUDING DEFAULTS); ");
            for column in columns.iter().filter(|c| !c.identity.is_empty()) {
                if let Some(sequence) = &column.sequence {
                    setup.push_str(&format!(
                        "ALTER TABLE pg_temp.{shadow} ALTER COLUMN {} SET DEFAULT nextval({});",
                        column.name,
                        literal(sequence)
                    ));
                }
            }
            conn.inner.batch_execute(&setup)?;
            let copied = copy(&mut conn.inner)?;
            conn.inner
                .batch_execute(&format!("ALTER TABLE pg_temp.{shadow} RENAME TO {FILLED}"))?;
            let names = columns
                .iter()
                .filter(|c| !c.generated)
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let overriding = if columns.iter().any(|c| c.identity == "a") {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            let inserted = diesel::sql_query(format!(
                "INSERT INTO {shadow} ({names}){overriding} SELECT {names} FROM pg_temp.{FILLED}"
            ))
            .execute(conn)?;
            conn.inner
                .batch_execute(&format!("DROP TABLE pg_temp.{FILLED}"))?;
            // With `pg_temp` placed late in the search path, the copy reached the real
            // table directly and the stand-in stayed empty.
            if inserted != copied {
                conn.emitter().record_uncaptured_write(
                    table,
                    "COPY went past the temporary table (pg_temp late in search_path)",
                );
            }
            Ok(copied)
        })
    }

    fn copied_columns(&mut self, table: &str) -> QueryResult<Vec<CopiedColumn>> {
        diesel::sql_query(
            "SELECT format('%I.%I', n.nspname, c.relname) AS table, \
                    quote_ident(a.attname) AS name, \
                    a.attidentity::text AS identity, \
                    a.attgenerated <> '' AS generated, \
                    pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname) AS sequence \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE c.oid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
        )
        .bind::<Text, _>(table)
        .load(&mut self.inner)
    }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
