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
    _sql_type: PhantomData<fn() -> ST>,
}

impl<T, ST> Capturing<T, ST> {
    pub(crate) fn new(statement: T, appended: Arc<str>) -> Self {
        Capturing {
            statement,
            appended,
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
}

impl<T, ST> Query for Capturing<T, ST> {
    type SqlType = ST;
}
