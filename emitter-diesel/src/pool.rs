//! [`UseEmitter`]: r2d2 pools whose connections carry their emitter explicitly.

use crate::backend::EmittingBackend;
use crate::connection::EmittingConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Error, Pool};
use emitter_core::Emitter;

/// Gives every connection of an r2d2 pool of `EmittingConnection`s the same
/// emitter, so the pool needs no [`Emitter::set_global`].
///
/// `ConnectionManager` opens connections with `Connection::establish`, which only
/// knows the process-wide emitter; this customizer hands each new connection the
/// one it was built with as the pool acquires it.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// use diesel::r2d2::{ConnectionManager, Pool};
/// use diesel_emitter::UseEmitter;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::builder().node_id("api-1").build()?;
/// let rx = emitter.on::<User>().subscribe();
/// // PostgreSQL alike: ConnectionManager::<EmittingConnection<PgConnection>>::new(url)
/// let pool = UseEmitter::pool_builder(emitter.clone())
///     .max_size(1)
///     .build(ConnectionManager::<EmittingConnection<SqliteConnection>>::new(":memory:"))?;
/// // or: Pool::builder().connection_customizer(Box::new(UseEmitter::new(emitter)))
///
/// let mut conn = pool.get()?;
/// conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")?;
/// diesel::insert_into(users::table).values(users::name.eq("Ada")).execute(&mut conn)?;
/// assert_eq!(rx.recv()?.meta.origin.as_ref(), "api-1");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct UseEmitter(Emitter);

impl UseEmitter {
    /// A customizer that gives each pooled connection `emitter`.
    pub fn new(emitter: Emitter) -> Self {
        UseEmitter(emitter)
    }

    /// An r2d2 pool builder with this customizer set; add settings, then `build`.
    pub fn pool_builder<C: EmittingBackend>(
        emitter: Emitter,
    ) -> diesel::r2d2::Builder<ConnectionManager<EmittingConnection<C>>>
    where
        EmittingConnection<C>: diesel::r2d2::R2D2Connection,
    {
        Pool::builder().connection_customizer(Box::new(UseEmitter::new(emitter)))
    }
}

impl<C: EmittingBackend> CustomizeConnection<EmittingConnection<C>, Error> for UseEmitter {
    fn on_acquire(&self, conn: &mut EmittingConnection<C>) -> Result<(), Error> {
        conn.set_emitter(self.0.clone());
        Ok(())
    }
}
