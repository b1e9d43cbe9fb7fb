//! [`EmittingConnection`]: a Diesel connection that turns committed writes into events.
//!
//! This module owns the struct, its constructor, its accessors and its emit-mode
//! scopes. How it runs statements through Diesel's connection traits, plans their
//! capture and keeps its event frames in step with transactions lives in the
//! submodules.

mod diesel_traits;
mod planning;
mod transactions;

use crate::backend::{EmittingBackend, ModelsOf};
use crate::frames::Frames;
use crate::plan::{Plan, PlanCache, Planned};
use diesel::connection::Connection;
use emitter_core::{Audience, Emitter};
use std::collections::HashMap;
use std::fmt;

type PlanOf<C> = Plan<<C as Connection>::Backend, <C as ModelsOf>::Decode>;

/// A Diesel connection that emits an [`Event`](emitter_core::Event) for every
/// committed INSERT, UPDATE and DELETE on a table with an `Emits` model.
///
/// Use it wherever the inner connection was used: `execute`, `get_result(s)`,
/// `load`, `save_changes`, transactions, r2d2 pools and migrations all work.
/// Writes on tables without a model run exactly as written.
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
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
    pub(crate) emitter: Emitter,
    pub(crate) frames: Frames,
    pub(crate) emit: Audience,
    /// What to do with statements seen before.
    plans: PlanCache<Planned<PlanOf<C>>>,
    /// Tables (by name parts) whose models were checked against the table this
    /// connection writes under that name: whether all their columns are there.
    checked_tables: HashMap<Vec<String>, bool>,
    /// Opened by `Connection::establish` before any global emitter was set: its
    /// events go to the local-only default, which is counted and warned about.
    without_global: bool,
    /// What the backend's capture keeps per connection (MySQL: the server's flavour).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) capture_state: C::CaptureState,
}

impl<C: EmittingBackend> EmittingConnection<C> {
    /// Wraps `inner`; its committed writes go to `emitter`.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
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
            emit: Audience::All,
            plans: PlanCache::default(),
            checked_tables: HashMap::new(),
            without_global: false,
            capture_state: Default::default(),
        }
    }

    /// Sends this connection's events to `emitter` from now on, including those of
    /// a transaction already open. r2d2 pools use it through
    /// [`UseEmitter`](crate::UseEmitter).
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel_emitter::prelude::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::builder().node_id("api-1").build()?;
    /// let mut conn = EmittingConnection::<SqliteConnection>::establish(":memory:")?;
    /// conn.set_emitter(emitter.clone());
    /// assert_eq!(conn.emitter().node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_emitter(&mut self, emitter: Emitter) {
        self.emitter = emitter;
        self.without_global = false;
    }

    /// The emitter this connection delivers to.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// assert_eq!(conn.emit_mode(), Audience::All);
    /// conn.with_emit(Audience::LocalOnly, |conn| assert_eq!(conn.emit_mode(), Audience::LocalOnly));
    /// assert_eq!(conn.emit_mode(), Audience::All);
    /// # Ok(())
    /// # }
    /// ```
    pub fn emit_mode(&self) -> Audience {
        self.emit
    }

    /// Runs `f` with `mode` in force for the writes it makes, then restores the
    /// previous mode (also when `f` panics). The innermost scope wins.
    ///
    /// Events keep the mode of the scope they were written in, even when their
    /// transaction commits outside it.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let rx = emitter.on::<User>().subscribe();
    /// // Seen by this server's listeners, never published to the broker.
    /// conn.with_emit(Audience::LocalOnly, |conn| {
    ///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)
    /// })?;
    /// assert_eq!(rx.recv()?.row.id, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_emit<R>(&mut self, mode: Audience, f: impl FnOnce(&mut Self) -> R) -> R {
        struct Restore<'a, C: EmittingBackend>(&'a mut EmittingConnection<C>, Audience);
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
        self.with_emit(Audience::Off, f)
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
