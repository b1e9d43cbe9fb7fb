//! The process-wide emitter: [`Emitter::set_global`] and [`Emitter::global`], for
//! connections opened without one (`Connection::establish`, r2d2 pools).

use super::{Emitter, EmitterBuilder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

impl Emitter {
    /// Makes `emitter` the process-wide emitter, replacing any earlier one.
    ///
    /// Connections opened with `Connection::establish` (r2d2 pools, migrations) use it.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
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
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// Emitter::set_global(Emitter::builder().node_id("api-1").build()?);
    /// assert_eq!(Emitter::global().node_id(), "api-1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn global() -> Emitter {
        if let Some(e) = Self::try_global() {
            return e;
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

/// Writes whose events went to the local-only default emitter because no global
/// emitter was set; see [`Emitter::writes_without_global`].
static WRITES_WITHOUT_GLOBAL: AtomicU64 = AtomicU64::new(0);

impl Emitter {
    /// The emitter set by [`Emitter::set_global`], if any; unlike
    /// [`Emitter::global`] it makes no default.
    ///
    /// ```
    /// # use diesel_emitter::prelude::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::builder().node_id("api-1").build()?;
    /// Emitter::set_global(emitter.clone());
    /// assert_eq!(Emitter::try_global().map(|e| e.node_id().to_owned()), Some("api-1".into()));
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_global() -> Option<Emitter> {
        global_slot()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many write statements in this process delivered their events to the
    /// local-only default emitter, on connections opened with
    /// `Connection::establish` before any [`Emitter::set_global`]. Such events reach
    /// only listeners registered on [`Emitter::global`]'s default, which is rarely
    /// what was meant: the first one is logged as a warning. Pools that carry their
    /// emitter explicitly (`UseEmitter`) never count here.
    ///
    /// ```
    /// # use diesel_emitter::prelude::*;
    /// assert_eq!(Emitter::writes_without_global(), 0);
    /// ```
    pub fn writes_without_global() -> u64 {
        WRITES_WITHOUT_GLOBAL.load(Ordering::Relaxed)
    }

    /// Counts a write whose events went to the default emitter for want of a global
    /// one, warning the first time; called by connection wrappers.
    #[doc(hidden)]
    pub fn note_write_without_global() {
        if WRITES_WITHOUT_GLOBAL.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                "a connection opened by Connection::establish (an r2d2 pool, migrations) wrote \
                 before any Emitter::set_global: its events go to a local-only default emitter \
                 that no listener of yours is on. Call Emitter::set_global first, or give the \
                 pool its emitter with UseEmitter (counted in Emitter::writes_without_global)"
            );
        }
    }
}

fn global_slot() -> &'static RwLock<Option<Emitter>> {
    static GLOBAL: RwLock<Option<Emitter>> = RwLock::new(None);
    &GLOBAL
}
