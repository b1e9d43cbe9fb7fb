//! [`Emitter`]: the registry of listeners and the entry point of committed events.

use crate::commit::{PreparedCommit, Sequencer};
use crate::dispatch::Dispatch;
use crate::emits::Emits;
use crate::error::Error;
use crate::event::Event;
use crate::listener::{AnyListenerSet, ListenerBuilder, ListenerSet, Reach};
use crate::mqtt::MqttConfig;
use crate::outbox::OutboxConfig;
use crate::pending::PendingEvent;
use crate::stats::{Counters, Stats};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Delivers committed events to listeners. Cheap to clone: clones share everything.
///
/// One emitter per process is the usual setup: build it at startup, register the
/// listeners, and hand it to every `EmittingConnection` (or make it
/// [global](Emitter::set_global) for pools).
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
/// let emitter = Emitter::builder().node_id("api-1").build()?;
/// let events = emitter.on::<User>().actions([Action::Insert]).subscribe();
///
/// let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
/// # conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
/// diesel::insert_into(users::table)
///     .values((users::id.eq(7), users::name.eq("Ada")))
///     .execute(&mut conn)?;
///
/// let event = events.recv()?;
/// assert_eq!((event.row.id, event.meta.seq, &*event.meta.origin), (7, 1, "api-1"));
/// emitter.shutdown(std::time::Duration::from_secs(1))?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Emitter {
    pub(crate) shared: Arc<Shared>,
}

type SetEntry = (Arc<dyn Any + Send + Sync>, Arc<dyn AnyListenerSet>);

pub(crate) struct Shared {
    pub(crate) node_id: Arc<str>,
    pub(crate) instance: u64,
    pub(crate) counters: Counters,
    /// Held while a commit is numbered and dispatched; hands out `seq`.
    pub(crate) commit_lock: Mutex<Sequencer>,
    sets: RwLock<HashMap<TypeId, SetEntry>>,
    listener_ids: AtomicU64,
    listeners: AtomicU64,
    pub(crate) shut_down: AtomicBool,
    /// Every closure listener's thread holds a clone of this sender; when all are
    /// gone the receiver disconnects, which is how shutdown knows they finished.
    done_tx: Mutex<Option<Sender<()>>>,
    done_rx: Receiver<()>,
    #[cfg(feature = "mqtt")]
    bridge: Option<Arc<crate::mqtt::Bridge>>,
    #[cfg(feature = "mqtt")]
    outbox: Option<Outbox>,
}

/// The outbox as the emitter holds it.
#[cfg(feature = "mqtt")]
struct Outbox {
    table: String,
    relay: Option<crate::outbox::relay::RelayHandle>,
}

impl Shared {
    pub(crate) fn has_bridge(&self) -> bool {
        #[cfg(feature = "mqtt")]
        return self.bridge.is_some();
        #[cfg(not(feature = "mqtt"))]
        false
    }

    /// Hands a committed event to the publisher thread (a clone: local listeners
    /// may take the original). Encoding happens on that thread.
    pub(crate) fn publish<M: Emits>(&self, event: &Event<M>) {
        #[cfg(feature = "mqtt")]
        if let Some(bridge) = &self.bridge {
            bridge.publish(Box::new(event.clone()));
        }
        #[cfg(not(feature = "mqtt"))]
        let _ = event;
    }

    /// Takes the broker subscription a listener of `M` with `reach` needs.
    // Without the `mqtt` feature there is no broker and `M` goes unused.
    #[cfg_attr(not(feature = "mqtt"), allow(clippy::extra_unused_type_parameters))]
    pub(crate) fn attach_remote<M: Emits>(self: &Arc<Self>, reach: &Reach) -> Result<(), Error> {
        #[cfg(feature = "mqtt")]
        if let Some(bridge) = &self.bridge {
            let group = match reach {
                Reach::None => return Ok(()),
                Reach::Remote => None,
                Reach::Group(group) => Some(group),
            };
            let weak = Arc::downgrade(self);
            return bridge.attach(group, M::TABLE, TypeId::of::<M>(), || {
                Arc::new(crate::dispatch::ModelSink::<M>::new(weak))
            });
        }
        let _ = reach;
        Ok(())
    }

    /// Releases what [`attach_remote`](Self::attach_remote) took.
    #[cfg_attr(not(feature = "mqtt"), allow(clippy::extra_unused_type_parameters))]
    pub(crate) fn detach_remote<M: Emits>(&self, reach: &Reach) {
        #[cfg(feature = "mqtt")]
        if let Some(bridge) = &self.bridge {
            match reach {
                Reach::None => {}
                Reach::Remote => bridge.detach(None, M::TABLE, TypeId::of::<M>()),
                Reach::Group(group) => bridge.detach(Some(group), M::TABLE, TypeId::of::<M>()),
            }
        }
        let _ = reach;
    }

    /// Wakes the outbox relay after a commit wrote outbox rows.
    pub(crate) fn kick_outbox(&self) {
        #[cfg(feature = "mqtt")]
        if let Some(relay) = self.outbox.as_ref().and_then(|o| o.relay.as_ref()) {
            relay.kick();
        }
    }

    pub(crate) fn next_listener_id(&self) -> u64 {
        self.listener_ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn listener_added(&self) {
        self.listeners.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn listener_removed(&self) {
        self.listeners.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn listener_done_token(&self) -> Option<Sender<()>> {
        self.done_tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn existing_listener_set<M: Emits>(&self) -> Option<Arc<ListenerSet<M>>> {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        let (any, _) = sets.get(&TypeId::of::<M>())?;
        any.clone().downcast::<ListenerSet<M>>().ok()
    }

    pub(crate) fn listener_set<M: Emits>(&self) -> Arc<ListenerSet<M>> {
        if let Some(set) = self.existing_listener_set::<M>() {
            return set;
        }
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        let (any, _) = sets.entry(TypeId::of::<M>()).or_insert_with(|| {
            let set = Arc::new(ListenerSet::<M>::new());
            (set.clone(), set)
        });
        any.clone()
            .downcast::<ListenerSet<M>>()
            .unwrap_or_else(|_| unreachable!("listener sets are keyed by their model's TypeId"))
    }
}

impl Emitter {
    /// Starts configuring an emitter.
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
    /// let emitter = Emitter::builder().node_id("api-1").build()?;
    /// assert_eq!(emitter.node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder() -> EmitterBuilder {
        EmitterBuilder::default()
    }

    /// Registers a listener for committed events of model `M`.
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
    /// let updates = emitter
    ///     .on::<User>()
    ///     .actions([Action::Update])
    ///     .filter(|event| event.did_change("name"))
    ///     .subscribe();
    ///
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    /// diesel::update(users::table).set(users::name.eq("Ada L.")).execute(&mut conn)?;
    ///
    /// assert_eq!(updates.recv()?.row.name, "Ada L.");
    /// assert!(updates.try_recv().is_err(), "the insert was not an update");
    /// # Ok(())
    /// # }
    /// ```
    pub fn on<M: Emits>(&self) -> ListenerBuilder<M> {
        ListenerBuilder::new(self.clone())
    }

    /// This emitter's node id, the `origin` of the events it commits.
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
    /// let emitter = Emitter::builder().node_id("worker-3").build()?;
    /// assert_eq!(emitter.node_id(), "worker-3");
    /// assert!(Emitter::builder().build()?.node_id().starts_with("node-"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// A snapshot of the counters.
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
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    ///
    /// let stats = emitter.stats();
    /// assert_eq!((stats.emitted, stats.delivered, stats.dropped), (1, 1, 0));
    /// # drop(rx);
    /// # Ok(())
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        #[allow(unused_mut)]
        let mut stats = self
            .shared
            .counters
            .snapshot(self.shared.listeners.load(Ordering::Relaxed));
        #[cfg(feature = "mqtt")]
        if let Some(bridge) = &self.shared.bridge {
            bridge.fill(&mut stats);
        }
        #[cfg(feature = "mqtt")]
        if let Some(relay) = self.shared.outbox.as_ref().and_then(|o| o.relay.as_ref()) {
            relay.counters.fill(&mut stats);
        }
        stats
    }

    /// Whether this emitter publishes to and subscribes at a broker.
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
    /// assert!(!Emitter::builder().build()?.has_broker());
    /// # Ok(())
    /// # }
    /// ```
    pub fn has_broker(&self) -> bool {
        self.shared.has_bridge()
    }

    /// Waits until the broker connection is up and every remote listener's
    /// subscription is in place, at most `timeout`.
    ///
    /// Useful at startup and in tests: events committed on other nodes before a
    /// remote listener's subscription is in place are not delivered to it.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let emitter = Emitter::builder()
    ///     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883"))
    ///     .build()?;
    /// let remote = emitter.on::<User>().remote_only(true).subscribe();
    /// // Events other servers commit from now on reach `remote`.
    /// emitter.wait_connected(Duration::from_secs(5))?;
    /// # drop(remote);
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        #[cfg(feature = "mqtt")]
        if let Some(bridge) = &self.shared.bridge {
            let deadline = Instant::now() + timeout;
            while !bridge.ready() {
                if Instant::now() >= deadline {
                    return Err(Error::BrokerUnreachable {
                        url: bridge.url().to_owned(),
                        reason: format!("not connected and subscribed within {timeout:?}"),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            return Ok(());
        }
        let _ = timeout;
        Err(Error::NoBroker)
    }

    /// Delivers the events of one committed write or transaction, in order.
    ///
    /// `EmittingConnection` calls this after a successful commit; other integrations
    /// may call it too. Events are numbered and dispatched atomically with respect to
    /// other commits on this emitter.
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
    /// use diesel_emitter::PendingEvent;
    ///
    /// let rx = emitter.on::<User>().subscribe();
    /// // What an integration other than EmittingConnection does after its own commit:
    /// let row = User { id: 7, name: "Ada".into() };
    /// emitter.commit([PendingEvent::new(Action::Insert, row, vec!["id", "name"].into(), Emit::All)]);
    ///
    /// assert_eq!(rx.recv()?.row.id, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn commit(&self, events: impl IntoIterator<Item = PendingEvent>) {
        let shared = &*self.shared;
        let mut events = events.into_iter().peekable();
        if events.peek().is_none() {
            return;
        }
        let committed_at = SystemTime::now();
        let mut sequencer = shared.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock: shutdown takes it before clearing listeners.
        if shared.shut_down.load(Ordering::Acquire) {
            let n = events.count() as u64;
            shared.counters.emitted(n);
            shared.counters.dropped(n);
            tracing::warn!(events = n, "emitter is shut down; committed events dropped");
            return;
        }
        if sequencer.has_open() {
            // Transactions numbered earlier are still committing: queue behind them.
            let (first, numbered) = sequencer.number(shared, events, committed_at);
            shared.counters.emitted(numbered.len() as u64);
            sequencer.ready(shared, first, numbered, true);
            return;
        }
        let mut dispatch = Dispatch::new(shared, &mut sequencer.last, committed_at);
        for event in events {
            shared.counters.emitted(1);
            event.inner.dispatch(event.emit, &mut dispatch);
        }
    }

    /// Numbers a transaction's events before its COMMIT, for the outbox; the
    /// connection wrapper calls it, and so can another integration that writes the
    /// outbox rows itself.
    ///
    /// Write [`PreparedCommit::outbox_entries`] into the outbox inside the
    /// transaction, commit, then call [`PreparedCommit::committed`]; drop it if the
    /// commit failed. Until then, events of transactions numbered later wait, so that
    /// listeners see `seq` in order.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// use diesel_emitter::PendingEvent;
    ///
    /// let rx = emitter.on::<User>().subscribe();
    /// let row = User { id: 7, name: "Ada".into() };
    /// let prepared = emitter.prepare(vec![PendingEvent::new(Action::Insert, row, vec!["id", "name"].into(), Emit::All)]);
    /// assert!(rx.try_recv().is_err(), "nothing before the commit");
    /// prepared.committed();
    /// assert_eq!(rx.recv()?.meta.seq, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn prepare(&self, events: Vec<PendingEvent>) -> PreparedCommit {
        PreparedCommit::new(self, events)
    }

    /// The outbox table this emitter's connections write events into, when the
    /// outbox is on.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::Emitter;
    ///
    /// assert_eq!(Emitter::builder().build()?.outbox_table(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn outbox_table(&self) -> Option<&str> {
        #[cfg(feature = "mqtt")]
        return self.shared.outbox.as_ref().map(|o| o.table.as_str());
        #[cfg(not(feature = "mqtt"))]
        None
    }

    /// Counts and logs a committed row that could not become an event.
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
    /// emitter.record_capture_error("users", &"column 2 is not valid UTF-8");
    /// assert_eq!(emitter.stats().capture_errors, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn record_capture_error(&self, table: &str, error: &dyn fmt::Display) {
        self.shared.counters.capture_error();
        tracing::error!(table, %error, "a committed row could not be captured as an event");
    }

    /// Stops taking events, delivers every queued event to its listener, and waits
    /// for listener threads to finish, at most `timeout`.
    ///
    /// Events committed afterwards are counted as dropped. `subscribe()` receivers
    /// keep their queued events and then end.
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
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = seen.clone();
    /// let _listener = emitter.on::<User>().listen(move |_| {
    ///     counter.fetch_add(1, Ordering::SeqCst);
    /// });
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    ///
    /// // Every event queued before shutdown reaches its listener.
    /// emitter.shutdown(std::time::Duration::from_secs(5))?;
    /// assert_eq!(seen.load(Ordering::SeqCst), 1);
    /// assert!(emitter.is_shut_down());
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let shared = &*self.shared;
        let deadline = Instant::now() + timeout;
        shared.shut_down.store(true, Ordering::Release);
        // Waiting for the commit lock lets an in-flight dispatch finish first; one
        // blocked on a full queue nobody reads may never finish, so not past the
        // deadline.
        let dispatch_finished = loop {
            match shared.commit_lock.try_lock() {
                Ok(_) | Err(std::sync::TryLockError::Poisoned(_)) => break true,
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() >= deadline => {
                    break false
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
            }
        };
        #[allow(unused_mut)]
        let mut unsent = 0;
        #[cfg(feature = "mqtt")]
        if let Some(relay) = shared.outbox.as_ref().and_then(|o| o.relay.as_ref()) {
            if !relay.close(deadline) {
                tracing::warn!("outbox relay did not stop in time; its rows stay in the outbox");
            }
        }
        #[cfg(feature = "mqtt")]
        if let Some(bridge) = &shared.bridge {
            unsent = bridge.close(deadline);
        }
        let sets: Vec<_> = {
            let sets = shared.sets.read().unwrap_or_else(|e| e.into_inner());
            sets.values().map(|(_, set)| set.clone()).collect()
        };
        for set in sets {
            let removed = set.clear() as u64;
            shared.listeners.fetch_sub(removed, Ordering::Relaxed);
        }
        drop(
            shared
                .done_tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        loop {
            match shared.done_rx.recv_deadline(deadline) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::ShutdownTimeout {
                        timeout,
                        pending: shared.counters.queued() + unsent,
                    })
                }
            }
        }
        if unsent > 0 || !dispatch_finished {
            return Err(Error::ShutdownTimeout {
                timeout,
                pending: unsent + shared.counters.queued(),
            });
        }
        tracing::debug!(node = %shared.node_id, "emitter shut down");
        Ok(())
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
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
    /// assert!(!emitter.is_shut_down());
    /// emitter.shutdown(std::time::Duration::from_secs(1))?;
    /// assert!(emitter.is_shut_down());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::Acquire)
    }

    /// Makes `emitter` the process-wide emitter, replacing any earlier one.
    ///
    /// Connections opened with `Connection::establish` (r2d2 pools, migrations) use it.
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
    /// let emitter = Emitter::builder().node_id("api-1").build()?;
    /// Emitter::set_global(emitter.clone());
    ///
    /// // What an r2d2 pool (`ConnectionManager<EmittingConnection<_>>`) does for each connection:
    /// let conn = EmittingConnection::<SqliteConnection>::establish(":memory:")?;
    /// assert_eq!(conn.emitter().node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_global(emitter: Emitter) {
        *global_slot().write().unwrap_or_else(|e| e.into_inner()) = Some(emitter);
    }

    /// The process-wide emitter: the last one given to [`set_global`](Self::set_global),
    /// or a local-only emitter with a random node id, created on first use.
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
    /// Emitter::set_global(Emitter::builder().node_id("api-1").build()?);
    /// assert_eq!(Emitter::global().node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn global() -> Emitter {
        if let Some(e) = global_slot()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return e.clone();
        }
        global_slot()
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| {
                tracing::debug!("no global emitter set; using a local-only default");
                EmitterBuilder::default()
                    .build()
                    .unwrap_or_else(|e| unreachable!("the default configuration is valid: {e}"))
            })
            .clone()
    }
}

fn global_slot() -> &'static RwLock<Option<Emitter>> {
    static GLOBAL: RwLock<Option<Emitter>> = RwLock::new(None);
    &GLOBAL
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("node_id", &self.node_id())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Configures an [`Emitter`]; from [`Emitter::builder`].
///
/// ```no_run
/// # use diesel::prelude::*;
/// # use diesel::connection::SimpleConnection;
/// # use diesel_emitter::prelude::*;
/// # diesel::table! { users (id) { id -> Integer, name -> Text } }
/// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
/// # #[diesel(table_name = users)]
/// # struct User { id: i32, name: String }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::builder()
///     .node_id("api-1")
///     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883").topic_prefix("shop/events"))
///     .build()?;
/// # drop(emitter);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct EmitterBuilder {
    node_id: Option<String>,
    mqtt: Option<MqttConfig>,
    outbox: Option<OutboxConfig>,
}

impl EmitterBuilder {
    /// The node id, `origin` of every event this emitter commits. Default: `node-` and
    /// 12 random hex digits.
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
    /// assert_eq!(Emitter::builder().node_id("api-1").build()?.node_id(), "api-1");
    /// // A node id travels in every payload and must not hold topic wildcards.
    /// assert!(Emitter::builder().node_id("api/1").build().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }

    /// Publish committed events to, and hear other nodes through, this broker.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::builder()
    ///     .mqtt(MqttConfig::new("mqtts://broker.internal:8883").credentials("api", "secret"))
    ///     .build()?;
    /// # drop(emitter);
    /// # Ok(())
    /// # }
    /// ```
    pub fn mqtt(mut self, config: MqttConfig) -> Self {
        self.mqtt = Some(config);
        self
    }

    /// Makes committed events durable: each transaction writes its events into the
    /// outbox table before it commits, and a relay publishes them from there (see
    /// [`outbox`](crate::outbox)). Needs [`mqtt`](Self::mqtt); `build()` fails when
    /// the outbox tables are missing.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # use diesel_emitter::prelude::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::Outbox;
    ///
    /// // With PostgreSQL: `Outbox::<PgConnection>::url("postgres://...")`.
    /// let emitter = Emitter::builder()
    ///     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883"))
    ///     .outbox(Outbox::<SqliteConnection>::url("app.db"))
    ///     .build()?;
    /// # drop(emitter);
    /// # Ok(())
    /// # }
    /// ```
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.outbox = Some(config);
        self
    }

    /// Validates the configuration and starts the emitter (and, with MQTT, its
    /// publisher thread, which connects in the background unless
    /// [`MqttConfig::require_connection`] asks to wait).
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
    /// use diesel_emitter::Error;
    ///
    /// let bad = Emitter::builder().mqtt(MqttConfig::new("http://127.0.0.1")).build();
    /// assert!(matches!(bad, Err(Error::Mqtt(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> Result<Emitter, Error> {
        let random = uuid::Uuid::new_v4().as_u64_pair();
        let node_id: Arc<str> = match self.node_id {
            Some(id) => validate_node_id(id)?,
            None => format!("node-{:012x}", random.0 >> 16),
        }
        .into();
        if let Some(outbox) = &self.outbox {
            outbox.validate()?;
            if self.mqtt.is_none() {
                return Err(crate::outbox::OutboxError::NoBroker.into());
            }
        }
        #[cfg(feature = "mqtt")]
        let bridge = match self.mqtt {
            Some(config) => Some(Arc::new(crate::mqtt::Bridge::start(
                config,
                node_id.clone(),
                random.1,
            )?)),
            None => None,
        };
        #[cfg(feature = "mqtt")]
        let outbox = match (self.outbox, &bridge) {
            (Some(config), Some(bridge)) => Some(start_outbox(config, bridge)?),
            _ => None,
        };
        #[cfg(not(feature = "mqtt"))]
        if let Some(config) = self.mqtt {
            config.validate()?;
            return Err(Error::MqttUnavailable);
        }
        let (done_tx, done_rx) = crossbeam_channel::bounded(0);
        Ok(Emitter {
            shared: Arc::new(Shared {
                node_id,
                instance: random.1,
                counters: Counters::default(),
                commit_lock: Mutex::new(Sequencer::default()),
                sets: RwLock::new(HashMap::new()),
                listener_ids: AtomicU64::new(0),
                listeners: AtomicU64::new(0),
                shut_down: AtomicBool::new(false),
                done_tx: Mutex::new(Some(done_tx)),
                done_rx,
                #[cfg(feature = "mqtt")]
                bridge,
                #[cfg(feature = "mqtt")]
                outbox,
            }),
        })
    }
}

/// Checks the outbox tables and starts the relay.
#[cfg(feature = "mqtt")]
fn start_outbox(config: OutboxConfig, bridge: &Arc<crate::mqtt::Bridge>) -> Result<Outbox, Error> {
    let mut store = config.open_store()?;
    store.check()?;
    let table = config.table.clone();
    let relay = if config.relay {
        Some(crate::outbox::relay::RelayHandle::start(
            config,
            store,
            Arc::downgrade(bridge),
        )?)
    } else {
        None
    };
    Ok(Outbox { table, relay })
}

fn validate_node_id(id: String) -> Result<String, Error> {
    let bad = |c: char| matches!(c, '/' | '+' | '#' | '\0') || c.is_control();
    if id.is_empty() || id.len() > 128 || id.chars().any(bad) {
        return Err(Error::InvalidNodeId(id));
    }
    Ok(id)
}
