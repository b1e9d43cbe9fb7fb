//! [`ListenerBuilder`]: a listener's options (actions, filter, queue, reach), checked
//! and turned into a registered listener by `listen` or `subscribe`.

mod queue;

use super::subscription::{remove_listener, Subscription};
use crate::action::Action;
use crate::emits::Emits;
use crate::emitter::Emitter;
use crate::error::Error;
use crate::event::Event;
use crate::listener::{run_listener, Backlog};
use crate::listener::{
    slot_bytes, Filter, Kind, Reach, Slot, WhenFull, DEFAULT_CAPACITY, DEFAULT_STAY_AWAKE,
    MAX_QUEUE_BYTES, MAX_STAY_AWAKE,
};
use crossbeam_channel::{Receiver, Sender};
use std::any::TypeId;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Configures a listener for events of model `M`; from [`Emitter::on`].
///
/// ```
/// # include!("../../../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
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
    pub(super) capacity: usize,
    pub(super) when_full: WhenFull,
    pub(super) stay_awake: Duration,
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
            stay_awake: DEFAULT_STAY_AWAKE,
            name: None,
            allow_remote: false,
            remote_only: false,
            group: None,
        }
    }

    /// Also receive events committed on other nodes, through the broker, as
    /// [`Source::Remote`](crate::Source); this node's own events still arrive once,
    /// locally. Without a broker configured (`.mqtt(..)` on the builder) the
    /// listener sees local events only.
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let cache_invalidation = emitter.on::<User>().allow_remote(true).subscribe();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    ///
    /// let event = cache_invalidation.recv()?;
    /// match event.meta.source {
    ///     Source::Local => { /* written by this server */ }
    ///     Source::Remote => { /* written by event.meta.origin */ }
    /// }
    /// assert_eq!(event.meta.source, Source::Local);
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
    /// # include!("../../../../src/doctest_setup.rs");
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
    /// On every server, with a broker: each new user gets one welcome mail,
    /// whichever server sends it (the full example is on
    /// `diesel_emitter::MqttBuilderExt`). Without one, a group is refused:
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let local_only = Emitter::builder().build()?;
    /// let mailer = local_only
    ///     .on::<User>()
    ///     .actions([Action::Insert])
    ///     .group("mailer")
    ///     .try_listen(|event| { let _ = &event.row; /* send the mail */ });
    /// assert!(matches!(mailer, Err(diesel_emitter::Error::NoBroker)));
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
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// it cheap; for a remote event, on the broker client's receive thread, where a
    /// slow filter holds up every broker client of the process. A panicking filter
    /// counts as a panic and as "no match".
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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

    /// A name for logs and the listener's thread.
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
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
    /// Panics on the errors [`try_listen`](Self::try_listen) returns (a capacity of
    /// zero or too large, a thread that cannot be spawned, ...).
    ///
    /// ```
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../../src/doctest_setup.rs");
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
        let registry = &shared.registry;
        let id = registry.next_listener_id();
        let label = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}#{id}", M::TABLE));
        let backlog = Arc::new(Backlog::new());
        let thread_backlog = backlog.clone();
        let marker = (registry.id(), id);
        // Weak: a listener's thread must not keep its emitter alive.
        let counted = Arc::downgrade(&shared);
        let done = registry.done_token();
        let thread_label = label.clone();
        let stay_awake = self.stay_awake;
        let thread = std::thread::Builder::new()
            .name(format!("emitter-{label}"))
            .spawn(move || {
                let _done = done;
                let mut handled = |panicked: bool| {
                    let Some(shared) = counted.upgrade() else {
                        return;
                    };
                    shared.counters.dequeued(1);
                    shared.counters.delivered();
                    if panicked {
                        shared.counters.panicked();
                    }
                };
                run_listener(
                    rx,
                    &thread_backlog,
                    marker,
                    &thread_label,
                    stay_awake,
                    &mut listener,
                    &mut handled,
                );
            })?;
        registry.keep_thread(thread);
        self.register(id, label, tx, backlog, Kind::Closure, reach)
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
    /// # include!("../../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../../src/doctest_setup.rs");
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
        let id = self.emitter.shared.registry.next_listener_id();
        let label = self
            .name
            .clone()
            .unwrap_or_else(|| format!("{}#{id}", M::TABLE));
        let backlog = Arc::new(Backlog::new());
        self.register(id, label, tx, backlog, Kind::Receiver, reach)?
            .forget();
        Ok(rx)
    }

    /// Validates the options; returns where the listener's events come from.
    fn check(&self) -> Result<Reach, Error> {
        if self.capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        let slot = slot_bytes::<M>();
        if self
            .capacity
            .checked_mul(slot)
            .is_none_or(|bytes| bytes > MAX_QUEUE_BYTES)
        {
            return Err(Error::CapacityTooLarge {
                requested: self.capacity,
                max: MAX_QUEUE_BYTES / slot,
                slot_bytes: slot,
                limit: MAX_QUEUE_BYTES,
            });
        }
        if self.stay_awake > MAX_STAY_AWAKE {
            return Err(Error::StayAwakeTooLong {
                requested: self.stay_awake,
                max: MAX_STAY_AWAKE,
            });
        }
        let reach = match (&self.group, self.allow_remote || self.remote_only) {
            (Some(group), _) => {
                if !crate::wire::is_valid_level(group) {
                    return Err(Error::InvalidGroup(group.clone()));
                }
                Reach::Group(group.as_str().into())
            }
            (None, true) => Reach::Remote,
            (None, false) => Reach::None,
        };
        if reach != Reach::None {
            if !crate::wire::is_valid_level(M::TABLE) {
                return Err(Error::InvalidTopicLevel(M::TABLE));
            }
            let needs_broker = self.remote_only || self.group.is_some();
            if needs_broker && self.emitter.shared.transport().is_none() {
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
        backlog: Arc<Backlog<Event<M>>>,
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
            backlog,
        });
        let shared = &self.emitter.shared;
        shared.registry.add(slot);
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
