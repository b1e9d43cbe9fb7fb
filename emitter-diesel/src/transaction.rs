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
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// use diesel::connection::TransactionManager;
/// use diesel_emitter::EmittingTransactionManager;
///
/// type Manager = EmittingTransactionManager<SqliteConnection>;
/// conn.transaction(|conn| {
///     let depth = Manager::transaction_manager_status_mut(conn).transaction_depth()?;
///     assert_eq!(depth.map(|d| d.get()), Some(1));
///     QueryResult::Ok(())
/// })?;
/// # Ok(())
/// # }
/// ```
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
        let prepared = match conn.write_outbox() {
            Ok(prepared) => prepared,
            Err(error) => {
                // The events could not be made durable, so the data must not be.
                if let Err(rollback) = Inner::<C>::rollback_transaction(&mut conn.inner) {
                    tracing::error!(%rollback, "rollback after a failed outbox write failed");
                }
                conn.align_frames(false);
                return Err(error);
            }
        };
        let result = Inner::<C>::commit_transaction(&mut conn.inner);
        conn.align_frames(result.is_ok());
        if let (Some(prepared), Ok(())) = (prepared, &result) {
            prepared.committed();
        }
        result
    }

    fn transaction_manager_status_mut(
        conn: &mut EmittingConnection<C>,
    ) -> &mut TransactionManagerStatus {
        Inner::<C>::transaction_manager_status_mut(&mut conn.inner)
    }
}
