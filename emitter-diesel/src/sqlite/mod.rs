//! SQLite specifics: `immediate_transaction`, `exclusive_transaction`, `save_changes`
//! and batch inserts that return rows.

mod batch;

use crate::connection::EmittingConnection;
use diesel::connection::{MultiConnectionHelper, WithMetadataLookup};
use diesel::sql_types::TypeMetadata;
use diesel::sqlite::{Sqlite, SqliteConnection};

impl EmittingConnection<SqliteConnection> {
    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, as
    /// `SqliteConnection::immediate_transaction` does, with events delivered on commit.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let rx = emitter.on::<User>().subscribe();
    /// conn.immediate_transaction(|conn| {
    ///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)
    /// })?;
    /// assert_eq!(rx.recv()?.action, Action::Insert);
    /// # Ok(())
    /// # }
    /// ```
    pub fn immediate_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction_begun_with("BEGIN IMMEDIATE", f)
    }

    /// Runs `f` in a `BEGIN EXCLUSIVE` transaction, with events delivered on commit.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let rx = emitter.on::<User>().subscribe();
    /// let failed: QueryResult<()> = conn.exclusive_transaction(|conn| {
    ///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)?;
    ///     Err(diesel::result::Error::RollbackTransaction)
    /// });
    /// assert!(failed.is_err());
    /// assert!(rx.try_recv().is_err(), "rolled back: no event");
    /// # Ok(())
    /// # }
    /// ```
    pub fn exclusive_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        self.transaction_begun_with("BEGIN EXCLUSIVE", f)
    }
}

update_then_find!(SqliteConnection);

/// `#[derive(diesel::MultiConnection)]` enums may hold the wrapper: SQLite's type
/// metadata needs no lookup, so the inner connection's serves.
impl MultiConnectionHelper for EmittingConnection<SqliteConnection> {
    fn to_any<'a>(
        lookup: &mut <Sqlite as TypeMetadata>::MetadataLookup,
    ) -> &mut (dyn std::any::Any + 'a) {
        SqliteConnection::to_any(lookup)
    }

    fn from_any(
        lookup: &mut dyn std::any::Any,
    ) -> Option<&mut <Sqlite as TypeMetadata>::MetadataLookup> {
        SqliteConnection::from_any(lookup)
    }
}

impl WithMetadataLookup for EmittingConnection<SqliteConnection> {
    fn metadata_lookup(&mut self) -> &mut <Sqlite as TypeMetadata>::MetadataLookup {
        self.inner.metadata_lookup()
    }
}
