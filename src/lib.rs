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
//! ## A tour, from derive to remote listener
//!
//! **1. The model.** `#[derive(Emits)]` goes next to Diesel's own derives and reads
//! Diesel's attributes (`table_name`, `column_name`, `primary_key`). The model also
//! needs serde's `Serialize` and `Deserialize`: that is the form its rows travel in
//! between servers. Nothing is registered by hand.
//!
//! **2. The emitter and its listeners.** One [`Emitter`] per process. [`Emitter::on`]
//! returns a [`ListenerBuilder`]: narrow it with `actions` and `filter`, bound it with
//! `capacity` and [`WhenFull`], then either `listen(closure)` (the closure runs on a
//! thread of its own and returns a [`Subscription`]) or `subscribe()` (a crossbeam
//! `Receiver` you drain yourself).
//!
//! ```
//! # include!("doctest_setup.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::builder().node_id("api-1").build()?;
//! let welcome = emitter
//!     .on::<User>()
//!     .actions([Action::Insert])
//!     .listen(|event| tracing::info!(user = event.row.id, "send a welcome mail"));
//! let renames = emitter
//!     .on::<User>()
//!     .filter(|event| event.did_change("name"))
//!     .when_full(WhenFull::Drop)
//!     .subscribe();
//! # drop(renames); welcome.unsubscribe();
//! # Ok(())
//! # }
//! ```
//!
//! **3. The connection.** [`EmittingConnection`] wraps a `PgConnection`, a
//! `SqliteConnection` or (feature `mysql`) a `MysqlConnection` and is used exactly like it. Events wait for the outermost
//! commit: a rolled-back transaction or savepoint delivers nothing of its own, a
//! failed statement nothing at all. r2d2 pools get their emitter from [`UseEmitter`]
//! (connections opened by `Connection::establish` elsewhere, as by migrations, use
//! [`Emitter::set_global`]'s):
//!
//! ```no_run
//! # use diesel::prelude::*;
//! # use diesel_emitter::prelude::*;
//! use diesel::r2d2::ConnectionManager;
//! use diesel_emitter::UseEmitter;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emitter = Emitter::builder().node_id("api-1").build()?;
//! let pool = UseEmitter::pool_builder(emitter.clone())
//!     .build(ConnectionManager::<EmittingConnection<PgConnection>>::new("postgres://localhost/app"))?;
//! let mut conn = pool.get()?;
//! # let _ = &mut conn;
//! # Ok(())
//! # }
//! ```
//!
//! **4. Scopes.** Prisma's per-query `emit` becomes a scope on the connection:
//! [`EmittingConnection::with_emit`] with [`Audience::LocalOnly`], [`Audience::RemoteOnly`]
//! or [`Audience::Off`], and [`EmittingConnection::without_events`] for the last.
//!
//! **5. Other servers.** Give the builder an [`MqttConfig`] and every committed event
//! is also published to the broker (from a thread of its own; the committing thread
//! never waits for the network). Listeners opt in to other servers' events with
//! `allow_remote(true)` or `remote_only(true)`; `group("name")` shares the work of a
//! group across servers, each event handled once.
//!
//! ```no_run
//! # include!("doctest_setup.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! let emitter = Emitter::builder()
//!     .node_id("api-1")
//!     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883"))
//!     .build()?;
//! let cache = emitter.on::<User>().allow_remote(true).listen(|event| {
//!     if event.meta.source == Source::Remote {
//!         tracing::info!(origin = %event.meta.origin, user = event.row.id, "evict");
//!     }
//! });
//! let mailer = emitter.on::<User>().actions([Action::Insert]).group("mailer").listen(|_| {});
//! emitter.wait_connected(Duration::from_secs(5))?;
//! # drop((cache, mailer));
//!
//! // ... serve requests ...
//!
//! // Deliver what is queued and publish what is committed before exiting.
//! emitter.shutdown(Duration::from_secs(10))?;
//! # Ok(())
//! # }
//! ```
//!
//! **6. Watching it.** [`Emitter::stats`] counts what was emitted, delivered, dropped,
//! published and received; nothing is dropped without being counted and logged
//! through `tracing`.
//!
//! The README documents the wire format, the broker settings and the feature flags;
//! `docs/how-it-works.md` in the repository explains the statement rewrite, the
//! transaction frames and the threads, and the limits.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use emitter_core::crossbeam_channel;
pub use emitter_core::outbox;
#[allow(deprecated)]
pub use emitter_core::Emit;
pub use emitter_core::{integration, transport, wire};
pub use emitter_core::{
    Action, Audience, Emits, Emitter, EmitterBuilder, Error, Event, EventMeta, ListenerBuilder,
    Source, Stats, Subscription, WhenFull, DEFAULT_CAPACITY, DEFAULT_STAY_AWAKE, MAX_QUEUE_BYTES,
    MAX_STAY_AWAKE,
};
/// The cursor type of `EmittingConnection`'s loads: plumbing, never named by users.
#[doc(hidden)]
pub use emitter_diesel::EmittingCursor;
#[cfg(feature = "postgres")]
pub use emitter_diesel::TransactionBuilder;
pub use emitter_diesel::{EmittingConnection, EmittingTransactionManager, Outbox, UseEmitter};
/// Model attributes and their checks: see [`emitter_macros`]. In short, the derive
/// reads Diesel's `table_name`, `column_name`, `primary_key` and `check_for_backend`;
/// `#[emits(skip)]` keeps a field out of published payloads.
///
/// ```
/// use diesel::prelude::*;
/// use diesel_emitter::prelude::*;
///
/// diesel::table! { users (id) { id -> Int4, name -> Text, email -> Text, token -> Text } }
///
/// #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
/// #[diesel(table_name = users)]
/// struct User {
///     id: i32,
///     name: String,
///     #[diesel(column_name = email)]
///     mail: String,
///     #[emits(skip)]
///     token: String,
/// }
///
/// assert_eq!(User::TABLE, "users");
/// assert_eq!(User::COLUMNS, ["id", "name", "email", "token"]);
/// assert_eq!((User::PRIMARY_KEY, User::SKIPPED), (&["id"][..], &["token"][..]));
/// ```
///
/// ```
/// use diesel::prelude::*;
/// use diesel_emitter::prelude::*;
///
/// diesel::table! { orders (shop, number) { shop -> Integer, number -> Integer, total -> BigInt } }
///
/// #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
/// #[diesel(table_name = orders, primary_key(shop, number))]
/// #[diesel(check_for_backend(diesel::sqlite::Sqlite))]
/// struct Order { shop: i32, number: i32, total: i64 }
///
/// assert_eq!(Order::PRIMARY_KEY, ["shop", "number"]);
/// ```
pub use emitter_macros::Emits;
/// The MQTT transport (crate `emitter-mqtt`): its configuration, and the wire
/// format under the names it had before the transport had its own crate.
#[cfg(feature = "mqtt")]
pub use emitter_mqtt as mqtt;
#[cfg(feature = "mqtt")]
pub use emitter_mqtt::{MqttBuilderExt, MqttConfig, MqttConfigError, Protocol, TlsConfig};

/// The connection side, for what the facade does not re-export (the model registry,
/// the backend traits).
pub mod connection {
    pub use emitter_diesel::*;
}

/// What nearly every user of diesel-emitter names: `use diesel_emitter::prelude::*;`.
///
/// Diesel's rule: a prelude holds what most code needs and names that will not
/// collide with the user's own. Each name here earns its place:
///
/// - `Emits` (the derive and its trait), `Emitter` and `EmittingConnection`: the
///   three names every setup uses, and specific to this crate.
/// - `Action`: nearly every listener says `.actions([Action::Insert])`. It is a
///   common word, but a glob import never conflicts with an item of your own: your
///   `Action` shadows this one, and you name ours `diesel_emitter::Action`.
/// - `Audience` and `WhenFull`: the values `with_emit` and `when_full` take.
/// - `MqttConfig` and (unnamed) `MqttBuilderExt`, with the `mqtt` feature: so that
///   `Emitter::builder().mqtt(MqttConfig::new(..))` reads as it does.
///
/// `Event`, `EventMeta`, `Source` and `Subscription` are generic words that
/// applications often define themselves, and most code never names them (a
/// closure's `event` parameter is inferred): import them from the crate root.
pub mod prelude {
    pub use crate::{Action, Audience, Emits, Emitter, EmittingConnection, WhenFull};
    #[cfg(feature = "mqtt")]
    pub use crate::{MqttBuilderExt as _, MqttConfig};
}

#[doc(hidden)]
pub mod __private {
    pub use diesel;
    #[cfg(feature = "mysql")]
    pub use emitter_diesel::model::MysqlModel;
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
        $crate::__register_mysql!($model, $table);
    };
}

#[cfg(feature = "mysql")]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_mysql {
    ($model:ty, $table:ty) => {
        $crate::__private::inventory::submit! { $crate::__private::MysqlModel::of::<$model, $table>() }
    };
}

#[cfg(not(feature = "mysql"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_mysql {
    ($model:ty, $table:ty) => {};
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
