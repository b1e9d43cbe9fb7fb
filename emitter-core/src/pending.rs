//! [`PendingEvent`]: a captured change waiting for its transaction to commit.
//!
//! The connection wrapper knows the model type only while it decodes a row; after
//! that the event waits in a transaction frame next to events of other models, so it
//! is kept type-erased here and becomes a typed [`Event`](crate::Event) again when
//! the emitter dispatches it.

use crate::action::{Action, Emit};
use crate::commit::{Numbered, NumberedEvent};
use crate::dispatch::Dispatch;
use crate::emits::Emits;
use crate::emitter::Shared;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// One captured row change, not yet committed.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let emitter = Emitter::builder().node_id("api-1").build()?;
/// use diesel_emitter::PendingEvent;
///
/// let pending = PendingEvent::new(Action::Insert, User { id: 1, name: "Ada".into() }, vec!["id", "name"].into(), Emit::All);
/// assert_eq!((pending.table(), pending.action(), pending.emit()), ("users", Action::Insert, Emit::All));
/// emitter.commit([pending]);
/// assert_eq!(emitter.stats().emitted, 1);
/// # Ok(())
/// # }
/// ```
pub struct PendingEvent {
    pub(crate) inner: Box<dyn ErasedChange>,
    pub(crate) emit: Emit,
}

impl PendingEvent {
    /// Captures a change of `row` made by `action`; `changed` lists the assigned columns.
    pub fn new<M: Emits>(action: Action, row: M, changed: Arc<[&'static str]>, emit: Emit) -> Self {
        PendingEvent {
            inner: Box::new(Change {
                action,
                row,
                changed,
            }),
            emit,
        }
    }

    /// The table of the changed row.
    pub fn table(&self) -> &'static str {
        self.inner.table()
    }

    /// The kind of change.
    pub fn action(&self) -> Action {
        self.inner.action()
    }

    /// Where this event is allowed to go.
    pub fn emit(&self) -> Emit {
        self.emit
    }
}

impl fmt::Debug for PendingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingEvent")
            .field("table", &self.table())
            .field("action", &self.action())
            .field("emit", &self.emit)
            .finish()
    }
}

pub(crate) struct Change<M> {
    pub(crate) action: Action,
    pub(crate) row: M,
    pub(crate) changed: Arc<[&'static str]>,
}

pub(crate) trait ErasedChange: Send {
    fn table(&self) -> &'static str;
    fn action(&self) -> Action;
    fn dispatch(self: Box<Self>, emit: Emit, to: &mut Dispatch<'_>);
    fn number(
        self: Box<Self>,
        emit: Emit,
        seq: u64,
        shared: &Shared,
        committed_at: SystemTime,
    ) -> Box<dyn Numbered>;
}

impl<M: Emits> ErasedChange for Change<M> {
    fn table(&self) -> &'static str {
        M::TABLE
    }
    fn action(&self) -> Action {
        self.action
    }
    fn dispatch(self: Box<Self>, emit: Emit, to: &mut Dispatch<'_>) {
        to.typed::<M>(*self, emit);
    }
    fn number(
        self: Box<Self>,
        emit: Emit,
        seq: u64,
        shared: &Shared,
        committed_at: SystemTime,
    ) -> Box<dyn Numbered> {
        Box::new(NumberedEvent::new(*self, emit, seq, shared, committed_at))
    }
}
