//! The hop marks (`emitter_mqtt::hop`): one event from a commit to a remote
//! listener passes every documented step once, each after the step it is timed
//! from, as the mqtt bench's per-hop table assumes. Its own test binary: it
//! installs the process's tracing subscriber.

mod broker;

use broker::*;
use diesel_emitter::mqtt::hop::{Recorder, HOPS, TIMED_FROM};
use std::sync::{Arc, Mutex};

#[test]
fn one_remote_event_passes_every_hop_once_each_after_the_hop_it_is_timed_from() {
    let marks = Arc::new(Mutex::new(Vec::new()));
    let recorded = marks.clone();
    let recorder = Recorder::new(move |hop| recorded.lock().unwrap().push(HOPS[hop].to_owned()));
    tracing::subscriber::set_global_default(recorder).unwrap();
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
    // the mark it is timed from. A mark made after handing the event on (`to_paho`,
    // `relay_sent`) can come after the next thread's, so no later hop is looked
    // for after it.
    let marks = marks.lock().unwrap();
    let mut found: Vec<usize> = Vec::with_capacity(HOPS.len());
    for (index, hop) in HOPS.iter().enumerate() {
        let from = TIMED_FROM[index].map_or(0, |earlier| found[earlier] + 1);
        match marks[from..].iter().position(|m| m == hop) {
            Some(offset) => found.push(from + offset),
            None => panic!("no {hop} after the hop it is timed from: {marks:?}"),
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
