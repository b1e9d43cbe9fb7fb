//! The process-wide emitter: [`Emitter::set_global`] and [`Emitter::global`], for
//! connections opened without one (`Connection::establish`, r2d2 pools).

use super::{Emitter, EmitterBuilder};
use std::sync::RwLock;

impl Emitter {
    /// Makes `emitter` the process-wide emitter, replacing any earlier one.
    ///
    /// Connections opened with `Connection::establish` (r2d2 pools, migrations) use it.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::builder().node_id("api-1").build()?;
    /// Emitter::set_global(emitter.clone());
    ///
    /// // What an r2d2 pool (`ConnectionManager<EmittingConnection<_>>`) does for each connection:
    /// let conn = EmittingConnection::<SqliteConnection>::establish(":memory:")?;
    /// assert_eq!(conn.emitter().node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_global(emitter: Emitter) {
        *global_slot().write().unwrap_or_else(|e| e.into_inner()) = Some(emitter);
    }

    /// The process-wide emitter: the last one given to [`set_global`](Self::set_global),
    /// or a local-only emitter with a random node id, created on first use.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// Emitter::set_global(Emitter::builder().node_id("api-1").build()?);
    /// assert_eq!(Emitter::global().node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn global() -> Emitter {
        if let Some(e) = global_slot()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return e.clone();
        }
        global_slot()
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| {
                tracing::debug!("no global emitter set; using a local-only default");
                EmitterBuilder::default()
                    .build()
                    .unwrap_or_else(|e| unreachable!("the default configuration is valid: {e}"))
            })
            .clone()
    }
}

fn global_slot() -> &'static RwLock<Option<Emitter>> {
    static GLOBAL: RwLock<Option<Emitter>> = RwLock::new(None);
    &GLOBAL
}
