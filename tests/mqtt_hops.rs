//! The hop marks (`emitter_mqtt::hop`): one event from a commit to a remote
//! listener passes every documented step once, in path order, as the mqtt bench's
//! per-hop table assumes. Its own test binary: it installs the process's tracing
//! subscriber.

mod broker;

use broker::*;
use diesel_emitter::mqtt::hop::{HOPS, HOP_TARGET};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// Records the `hop` field of every mark, in the order they happen.
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Subscriber for Recorder {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == HOP_TARGET {
            Interest::always()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == HOP_TARGET
    }
    fn event(&self, event: &Event<'_>) {
        struct Hop(Option<String>);
        impl Visit for Hop {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "hop" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        let mut hop = Hop(None);
        event.record(&mut hop);
        if let Some(hop) = hop.0 {
            self.0.lock().unwrap().push(hop);
        }
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn one_remote_event_passes_every_hop_once_in_path_order() {
    let marks = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Recorder(marks.clone())).unwrap();
    let prefix = unique_prefix("hops");
    let writer = shared_node("writer", &prefix);
    let listener = shared_node("listener", &prefix);
    let rx = listener.on::<User>().remote_only(true).subscribe();
    connected(&[&writer, &listener]);
    let db = Db::new("hops");
    let mut conn = db.conn(&writer);
    marks.lock().unwrap().clear();
    insert(&mut conn, "ada", true);
    recv(&rx);
    shutdown_all(&[&writer, &listener]);
    // The relay also forwards what else Paho sends (a keep-alive, the DISCONNECT
    // of shutdown), before or after the event's own: each hop is looked for after
    // the previous one.
    let marks = marks.lock().unwrap();
    let mut at = 0;
    for hop in HOPS {
        match marks[at..].iter().position(|m| m == hop) {
            Some(offset) => at += offset + 1,
            None => panic!("no {hop} after the hops before it: {marks:?}"),
        }
    }
    for hop in HOPS.iter().filter(|h| !h.starts_with("relay")) {
        assert_eq!(
            marks.iter().filter(|m| m == hop).count(),
            1,
            "{hop}: {marks:?}"
        );
    }
}
