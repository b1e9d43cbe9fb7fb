//! Listener behaviour of the emitter alone (no database): filters, panics, queues,
//! unsubscribing, shutdown, ordering, metadata and configuration errors, one file
//! per concept under `listeners/`, one test binary; the model and helpers they
//! share are here.
//!
//! Tests synchronise through channels and barriers; the only sleeps are inside
//! deliberately slow listeners.

#[path = "listeners/configuration.rs"]
mod configuration;
#[path = "listeners/filters.rs"]
mod filters;
#[path = "listeners/membership.rs"]
mod membership;
#[path = "listeners/ordering.rs"]
mod ordering;
#[path = "listeners/queues.rs"]
mod queues;
#[path = "listeners/shutdown.rs"]
mod shutdown;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use emitter_core::integration::PendingEvent;
use emitter_core::{Action, Audience, Emits, Emitter, Error, Event, Source, WhenFull};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Item {
    id: i64,
    name: String,
    active: bool,
}

impl Emits for Item {
    const TABLE: &'static str = "items";
    const COLUMNS: &'static [&'static str] = &["id", "name", "active"];
    const PRIMARY_KEY: &'static [&'static str] = &["id"];
}

const LONG: Duration = Duration::from_secs(10);

fn emitter() -> Emitter {
    Emitter::builder().node_id("test-node").build().unwrap()
}

fn item(id: i64) -> Item {
    Item {
        id,
        name: format!("item {id}"),
        active: id % 2 == 0,
    }
}

fn pending(action: Action, id: i64) -> PendingEvent {
    PendingEvent::new(action, item(id), Item::COLUMNS.into(), Audience::All)
}

/// Commits one insert of `item(id)`.
fn insert(emitter: &Emitter, id: i64) {
    emitter.commit([pending(Action::Insert, id)]);
}

/// Everything already in `rx`, as (action, id).
fn drain(rx: &Receiver<Event<Item>>) -> Vec<(Action, i64)> {
    rx.try_iter().map(|ev| (ev.action, ev.row.id)).collect()
}

/// A closure listener that forwards each event's id to the returned receiver.
fn forwarding(emitter: &Emitter) -> (emitter_core::Subscription, Receiver<i64>) {
    let (tx, rx) = unbounded();
    let sub = emitter.on::<Item>().listen(move |ev: &Event<Item>| {
        tx.send(ev.row.id).unwrap();
    });
    (sub, rx)
}
