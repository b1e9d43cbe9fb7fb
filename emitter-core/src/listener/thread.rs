//! A closure listener's thread: draining its queue, calling the closure, surviving
//! its panics.

use crate::emits::Emits;
use crate::emitter::Shared;
use crate::event::Event;
use crossbeam_channel::{Receiver, TryRecvError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Weak;
use std::time::{Duration, Instant};

pub(super) fn run_listener<M: Emits>(
    rx: Receiver<Event<M>>,
    shared: &Weak<Shared>,
    label: &str,
    stay_awake: Duration,
    listener: &mut impl FnMut(&Event<M>),
) {
    while let Some(event) = next_event(&rx, stay_awake) {
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
        let Some(shared) = shared.upgrade() else {
            continue;
        };
        shared.counters.dequeued(1);
        shared.counters.delivered();
        if outcome.is_err() {
            shared.counters.panicked();
        }
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

/// The next event, or `None` once every sender is gone. After an empty queue the
/// thread polls for `stay_awake` before it sleeps: a committer that hands an event
/// to a sleeping listener pays for waking it (a system call, then a context switch
/// on the other core), most of the cost of a single-row write's event on a small VM.
fn next_event<T>(rx: &Receiver<T>, stay_awake: Duration) -> Option<T> {
    // Set at the first empty queue: events already queued need no clock.
    let mut awake_until = None;
    loop {
        match rx.try_recv() {
            Ok(event) => return Some(event),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        let until = *awake_until.get_or_insert_with(|| Instant::now() + stay_awake);
        if Instant::now() >= until {
            return rx.recv().ok();
        }
        std::hint::spin_loop();
    }
}
