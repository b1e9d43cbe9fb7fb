//! For backend authors: handing committed events to an [`Emitter`] from a
//! connection wrapper other than `EmittingConnection`.
//!
//! Applications never name this module. A backend captures each changed row as a
//! [`PendingEvent`] while its transaction runs, keeps them per transaction level
//! (dropping a rolled-back savepoint's), and after the outermost COMMIT hands them
//! over with [`Emitter::commit`]. With the outbox it numbers them before the COMMIT
//! instead ([`Emitter::prepare`]), writes [`PreparedCommit::outbox_entries`] inside
//! the transaction, and calls [`PreparedCommit::committed`] after it.
//!
//! What cannot become an event is never dropped silently: a committed row that
//! could not be captured is counted with [`Emitter::record_capture_error`], a
//! write that ran without capture with [`Emitter::record_uncaptured_write`]. These
//! four methods of [`Emitter`] are hidden from its page, which is for applications;
//! they are documented (with examples) here and on the methods themselves.
//!
//! ```
//! # include!("../../src/doctest_setup.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use diesel_emitter::integration::PendingEvent;
//!
//! let emitter = Emitter::builder().node_id("api-1").build()?;
//! let rx = emitter.on::<User>().subscribe();
//! // After the backend's own COMMIT:
//! let row = User { id: 7, name: "Ada".into() };
//! emitter.commit([PendingEvent::new(Action::Insert, row, vec!["id", "name"].into(), Audience::All)]);
//! assert_eq!(rx.recv()?.row.id, 7);
//! # Ok(())
//! # }
//! ```
#[allow(unused_imports)] // the links above
use crate::Emitter;

pub use crate::commit::PreparedCommit;
pub use crate::pending::PendingEvent;
