//! A closure listener's thread: draining its queue (then its backlog), calling the
//! closure, surviving its panics; and the mark that tells a commit it runs on such
//! a thread.

use crate::emits::Emits;
use crate::event::Event;
use crossbeam_channel::{Receiver, TryRecvError};
use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

thread_local! {
    /// On a closure listener's thread: its registry's id and its listener id.
    static CURRENT: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// The id of the closure listener whose thread this is, if it is one of the
/// registry `registry`'s (see [`Registry::id`](super::Registry::id)).
///
/// A commit made on such a thread never waits for the delivery turn, and never
/// blocks on that listener's own full queue: the thread that would make room is
/// the one committing.
pub(crate) fn current_listener(registry: u64) -> Option<u64> {
    match CURRENT.with(Cell::get) {
        Some((of, listener)) if of == registry => Some(listener),
        _ => None,
    }
}

pub(crate) fn run_listener<M: Emits>(
    rx: Receiver<Event<M>>,
    backlog: &Backlog<Event<M>>,
    (registry, id): (u64, u64),
    label: &str,
    stay_awake: Duration,
    listener: &mut impl FnMut(&Event<M>),
    handled: &mut impl FnMut(bool),
) {
    CURRENT.with(|current| current.set(Some((registry, id))));
    let mut pace = Pace::new(stay_awake);
    while let Some(event) = next_event(&rx, backlog, &mut pace) {
        let outcome = catch_unwind(AssertUnwindSafe(|| listener(&event)));
        if let Err(payload) = &outcome {
            tracing::error!(
                listener = label,
                table = M::TABLE,
                event = %event.meta.id,
                panic = %panic_message(payload.as_ref()),
                "listener panicked; it keeps receiving"
            );
        }
        handled(outcome.is_err());
    }
}

/// Events for a closure listener that did not fit in its queue when the listener's
/// own thread committed them: that thread is the one that makes room, so it must
/// not wait for room (it would wait for itself). They go here instead, in order,
/// and the thread takes them after its queue.
///
/// Order: while the backlog holds events, the listener's own thread adds its
/// later events for this listener here too; any other thread waits until the
/// backlog is empty (see [`wait_empty`](Self::wait_empty)) before it sends to the
/// queue. So everything in the queue is older than everything in the backlog, and
/// taking the queue first keeps the order.
///
/// No lost wake-up: only the listener's own thread ever adds to an empty backlog.
/// When that thread finds the queue and the backlog empty and sleeps on the queue,
/// the backlog stays empty until the thread itself adds to it again, so every
/// event meant for it meanwhile comes through the queue, which wakes it.
pub(crate) struct Backlog<T> {
    /// Whether `events` may be non-empty: lets senders and the listener skip the
    /// lock in the usual case. Set and cleared under the lock; false means empty
    /// to any thread that has the delivery turn or is the listener's own thread,
    /// the only threads that look at it.
    held: AtomicBool,
    events: Mutex<VecDeque<T>>,
    emptied: Condvar,
}

impl<T> Backlog<T> {
    pub(crate) fn new() -> Self {
        Backlog {
            held: AtomicBool::new(false),
            events: Mutex::new(VecDeque::new()),
            emptied: Condvar::new(),
        }
    }

    /// Whether events wait here.
    pub(crate) fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Adds `event` behind the others; called on the listener's own thread only.
    pub(crate) fn push(&self, event: T) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.push_back(event);
        self.held.store(true, Ordering::Release);
    }

    /// Adds `event` if the backlog is not empty (the listener's own thread, to keep
    /// the order); gives it back otherwise.
    pub(crate) fn push_behind(&self, event: T) -> Result<(), T> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.is_empty() {
            return Err(event);
        }
        events.push_back(event);
        Ok(())
    }

    /// Waits until the listener's thread took every event here (another thread,
    /// before it sends to the queue). That thread never waits for the sender, so
    /// this ends once the listener got through its queue and the backlog.
    pub(crate) fn wait_empty(&self) {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        drop(
            self.emptied
                .wait_while(events, |events| !events.is_empty())
                .unwrap_or_else(|e| e.into_inner()),
        );
    }

    /// The oldest event here; on the listener's thread.
    fn pop(&self) -> Option<T> {
        if !self.is_held() {
            return None;
        }
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let event = events.pop_front();
        if events.is_empty() {
            self.held.store(false, Ordering::Release);
            self.emptied.notify_all();
        }
        event
    }
}

/// The message a panic was raised with (`panic!("...")` carries a `&str` or a
/// `String`), escaped: it may quote a row that came from the network. For logging
/// a panic caught around user code (a listener, a filter, a model's decoding).
///
/// ```
/// use emitter_core::transport::panic_message;
/// let payload = std::panic::catch_unwind(|| panic!("bad row\n")).unwrap_err();
/// assert_eq!(panic_message(payload.as_ref()), "bad row\\u{a}");
/// ```
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.as_str()
    } else {
        "(a panic payload that is not text)"
    };
    let mut message = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            message.extend(c.escape_unicode());
        } else {
            message.push(c);
        }
    }
    message
}

/// Whether a listener's thread polls before it sleeps: the last wait decides. A
/// listener whose events come within `stay_awake` of each other polls, and a
/// committer then hands it the next event without waking it; one whose last wait
/// was longer (a remote listener at a steady 1,000 events/s waits 1 ms) sleeps at
/// once, since polling would only have burnt `stay_awake` of a core per event
/// (40 µs of CPU per event in `cargo bench --bench mqtt`). A wait that ends within
/// `stay_awake` after a sleep (a burst begins) turns polling back on.
struct Pace {
    stay_awake: Duration,
    poll: bool,
}

impl Pace {
    fn new(stay_awake: Duration) -> Pace {
        Pace {
            stay_awake,
            poll: true,
        }
    }

    /// Notes that a wait that began at `since` just ended.
    fn waited(&mut self, since: Instant) {
        self.poll = since.elapsed() <= self.stay_awake;
    }
}

/// The next event, or `None` once every sender is gone and the backlog is empty.
/// The queue comes first: while the backlog holds events, nothing newer than them
/// enters the queue (see [`Backlog`]). After an empty queue the thread polls for
/// `stay_awake` before it sleeps, if [`Pace`] says polling pays: a committer that
/// hands an event to a sleeping listener pays for waking it (a system call, then a
/// context switch on the other core), most of the cost of a single-row write's
/// event on a small VM.
fn next_event<T>(rx: &Receiver<T>, backlog: &Backlog<T>, pace: &mut Pace) -> Option<T> {
    // Set at the first empty queue: events already queued need no clock.
    let mut waiting_since = None;
    loop {
        match rx.try_recv() {
            Ok(event) => {
                if let Some(since) = waiting_since {
                    pace.waited(since);
                }
                return Some(event);
            }
            // No sender left, so nothing is added to the backlog any more.
            Err(TryRecvError::Disconnected) => return backlog.pop(),
            Err(TryRecvError::Empty) => {}
        }
        if let Some(event) = backlog.pop() {
            return Some(event);
        }
        let since = *waiting_since.get_or_insert_with(Instant::now);
        if !pace.poll || since.elapsed() >= pace.stay_awake {
            // The backlog is empty and only this thread can fill it again: sleeping
            // on the queue misses nothing.
            let event = rx.recv().ok().or_else(|| backlog.pop());
            pace.waited(since);
            return event;
        }
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAY_AWAKE: Duration = Duration::from_millis(20);

    fn ready<T: Send + 'static>(tx: &crossbeam_channel::Sender<T>, value: T, after: Duration) {
        let tx = tx.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            let _ = tx.send(value);
        });
    }

    #[test]
    fn a_listener_whose_last_wait_was_longer_than_stay_awake_stops_polling() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let backlog = Backlog::new();
        let mut pace = Pace::new(STAY_AWAKE);
        ready(&tx, 1, STAY_AWAKE * 5);
        assert_eq!(next_event(&rx, &backlog, &mut pace), Some(1));
        assert!(!pace.poll);
    }

    #[test]
    fn a_wait_within_stay_awake_turns_polling_back_on() {
        let mut pace = Pace::new(STAY_AWAKE);
        pace.poll = false;
        let since = Instant::now().checked_sub(STAY_AWAKE / 4).unwrap();
        pace.waited(since);
        assert!(pace.poll);
    }

    #[test]
    fn a_queued_event_leaves_the_pace_as_it_was() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let backlog = Backlog::new();
        let mut pace = Pace::new(STAY_AWAKE);
        pace.poll = false;
        tx.send(1).unwrap();
        assert_eq!(next_event(&rx, &backlog, &mut pace), Some(1));
        assert!(!pace.poll);
    }
}
