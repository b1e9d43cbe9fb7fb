//! # diesel-emitter
//!
//! Typed change events from every committed Diesel write. Derive [`Emits`] on a
//! model, swap the connection type for [`EmittingConnection`], and every committed
//! INSERT, UPDATE and DELETE on that model's table reaches your listeners as an
//! [`Event`] of the model, after commit and never before.
//!
//! See the README for a walk-through, the wire format and the feature flags.

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
    ($model:ty) => {
        $crate::__register_postgres!($model);
        $crate::__register_sqlite!($model);
    };
}

#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_postgres {
    ($model:ty) => {
        $crate::__private::inventory::submit! { $crate::__private::PgModel::of::<$model>() }
    };
}

#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_postgres {
    ($model:ty) => {};
}

#[cfg(feature = "sqlite")]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_sqlite {
    ($model:ty) => {
        $crate::__private::inventory::submit! { $crate::__private::SqliteModel::of::<$model>() }
    };
}

#[cfg(not(feature = "sqlite"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __register_sqlite {
    ($model:ty) => {};
}
