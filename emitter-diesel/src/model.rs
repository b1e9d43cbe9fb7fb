//! The registry of `Emits` models, per backend.
//!
//! `#[derive(Emits)]` submits one [`ModelEntry`] per enabled backend through
//! `inventory`, so the connection can find, from a statement's table name alone, the
//! models to capture and how to decode their rows, with no registration call.

use diesel::backend::Backend;
use diesel::deserialize::FromSqlRow;
use diesel::dsl::SqlTypeOf;
use diesel::expression::Selectable;
use diesel::query_builder::{QueryBuilder, QueryFragment};
use diesel::result::QueryResult;
use diesel::row::Row;
use emitter_core::integration::PendingEvent;
use emitter_core::{Action, Audience, Emits};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// What the connection knows about one `Emits` model on backend `DB`.
///
/// `D` is the backend's decode function type: a function pointer over the concrete
/// row type of the backend's connection.
pub struct ModelEntry<DB, D: 'static> {
    /// The model's table, as [`Emits::TABLE`].
    pub table: &'static str,
    /// The model's columns, as [`Emits::COLUMNS`]; one result field each.
    pub columns: &'static [&'static str],
    /// The model's Rust type name, for logs.
    pub type_name: fn() -> &'static str,
    /// Renders the model's select clause, appended to a write as its RETURNING list.
    pub render_returning: fn() -> QueryResult<String>,
    /// Renders the table as Diesel writes it in statements (`"users"`,
    /// `"app"."users"`, or the `sql_name` of a renamed table).
    pub render_table: fn() -> QueryResult<String>,
    /// Decodes the model from `range` of a row and wraps it as a pending event.
    pub decode: D,
    _backend: std::marker::PhantomData<fn() -> DB>,
}

/// Arguments of a decode: which fields, which action, which columns changed, where it goes.
pub struct DecodeArgs<'a> {
    /// The fields of the row holding this model's columns.
    pub range: Range<usize>,
    /// The action the event will carry.
    pub action: Action,
    /// The assigned columns.
    pub changed: &'a Arc<[&'static str]>,
    /// The emit mode in force when the statement ran.
    pub emit: Audience,
}

/// A model that can be captured on backend `DB`: a Diesel model with `Selectable`
/// and `Queryable` (the derive of `Emits` requires nothing else).
pub trait Capturable<DB: Backend>:
    Emits + Selectable<DB> + FromSqlRow<SqlTypeOf<Self::SelectExpression>, DB>
where
    Self::SelectExpression: QueryFragment<DB>,
{
}

impl<M, DB> Capturable<DB> for M
where
    DB: Backend,
    M: Emits + Selectable<DB> + FromSqlRow<SqlTypeOf<M::SelectExpression>, DB>,
    M::SelectExpression: QueryFragment<DB>,
{
}

fn render_returning<M, DB>() -> QueryResult<String>
where
    DB: Backend + Default,
    DB::QueryBuilder: Default,
    M: Capturable<DB>,
    M::SelectExpression: QueryFragment<DB>,
{
    let mut builder = DB::QueryBuilder::default();
    M::construct_selection().to_sql(&mut builder, &DB::default())?;
    Ok(builder.finish())
}

fn render_table<T, DB>() -> QueryResult<String>
where
    DB: Backend + Default,
    DB::QueryBuilder: Default,
    T: QueryFragment<DB> + Default,
{
    let mut builder = DB::QueryBuilder::default();
    T::default().to_sql(&mut builder, &DB::default())?;
    Ok(builder.finish())
}

fn decode_row<'a, M, DB, R>(
    row: &R,
    args: DecodeArgs<'_>,
) -> diesel::deserialize::Result<PendingEvent>
where
    DB: Backend,
    M: Capturable<DB>,
    M::SelectExpression: QueryFragment<DB>,
    R: Row<'a, DB>,
{
    let part = row.partial_row(args.range);
    let model = <M as FromSqlRow<SqlTypeOf<M::SelectExpression>, DB>>::build_from_row(&part)?;
    Ok(PendingEvent::new(
        args.action,
        model,
        args.changed.clone(),
        args.emit,
    ))
}

/// A registered model with its select clause rendered once.
pub struct Registered<DB: 'static, D: 'static> {
    /// The model.
    pub entry: &'static ModelEntry<DB, D>,
    /// Its select clause, or why it could not be rendered.
    pub returning: Result<String, String>,
}

/// Models by the table name as statements spell it (its parts, unquoted: `["users"]`,
/// `["app", "users"]`), with the migrations table always absent.
pub struct Registry<DB: 'static, D: 'static> {
    by_table: HashMap<Vec<String>, Vec<Registered<DB, D>>>,
}

impl<DB, D> Registry<DB, D> {
    pub(crate) fn build(entries: impl Iterator<Item = &'static ModelEntry<DB, D>>) -> Self {
        let mut by_table: HashMap<Vec<String>, Vec<Registered<DB, D>>> = HashMap::new();
        for entry in entries {
            let name = match (entry.render_table)() {
                Ok(sql) => crate::classify::table_parts(&sql),
                Err(_) => None,
            };
            let Some(name) = name else {
                tracing::error!(
                    model = (entry.type_name)(),
                    "cannot render the model's table; its writes are not captured"
                );
                continue;
            };
            if name
                .last()
                .is_some_and(|t| t == "__diesel_schema_migrations")
            {
                continue;
            }
            let returning = (entry.render_returning)().map_err(|e| e.to_string());
            by_table
                .entry(name)
                .or_default()
                .push(Registered { entry, returning });
        }
        // Inventory's order is unspecified; sort for a stable RETURNING list.
        for models in by_table.values_mut() {
            models.sort_by_key(|m| (m.entry.type_name)());
        }
        Registry { by_table }
    }

    /// The models of the unqualified table `table`; empty when no model emits for it.
    pub fn models(&self, table: &str) -> &[Registered<DB, D>] {
        self.models_of(&[table.to_owned()])
    }

    /// The tables that have models, as name parts.
    pub fn tables(&self) -> impl Iterator<Item = &[String]> {
        self.by_table.keys().map(Vec::as_slice)
    }

    /// The models of the table named by `parts` (schema-qualified or not).
    pub fn models_of(&self, parts: &[String]) -> &[Registered<DB, D>] {
        self.by_table.get(parts).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(feature = "postgres")]
pub use self::pg::*;
#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use diesel::connection::{DefaultLoadingMode, LoadConnection};
    use diesel::pg::{Pg, PgConnection};

    /// The row type of `PgConnection` (the same in both loading modes).
    pub type PgRow = <PgConnection as LoadConnection<DefaultLoadingMode>>::Row<'static, 'static>;
    /// Decodes a model from a PostgreSQL row.
    pub type PgDecode = fn(&PgRow, DecodeArgs<'_>) -> diesel::deserialize::Result<PendingEvent>;
    /// A model registered for PostgreSQL.
    pub type PgModel = ModelEntry<Pg, PgDecode>;

    impl PgModel {
        /// The entry of model `M` on table `T`; used by `#[derive(Emits)]`.
        pub const fn of<M: Capturable<Pg>, T: QueryFragment<Pg> + Default>() -> Self
        where
            M::SelectExpression: QueryFragment<Pg>,
        {
            ModelEntry {
                table: M::TABLE,
                columns: M::COLUMNS,
                type_name: std::any::type_name::<M>,
                render_returning: render_returning::<M, Pg>,
                render_table: render_table::<T, Pg>,
                decode: decode_row::<M, Pg, PgRow>,
                _backend: std::marker::PhantomData,
            }
        }
    }

    inventory::collect!(PgModel);

    /// Every model registered for PostgreSQL.
    pub fn pg_registry() -> &'static Registry<Pg, PgDecode> {
        static REGISTRY: std::sync::OnceLock<Registry<Pg, PgDecode>> = std::sync::OnceLock::new();
        REGISTRY.get_or_init(|| Registry::build(inventory::iter::<PgModel>.into_iter()))
    }
}

#[cfg(feature = "sqlite")]
pub use self::sqlite::*;
#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diesel::connection::{DefaultLoadingMode, LoadConnection};
    use diesel::sqlite::{Sqlite, SqliteConnection};

    /// The row type of `SqliteConnection`.
    pub type SqliteRow<'a, 'b> =
        <SqliteConnection as LoadConnection<DefaultLoadingMode>>::Row<'a, 'b>;
    /// Decodes a model from a SQLite row.
    pub type SqliteDecode = for<'a, 'b, 'r> fn(
        &'r SqliteRow<'a, 'b>,
        DecodeArgs<'_>,
    ) -> diesel::deserialize::Result<PendingEvent>;
    /// A model registered for SQLite.
    pub type SqliteModel = ModelEntry<Sqlite, SqliteDecode>;

    fn decode_sqlite<'a, 'b, 'r, M: Capturable<Sqlite>>(
        row: &'r SqliteRow<'a, 'b>,
        args: DecodeArgs<'_>,
    ) -> diesel::deserialize::Result<PendingEvent>
    where
        M::SelectExpression: QueryFragment<Sqlite>,
    {
        decode_row::<M, Sqlite, SqliteRow<'a, 'b>>(row, args)
    }

    impl SqliteModel {
        /// The entry of model `M` on table `T`; used by `#[derive(Emits)]`.
        pub const fn of<M: Capturable<Sqlite>, T: QueryFragment<Sqlite> + Default>() -> Self
        where
            M::SelectExpression: QueryFragment<Sqlite>,
        {
            ModelEntry {
                table: M::TABLE,
                columns: M::COLUMNS,
                type_name: std::any::type_name::<M>,
                render_returning: render_returning::<M, Sqlite>,
                render_table: render_table::<T, Sqlite>,
                decode: decode_sqlite::<M>,
                _backend: std::marker::PhantomData,
            }
        }
    }

    inventory::collect!(SqliteModel);

    /// Every model registered for SQLite.
    pub fn sqlite_registry() -> &'static Registry<Sqlite, SqliteDecode> {
        static REGISTRY: std::sync::OnceLock<Registry<Sqlite, SqliteDecode>> =
            std::sync::OnceLock::new();
        REGISTRY.get_or_init(|| Registry::build(inventory::iter::<SqliteModel>.into_iter()))
    }
}

#[cfg(feature = "mysql")]
pub use self::mysql::*;
#[cfg(feature = "mysql")]
mod mysql {
    use super::*;
    use diesel::connection::{DefaultLoadingMode, LoadConnection};
    use diesel::mysql::{Mysql, MysqlConnection};
    use diesel::Table;

    /// The row type of `MysqlConnection`.
    pub type MysqlRow =
        <MysqlConnection as LoadConnection<DefaultLoadingMode>>::Row<'static, 'static>;

    /// How a model is read on MySQL: its decode function, and its table's primary
    /// key, by which rows are locked and read back (MySQL has no RETURNING).
    #[derive(Clone, Copy)]
    pub struct MysqlDecode {
        /// Decodes the model from a MySQL row.
        pub decode: fn(&MysqlRow, DecodeArgs<'_>) -> diesel::deserialize::Result<PendingEvent>,
        /// Renders the table's primary key columns as a select list.
        pub render_key: fn() -> QueryResult<String>,
        /// Loads the rows of a query that selects exactly the model's columns,
        /// typed by the model.
        pub load: MysqlLoad,
    }

    /// Calls `f` with each row of `query`, read with the model's SQL types: the
    /// types Diesel reads the model with everywhere else.
    fn load_typed<M>(
        conn: &mut MysqlConnection,
        query: crate::mysql::RawQuery,
        f: &mut dyn FnMut(&MysqlRow),
    ) -> QueryResult<usize>
    where
        M: Capturable<Mysql>,
        M::SelectExpression: QueryFragment<Mysql>,
        Mysql: diesel::expression::QueryMetadata<SqlTypeOf<M::SelectExpression>>,
    {
        let query = crate::mysql::Typed::<SqlTypeOf<M::SelectExpression>>::new(query);
        let mut count = 0;
        // One row at a time: see `mysql::each_row`.
        for row in LoadConnection::<DefaultLoadingMode>::load(conn, query)? {
            f(&row?);
            count += 1;
        }
        Ok(count)
    }

    /// Calls its function with each row of its query, read as the model's columns.
    pub type MysqlLoad = fn(
        &mut MysqlConnection,
        crate::mysql::RawQuery,
        &mut dyn FnMut(&MysqlRow),
    ) -> QueryResult<usize>;

    /// A model registered for MySQL.
    pub type MysqlModel = ModelEntry<Mysql, MysqlDecode>;

    fn render_key<T>() -> QueryResult<String>
    where
        T: Table + Default,
        T::PrimaryKey: QueryFragment<Mysql>,
    {
        let mut builder = <Mysql as Backend>::QueryBuilder::default();
        T::default().primary_key().to_sql(&mut builder, &Mysql)?;
        Ok(builder.finish())
    }

    impl MysqlModel {
        /// The entry of model `M` on table `T`; used by `#[derive(Emits)]`.
        pub const fn of<M: Capturable<Mysql>, T>() -> Self
        where
            M::SelectExpression: QueryFragment<Mysql>,
            Mysql: diesel::expression::QueryMetadata<SqlTypeOf<M::SelectExpression>>,
            T: Table + QueryFragment<Mysql> + Default,
            T::PrimaryKey: QueryFragment<Mysql>,
        {
            ModelEntry {
                table: M::TABLE,
                columns: M::COLUMNS,
                type_name: std::any::type_name::<M>,
                render_returning: render_returning::<M, Mysql>,
                render_table: render_table::<T, Mysql>,
                decode: MysqlDecode {
                    decode: decode_row::<M, Mysql, MysqlRow>,
                    render_key: render_key::<T>,
                    load: load_typed::<M>,
                },
                _backend: std::marker::PhantomData,
            }
        }
    }

    inventory::collect!(MysqlModel);

    /// Every model registered for MySQL.
    pub fn mysql_registry() -> &'static Registry<Mysql, MysqlDecode> {
        static REGISTRY: std::sync::OnceLock<Registry<Mysql, MysqlDecode>> =
            std::sync::OnceLock::new();
        REGISTRY.get_or_init(|| Registry::build(inventory::iter::<MysqlModel>.into_iter()))
    }
}
