//! [`Emitter`]: the registry of listeners and the entry point of committed events.
//!
//! This module owns the handle and the state its clones share (`Shared`: the
//! listener registry, the commit lock and delivery turn, the counters, the broker
//! bridge and outbox).
//! Building an emitter, taking committed events in, its lifecycle and the
//! process-wide emitter each live in a submodule.

mod builder;
mod global;
mod intake;
mod lifecycle;
mod listen;
mod subscription;

pub use builder::EmitterBuilder;
pub use listen::ListenerBuilder;
pub use subscription::Subscription;

use crate::commit::Sequencer;
use crate::emits::Emits;
use crate::error::Error;
use crate::listener::{Reach, Registry};
use crate::stats::{Counters, Stats};
use crate::transport::Transport;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};

/// Delivers committed events to listeners. Cheap to clone: clones share everything.
///
/// One emitter per process is the usual setup: build it at startup, register the
/// listeners, and hand it to every `EmittingConnection` (or make it
/// [global](Emitter::set_global) for pools).
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
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

pub(crate) struct Shared {
    pub(crate) node_id: Arc<str>,
    pub(crate) instance: u64,
    pub(crate) counters: Counters,
    /// Held while a commit is numbered (never while events are delivered); hands
    /// out `seq`. Shared with the outbox relay, which reads which `seq` are settled.
    pub(crate) commit_lock: Arc<Mutex<Sequencer>>,
    /// Signals the delivery turn's return to committers waiting for it; see
    /// `commit.rs`.
    pub(crate) delivery_turn: Condvar,
    pub(crate) registry: Registry,
    pub(crate) shut_down: AtomicBool,
    transport: Option<Arc<dyn Transport>>,
    outbox: Option<Outbox>,
}

/// The outbox as the emitter holds it.
struct Outbox {
    table: String,
    relay: Option<crate::outbox::relay::RelayHandle>,
}

impl Shared {
    /// The transport as delivery uses it.
    pub(crate) fn transport(&self) -> Option<&dyn Transport> {
        self.transport.as_deref()
    }

    /// Takes the broker subscription a listener of `M` with `reach` needs.
    pub(crate) fn attach_remote<M: Emits>(self: &Arc<Self>, reach: &Reach) -> Result<(), Error> {
        let (Some(transport), Some(route)) = (&self.transport, crate::dispatch::route::<M>(reach))
        else {
            return Ok(());
        };
        let weak = Arc::downgrade(self);
        transport.attach(route, &mut || {
            Arc::new(crate::dispatch::ModelSink::<M, Shared>::new(weak.clone()))
        })
    }

    /// Wakes the outbox relay after a commit wrote outbox rows.
    pub(crate) fn kick_outbox(&self) {
        if let Some(relay) = self.outbox.as_ref().and_then(|o| o.relay.as_ref()) {
            relay.kick();
        }
    }
}

impl Emitter {
    /// Starts configuring an emitter.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
    /// # include!("../../../src/doctest_setup.rs");
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
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
        let mut stats = self.shared.counters.snapshot(self.shared.registry.count());
        if let Some(transport) = &self.shared.transport {
            transport.fill_stats(&mut stats);
        }
        if let Some(relay) = self.shared.outbox.as_ref().and_then(|o| o.relay.as_ref()) {
            relay.counters.fill(&mut stats);
        }
        stats
    }

    /// Whether this emitter publishes to and subscribes at a broker.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(!Emitter::builder().build()?.has_broker());
    /// # Ok(())
    /// # }
    /// ```
    pub fn has_broker(&self) -> bool {
        self.shared.transport().is_some()
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
        self.shared.outbox.as_ref().map(|o| o.table.as_str())
    }
}

impl fmt::Debug for Emitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter")
            .field("node_id", &self.node_id())
            .field("stats", &self.stats())
            .finish()
    }
}
