//! PostgreSQL specifics: `build_transaction()`, `save_changes` and custom SQL types'
//! metadata.

mod copy;

use crate::connection::EmittingConnection;
use diesel::associations::HasTable;
use diesel::connection::MultiConnectionHelper;
use diesel::dsl::Update;
use diesel::expression::{is_aggregate, MixedAggregates, SelectableExpression, ValidGrouping};
use diesel::pg::{GetPgMetadataCache, Pg, PgConnection, PgMetadataCache, PgMetadataLookup};
use diesel::query_builder::returning::{ReturningQuerySource, UpdateStmt};
use diesel::query_builder::{AsChangeset, IntoUpdateTarget};
use diesel::query_dsl::{LoadQuery, RunQueryDsl, UpdateAndFetchResults};
use diesel::result::QueryResult;
use diesel::sql_types::TypeMetadata;
use diesel::Table;

impl EmittingConnection<PgConnection> {
    /// Configures a transaction (isolation level, read mode, deferrable), as
    /// `PgConnection::build_transaction` does, with events delivered on commit.
    ///
    /// ```no_run
    /// # use diesel_emitter::EmittingConnection;
    /// # fn f(conn: &mut EmittingConnection<diesel::PgConnection>) -> diesel::QueryResult<()> {
    /// conn.build_transaction().serializable().read_write().run(|conn| {
    ///     // writes here emit when the transaction commits
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub fn build_transaction(&mut self) -> TransactionBuilder<'_> {
        TransactionBuilder {
            conn: self,
            isolation: None,
            read_mode: None,
            deferrable: None,
        }
    }
}

/// A PostgreSQL transaction with explicit settings; from
/// [`EmittingConnection::build_transaction`].
///
/// ```no_run
/// # use diesel_emitter::EmittingConnection;
/// # fn f(conn: &mut EmittingConnection<diesel::PgConnection>) -> diesel::QueryResult<()> {
/// let builder = conn.build_transaction().repeatable_read().read_only();
/// assert_eq!(builder.sql(), "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY");
/// builder.run(|conn| {
///     // reads and writes here see one snapshot
///     Ok(())
/// })
/// # }
/// ```
#[must_use = "a transaction builder does nothing until `.run(..)`"]
pub struct TransactionBuilder<'a> {
    conn: &'a mut EmittingConnection<PgConnection>,
    isolation: Option<&'static str>,
    read_mode: Option<&'static str>,
    deferrable: Option<&'static str>,
}

impl TransactionBuilder<'_> {
    /// `ISOLATION LEVEL READ COMMITTED`.
    pub fn read_committed(mut self) -> Self {
        self.isolation = Some(" ISOLATION LEVEL READ COMMITTED");
        self
    }
    /// `ISOLATION LEVEL REPEATABLE READ`.
    pub fn repeatable_read(mut self) -> Self {
        self.isolation = Some(" ISOLATION LEVEL REPEATABLE READ");
        self
    }
    /// `ISOLATION LEVEL SERIALIZABLE`.
    pub fn serializable(mut self) -> Self {
        self.isolation = Some(" ISOLATION LEVEL SERIALIZABLE");
        self
    }
    /// `READ ONLY`.
    pub fn read_only(mut self) -> Self {
        self.read_mode = Some(" READ ONLY");
        self
    }
    /// `READ WRITE`.
    pub fn read_write(mut self) -> Self {
        self.read_mode = Some(" READ WRITE");
        self
    }
    /// `DEFERRABLE`.
    pub fn deferrable(mut self) -> Self {
        self.deferrable = Some(" DEFERRABLE");
        self
    }
    /// `NOT DEFERRABLE`.
    pub fn not_deferrable(mut self) -> Self {
        self.deferrable = Some(" NOT DEFERRABLE");
        self
    }

    /// The `BEGIN` statement this builder runs.
    pub fn sql(&self) -> String {
        let parts = [self.isolation, self.read_mode, self.deferrable];
        let mut sql = String::from("BEGIN TRANSACTION");
        sql.extend(parts.into_iter().flatten());
        sql
    }

    /// Runs `f` in the transaction: commits (and delivers its events) on `Ok`,
    /// rolls back on `Err`.
    pub fn run<T, E, F>(self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut EmittingConnection<PgConnection>) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        let sql = self.sql();
        self.conn.transaction_begun_with(&sql, f)
    }
}

impl<'b, Changes, Output> UpdateAndFetchResults<Changes, Output>
    for EmittingConnection<PgConnection>
where
    Changes: Copy + AsChangeset<Target = <Changes as HasTable>::Table> + IntoUpdateTarget,
    Update<Changes, Changes>: LoadQuery<'b, EmittingConnection<PgConnection>, Output>,
    <Changes::Table as Table>::AllColumns:
        ValidGrouping<()> + SelectableExpression<ReturningQuerySource<UpdateStmt, Changes::Table>>,
    <<Changes::Table as Table>::AllColumns as ValidGrouping<()>>::IsAggregate:
        MixedAggregates<is_aggregate::No, Output = is_aggregate::No>,
{
    fn update_and_fetch(&mut self, changeset: Changes) -> QueryResult<Output> {
        diesel::update(changeset).set(changeset).get_result(self)
    }
}

/// Custom SQL types (a PostgreSQL `enum`, a composite type) look their OIDs up
/// through the connection; the wrapper shares the inner connection's cache, so a
/// type looked up once is known to both.
impl GetPgMetadataCache for EmittingConnection<PgConnection> {
    fn get_metadata_cache(&mut self) -> &mut PgMetadataCache {
        self.inner.get_metadata_cache()
    }
}

/// `#[derive(diesel::MultiConnection)]` enums may hold the wrapper. Statements run
/// on the inner connection, which hands itself out as the type metadata lookup.
impl MultiConnectionHelper for EmittingConnection<PgConnection> {
    fn to_any<'a>(
        lookup: &mut <Pg as TypeMetadata>::MetadataLookup,
    ) -> &mut (dyn std::any::Any + 'a) {
        PgConnection::to_any(lookup)
    }

    fn from_any(
        lookup: &mut dyn std::any::Any,
    ) -> Option<&mut <Pg as TypeMetadata>::MetadataLookup> {
        if lookup.is::<Self>() {
            return lookup
                .downcast_mut::<Self>()
                .map(|conn| conn as &mut dyn PgMetadataLookup);
        }
        PgConnection::from_any(lookup)
    }
}
