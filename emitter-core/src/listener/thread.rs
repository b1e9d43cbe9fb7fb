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
        let Some(shared) = shared.upgrade() else {
            continue;
        };
        shared.counters.dequeued(1);
        shared.counters.delivered();
        if outcome.is_err() {
            shared.counters.panicked();
            tracing::error!(
                listener = label,
                table = M::TABLE,
                event = %event.meta.id,
                "listener panicked; it keeps receiving"
            );
        }
    }
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
