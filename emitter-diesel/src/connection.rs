//! [`EmittingConnection`]: a Diesel connection that turns committed writes into events.

use crate::backend::{DecodeRows, EmittingBackend, ModelsOf};
use crate::classify::{classify, OnConflict};
use crate::cursor::EmittingCursor;
use crate::frames::Frames;
use crate::model::ModelEntry;
use crate::plan::{Plan, PlanCache};
use crate::returning::Capturing;
use crate::transaction::EmittingTransactionManager;
use diesel::connection::{
    CacheSize, Connection, ConnectionSealed, DefaultLoadingMode, Instrumentation, LoadConnection,
    SimpleConnection, TransactionManager,
};
use diesel::expression::QueryMetadata;
use diesel::query_builder::{Query, QueryBuilder, QueryFragment, QueryId};
use diesel::result::{ConnectionResult, QueryResult};
use diesel::row::Row;
use diesel::sql_types::Untyped;
use emitter_core::{Emit, Emitter, PendingEvent, PreparedCommit};
use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

type PlanOf<C> = Plan<<C as Connection>::Backend, <C as ModelsOf>::Decode>;

/// A Diesel connection that emits an [`Event`](emitter_core::Event) for every
/// committed INSERT, UPDATE and DELETE on a table with an `Emits` model.
///
/// Use it wherever the inner connection was used: `execute`, `get_result(s)`,
/// `load`, `save_changes`, transactions, r2d2 pools and migrations all work.
/// Writes on tables without a model run exactly as written.
///
/// ```
/// # use diesel::prelude::*;
/// # use diesel::connection::SimpleConnection;
/// # use diesel_emitter::prelude::*;
/// # diesel::table! { users (id) { id -> Integer, name -> Text } }
/// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
/// # #[diesel(table_name = users)]
/// # struct User { id: i32, name: String }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::builder().build()?;
/// let events = emitter.on::<User>().subscribe();
/// let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
/// // Raw SQL runs untouched and emits nothing.
/// conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
///
/// conn.transaction(|conn| {
///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)?;
///     assert_eq!(conn.pending_events(), 1, "waiting for the commit");
///     QueryResult::Ok(())
/// })?;
/// assert_eq!(events.recv()?.row.name, "Ada");
/// # Ok(())
/// # }
/// ```
pub struct EmittingConnection<C: EmittingBackend> {
    pub(crate) inner: C,
    emitter: Emitter,
    frames: Frames,
    emit: Emit,
    /// Plans of statements seen before; `None` caches "not captured".
    plans: PlanCache<PlanOf<C>>,
}

impl<C: EmittingBackend> EmittingConnection<C> {
    /// Wraps `inner`; its committed writes go to `emitter`.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// let conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// assert_eq!(conn.emitter().node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: C, emitter: Emitter) -> Self {
        EmittingConnection {
            inner,
            emitter,
            frames: Frames::default(),
            emit: Emit::All,
            plans: PlanCache::default(),
        }
    }

    /// The emitter this connection delivers to.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// assert_eq!(conn.emitter().node_id(), emitter.node_id());
    /// # Ok(())
    /// # }
    /// ```
    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }

    /// The wrapped connection.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// let sqlite: &SqliteConnection = conn.inner();
    /// # let _ = sqlite;
    /// # Ok(())
    /// # }
    /// ```
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, for backend-specific calls.
    ///
    /// Writes made through it **bypass events**: nothing is captured. Beginning or
    /// ending a transaction through it confuses the event frames; use this
    /// connection's transaction methods instead.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// let rx = emitter.on::<User>().subscribe();
    /// // A write through the inner connection is invisible to listeners.
    /// diesel::insert_into(users::table)
    ///     .values((users::id.eq(1), users::name.eq("Ada")))
    ///     .execute(conn.inner_mut())?;
    /// assert!(rx.try_recv().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps the connection. Events of an open transaction are discarded.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// let mut plain: SqliteConnection = conn.into_inner();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut plain)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Events captured in the open transaction, waiting for its outermost commit.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// conn.transaction(|conn| {
    ///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)?;
    ///     assert_eq!(conn.pending_events(), 1);
    ///     QueryResult::Ok(())
    /// })?;
    /// assert_eq!(conn.pending_events(), 0, "delivered at commit");
    /// # Ok(())
    /// # }
    /// ```
    pub fn pending_events(&self) -> usize {
        self.frames.pending()
    }

    /// The emit mode in force.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// assert_eq!(conn.emit_mode(), Emit::All);
    /// conn.with_emit(Emit::LocalOnly, |conn| assert_eq!(conn.emit_mode(), Emit::LocalOnly));
    /// assert_eq!(conn.emit_mode(), Emit::All);
    /// # Ok(())
    /// # }
    /// ```
    pub fn emit_mode(&self) -> Emit {
        self.emit
    }

    /// Runs `f` with `mode` in force for the writes it makes, then restores the
    /// previous mode (also when `f` panics). The innermost scope wins.
    ///
    /// Events keep the mode of the scope they were written in, even when their
    /// transaction commits outside it.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// let rx = emitter.on::<User>().subscribe();
    /// // Seen by this server's listeners, never published to the broker.
    /// conn.with_emit(Emit::LocalOnly, |conn| {
    ///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)
    /// })?;
    /// assert_eq!(rx.recv()?.row.id, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_emit<R>(&mut self, mode: Emit, f: impl FnOnce(&mut Self) -> R) -> R {
        struct Restore<'a, C: EmittingBackend>(&'a mut EmittingConnection<C>, Emit);
        impl<C: EmittingBackend> Drop for Restore<'_, C> {
            fn drop(&mut self) {
                self.0.emit = self.1;
            }
        }
        let previous = std::mem::replace(&mut self.emit, mode);
        let guard = Restore(self, previous);
        f(&mut *guard.0)
    }

    /// Runs `f` with events off: its writes run exactly as written and emit nothing.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// # let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
    /// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
    /// let rx = emitter.on::<User>().subscribe();
    /// // A backfill nobody should react to.
    /// conn.without_events(|conn| {
    ///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)
    /// })?;
    /// assert!(rx.try_recv().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn without_events<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.with_emit(Emit::Off, f)
    }

    fn depth(&mut self) -> Option<usize> {
        let status = C::TransactionManager::transaction_manager_status_mut(&mut self.inner);
        status
            .transaction_depth()
            .ok()
            .map(|d| d.map_or(0, |d| d.get() as usize))
    }

    /// Readies a captured statement: the backend's upsert preparation when the
    /// plan reads the inserted-row flag. Returns the transaction depth the
    /// statement runs at (a statement never changes it).
    fn prepare_capture(&mut self, plan: &PlanOf<C>) -> QueryResult<usize> {
        if plan.inserted_flag {
            self.inner.before_flagged_upsert()?;
        }
        Ok(self.depth().unwrap_or(0))
    }

    /// At the outermost commit with the outbox on: numbers the transaction's events
    /// and writes those bound for the broker into the outbox, inside the transaction.
    pub(crate) fn write_outbox(&mut self) -> QueryResult<Option<PreparedCommit>> {
        if self.emitter.outbox_table().is_none()
            || self.frames.pending() == 0
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

    /// Whether a captured statement must run in a transaction of its own: with the
    /// outbox, its events are written in the same transaction as its rows.
    fn needs_implicit_transaction(&mut self) -> bool {
        self.emit.reaches_remote()
            && self.emitter.outbox_table().is_some()
            && self.depth() == Some(0)
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

    /// The capture plan of `source`, from the cache when its query id is static.
    fn plan<T>(&mut self, source: &T) -> QueryResult<Option<Arc<PlanOf<C>>>>
    where
        T: QueryFragment<C::Backend> + QueryId,
    {
        if self.emit == Emit::Off {
            return Ok(None);
        }
        let key = T::query_id();
        if let Some(plan) = key.and_then(|k| self.plans.by_type(k)) {
            return Ok(plan);
        }
        let mut builder = C::query_builder();
        source.to_sql(&mut builder, &C::backend())?;
        let sql = builder.finish();
        if key.is_none() {
            if let Some(plan) = self.plans.by_sql(&sql) {
                return Ok(plan);
            }
        }
        let plan = self.plan_sql(&sql)?;
        match key {
            Some(key) => self.plans.keep_by_type(key, plan.clone()),
            None => self.plans.keep_by_sql(&sql, plan.clone()),
        }
        Ok(plan)
    }

    fn plan_sql(&mut self, sql: &str) -> QueryResult<Option<Arc<PlanOf<C>>>> {
        let Some(write) = classify(sql) else {
            return Ok(None);
        };
        let entries = C::registry().models_of(&write.table);
        if entries.is_empty() {
            return Ok(None);
        }
        let flag = match (C::INSERTED_FLAG, &write.on_conflict) {
            (Some(flag), OnConflict::DoUpdate(_)) if self.flag_supported(&write.table) => {
                Some(flag)
            }
            _ => None,
        };
        Ok(Plan::build(write, entries, flag).map(Arc::new))
    }

    /// Whether the backend's inserted-row flag works on `table`, probed once per
    /// table and process.
    fn flag_supported(&mut self, table: &[String]) -> bool {
        static KNOWN: Mutex<Option<HashMap<(TypeId, String), bool>>> = Mutex::new(None);
        let rendered = table
            .iter()
            .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(".");
        let key = (TypeId::of::<C>(), rendered);
        if let Some(known) = KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .get(&key)
        {
            return *known;
        }
        let supported = self.inner.supports_inserted_flag(&key.1).unwrap_or_else(|error| {
            tracing::debug!(table = %key.1, %error, "cannot probe the table; assuming upserts can tell inserts from updates");
            true
        });
        if !supported {
            tracing::warn!(
                table = %key.1,
                "upserts on this table cannot tell inserted rows from updated ones (partitioned, or WITHOUT ROWID); their events are reported as Update"
            );
        }
        KNOWN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(key, supported);
        supported
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
        let Some(plan) = self.plan(&source)? else {
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

impl<C: EmittingBackend + fmt::Debug> fmt::Debug for EmittingConnection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmittingConnection")
            .field("inner", &self.inner)
            .field("emit", &self.emit)
            .field("pending_events", &self.frames.pending())
            .finish()
    }
}
