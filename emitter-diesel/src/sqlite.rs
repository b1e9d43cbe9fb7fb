//! SQLite specifics: `immediate_transaction`, `exclusive_transaction` and `save_changes`.

use crate::connection::EmittingConnection;
use diesel::associations::{HasTable, Identifiable};
use diesel::dsl::{Find, Update};
use diesel::expression::{is_aggregate, MixedAggregates, ValidGrouping};
use diesel::query_builder::{AsChangeset, IntoUpdateTarget};
use diesel::query_dsl::methods::{ExecuteDsl, FindDsl};
use diesel::query_dsl::{LoadQuery, RunQueryDsl, UpdateAndFetchResults};
use diesel::result::QueryResult;
use diesel::sqlite::SqliteConnection;
use diesel::Table;

impl EmittingConnection<SqliteConnection> {
    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, as
    /// `SqliteConnection::immediate_transaction` does, with events delivered on commit.
    pub fn immediate_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction_begun_with("BEGIN IMMEDIATE", f)
    }

    /// Runs `f` in a `BEGIN EXCLUSIVE` transaction, with events delivered on commit.
    pub fn exclusive_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction_begun_with("BEGIN EXCLUSIVE", f)
    }
}

impl<'b, Changes, Output> UpdateAndFetchResults<Changes, Output>
    for EmittingConnection<SqliteConnection>
where
    Changes: Copy + Identifiable,
    Changes: AsChangeset<Target = <Changes as HasTable>::Table> + IntoUpdateTarget,
    Changes::Table: FindDsl<Changes::Id>,
    Update<Changes, Changes>: ExecuteDsl<EmittingConnection<SqliteConnection>>,
    Find<Changes::Table, Changes::Id>: LoadQuery<'b, EmittingConnection<SqliteConnection>, Output>,
    <Changes::Table as Table>::AllColumns: ValidGrouping<()>,
    <<Changes::Table as Table>::AllColumns as ValidGrouping<()>>::IsAggregate:
        MixedAggregates<is_aggregate::No, Output = is_aggregate::No>,
{
    fn update_and_fetch(&mut self, changeset: Changes) -> QueryResult<Output> {
        diesel::update(changeset).set(changeset).execute(self)?;
        Changes::table().find(changeset.id()).get_result(self)
    }
}
