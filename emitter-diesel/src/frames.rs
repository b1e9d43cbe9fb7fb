//! Transaction frames: events wait here until the outermost commit.
//!
//! One frame per open transaction level. After every begin, commit and rollback the
//! stack is re-aligned with the inner connection's own transaction depth, which
//! also covers failed commits and savepoint releases and the driver resetting its
//! state: frames above the new depth merge down on success and vanish otherwise.
//!
//! A frame also remembers whether a statement failed at its level. On PostgreSQL
//! that aborts the transaction: unless a savepoint rollback undoes it, the
//! outermost `COMMIT` is answered with `ROLLBACK` (and Diesel still returns `Ok`),
//! so such a transaction delivers nothing. Rows that could not be captured wait
//! here too, and count as capture errors only if they were committed.

use emitter_core::integration::PendingEvent;
use emitter_core::Emitter;
use std::sync::Arc;

/// The events of the open transaction levels of one connection.
///
/// Plumbing: the transaction state of [`EmittingTransactionManager`](crate::EmittingTransactionManager);
/// application code reads its size through `EmittingConnection::pending_events`.
#[derive(Debug, Default)]
pub struct Frames {
    stack: Vec<Frame>,
}

/// What one transaction level has written so far.
#[derive(Debug, Default)]
struct Frame {
    events: Vec<PendingEvent>,
    failures: Vec<CaptureFailure>,
    /// A statement failed at this level (or a released savepoint's did), and on
    /// this backend that aborts the transaction.
    aborted: bool,
}

impl Frame {
    fn absorb(&mut self, child: Frame) {
        self.events.extend(child.events);
        self.failures.extend(child.failures);
        self.aborted |= child.aborted;
    }

    /// Delivers what a committed transaction (or a statement outside one) wrote:
    /// its events, and the rows that failed as capture errors.
    fn deliver(self, emitter: &Emitter) {
        emitter.commit(self.events);
        self.failures.into_iter().for_each(|f| f.report(emitter));
    }
}

/// What one statement captured: its events, and the rows that failed to decode.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) events: Vec<PendingEvent>,
    pub(crate) failures: Vec<CaptureFailure>,
    /// Keys of the rows this statement inserted, where the backend needs them to
    /// tell a later update of the same row (`UpsertFlag::row_key`).
    pub(crate) inserted_keys: std::collections::HashSet<i64>,
}

impl Captured {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Captured {
            events: Vec::with_capacity(rows),
            ..Captured::default()
        }
    }

    /// Adds what another statement of the same write captured.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) fn absorb(&mut self, other: Captured) {
        self.events.extend(other.events);
        self.failures.extend(other.failures);
        self.inserted_keys.extend(other.inserted_keys);
    }

    pub(crate) fn fail(&mut self, table: &Arc<str>, error: &dyn std::fmt::Display) {
        self.failures.push(CaptureFailure {
            table: table.clone(),
            error: error.to_string(),
        });
    }
}

/// A written row that could not be turned into an event.
#[derive(Debug)]
pub(crate) struct CaptureFailure {
    pub(crate) table: Arc<str>,
    pub(crate) error: String,
}

impl CaptureFailure {
    fn report(self, emitter: &Emitter) {
        emitter.record_capture_error(&self.table, &self.error);
    }
}

impl Frames {
    /// Events waiting for the outermost commit.
    pub fn pending(&self) -> usize {
        self.stack.iter().map(|f| f.events.len()).sum()
    }

    /// Takes every waiting event, for the outermost commit to write into the outbox.
    pub(crate) fn take_all(&mut self) -> Vec<PendingEvent> {
        self.stack
            .iter_mut()
            .flat_map(|f| std::mem::take(&mut f.events))
            .collect()
    }

    /// Whether the open transaction is aborted: a statement failed at a level that
    /// is still open, or at a savepoint released into it.
    pub(crate) fn aborted(&self) -> bool {
        self.stack.iter().any(|f| f.aborted)
    }

    /// Takes the events and capture failures of a statement that ran at
    /// transaction `depth`; at depth 0 they are delivered (reported) at once.
    pub(crate) fn record(&mut self, depth: usize, captured: Captured, emitter: &Emitter) {
        let Captured {
            events, failures, ..
        } = captured;
        let statement = Frame {
            events,
            failures,
            aborted: false,
        };
        match depth {
            0 => statement.deliver(emitter),
            _ => self.frame(depth).absorb(statement),
        }
    }

    /// Notes that a statement failed at transaction `depth` in a way that aborts
    /// the transaction.
    pub(crate) fn record_failed_statement(&mut self, depth: usize) {
        if depth > 0 {
            self.frame(depth).aborted = true;
        }
    }

    /// The frame of transaction level `depth` (1 or more), opening missing levels.
    fn frame(&mut self, depth: usize) -> &mut Frame {
        self.open_to(depth);
        &mut self.stack[depth - 1]
    }

    fn open_to(&mut self, depth: usize) {
        while self.stack.len() < depth {
            self.stack.push(Frame::default());
        }
    }

    /// Re-aligns with the transaction `depth` after a begin, commit or rollback.
    /// `committed` says whether the operation was a successful commit.
    pub(crate) fn align(&mut self, depth: usize, committed: bool, emitter: &Emitter) {
        while self.stack.len() > depth {
            let frame = self.stack.pop().unwrap_or_default();
            if !committed {
                if !frame.events.is_empty() {
                    tracing::debug!(
                        events = frame.events.len(),
                        "transaction level rolled back; its events are discarded"
                    );
                }
                continue;
            }
            match self.stack.last_mut() {
                Some(parent) => parent.absorb(frame),
                None if frame.aborted => {
                    tracing::warn!(
                        events = frame.events.len(),
                        "a transaction committed after a statement in it had failed: \
                         PostgreSQL rolled it back instead, so its events are discarded \
                         (roll back to a savepoint to keep a transaction usable after an error)"
                    );
                }
                None => frame.deliver(emitter),
            }
        }
        self.open_to(depth);
    }
}
