//! Listeners: how a model's events reach application code.
//!
//! Every listener owns a bounded queue. A closure listener gets its own thread that
//! drains the queue and calls the closure, catching panics; a `subscribe()` listener
//! hands the queue's receiving end to the caller. Filters run on the committing
//! thread so that events nobody wants are never cloned or queued.

use crate::action::Action;
use crate::emits::Emits;
use crate::emitter::{Emitter, Shared};
use crate::error::Error;
use crate::event::Event;
use crossbeam_channel::{Receiver, Sender};
use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};

/// The queue size of a listener unless [`ListenerBuilder::capacity`] says otherwise.
///
/// ```
/// assert_eq!(diesel_emitter::DEFAULT_CAPACITY, 10_000);
/// ```
pub const DEFAULT_CAPACITY: usize = 10_000;

/// What happens when a listener's queue is full.
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
/// // A best-effort listener: a full queue drops its events instead of holding up commits.
/// let rx = emitter.on::<User>().capacity(1).when_full(WhenFull::Drop).subscribe();
/// diesel::insert_into(users::table)
///     .values(&vec![(users::id.eq(1), users::name.eq("a")), (users::id.eq(2), users::name.eq("b"))])
///     .execute(&mut conn)?;
///
/// assert_eq!(rx.recv()?.row.id, 1);
/// assert_eq!(emitter.stats().dropped, 1, "the second event found the queue full");
/// # Ok(())
/// # }
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// The committing thread waits until the listener makes room: nothing is lost.
    #[default]
    Block,
    /// The event is dropped for this listener, counted in [`Stats::dropped`](crate::Stats)
    /// and logged; the committing thread goes on at once.
    Drop,
}

type Filter<M> = Box<dyn Fn(&Event<M>) -> bool + Send + Sync>;

/// Configures a listener for events of model `M`; from [`Emitter::on`].
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
/// let welcome = emitter
///     .on::<User>()
///     .name("welcome-mail")
///     .actions([Action::Insert])
///     .filter(|event| !event.row.name.is_empty())
///     .capacity(1_000)
///     .listen(|event| {
///         // Runs on the listener's own thread, after the commit.
///         let _ = &event.row.name;
///     });
/// # welcome.unsubscribe();
/// # Ok(())
/// # }
/// ```
#[must_use = "a listener builder does nothing until `.listen(..)` or `.subscribe()`"]
pub struct ListenerBuilder<M: Emits> {
    emitter: Emitter,
    actions: u8,
    filter: Option<Filter<M>>,
    capacity: usize,
    when_full: WhenFull,
    name: Option<String>,
    allow_remote: bool,
    remote_only: bool,
    group: Option<String>,
}

impl<M: Emits> ListenerBuilder<M> {
    pub(crate) fn new(emitter: Emitter) -> Self {
        ListenerBuilder {
            emitter,
            actions: 0b111,
            filter: None,
            capacity: DEFAULT_CAPACITY,
            when_full: WhenFull::Block,
            name: None,
            allow_remote: false,
            remote_only: false,
            group: None,
        }
    }

    /// Also receive events committed on other nodes, through the broker, as
    /// [`Source::Remote`](crate::Source); this node's own events still arrive once,
    /// locally. Without MQTT configured the listener sees local events only.
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
    /// let emitter = Emitter::builder().mqtt(MqttConfig::new("mqtt://127.0.0.1:1883")).build()?;
    /// let cache_invalidation = emitter
    ///     .on::<User>()
    ///     .allow_remote(true)
    ///     .listen(|event| match event.meta.source {
    ///         Source::Local => { /* written by this server */ }
    ///         Source::Remote => { /* written by event.meta.origin */ }
    ///     });
    /// # drop(cache_invalidation);
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_remote(mut self, allow: bool) -> Self {
        self.allow_remote = allow;
        self
    }

    /// Only events committed on other nodes (needs MQTT).
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
    /// let local_only = Emitter::builder().build()?;
    /// let refused = local_only.on::<User>().remote_only(true).try_subscribe();
    /// assert!(matches!(refused, Err(diesel_emitter::Error::NoBroker)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn remote_only(mut self, remote_only: bool) -> Self {
        self.remote_only = remote_only;
        self
    }

    /// Join the competing-consumer group `name`: each event, this node's included,
    /// is handled by exactly one member of the group across all servers (an MQTT
    /// shared subscription, `$share/{name}/{prefix}/{table}/+`; needs MQTT).
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
    /// // On every server: each new user gets one welcome mail, whichever server sends it.
    /// let emitter = Emitter::builder().mqtt(MqttConfig::new("mqtt://127.0.0.1:1883")).build()?;
    /// let mailer = emitter
    ///     .on::<User>()
    ///     .actions([Action::Insert])
    ///     .group("mailer")
    ///     .listen(|event| { let _ = &event.row; /* send the mail */ });
    /// # drop(mailer);
    /// # Ok(())
    /// # }
    /// ```
    pub fn group(mut self, name: impl Into<String>) -> Self {
        self.group = Some(name.into());
        self
    }

    /// Only these actions (all three by default).
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
    /// let removals = emitter.on::<User>().actions([Action::Delete]).subscribe();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    /// diesel::delete(users::table.find(1)).execute(&mut conn)?;
    ///
    /// let event = removals.recv()?;
    /// assert_eq!((event.action, event.row.name.as_str()), (Action::Delete, "Ada"));
    /// assert!(removals.try_recv().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn actions(mut self, actions: impl IntoIterator<Item = Action>) -> Self {
        self.actions = actions.into_iter().fold(0, |bits, a| bits | a.bit());
        self
    }

    /// Only events for which `filter` returns true: the Rust form of Prisma's `where`.
    ///
    /// The filter runs on the committing thread, before the event is queued, so keep
    /// it cheap. A panicking filter counts as a panic and as "no match".
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
    /// let renamed = emitter
    ///     .on::<User>()
    ///     .filter(|event| event.action == Action::Update && event.did_change("name"))
    ///     .subscribe();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    /// diesel::update(users::table.find(1)).set(users::name.eq("Grace")).execute(&mut conn)?;
    ///
    /// assert_eq!(renamed.recv()?.row.name, "Grace");
    /// assert!(renamed.try_recv().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn filter(mut self, filter: impl Fn(&Event<M>) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// The bound of this listener's queue, [`DEFAULT_CAPACITY`] unless set.
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
    /// let rx = emitter.on::<User>().capacity(100).subscribe();
    /// assert_eq!(rx.capacity(), Some(100));
    /// # Ok(())
    /// # }
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// What to do when the queue is full: [`WhenFull::Block`] (default) or [`WhenFull::Drop`].
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
    /// let metrics = emitter.on::<User>().when_full(WhenFull::Drop).listen(|_| { /* count */ });
    /// # metrics.unsubscribe();
    /// # Ok(())
    /// # }
    /// ```
    pub fn when_full(mut self, when_full: WhenFull) -> Self {
        self.when_full = when_full;
        self
    }

    /// A name for logs and the listener's thread.
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
    /// let audit = emitter.on::<User>().name("audit-log").listen(|_| {});
    /// # audit.unsubscribe();
    /// # Ok(())
    /// # }
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Calls `listener` on its own thread for every matching committed event.
    ///
    /// # Panics
    /// Panics if the capacity is zero or the thread cannot be spawned; use
    /// [`try_listen`](Self::try_listen) to get these as errors.
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
    /// use std::sync::mpsc;
    ///
    /// let (tx, names) = mpsc::channel();
    /// let subscription = emitter.on::<User>().listen(move |event| {
    ///     tx.send(event.row.name.clone()).unwrap();
    /// });
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    ///
    /// assert_eq!(names.recv()?, "Ada");
    /// subscription.unsubscribe();
    /// # Ok(())
    /// # }
    /// ```
    pub fn listen(self, listener: impl FnMut(&Event<M>) + Send + 'static) -> Subscription {
        self.try_listen(listener)
            .unwrap_or_else(|e| panic!("cannot register listener: {e}"))
    }

    /// Like [`listen`](Self::listen), returning setup failures as errors.
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
    /// let refused = emitter.on::<User>().capacity(0).try_listen(|_| {});
    /// assert!(matches!(refused, Err(diesel_emitter::Error::ZeroCapacity)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_listen(
        self,
        mut listener: impl FnMut(&Event<M>) + Send + 'static,
    ) -> Result<Subscription, Error> {
        let reach = self.check()?;
        let (tx, rx) = crossbeam_channel::bounded::<Event<M>>(self.capacity);
        let shared = self.emitter.shared.clone();
        let id = shared.next_listener_id();
        let label = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}#{id}", M::TABLE));
        let thread_shared = Arc::downgrade(&shared);
        let done = shared.listener_done_token();
        let thread_label = label.clone();
        std::thread::Builder::new()
            .name(format!("emitter-{label}"))
            .spawn(move || {
                let _done = done;
                run_listener(rx, &thread_shared, &thread_label, &mut listener);
            })?;
        self.register(id, label, tx, Kind::Closure, reach)
    }

    /// Returns a receiver of every matching committed event.
    ///
    /// The listener ends when the receiver is dropped (noticed at the next matching
    /// event) or the emitter shuts down (then `recv()` returns `Err` once drained).
    /// Events placed in the receiver count as delivered.
    ///
    /// # Panics
    /// Panics on the errors [`try_subscribe`](Self::try_subscribe) returns.
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
    /// let events = emitter.on::<User>().subscribe();
    /// conn.transaction(|conn| {
    ///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)?;
    ///     diesel::update(users::table.find(1)).set(users::name.eq("Ada L.")).execute(conn)
    /// })?;
    ///
    /// // One event per row and statement, in commit order, after the commit.
    /// let actions: Vec<Action> = events.try_iter().map(|event| event.action).collect();
    /// assert_eq!(actions, [Action::Insert, Action::Update]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(self) -> Receiver<Event<M>> {
        self.try_subscribe()
            .unwrap_or_else(|e| panic!("cannot register listener: {e}"))
    }

    /// Like [`subscribe`](Self::subscribe), returning setup failures as errors.
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
    /// let refused = emitter.on::<User>().group("mailer").try_subscribe();
    /// assert!(matches!(refused, Err(diesel_emitter::Error::NoBroker)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_subscribe(self) -> Result<Receiver<Event<M>>, Error> {
        let reach = self.check()?;
        let (tx, rx) = crossbeam_channel::bounded::<Event<M>>(self.capacity);
        let id = self.emitter.shared.next_listener_id();
        let label = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}#{id}", M::TABLE));
        self.register(id, label, tx, Kind::Receiver, reach)?
            .forget();
        Ok(rx)
    }

    /// Validates the options; returns where the listener's events come from.
    fn check(&self) -> Result<Reach, Error> {
        if self.capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        let reach = match (&self.group, self.allow_remote || self.remote_only) {
            (Some(group), _) => {
                if !crate::mqtt::topic::is_valid_level(group) {
                    return Err(Error::InvalidGroup(group.clone()));
                }
                Reach::Group(group.as_str().into())
            }
            (None, true) => Reach::Remote,
            (None, false) => Reach::None,
        };
        if reach != Reach::None {
            if !crate::mqtt::topic::is_valid_level(M::TABLE) {
                return Err(Error::InvalidTopicLevel(M::TABLE));
            }
            let needs_broker = self.remote_only || self.group.is_some();
            if needs_broker && !self.emitter.shared.has_bridge() {
                return Err(Error::NoBroker);
            }
        }
        Ok(reach)
    }

    fn register(
        self,
        id: u64,
        label: String,
        tx: Sender<Event<M>>,
        kind: Kind,
        reach: Reach,
    ) -> Result<Subscription, Error> {
        let local = !self.remote_only && !matches!(reach, Reach::Group(_));
        let slot = Arc::new(Slot {
            id,
            label,
            actions: self.actions,
            filter: self.filter,
            tx,
            when_full: self.when_full,
            kind,
            closed: AtomicBool::new(false),
            local,
            reach: reach.clone(),
        });
        let shared = &self.emitter.shared;
        let set = shared.listener_set::<M>();
        set.add(slot);
        shared.listener_added();
        if let Err(error) = shared.attach_remote::<M>(&reach) {
            remove_listener::<M>(shared, id);
            return Err(error);
        }
        tracing::debug!(
            table = M::TABLE,
            listener = id,
            ?reach,
            "listener registered"
        );
        Ok(Subscription {
            shared: Arc::downgrade(shared),
            type_id: TypeId::of::<M>(),
            id,
            remove: remove_listener::<M>,
        })
    }
}

/// Removes listener `id` of model `M`, releasing its broker subscription.
pub(crate) fn remove_listener<M: Emits>(shared: &Shared, id: u64) -> bool {
    let Some(slot) = shared
        .existing_listener_set::<M>()
        .and_then(|set| set.remove(id))
    else {
        return false;
    };
    shared.listener_removed();
    shared.detach_remote::<M>(&slot.reach);
    true
}

fn run_listener<M: Emits>(
    rx: Receiver<Event<M>>,
    shared: &Weak<Shared>,
    label: &str,
    listener: &mut impl FnMut(&Event<M>),
) {
    while let Some(event) = next_event(&rx) {
        let outcome = catch_unwind(AssertUnwindSafe(|| listener(&event)));
        let Some(shared) = shared.upgrade() else {
            continue;
        };
        shared.counters.dequeued(1);
        shared.counters.delivered();
        if outcome.is_err() {
            shared.counters.panicked();
            tracing::error!(
                listener = label,
                table = M::TABLE,
                event = %event.meta.id,
                "listener panicked; it keeps receiving"
            );
        }
    }
}

/// How long a listener thread stays awake for the next event before it sleeps.
///
/// A committer that hands an event to a sleeping listener pays for waking it (a
/// system call, then a context switch on the other core): measured here, most of
/// the cost of a single-row write's event. A listener that polls briefly after each
/// event is awake when writes come in a stream, and costs at most this much CPU
/// after the last one.
const STAY_AWAKE: std::time::Duration = std::time::Duration::from_micros(50);

fn next_event<T>(rx: &Receiver<T>) -> Option<T> {
    let awake_until = std::time::Instant::now() + STAY_AWAKE;
    loop {
        match rx.try_recv() {
            Ok(event) => return Some(event),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        if std::time::Instant::now() >= awake_until {
            return rx.recv().ok();
        }
        std::hint::spin_loop();
    }
}

/// A registered listener. Dropping it keeps the listener; call
/// [`unsubscribe`](Subscription::unsubscribe) to remove it.
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
/// let subscription = emitter.on::<User>().listen(|_| {});
/// assert_eq!(emitter.stats().listeners, 1);
/// subscription.unsubscribe();
/// assert_eq!(emitter.stats().listeners, 0);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping a Subscription keeps the listener; call .unsubscribe() to remove it"]
pub struct Subscription {
    shared: Weak<Shared>,
    type_id: TypeId,
    id: u64,
    remove: fn(&Shared, u64) -> bool,
}

impl Subscription {
    /// Removes the listener. Events already in its queue are still delivered;
    /// events committed after this returns are not.
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
    /// let subscription = emitter.on::<User>().listen(|_| {});
    /// subscription.unsubscribe();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    /// assert_eq!(emitter.stats().delivered, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub fn unsubscribe(self) {
        if let Some(shared) = self.shared.upgrade() {
            if (self.remove)(&shared, self.id) {
                tracing::debug!(listener = self.id, "listener unsubscribed");
            }
        }
    }

    /// The listener's id, unique within its emitter.
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
    /// let a = emitter.on::<User>().listen(|_| {});
    /// let b = emitter.on::<User>().listen(|_| {});
    /// assert_ne!(a.id(), b.id());
    /// # a.unsubscribe(); b.unsubscribe();
    /// # Ok(())
    /// # }
    /// ```
    pub fn id(&self) -> u64 {
        self.id
    }

    fn forget(self) {}
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("model", &self.type_id)
            .finish()
    }
}

/// Which broker stream feeds a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Local events only.
    None,
    /// Also (or only) other nodes' events, from the plain subscription.
    Remote,
    /// Every node's events, from the group's shared subscription.
    Group(Arc<str>),
}

#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Closure,
    Receiver,
}

/// One listener as the dispatcher sees it.
pub(crate) struct Slot<M> {
    pub(crate) id: u64,
    pub(crate) label: String,
    pub(crate) actions: u8,
    pub(crate) filter: Option<Filter<M>>,
    pub(crate) tx: Sender<Event<M>>,
    pub(crate) when_full: WhenFull,
    pub(crate) kind: Kind,
    pub(crate) closed: AtomicBool,
    /// Receives this node's events directly.
    pub(crate) local: bool,
    pub(crate) reach: Reach,
}

impl<M> Slot<M> {
    pub(crate) fn mark_closed(&self) -> bool {
        !self.closed.swap(true, Ordering::Relaxed)
    }
}

/// The listeners of one model. Dispatch takes a snapshot (an `Arc` clone) so that
/// a committer blocked on a full queue never holds this lock.
pub(crate) struct ListenerSet<M> {
    slots: RwLock<Arc<[Arc<Slot<M>>]>>,
    _model: PhantomData<fn() -> M>,
}

impl<M> ListenerSet<M> {
    pub(crate) fn new() -> Self {
        ListenerSet {
            slots: RwLock::new(Arc::from(Vec::new())),
            _model: PhantomData,
        }
    }

    pub(crate) fn snapshot(&self) -> Arc<[Arc<Slot<M>>]> {
        self.slots.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn add(&self, slot: Arc<Slot<M>>) {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<_> = slots.iter().cloned().collect();
        next.push(slot);
        *slots = next.into();
    }

    pub(crate) fn remove(&self, id: u64) -> Option<Arc<Slot<M>>> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let removed = slots.iter().find(|s| s.id == id).cloned()?;
        *slots = slots.iter().filter(|s| s.id != id).cloned().collect();
        Some(removed)
    }

    pub(crate) fn clear(&self) -> usize {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let n = slots.len();
        *slots = Arc::from(Vec::new());
        n
    }
}

/// Type-erased access to a [`ListenerSet`], for shutdown.
pub(crate) trait AnyListenerSet: Any + Send + Sync {
    fn clear(&self) -> usize;
}

impl<M: Emits> AnyListenerSet for ListenerSet<M> {
    fn clear(&self) -> usize {
        ListenerSet::clear(self)
    }
}
