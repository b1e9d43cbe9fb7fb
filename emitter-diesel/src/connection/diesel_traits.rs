//! Diesel's connection traits for [`EmittingConnection`]: statements run through
//! the inner connection, and the rows of captured writes are decoded into events
//! and recorded in the open transaction's frame.

use super::{EmittingConnection, PlanOf};
use crate::backend::{DecodeRows, EmittingBackend};
use crate::cursor::EmittingCursor;
use crate::frames::Frames;
use crate::model::ModelEntry;
use crate::returning::Capturing;
use crate::transaction::EmittingTransactionManager;
use diesel::connection::{
    CacheSize, Connection, ConnectionSealed, DefaultLoadingMode, Instrumentation, LoadConnection,
    SimpleConnection, TransactionManager,
};
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::result::{ConnectionResult, QueryResult};
use diesel::row::Row;
use diesel::sql_types::Untyped;
use emitter_core::{Emit, Emitter, PendingEvent};

impl<C: EmittingBackend> EmittingConnection<C> {
    /// Readies a captured statement: the backend's upsert preparation when the
    /// plan reads the inserted-row flag. Returns the transaction depth the
    /// statement runs at (a statement never changes it).
    fn prepare_capture(&mut self, plan: &PlanOf<C>) -> QueryResult<usize> {
        if plan.inserted_flag {
            self.inner.before_flagged_upsert()?;
        }
        Ok(self.depth().unwrap_or(0))
    }

    /// Whether a captured statement must run in a transaction of its own: with the
    /// outbox, its events are written in the same transaction as its rows.
    fn needs_implicit_transaction(&mut self) -> bool {
        self.emit.reaches_remote()
            && self.emitter.outbox_table().is_some()
            && self.depth() == Some(0)
    }
}

/// Turns the capture columns of `row` into events, counting rows that fail.
fn capture_row<'c, 'q, C, B>(
    plan: &PlanOf<C>,
    row: &<C as LoadConnection<B>>::Row<'c, 'q>,
    emit: Emit,
    emitter: &Emitter,
    out: &mut Vec<PendingEvent>,
) where
    C: DecodeRows<B> + 'c,
{
    let fields = row.field_count();
    let inserted = if plan.inserted_flag {
        match C::read_flag(row, fields - 1) {
            Ok(flag) => Some(flag),
            Err(error) => {
                emitter.record_capture_error(&plan.table, &error);
                return;
            }
        }
    } else {
        None
    };
    let action = plan.action(inserted);
    for (model, args) in plan.decode_args(fields, action, emit) {
        let entry: &ModelEntry<_, _> = model.entry;
        match C::decode(entry.decode, row, args) {
            Ok(event) => out.push(event),
            Err(error) => emitter.record_capture_error(&plan.table, &error),
        }
    }
}

impl<C: EmittingBackend> SimpleConnection for EmittingConnection<C> {
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.inner.batch_execute(query)
    }
}

impl<C: EmittingBackend> ConnectionSealed for EmittingConnection<C> {}

impl<C: EmittingBackend> Connection for EmittingConnection<C> {
    type Backend = C::Backend;
    type TransactionManager = EmittingTransactionManager<C>;

    /// Opens the inner connection; events go to the process-wide emitter
    /// ([`Emitter::set_global`]).
    fn establish(database_url: &str) -> ConnectionResult<Self> {
        Ok(EmittingConnection::new(
            C::establish(database_url)?,
            Emitter::global(),
        ))
    }

    fn execute_returning_count<T>(&mut self, source: &T) -> QueryResult<usize>
    where
        T: QueryFragment<Self::Backend> + QueryId,
    {
        let Some(plan) = self.plan(source)? else {
            return self.inner.execute_returning_count(source);
        };
        if let Some(result) = C::capture_write(self, source, &plan) {
            return result;
        }
        if self.needs_implicit_transaction() {
            return self.transaction(|conn| conn.execute_returning_count(source));
        }
        let depth = self.prepare_capture(&plan)?;
        let Self {
            inner,
            emitter,
            emit,
            ..
        } = self;
        let mut events = Vec::new();
        let mut count = 0;
        let query = Capturing::<_, Untyped>::new(source, plan.appended.clone());
        for row in inner.load(query)? {
            capture_row::<C, DefaultLoadingMode>(&plan, &row?, *emit, emitter, &mut events);
            count += 1;
        }
        self.frames.record(depth, events, &self.emitter);
        Ok(count)
    }

    fn transaction_state(&mut self) -> &mut Frames {
        &mut self.frames
    }

    fn instrumentation(&mut self) -> &mut dyn Instrumentation {
        self.inner.instrumentation()
    }

    fn set_instrumentation(&mut self, instrumentation: impl Instrumentation) {
        self.inner.set_instrumentation(instrumentation)
    }

    fn set_prepared_statement_cache_size(&mut self, size: CacheSize) {
        self.inner.set_prepared_statement_cache_size(size)
    }
}

impl<C, B> LoadConnection<B> for EmittingConnection<C>
where
    C: EmittingBackend + DecodeRows<B>,
{
    type Cursor<'conn, 'query>
        = EmittingCursor<
        <C as LoadConnection<B>>::Cursor<'conn, 'query>,
        <C as LoadConnection<B>>::Row<'conn, 'query>,
    >
    where
        Self: 'conn;
    type Row<'conn, 'query>
        = <C as LoadConnection<B>>::Row<'conn, 'query>
    where
        Self: 'conn;

    fn load<'conn, 'query, T>(
        &'conn mut self,
        source: T,
    ) -> QueryResult<Self::Cursor<'conn, 'query>>
    where
        T: Query + QueryFragment<Self::Backend> + QueryId + 'query,
        Self::Backend: QueryMetadata<T::SqlType>,
    {
        let plan = self.plan(&source)?.filter(|_| C::CAPTURE_LOADS);
        let Some(plan) = plan else {
            return Ok(EmittingCursor::Direct(LoadConnection::<B>::load(
                &mut self.inner,
                source,
            )?));
        };
        if self.needs_implicit_transaction() {
            return self.load_in_implicit_transaction::<B, T>(source);
        }
        let depth = self.prepare_capture(&plan)?;
        let Self {
            inner,
            emitter,
            emit,
            frames,
            ..
        } = self;
        let query = Capturing::<T, T::SqlType>::new(source, plan.appended.clone());
        // `get_result` reads one row only: take them all now so every row is captured.
        let rows = LoadConnection::<B>::load(inner, query)?.collect::<QueryResult<Vec<_>>>()?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            capture_row::<C, B>(&plan, row, *emit, emitter, &mut events);
        }
        frames.record(depth, events, emitter);
        Ok(EmittingCursor::Buffered(rows.into_iter()))
    }
}

impl<C: EmittingBackend> EmittingConnection<C> {
    /// Runs a captured statement that returns rows in a transaction of its own, for
    /// the outbox: the rows are read, then the transaction commits, then the cursor
    /// hands them out.
    fn load_in_implicit_transaction<'conn, 'query, B, T>(
        &'conn mut self,
        source: T,
    ) -> QueryResult<
        EmittingCursor<
            <C as LoadConnection<B>>::Cursor<'conn, 'query>,
            <C as LoadConnection<B>>::Row<'conn, 'query>,
        >,
    >
    where
        C: DecodeRows<B>,
        T: Query + QueryFragment<C::Backend> + QueryId + 'query,
        C::Backend: QueryMetadata<T::SqlType>,
    {
        if !<C as DecodeRows<B>>::DETACHED_ROWS {
            return Err(diesel::result::Error::QueryBuilderError(
                "with the outbox on, run writes that return rows (get_result, get_results) \
                 inside a transaction on this backend: its rows cannot outlive the \
                 implicit transaction's COMMIT"
                    .into(),
            ));
        }
        EmittingTransactionManager::<C>::begin_transaction(self)?;
        let loaded = LoadConnection::<B>::load(&mut *self, source)
            .and_then(|cursor| cursor.collect::<QueryResult<Vec<_>>>())
            .map(<C as DecodeRows<B>>::detach);
        let rows = match loaded {
            Ok(Some(rows)) => rows,
            Ok(None) => Vec::new(),
            Err(error) => {
                EmittingTransactionManager::<C>::rollback_transaction(self)?;
                return Err(error);
            }
        };
        EmittingTransactionManager::<C>::commit_transaction(self)?;
        Ok(EmittingCursor::Buffered(
            <C as DecodeRows<B>>::attach(rows).into_iter(),
        ))
    }
}
