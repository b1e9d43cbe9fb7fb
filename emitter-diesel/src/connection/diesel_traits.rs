//! Diesel's connection traits for [`EmittingConnection`]: statements run through
//! the inner connection, and the rows of captured writes are decoded into events
//! and recorded in the open transaction's frame.

use super::{EmittingConnection, PlanOf};
use crate::backend::{DecodeRows, EmittingBackend};
use crate::cursor::EmittingCursor;
use crate::frames::{Captured, Frames};
use crate::model::ModelEntry;
use crate::plan::{Capture, PlanCache};
use crate::returning::Capturing;
use crate::transaction::EmittingTransactionManager;
use diesel::connection::{
    CacheSize, Connection, ConnectionSealed, DefaultLoadingMode, Instrumentation, LoadConnection,
    SimpleConnection, TransactionManager,
};
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryFragment, QueryId};
use diesel::result::{ConnectionResult, QueryResult};
use diesel::result::{DatabaseErrorKind, Error};
use diesel::row::Row;
use diesel::sql_types::Untyped;
use emitter_core::{Audience, Emitter};

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

    /// Hands a statement's events to the open transaction's frame (or delivers them).
    fn record(&mut self, depth: usize, captured: Captured) {
        record(
            &mut self.frames,
            &self.emitter,
            self.without_global,
            depth,
            captured,
        );
    }

    /// Passes a statement's result through, noting a failure that aborts the open
    /// transaction on this backend.
    fn observe<T>(&mut self, result: QueryResult<T>) -> QueryResult<T> {
        if let Err(error) = &result {
            let depth = self.depth().unwrap_or(0);
            note_failure::<C>(&mut self.frames, depth, error);
        }
        result
    }

    /// `execute_returning_count`, capturing the statement's rows when it writes a
    /// model's table.
    fn execute_captured<T>(&mut self, source: &T) -> QueryResult<usize>
    where
        T: QueryFragment<C::Backend> + QueryId,
    {
        let Some(Capture { plan, prepared }) = self.plan(source)? else {
            return self.inner.execute_returning_count(source);
        };
        if let Some(result) = C::capture_write(self, source, &plan) {
            return result;
        }
        if self.needs_implicit_transaction() {
            return self.transaction(|conn| conn.execute_returning_count(source));
        }
        let depth = self.prepare_capture(&plan)?;
        let mut captured = Captured::default();
        let mut count = 0;
        let query = Capturing::<_, Untyped>::new(source, plan.appended.clone(), prepared.is_some());
        let rows = match self.inner.load(query) {
            Ok(rows) => rows,
            Err(error) => {
                unprepare_after(&mut self.plans, prepared.as_deref(), &error);
                return Err(error);
            }
        };
        for row in rows {
            capture_row::<C, DefaultLoadingMode>(&plan, &row?, self.emit, &mut captured);
            count += 1;
        }
        self.record(depth, captured);
        Ok(count)
    }

    /// Whether a captured statement must run in a transaction of its own: with the
    /// outbox, its events are written in the same transaction as its rows.
    fn needs_implicit_transaction(&mut self) -> bool {
        self.emit.reaches_remote()
            && self.emitter.outbox_table().is_some()
            && self.depth() == Some(0)
    }
}

/// [`EmittingConnection::record`] on the connection's parts, for a caller whose
/// rows still borrow the inner connection.
fn record(
    frames: &mut Frames,
    emitter: &Emitter,
    without_global: bool,
    depth: usize,
    captured: Captured,
) {
    if without_global && !captured.events.is_empty() {
        Emitter::note_write_without_global();
    }
    frames.record(depth, captured, emitter);
}

/// Runs the text of a statement kept prepared unprepared from now on if the
/// server failed it with an error of no known kind (`PlanCache::unprepare`). Not
/// for a unique violation or another error the data explains: the statement is
/// sound, and stays prepared.
fn unprepare_after<V: Clone>(plans: &mut PlanCache<V>, prepared: Option<&str>, error: &Error) {
    if let (Some(sql), Error::DatabaseError(DatabaseErrorKind::Unknown, info)) = (prepared, error) {
        tracing::debug!(
            error = info.message(),
            "statement kept prepared failed; runs unprepared from now on"
        );
        plans.unprepare(sql);
    }
}

/// Notes in `frames` that a statement at `depth` failed with `error`, if that
/// aborts the transaction on this backend (a database error on PostgreSQL; errors
/// raised before or after the statement, such as decoding, do not).
fn note_failure<C: EmittingBackend>(frames: &mut Frames, depth: usize, error: &Error) {
    if C::FAILED_STATEMENT_ABORTS_TRANSACTION && matches!(error, Error::DatabaseError(..)) {
        frames.record_failed_statement(depth);
    }
}

/// Turns the capture columns of `row` into events; rows that fail to decode are
/// kept as failures, reported if the statement's transaction commits.
fn capture_row<'c, 'q, C, B>(
    plan: &PlanOf<C>,
    row: &<C as LoadConnection<B>>::Row<'c, 'q>,
    emit: Audience,
    out: &mut Captured,
) where
    C: DecodeRows<B> + 'c,
{
    let fields = row.field_count();
    let inserted = if plan.inserted_flag {
        let flag = C::read_flag(row, fields - 1);
        let key = plan.row_key.then(|| C::read_row_key(row, fields - 2));
        match (flag, key) {
            (Ok(flag), None) => Some(flag),
            // A row this statement inserted, then updated from a later VALUES row.
            (Ok(flag), Some(Ok(key))) => Some(flag && out.inserted_keys.insert(key)),
            (Err(error), _) | (_, Some(Err(error))) => return out.fail(&plan.table, &error),
        }
    } else {
        None
    };
    let action = plan.action(inserted);
    for (model, args) in plan.decode_args(fields, action, emit) {
        let entry: &ModelEntry<_, _> = model.entry;
        match C::decode(entry.decode, row, args) {
            Ok(event) => out.events.push(event),
            Err(error) => out.fail(&plan.table, &error),
        }
    }
}

impl<C: EmittingBackend> SimpleConnection for EmittingConnection<C> {
    fn batch_execute(&mut self, query: &str) -> QueryResult<()> {
        self.note_uncaptured_batch(query);
        let result = self.inner.batch_execute(query);
        self.observe(result)
    }
}

impl<C: EmittingBackend> ConnectionSealed for EmittingConnection<C> {}

impl<C: EmittingBackend> Connection for EmittingConnection<C> {
    type Backend = C::Backend;
    type TransactionManager = EmittingTransactionManager<C>;

    /// Opens the inner connection; events go to the process-wide emitter
    /// ([`Emitter::set_global`]).
    ///
    /// With no global emitter set, the connection uses a local-only default; its
    /// first write that emits is logged as a warning, and every such write is
    /// counted in [`Emitter::writes_without_global`].
    fn establish(database_url: &str) -> ConnectionResult<Self> {
        let inner = C::establish(database_url)?;
        Ok(match Emitter::try_global() {
            Some(emitter) => EmittingConnection::new(inner, emitter),
            None => EmittingConnection {
                without_global: true,
                ..EmittingConnection::new(inner, Emitter::global())
            },
        })
    }

    fn execute_returning_count<T>(&mut self, source: &T) -> QueryResult<usize>
    where
        T: QueryFragment<Self::Backend> + QueryId,
    {
        let result = self.execute_captured(source);
        self.observe(result)
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
        let capture = match self.plan(&source) {
            Ok(capture) => capture.filter(|_| C::CAPTURE_LOADS),
            Err(error) => return self.observe(Err(error)),
        };
        // Taken before the statement: its cursor borrows the inner connection.
        let depth = self.depth().unwrap_or(0);
        let Some(Capture { plan, prepared }) = capture else {
            return match LoadConnection::<B>::load(&mut self.inner, source) {
                Ok(cursor) => Ok(EmittingCursor::Direct(cursor)),
                Err(error) => {
                    note_failure::<C>(&mut self.frames, depth, &error);
                    Err(error)
                }
            };
        };
        if self.needs_implicit_transaction() {
            return self.load_in_implicit_transaction::<B, T>(source);
        }
        if let Err(error) = self.prepare_capture(&plan) {
            return self.observe(Err(error));
        }
        let Self {
            inner,
            emitter,
            emit,
            frames,
            without_global,
            plans,
            ..
        } = self;
        let query =
            Capturing::<T, T::SqlType>::new(source, plan.appended.clone(), prepared.is_some());
        // `get_result` reads one row only: take them all now so every row is captured.
        let rows = match LoadConnection::<B>::load(inner, query)
            .and_then(|cursor| cursor.collect::<QueryResult<Vec<_>>>())
        {
            Ok(rows) => rows,
            Err(error) => {
                note_failure::<C>(frames, depth, &error);
                unprepare_after(plans, prepared.as_deref(), &error);
                return Err(error);
            }
        };
        let mut captured = Captured::with_capacity(rows.len());
        for row in &rows {
            capture_row::<C, B>(&plan, row, *emit, &mut captured);
        }
        record(frames, emitter, *without_global, depth, captured);
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
