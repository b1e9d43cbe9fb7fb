//! [`Capturing`]: a write statement with the capture columns appended.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use std::marker::PhantomData;
use std::sync::Arc;

/// Renders `statement` followed by `appended` (` RETURNING <columns>`, or
/// `, <columns>` after the statement's own RETURNING list).
///
/// It has a query id of its own: the prepared-statement cache is keyed by it, and
/// sharing the statement's id would hand back the cached statement without the
/// appended columns.
pub(crate) struct Capturing<T, ST> {
    statement: T,
    appended: Arc<str>,
    /// Tells Diesel's statement cache it may keep this statement prepared, which
    /// Diesel itself would not (see `plan::worth_preparing`).
    prepare: bool,
    _sql_type: PhantomData<fn() -> ST>,
}

impl<T: QueryId, ST> Capturing<T, ST> {
    /// `prepare` is honoured only for a statement without a static query id: Diesel
    /// keys those by their SQL text, so one kept prepared can only be run again for
    /// the same text. Diesel keys one with a static id by its type, and a statement
    /// it will not keep may render different SQL under one type (an `IN (?, ?, ...)`
    /// list that grows with its values, on backends without `= ANY`).
    pub(crate) fn new(statement: T, appended: Arc<str>, prepare: bool) -> Self {
        Capturing {
            statement,
            appended,
            prepare: prepare && !T::HAS_STATIC_QUERY_ID,
            _sql_type: PhantomData,
        }
    }
}

/// The query id of a captured write over a statement whose id is `Q`: its own,
/// so the prepared-statement cache never confuses the two.
///
/// Plumbing: it appears in a `QueryId` implementation and is never named by
/// application code.
pub struct CapturingId<Q>(PhantomData<Q>);

impl<T: QueryId, ST> QueryId for Capturing<T, ST> {
    type QueryId = CapturingId<T::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = T::HAS_STATIC_QUERY_ID;
}

impl<T, ST, DB> QueryFragment<DB> for Capturing<T, ST>
where
    DB: Backend,
    T: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.statement.walk_ast(out.reborrow())?;
        out.push_sql(&self.appended);
        Ok(())
    }

    fn is_safe_to_cache_prepared(&self, backend: &DB) -> QueryResult<bool> {
        if self.prepare {
            return Ok(true);
        }
        self.statement.is_safe_to_cache_prepared(backend)
    }
}

impl<T, ST> Query for Capturing<T, ST> {
    type SqlType = ST;
}
