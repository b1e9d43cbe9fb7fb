//! How an [`EmittingConnection`]'s event frames follow the inner connection's
//! transactions: reading the depth, aligning the frames after a begin, commit or
//! rollback, writing the outbox at the outermost commit, and transactions begun
//! with backend-specific SQL. [`EmittingTransactionManager`] drives these.

use super::EmittingConnection;
use crate::backend::EmittingBackend;
use crate::transaction::EmittingTransactionManager;
use diesel::connection::{Connection, TransactionManager};
use diesel::result::QueryResult;
use emitter_core::integration::PreparedCommit;

impl<C: EmittingBackend> EmittingConnection<C> {
    pub(crate) fn depth(&mut self) -> Option<usize> {
        let status = C::TransactionManager::transaction_manager_status_mut(&mut self.inner);
        status
            .transaction_depth()
            .ok()
            .map(|d| d.map_or(0, |d| d.get() as usize))
    }

    /// At the outermost commit with the outbox on: numbers the transaction's events
    /// and writes those bound for the broker into the outbox, inside the transaction.
    pub(crate) fn write_outbox(&mut self) -> QueryResult<Option<PreparedCommit>> {
        // An aborted PostgreSQL transaction cannot write the outbox, and its COMMIT
        // rolls back: nothing to make durable, and no error a plain connection
        // would not give either.
        if self.emitter.outbox_table().is_none()
            || self.frames.pending() == 0
            || self.frames.aborted()
            || self.depth() != Some(1)
        {
            return Ok(None);
        }
        let mut prepared = self.emitter.prepare(self.frames.take_all());
        let entries = prepared.outbox_entries();
        if let (Some(table), false) = (self.emitter.outbox_table(), entries.is_empty()) {
            self.inner.write_entries(table, &entries)?;
        }
        Ok(Some(prepared))
    }

    pub(crate) fn align_frames(&mut self, committed: bool) {
        // A manager in error keeps no transaction we could still commit.
        let depth = self.depth().unwrap_or(0);
        self.frames.align(depth, committed, &self.emitter);
    }

    /// Runs `f` in a transaction begun with `begin_sql` (e.g. `BEGIN IMMEDIATE`).
    pub(crate) fn transaction_begun_with<T, E, F>(&mut self, begin_sql: &str, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
        C: Connection<TransactionManager = diesel::connection::AnsiTransactionManager>,
    {
        diesel::connection::AnsiTransactionManager::begin_transaction_sql(
            &mut self.inner,
            begin_sql,
        )?;
        self.align_frames(false);
        match f(self) {
            Ok(value) => {
                EmittingTransactionManager::<C>::commit_transaction(self)?;
                Ok(value)
            }
            Err(user_error) => match EmittingTransactionManager::<C>::rollback_transaction(self) {
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(user_error),
                Err(rollback_error) => Err(rollback_error.into()),
            },
        }
    }
}
