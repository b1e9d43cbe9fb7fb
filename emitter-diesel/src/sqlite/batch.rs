//! Batch inserts that return rows: [`EmittingConnection::batch_get_results`].
//!
//! Diesel runs a SQLite batch insert that returns rows as one single-row
//! `INSERT ... RETURNING` per record inside a transaction, and implements that as
//! `LoadQuery` for `SqliteConnection` alone. A third-party connection cannot have
//! the same impl: Diesel's blanket `LoadQuery` impl might apply to the same types
//! (error E0119), and only Diesel itself may rule that out. So the wrapper offers
//! the same statement as a method of its own; each single-row statement goes
//! through its capture like any other write.

use crate::connection::EmittingConnection;
use diesel::connection::Connection;
use diesel::query_builder::returning::ReturningClause;
use diesel::query_builder::{BatchInsert, InsertStatement, QueryId, ValuesClause};
use diesel::query_dsl::LoadQuery;
use diesel::result::{Error, QueryResult};
use diesel::sqlite::SqliteConnection;
use diesel::Table;

/// `insert_into(t).values(&vec).returning(..)`: Diesel's type of a batch insert
/// with a `RETURNING` clause.
type BatchReturning<V, T, QId, Op, Ret, const STATIC_QUERY_ID: bool> = InsertStatement<
    T,
    BatchInsert<Vec<ValuesClause<V, T>>, T, QId, STATIC_QUERY_ID>,
    Op,
    ReturningClause<Ret>,
>;

impl EmittingConnection<SqliteConnection> {
    /// Runs a batch insert with a `RETURNING` clause and returns its rows, what
    /// `insert_into(t).values(&vec).returning(..).get_results(conn)` does on a plain
    /// `SqliteConnection` (one `INSERT ... RETURNING` per record, in one
    /// transaction). Every inserted row emits an event.
    ///
    /// On a plain `SqliteConnection`, `get_results` takes such a statement directly;
    /// through the wrapper it does not compile, for the reason in this module's
    /// docs. Inserts of one record, and batch inserts run with `execute`, need
    /// nothing special.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let rx = emitter.on::<User>().subscribe();
    /// let names = vec![users::name.eq("Ada"), users::name.eq("Grace")];
    /// let ids: Vec<i32> = conn.batch_get_results(
    ///     diesel::insert_into(users::table).values(&names).returning(users::id),
    /// )?;
    /// assert_eq!(ids, [1, 2]);
    /// assert_eq!(rx.recv()?.row.name, "Ada");
    /// assert_eq!(rx.recv()?.row.name, "Grace");
    /// # Ok(())
    /// # }
    /// ```
    pub fn batch_get_results<'query, V, T, QId, Op, Ret, U, const STATIC_QUERY_ID: bool>(
        &mut self,
        statement: BatchReturning<V, T, QId, Op, Ret, STATIC_QUERY_ID>,
    ) -> QueryResult<Vec<U>>
    where
        T: Table + Copy + QueryId + 'static,
        Op: Copy,
        Ret: Copy,
        InsertStatement<T, ValuesClause<V, T>, Op, ReturningClause<Ret>>:
            LoadQuery<'query, Self, U>,
    {
        let InsertStatement {
            operator,
            target,
            records,
            returning,
            ..
        } = statement;
        self.transaction(|conn| {
            let mut rows = Vec::with_capacity(records.values.len());
            for record in records.values {
                let row = InsertStatement::new(target, record, operator, returning)
                    .internal_load(conn)?
                    .next()
                    .ok_or(Error::NotFound)??;
                rows.push(row);
            }
            Ok(rows)
        })
    }
}
