//! The entry point of committed events: [`Emitter::commit`] after a commit,
//! [`Emitter::prepare`] before one (for the outbox), and the count of committed
//! rows that could not become events.

use super::{Emitter, Shared};
use crate::commit::{Host, PreparedCommit, Sequencing};
use crate::dispatch::{Outlet, Outlets};
use crate::pending::PendingEvent;
use std::fmt;

impl Outlet for Shared {
    fn outlets(&self) -> Outlets<'_> {
        Outlets {
            registry: &self.registry,
            counters: &self.counters,
            transport: self.transport(),
        }
    }
}

impl Host for Shared {
    fn sequencing(&self) -> Sequencing<'_> {
        Sequencing {
            sequencer: &self.commit_lock,
            turn: &self.delivery_turn,
            shut_down: &self.shut_down,
            origin: &self.node_id,
            instance: self.instance,
        }
    }

    fn outbox_written(&self) {
        self.kick_outbox();
    }
}

impl Emitter {
    /// Delivers the events of one committed write or transaction, in order.
    ///
    /// `EmittingConnection` calls this after a successful commit; other integrations
    /// may call it too. Events are numbered in one step with respect to other
    /// commits on this emitter, and reach every listener in that order; when it
    /// returns they are in the listeners' queues (unless transactions numbered
    /// earlier are still committing, or it is called from a closure listener's own
    /// thread while another thread delivers: then they follow as soon as those are
    /// done or that thread gets to them).
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// use diesel_emitter::integration::PendingEvent;
    ///
    /// let rx = emitter.on::<User>().subscribe();
    /// // What an integration other than EmittingConnection does after its own commit:
    /// let row = User { id: 7, name: "Ada".into() };
    /// emitter.commit([PendingEvent::new(Action::Insert, row, vec!["id", "name"].into(), Audience::All)]);
    ///
    /// assert_eq!(rx.recv()?.row.id, 7);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(hidden)]
    pub fn commit(&self, events: impl IntoIterator<Item = PendingEvent>) {
        // From a Vec (what EmittingConnection passes) this reuses its buffer.
        crate::commit::commit(&*self.shared, events.into_iter().collect());
    }

    /// Numbers a transaction's events before its COMMIT, for the outbox; the
    /// connection wrapper calls it, and so can another integration that writes the
    /// outbox rows itself.
    ///
    /// Write [`PreparedCommit::outbox_entries`] into the outbox inside the
    /// transaction, commit, then call [`PreparedCommit::committed`]; drop it if the
    /// commit failed. Until then, events of transactions numbered later wait, so that
    /// listeners see `seq` in order.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// use diesel_emitter::integration::PendingEvent;
    ///
    /// let rx = emitter.on::<User>().subscribe();
    /// let row = User { id: 7, name: "Ada".into() };
    /// let prepared = emitter.prepare(vec![PendingEvent::new(Action::Insert, row, vec!["id", "name"].into(), Audience::All)]);
    /// assert!(rx.try_recv().is_err(), "nothing before the commit");
    /// prepared.committed();
    /// assert_eq!(rx.recv()?.meta.seq, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(hidden)]
    pub fn prepare(&self, events: Vec<PendingEvent>) -> PreparedCommit {
        PreparedCommit::new(self.shared.clone(), events)
    }

    /// Counts and logs a committed row that could not become an event.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// emitter.record_capture_error("users", &"column 2 is not valid UTF-8");
    /// assert_eq!(emitter.stats().capture_errors, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(hidden)]
    pub fn record_capture_error(&self, table: &str, error: &dyn fmt::Display) {
        self.shared.counters.capture_error();
        tracing::error!(table, %error, "a committed row could not be captured as an event");
    }

    /// Counts a write on a model's table that ran without capture, and logs it the
    /// first time this `table` and `reason` meet in this process (a statement that
    /// runs in a loop would otherwise flood the log).
    ///
    /// ```
    /// # use diesel_emitter::prelude::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::builder().build()?;
    /// emitter.record_uncaptured_write("users", "the model's columns are not all in the table");
    /// emitter.record_uncaptured_write("users", "the model's columns are not all in the table");
    /// assert_eq!(emitter.stats().uncaptured_writes, 2);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(hidden)]
    pub fn record_uncaptured_write(&self, table: &str, reason: &str) {
        use std::collections::HashSet;
        use std::sync::Mutex;
        static LOGGED: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);
        self.shared.counters.uncaptured_write();
        let first = LOGGED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert((table.to_owned(), reason.to_owned()));
        if first {
            tracing::warn!(
                table,
                reason,
                "a write on a table with an Emits model ran without capture: its rows emit no events \
                 (counted in stats().uncaptured_writes; logged once per table and reason)"
            );
        }
    }
}
