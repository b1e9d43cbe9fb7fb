//! # diesel-emitter
//!
//! Typed change events from every committed Diesel write. Derive [`Emits`] on a
//! model, swap the connection type for [`EmittingConnection`], and every committed
//! INSERT, UPDATE and DELETE on that model's table reaches your listeners as an
//! [`Event`] of the model: after commit and never before, one per affected row. With
//! [`MqttConfig`] the same events travel through an MQTT broker to listeners on every
//! other server.
//!
//! ```
//! use diesel::connection::SimpleConnection;
//! use diesel::prelude::*;
//! use diesel_emitter::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! diesel::table! { notes (id) { id -> Integer, body -> Text } }
//!
//! #[derive(Queryable, Selectable, Serialize, Deserialize, Clone, Debug, Emits)]
//! #[diesel(table_name = notes)]
//! struct Note { id: i32, body: String }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::builder().node_id("docs").build()?;
//! let events = emitter.on::<Note>().subscribe();
//!
//! let mut conn = EmittingConnection::new(SqliteConnection::establish(":memory:")?, emitter.clone());
//! conn.batch_execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")?;
//! conn.transaction(|conn| {
//!     diesel::insert_into(notes::table).values(notes::body.eq("hello")).execute(conn)?;
//!     assert!(events.try_recv().is_err(), "nothing before the commit");
//!     diesel::update(notes::table).set(notes::body.eq("hello, world")).execute(conn)
//! })?;
//!
//! let inserted = events.recv()?;
//! assert_eq!((inserted.action, inserted.row.body.as_str()), (Action::Insert, "hello"));
//! let updated = events.recv()?;
//! assert_eq!((updated.action, updated.changed()), (Action::Update, &["body"][..]));
//! # Ok(())
//! # }
//! ```
//!
//! Listeners: [`Emitter::on`] returns a [`ListenerBuilder`] with `actions`, `filter`,
//! `capacity`, `when_full`, `allow_remote`, `remote_only` and `group`, ending in
//! `listen(closure)` (a [`Subscription`]) or `subscribe()` (a crossbeam receiver).
//! Scopes on the connection replace Prisma's per-query `emit`:
//! [`EmittingConnection::without_events`] and [`EmittingConnection::with_emit`].
//!
//! See the README for the wire format, the broker settings and the feature flags.
#![deny(missing_docs)]

pub use emitter_core::crossbeam_channel;
pub use emitter_core::{
    Action, Emit, Emits, Emitter, EmitterBuilder, Error, Event, EventMeta, ListenerBuilder,
    MqttConfig, MqttConfigError, PendingEvent, Protocol, Source, Stats, Subscription, TlsConfig,
    WhenFull, DEFAULT_CAPACITY,
};
#[cfg(feature = "postgres")]
pub use emitter_diesel::TransactionBuilder;
pub use emitter_diesel::{EmittingConnection, EmittingCursor, EmittingTransactionManager};
pub use emitter_macros::Emits;

/// The connection side, for what the facade does not re-export (the model registry,
/// the backend traits).
pub mod connection {
    pub use emitter_diesel::*;
}

/// Everything a user of diesel-emitter names: `use diesel_emitter::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Action, Emit, Emits, Emitter, EmittingConnection, Event, EventMeta, MqttConfig, Source,
        Subscription, WhenFull,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use diesel;
    #[cfg(feature = "postgres")]
    pub use emitter_diesel::model::PgModel;
    #[cfg(feature = "sqlite")]
    pub use emitter_diesel::model::SqliteModel;
    pub use inventory;
}

/// Registers a model with every backend enabled in this build; used by `#[derive(Emits)]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($model:ty, $table:ty) => {
        $crate::__register_postgres!($model, $table);
        $crate::__register_sqlite!($model, $table);
    };
}

#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_postgres {
    ($model:ty, $table:ty) => {
        $crate::__private::inventory::submit! { $crate::__private::PgModel::of::<$model, $table>() }
    };
}

#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_postgres {
    ($model:ty, $table:ty) => {};
}

#[cfg(feature = "sqlite")]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_sqlite {
    ($model:ty, $table:ty) => {
        $crate::__private::inventory::submit! { $crate::__private::SqliteModel::of::<$model, $table>() }
    };
}

#[cfg(not(feature = "sqlite"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_sqlite {
    ($model:ty, $table:ty) => {};
}
