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
    while let Some(event) = next_event(&rx, backlog, stay_awake) {
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
/// `String`), escaped: it may quote a row that came from the network.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
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

/// The next event, or `None` once every sender is gone and the backlog is empty.
/// The queue comes first: while the backlog holds events, nothing newer than them
/// enters the queue (see [`Backlog`]). After an empty queue the thread polls for
/// `stay_awake` before it sleeps: a committer that hands an event to a sleeping
/// listener pays for waking it (a system call, then a context switch on the other
/// core), most of the cost of a single-row write's event on a small VM.
fn next_event<T>(rx: &Receiver<T>, backlog: &Backlog<T>, stay_awake: Duration) -> Option<T> {
    // Set at the first empty queue: events already queued need no clock.
    let mut awake_until = None;
    loop {
        match rx.try_recv() {
            Ok(event) => return Some(event),
            // No sender left, so nothing is added to the backlog any more.
            Err(TryRecvError::Disconnected) => return backlog.pop(),
            Err(TryRecvError::Empty) => {}
        }
        if let Some(event) = backlog.pop() {
            return Some(event);
        }
        let until = *awake_until.get_or_insert_with(|| Instant::now() + stay_awake);
        if Instant::now() >= until {
            // The backlog is empty and only this thread can fill it again: sleeping
            // on the queue misses nothing.
            return rx.recv().ok().or_else(|| backlog.pop());
        }
        std::hint::spin_loop();
    }
}
