//! [`Inbox`]: what becomes of a message the broker delivers to a stream.
//!
//! Paho calls [`Inbox::arrived`] on its receive thread, inside its process-wide
//! lock. An event is screened and handed to the listeners' queues right there,
//! without a hand-off to a thread of ours (a wake-up, 10-30 µs on a small VM, most
//! of what a remote event cost beyond a bare Paho hop). Nothing there may wait: a
//! listener that commits publishes through Paho, which would wait for this very
//! thread. So what would wait goes to the stream's thread instead, in order:
//!
//! - what a listener's full [`WhenFull::Block`](emitter_core::WhenFull) queue
//!   could not take now, and the removal of a listener found gone
//!   ([`Deferred`]);
//! - every message that arrives while the thread still has items of this inbox
//!   (each listener sees the stream's events in the order the broker sent them);
//! - the probes of a group's shared-subscription check, which call Paho.
//!
//! - every message that comes within [`BURST_GAP`] of the one before: in a burst
//!   the stream's thread is awake anyway, so the hand-off saves no wake-up, and
//!   Paho's lock, which the callback holds, stays free for the process's own
//!   publishes (delivering bursts in the callback cut the `mqtt` bench's flat-out
//!   end-to-end rate by a fifth).
//!
//! The stream's thread handles those with waiting allowed, as it handled every
//! message before.

use super::Route;
use crate::counters::MqttCounters;
use crate::hop::hop;
use crate::screen::Screen;
use crossbeam_channel::Sender;
use emitter_core::transport::{panic_message, Deferred, RemoteSink};
use paho_mqtt as paho;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::{Duration, Instant};

/// Messages that arrive closer together than this are handed to the stream's
/// thread (see the module's documentation).
pub(super) const BURST_GAP: Duration = Duration::from_micros(100);

/// What the stream's thread receives from Paho's callbacks.
pub(super) enum Inbound {
    /// A message to handle with waiting allowed.
    Message(paho::Message),
    /// What an event's delivery left to a thread that may wait.
    Finish(Vec<Deferred>),
    /// The connection ended.
    Lost,
}

pub(super) struct Inbox {
    group: Option<Arc<str>>,
    /// A group stream's probe topics, `shared` and `direct`.
    probe: Option<(String, String)>,
    pub(super) routes: RwLock<HashMap<&'static str, Route>>,
    /// Locked by Paho's thread only with `try_lock`: it never waits for ours.
    screen: Mutex<Screen>,
    /// Items sent to the stream's thread that it has not finished. While there
    /// are any, messages go there too, behind them.
    behind: AtomicUsize,
    to_thread: Sender<Inbound>,
    counters: Arc<MqttCounters>,
    /// When the last message arrived, in nanoseconds after `epoch`.
    last_arrival: AtomicU64,
    epoch: Instant,
}

impl Inbox {
    pub(super) fn new(
        group: Option<Arc<str>>,
        probe: Option<(String, String)>,
        screen: Screen,
        to_thread: Sender<Inbound>,
        counters: Arc<MqttCounters>,
    ) -> Inbox {
        Inbox {
            group,
            probe,
            routes: RwLock::new(HashMap::new()),
            screen: Mutex::new(screen),
            behind: AtomicUsize::new(0),
            to_thread,
            counters,
            last_arrival: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// On Paho's receive thread: delivers `message` now if nothing is ahead of it
    /// and nobody must wait for it, else sends it (or what is left of it) to the
    /// stream's thread.
    pub(super) fn arrived(&self, message: paho::Message) {
        // A panic must not unwind into Paho's C code (that aborts the process).
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let in_burst = self.arrived_within(BURST_GAP);
            if in_burst || self.behind.load(Ordering::Acquire) > 0 || self.is_probe(message.topic())
            {
                return Some(Inbound::Message(message));
            }
            let mut screen = match self.screen.try_lock() {
                Ok(screen) => screen,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return Some(Inbound::Message(message)),
            };
            let deferred = self.deliver(&message, &mut screen, false);
            drop(screen);
            (!deferred.is_empty()).then_some(Inbound::Finish(deferred))
        }));
        match outcome {
            Ok(Some(item)) => self.send(item),
            Ok(None) => {}
            Err(payload) => {
                MqttCounters::add(&self.counters.remote_rejected, 1);
                tracing::error!(
                    group = ?self.group,
                    panic = %panic_message(payload.as_ref()),
                    "a panic while delivering a remote event; the event is dropped"
                );
            }
        }
    }

    /// Notes a message's arrival; whether it came within `gap` of the one before.
    fn arrived_within(&self, gap: Duration) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let previous = self.last_arrival.swap(now, Ordering::Relaxed);
        previous != 0 && now.saturating_sub(previous) < gap.as_nanos() as u64
    }

    /// Hands `item` to the stream's thread.
    pub(super) fn send(&self, item: Inbound) {
        self.behind.fetch_add(1, Ordering::AcqRel);
        if let Err(crossbeam_channel::SendError(item)) = self.to_thread.send(item) {
            self.behind.fetch_sub(1, Ordering::AcqRel);
            // The thread has ended (shutdown). What the item holds may be the
            // emitter's last handle, whose drop may destroy this Paho client: not
            // on Paho's own thread.
            if let Inbound::Finish(deferred) = item {
                let _ = std::thread::Builder::new()
                    .name("emitter-mqtt-drop".to_owned())
                    .spawn(move || drop(deferred));
            }
        }
    }

    /// The stream's thread finished one item.
    pub(super) fn done(&self) {
        self.behind.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn probe_topics(&self) -> Option<&(String, String)> {
        self.probe.as_ref()
    }

    fn is_probe(&self, topic: &str) -> bool {
        self.probe
            .as_ref()
            .is_some_and(|(shared, direct)| topic == shared || topic == direct)
    }

    /// On the stream's thread: screens `message` and delivers it, waiting for
    /// room where a listener asks for it.
    pub(super) fn deliver_waiting(&self, message: &paho::Message) {
        let mut screen = self.screen.lock().unwrap_or_else(|e| e.into_inner());
        let deferred = self.deliver(message, &mut screen, true);
        debug_assert!(deferred.is_empty());
    }

    /// Writes the summary of dropped payloads if one is due; with `finish`, also
    /// one that is not.
    pub(super) fn flush_log(&self, finish: bool) {
        self.screen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush_log(finish);
    }

    /// Screens `message` and hands it to the sinks of its table; with `wait`
    /// false, returns what they could not do without waiting.
    fn deliver(&self, message: &paho::Message, screen: &mut Screen, wait: bool) -> Vec<Deferred> {
        hop!("received");
        let topic = message.topic();
        let mut deferred = Vec::new();
        let Some((table, envelope)) = screen.check(topic, message.payload()) else {
            return deferred;
        };
        hop!("checked");
        let sinks: Vec<Arc<dyn RemoteSink>> = {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            match routes.get(table) {
                Some(route) => route.sinks.values().map(|(_, sink)| sink.clone()).collect(),
                None => return deferred,
            }
        };
        let origin: Arc<str> = Arc::from(envelope.origin());
        let group = self.group.as_deref();
        let mut accepted = false;
        for sink in sinks {
            let outcome = if wait {
                sink.deliver(&envelope, &origin, group).map(|()| None)
            } else {
                sink.deliver_now(&envelope, &origin, group)
            };
            match outcome {
                Ok(rest) => {
                    accepted = true;
                    deferred.extend(rest);
                }
                Err(error) => screen.reject(topic, &error),
            }
        }
        // Only now: a payload no listener could decode must not use up its id.
        if accepted {
            screen.accepted(envelope.id());
            hop!("queued");
        }
        deferred
    }
}
