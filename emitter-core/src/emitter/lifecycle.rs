//! The emitter's lifecycle: waiting for the broker at startup, and shutting down
//! (draining queued events and waiting for listener threads).

use super::Emitter;
use crate::error::Error;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl Emitter {
    /// Waits until the broker connection is up and every remote listener's
    /// subscription is in place, at most `timeout`.
    ///
    /// Useful at startup and in tests: events committed on other nodes before a
    /// remote listener's subscription is in place are not delivered to it.
    ///
    /// With a broker (`.mqtt(..)` on the builder), register the remote listeners,
    /// then wait: events other servers commit from then on reach them. An emitter
    /// without one has nothing to wait for:
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::Error;
    /// use std::time::Duration;
    ///
    /// let emitter = Emitter::builder().build()?;
    /// assert!(matches!(emitter.wait_connected(Duration::from_secs(5)), Err(Error::NoBroker)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        if let Some(transport) = &self.shared.transport {
            let deadline = Instant::now() + timeout;
            while !transport.is_ready() {
                if Instant::now() >= deadline {
                    return Err(Error::BrokerUnreachable {
                        url: transport.url().to_owned(),
                        reason: format!("not connected and subscribed within {timeout:?}"),
                    });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            return Ok(());
        }
        Err(Error::NoBroker)
    }

    /// Stops taking events, delivers every queued event to its listener, and waits
    /// for listener threads to finish, at most `timeout`.
    ///
    /// Events committed afterwards are counted as dropped. `subscribe()` receivers
    /// keep their queued events and then end. When it returns `Ok`, every thread
    /// of the emitter has ended (listeners, MQTT publisher, relay, subscribers) and
    /// the relay's socket directory is removed.
    ///
    /// # When it times out
    ///
    /// It returns [`Error::ShutdownTimeout`] at `timeout`, with the number of
    /// events not yet handled, and stops nothing by force: a thread cannot be
    /// stopped safely from outside. What then still runs, and for how long:
    ///
    /// - a closure listener still busy calls its closure for the events already in
    ///   its queue (nothing new is queued, the emitter takes no more events), then
    ///   its thread ends; `pending` counts those events, and calling `shutdown`
    ///   again waits for them;
    /// - a commit blocked on a full [`WhenFull::Block`](crate::WhenFull) queue stays
    ///   blocked until that listener makes room;
    /// - the MQTT publisher stops publishing at the deadline (what was not
    ///   acknowledged is counted in `Stats::publish_failed` and in `pending`); its
    ///   thread, its Paho client and its relay end at most a few seconds later,
    ///   once Paho has finished what it was doing;
    /// - a broker subscriber ends within 100 ms of the deadline (plus the time its
    ///   Paho client takes to disconnect); what it still receives is dropped, as no
    ///   listener is registered any more;
    /// - the outbox relay stops claiming rows; rows it did not publish stay in the
    ///   outbox for the next start.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let (emitter, mut conn) = setup()?;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    ///
    /// let seen = Arc::new(AtomicUsize::new(0));
    /// let counter = seen.clone();
    /// let _listener = emitter.on::<User>().listen(move |_| {
    ///     counter.fetch_add(1, Ordering::SeqCst);
    /// });
    /// diesel::insert_into(users::table).values((users::id.eq(1), users::name.eq("Ada"))).execute(&mut conn)?;
    ///
    /// // Every event queued before shutdown reaches its listener.
    /// emitter.shutdown(std::time::Duration::from_secs(5))?;
    /// assert_eq!(seen.load(Ordering::SeqCst), 1);
    /// assert!(emitter.is_shut_down());
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let shared = &*self.shared;
        let deadline = Instant::now() + timeout;
        shared.shut_down.store(true, Ordering::Release);
        // Waiting until every numbered event was delivered lets an in-flight
        // delivery finish first (the commit lock, taken to look, also makes every
        // later commit see `shut_down`); one blocked on a full queue nobody reads
        // may never finish, so not past the deadline. Only looked at, never taken:
        // the thread that has the delivery turn is the one that must finish.
        let dispatch_finished = loop {
            let idle = shared
                .commit_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_idle();
            if idle {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let mut unsent = 0;
        // Whether every thread of the outbox relay and the transport ended.
        let mut threads_ended = true;
        if let Some(relay) = shared.outbox.as_ref().and_then(|o| o.relay.as_ref()) {
            if !relay.close(deadline) {
                tracing::warn!("outbox relay did not stop in time; its rows stay in the outbox");
                threads_ended = false;
            }
        }
        if let Some(transport) = &shared.transport {
            let closed = transport.close(deadline);
            unsent = closed.unsent;
            threads_ended &= closed.stopped;
        }
        shared.registry.clear();
        // The delivery turn's snapshot holds senders: the listener threads end
        // only once it is gone too.
        shared
            .commit_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget_listeners();
        if !shared.registry.wait_threads(deadline) {
            return Err(Error::ShutdownTimeout {
                timeout,
                pending: shared.counters.queued() + unsent,
            });
        }
        // Every listener thread dropped its token, its last act: joining now waits
        // only for the threads to exit, so that none is left when this returns.
        shared.registry.join_threads();
        if unsent > 0 || !dispatch_finished || !threads_ended {
            return Err(Error::ShutdownTimeout {
                timeout,
                pending: unsent + shared.counters.queued(),
            });
        }
        tracing::debug!(node = %shared.node_id, "emitter shut down");
        Ok(())
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let emitter = Emitter::builder().node_id("api-1").build()?;
    /// assert!(!emitter.is_shut_down());
    /// emitter.shutdown(std::time::Duration::from_secs(1))?;
    /// assert!(emitter.is_shut_down());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_shut_down(&self) -> bool {
        self.shared.shut_down.load(Ordering::Acquire)
    }
}
