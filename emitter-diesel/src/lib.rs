//! `EmittingConnection`: the Diesel side of diesel-emitter.
//!
//! It wraps a `PgConnection`, `SqliteConnection` or `MysqlConnection`, recognises
//! writes on tables with an `Emits` model, appends a RETURNING list of the model's
//! columns (on MySQL: locks and reads the rows by key), decodes the rows into the
//! model and keeps the events in per-transaction frames until the outermost commit hands them to the [`Emitter`](emitter_core::Emitter).

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend feature only the generic wrapper is left, and the helpers that
// each backend's glue calls have no caller.
#![cfg_attr(not(any(feature = "postgres", feature = "sqlite")), allow(dead_code))]

// Before the backend modules, which use its macro.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
#[macro_use]
mod update_fetch;

mod backend;
mod classify;
mod connection;
mod cursor;
mod frames;
mod integration;
mod outbox;
// Plumbing that appears in trait signatures and in what `#[derive(Emits)]`
// generates; application code never names it, so it stays out of the docs.
#[doc(hidden)]
pub mod model;
#[cfg(feature = "mysql")]
mod mysql;
mod plan;
mod pool;
#[cfg(feature = "postgres")]
mod postgres;
mod returning;
#[cfg(feature = "sqlite")]
mod sqlite;
mod transaction;

#[doc(hidden)]
pub use backend::DecodeRows;
pub use backend::EmittingBackend;
pub use connection::EmittingConnection;
#[doc(hidden)]
pub use cursor::EmittingCursor;
#[doc(hidden)]
pub use frames::Frames;
pub use outbox::Outbox;
#[doc(hidden)]
pub use outbox::OutboxBackend;
pub use pool::UseEmitter;
#[cfg(feature = "postgres")]
pub use postgres::TransactionBuilder;
#[doc(hidden)]
pub use returning::CapturingId;
pub use transaction::EmittingTransactionManager;
