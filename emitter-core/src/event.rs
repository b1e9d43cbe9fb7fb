//! [`Event`] and [`EventMeta`]: what a listener receives.

use crate::action::{Action, Source};
use std::sync::Arc;
use std::time::SystemTime;
use uuid::Uuid;

/// Where an event comes from and how to tell it apart from every other.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// let rx = emitter.on::<User>().subscribe();
/// diesel::insert_into(users::table)
///     .values(&vec![(users::id.eq(1), users::name.eq("a")), (users::id.eq(2), users::name.eq("b"))])
///     .execute(&mut conn)?;
/// let (first, second) = (rx.recv()?.meta, rx.recv()?.meta);
///
/// assert_eq!((first.table, &*first.origin, first.source), ("users", "api-1", Source::Local));
/// assert_eq!(second.seq, first.seq + 1);
/// assert_eq!(second.committed_at, first.committed_at, "one commit, one timestamp");
/// assert_ne!(second.id, first.id);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    /// Unique per event, also across nodes; receivers deduplicate by it.
    pub id: Uuid,
    /// The table the row belongs to.
    pub table: &'static str,
    /// The node id of the emitter that committed the write.
    pub origin: Arc<str>,
    /// Increases by one with every event an origin commits, in commit order.
    pub seq: u64,
    /// Whether this node committed the write or received it from another.
    pub source: Source,
    /// When the write's transaction committed (all events of a commit share it).
    pub committed_at: SystemTime,
}

/// One committed change to one row of a model's table.
///
/// `row` is the row after the write; for [`Action::Delete`] it is the deleted row.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// let rx = emitter.on::<User>().subscribe();
/// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
/// diesel::delete(users::table.find(1)).execute(&mut conn)?;
///
/// let inserted = rx.recv()?;
/// assert_eq!((inserted.action, inserted.row.id), (Action::Insert, 1));
/// let deleted = rx.recv()?;
/// assert_eq!((deleted.action, deleted.row.name.as_str()), (Action::Delete, "Ada"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Event<T> {
    /// Insert, update or delete.
    pub action: Action,
    /// The row, decoded into the model.
    pub row: T,
    /// Identity, origin and timing.
    pub meta: EventMeta,
    pub(crate) changed: Arc<[&'static str]>,
}

impl<T> Event<T> {
    /// The columns the statement assigned, by database name: every column for an
    /// insert and a delete, the `SET` columns for an update (the `DO UPDATE SET`
    /// columns for the update branch of an upsert).
    ///
    /// ```
    /// # include!("../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let rx = emitter.on::<User>().subscribe();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    /// diesel::update(users::table.find(1)).set(users::name.eq("Grace")).execute(&mut conn)?;
    ///
    /// assert_eq!(rx.recv()?.changed(), ["id", "name"]);
    /// assert_eq!(rx.recv()?.changed(), ["name"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn changed(&self) -> &[&'static str] {
        &self.changed
    }

    /// Whether the statement assigned `column`.
    ///
    /// ```
    /// # include!("../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// let rx = emitter.on::<User>().actions([Action::Update]).subscribe();
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    /// diesel::update(users::table.find(1)).set(users::name.eq("Grace")).execute(&mut conn)?;
    ///
    /// let event = rx.recv()?;
    /// assert!(event.did_change("name") && !event.did_change("id"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn did_change(&self, column: &str) -> bool {
        self.changed.contains(&column)
    }

    /// Builds an event from its parts; meant for tests of listener code.
    ///
    /// ```
    /// # include!("../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::EventMeta;
    /// use std::time::SystemTime;
    ///
    /// // A hand-made event to test a listener function without a database.
    /// let meta = EventMeta {
    ///     id: uuid::Uuid::nil(),
    ///     table: "users",
    ///     origin: "test".into(),
    ///     seq: 1,
    ///     source: Source::Remote,
    ///     committed_at: SystemTime::now(),
    /// };
    /// let event = Event::new(Action::Update, User { id: 1, name: "Ada".into() }, meta, vec!["name"].into());
    /// assert!(event.did_change("name"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(action: Action, row: T, meta: EventMeta, changed: Arc<[&'static str]>) -> Self {
        Event {
            action,
            row,
            meta,
            changed,
        }
    }
}
