//! A closure listener's thread: draining its queue, calling the closure, surviving
//! its panics.

use crate::emits::Emits;
use crate::emitter::Shared;
use crate::event::Event;
use crossbeam_channel::Receiver;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Weak;

pub(super) fn run_listener<M: Emits>(
    rx: Receiver<Event<M>>,
    shared: &Weak<Shared>,
    label: &str,
    listener: &mut impl FnMut(&Event<M>),
) {
    while let Some(event) = next_event(&rx) {
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

/// How long a listener thread stays awake for the next event before it sleeps.
///
/// A committer that hands an event to a sleeping listener pays for waking it (a
/// system call, then a context switch on the other core): measured here, most of
/// the cost of a single-row write's event. A listener that polls briefly after each
/// event is awake when writes come in a stream, and costs at most this much CPU
/// after the last one.
const STAY_AWAKE: std::time::Duration = std::time::Duration::from_micros(50);

fn next_event<T>(rx: &Receiver<T>) -> Option<T> {
    let awake_until = std::time::Instant::now() + STAY_AWAKE;
    loop {
        match rx.try_recv() {
            Ok(event) => return Some(event),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        if std::time::Instant::now() >= awake_until {
            return rx.recv().ok();
        }
        std::hint::spin_loop();
    }
}
