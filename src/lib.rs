//! # diesel-emitter
//!
//! Typed change events from every committed Diesel write. Derive [`Emits`] on a
//! model, swap the connection type for [`EmittingConnection`], and every committed
//! INSERT, UPDATE and DELETE on that model's table reaches your listeners as an
//! [`Event`] of the model, after commit and never before.
//!
//! See the README for a walk-through, the wire format and the feature flags.

pub use emitter_core::{
    Action, Emit, Emits, Emitter, EmitterBuilder, Error, Event, EventMeta, ListenerBuilder,
    PendingEvent, Source, Stats, Subscription, WhenFull, DEFAULT_CAPACITY,
};
pub use emitter_core::crossbeam_channel;
pub use emitter_macros::Emits;

/// The three crates behind this facade, for what the facade does not re-export.
pub mod core {
    pub use emitter_core::*;
}

/// Everything a user of diesel-emitter names: `use diesel_emitter::prelude::*;`.
pub mod prelude {
    pub use crate::{Action, Emit, Emits, Emitter, Event, EventMeta, Source, Subscription, WhenFull};
}

#[doc(hidden)]
pub mod __private {
    pub use diesel;
    pub use inventory;
    #[cfg(feature = "postgres")]
    pub use emitter_diesel::model::PgModel;
    #[cfg(feature = "sqlite")]
    pub use emitter_diesel::model::SqliteModel;
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
