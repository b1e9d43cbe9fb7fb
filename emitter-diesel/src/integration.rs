//! r2d2 pools and diesel_migrations: pass-through of the inner connection's support.

use crate::backend::EmittingBackend;
use crate::connection::EmittingConnection;
use diesel::migration::MigrationConnection;
use diesel::r2d2::R2D2Connection;
use diesel::result::QueryResult;

/// Pools open connections with `establish`, so their events go to the global
/// emitter (`Emitter::set_global`), unless the pool hands them one with
/// [`UseEmitter`](crate::UseEmitter).
impl<C: EmittingBackend + R2D2Connection> R2D2Connection for EmittingConnection<C> {
    fn ping(&mut self) -> QueryResult<()> {
        self.inner.ping()
    }

    fn is_broken(&mut self) -> bool {
        self.inner.is_broken()
    }
}

/// The migrations table is created by the inner connection; inserts into it go
/// through the wrapper and never emit (it is excluded from every registry).
impl<C: EmittingBackend + MigrationConnection> MigrationConnection for EmittingConnection<C> {
    fn setup(&mut self) -> QueryResult<usize> {
        self.inner.setup()
    }
}
