//! The small vocabulary every event carries: what happened ([`Action`]), where it
//! came from ([`Source`]) and where a write's events may go ([`Audience`]).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of write that produced an event.
///
/// ```
/// use diesel_emitter::Action;
///
/// assert_eq!(Action::Update.as_str(), "update");
/// assert_eq!(Action::Delete.to_string(), "delete");
/// assert_eq!(serde_json::to_string(&Action::Insert).unwrap(), r#""insert""#);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A row was inserted (including the insert branch of an upsert).
    Insert,
    /// A row was updated (including the conflict branch of an upsert).
    Update,
    /// A row was deleted; the event carries the row as it was.
    Delete,
}

impl Action {
    /// Every action, in a fixed order.
    ///
    /// ```
    /// use diesel_emitter::Action;
    ///
    /// let topics: Vec<String> = Action::ALL.iter().map(|a| format!("diesel/events/users/{a}")).collect();
    /// assert_eq!(topics[2], "diesel/events/users/delete");
    /// ```
    pub const ALL: [Action; 3] = [Action::Insert, Action::Update, Action::Delete];

    /// The lowercase name used in topics and payloads: `insert`, `update`, `delete`.
    ///
    /// ```
    /// assert_eq!(diesel_emitter::Action::Insert.as_str(), "insert");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    pub(crate) const fn bit(self) -> u8 {
        match self {
            Action::Insert => 1,
            Action::Update => 2,
            Action::Delete => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an event was committed by this process or received from another node.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// let rx = emitter.on::<User>().subscribe();
/// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
/// assert_eq!(rx.recv()?.meta.source, Source::Local);
/// # Ok(())
/// # }
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Committed through an `EmittingConnection` of this emitter.
    Local,
    /// Committed on another node and received through the broker.
    Remote,
}

/// Who hears the events of a write; set for a scope with `EmittingConnection::with_emit`.
///
/// Named `Emit` before 0.1 (too close to the `Emits` derive); the old name is a
/// deprecated alias.
///
/// This is the Rust form of Prisma's per-query `emit: { local, remote }`.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// let rx = emitter.on::<User>().subscribe();
/// // A bulk import that other servers should hear about, but this one should not.
/// conn.with_emit(Audience::RemoteOnly, |conn| {
///     diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(conn)
/// })?;
/// assert!(rx.try_recv().is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Audience {
    /// Local listeners and the broker (the default).
    #[default]
    All,
    /// Local listeners only; nothing is published.
    LocalOnly,
    /// The broker only; local listeners do not see the event.
    RemoteOnly,
    /// No event at all. The statement runs exactly as written, with no capture cost.
    Off,
}

impl Audience {
    /// Whether local listeners receive events written under this mode.
    ///
    /// ```
    /// use diesel_emitter::Audience;
    /// assert!(Audience::LocalOnly.reaches_local() && !Audience::RemoteOnly.reaches_local());
    /// ```
    pub const fn reaches_local(self) -> bool {
        matches!(self, Audience::All | Audience::LocalOnly)
    }

    /// Whether events written under this mode are published to the broker.
    ///
    /// ```
    /// use diesel_emitter::Audience;
    /// assert!(Audience::All.reaches_remote() && !Audience::Off.reaches_remote());
    /// ```
    pub const fn reaches_remote(self) -> bool {
        matches!(self, Audience::All | Audience::RemoteOnly)
    }
}

/// The former name of [`Audience`].
#[deprecated(
    since = "0.1.0",
    note = "renamed to `Audience` (too close to the `Emits` derive)"
)]
pub type Emit = Audience;
