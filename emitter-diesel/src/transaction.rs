//! [`EmittingTransactionManager`]: the inner connection's transaction manager,
//! with the event frames kept in step.

use crate::backend::EmittingBackend;
use crate::connection::EmittingConnection;
use crate::frames::Frames;
use diesel::connection::{Connection, TransactionManager, TransactionManagerStatus};
use diesel::result::QueryResult;
use std::marker::PhantomData;

/// Delegates to `C`'s transaction manager and delivers a transaction's events only
/// when its outermost level commits.
pub struct EmittingTransactionManager<C>(PhantomData<C>);

type Inner<C> = <C as Connection>::TransactionManager;

impl<C: EmittingBackend> TransactionManager<EmittingConnection<C>>
    for EmittingTransactionManager<C>
{
    type TransactionStateData = Frames;

    fn begin_transaction(conn: &mut EmittingConnection<C>) -> QueryResult<()> {
        let result = Inner::<C>::begin_transaction(&mut conn.inner);
        conn.align_frames(false);
        result
    }

    fn rollback_transaction(conn: &mut EmittingConnection<C>) -> QueryResult<()> {
        let result = Inner::<C>::rollback_transaction(&mut conn.inner);
        conn.align_frames(false);
        result
    }

    fn commit_transaction(conn: &mut EmittingConnection<C>) -> QueryResult<()> {
        let result = Inner::<C>::commit_transaction(&mut conn.inner);
        conn.align_frames(result.is_ok());
        result
    }

    fn transaction_manager_status_mut(
        conn: &mut EmittingConnection<C>,
    ) -> &mut TransactionManagerStatus {
        Inner::<C>::transaction_manager_status_mut(&mut conn.inner)
    }
}
