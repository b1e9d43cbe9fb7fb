//! Transaction frames: events wait here until the outermost commit.
//!
//! One frame per open transaction level. After every begin, commit and rollback the
//! stack is re-aligned with the inner connection's own transaction depth, which
//! also covers failed commits and savepoint releases and the driver resetting its
//! state: frames above the new depth merge down on success and vanish otherwise.

use emitter_core::{Emitter, PendingEvent};

/// The events of the open transaction levels of one connection.
///
/// Plumbing: the transaction state of [`EmittingTransactionManager`](crate::EmittingTransactionManager);
/// application code reads its size through `EmittingConnection::pending_events`.
#[derive(Debug, Default)]
pub struct Frames {
    stack: Vec<Vec<PendingEvent>>,
}

impl Frames {
    /// Events waiting for the outermost commit.
    pub fn pending(&self) -> usize {
        self.stack.iter().map(Vec::len).sum()
    }

    /// Takes the events of a statement that ran at transaction `depth`.
    /// Takes every waiting event, for the outermost commit to write into the outbox.
    pub(crate) fn take_all(&mut self) -> Vec<PendingEvent> {
        self.stack.iter_mut().flat_map(std::mem::take).collect()
    }

    pub(crate) fn record(&mut self, depth: usize, events: Vec<PendingEvent>, emitter: &Emitter) {
        if events.is_empty() {
            return;
        }
        if depth == 0 {
            emitter.commit(events);
            return;
        }
        while self.stack.len() < depth {
            self.stack.push(Vec::new());
        }
        self.stack[depth - 1].extend(events);
    }

    /// Re-aligns with the transaction `depth` after a begin, commit or rollback.
    /// `committed` says whether the operation was a successful commit.
    pub(crate) fn align(&mut self, depth: usize, committed: bool, emitter: &Emitter) {
        while self.stack.len() > depth {
            let frame = self.stack.pop().unwrap_or_default();
            if !committed {
                if !frame.is_empty() {
                    tracing::debug!(
                        events = frame.len(),
                        "transaction level rolled back; its events are discarded"
                    );
                }
                continue;
            }
            match self.stack.last_mut() {
                Some(parent) => parent.extend(frame),
                None => emitter.commit(frame),
            }
        }
        while self.stack.len() < depth {
            self.stack.push(Vec::new());
        }
    }
}
