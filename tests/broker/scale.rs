//! The checks the other-broker suites share (`tests/nats_cluster.rs`,
//! `tests/rabbitmq.rs`): every event of several writers reaches a remote listener
//! exactly once and in commit order per origin, and a group on a broker without
//! shared subscriptions is reported while plain remote listeners keep receiving.

use super::{connected, eventually, insert, node, recv, shutdown_all, Conn, Db, User, TIMEOUT};
use diesel_emitter::crossbeam_channel::Receiver;
use diesel_emitter::prelude::*;
use diesel_emitter::{Event, Source};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Writes `warmup-<n>` rows through `conn` until `rx` has received one; returns
/// how many were written. A SUBACK says the subscriber's own broker node has the
/// subscription, not that a writer's node has heard of it (in a cluster, interest
/// travels between nodes on its own time): an event committed before that is
/// never routed to the listener. Events that did arrive stay in `rx`.
#[track_caller]
pub fn warm_up(conn: &mut Conn, rx: &Receiver<Event<User>>, context: &dyn Fn() -> String) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    let mut written = 0;
    loop {
        insert(conn, &format!("warmup-{written}"), true);
        written += 1;
        // How often to knock while waiting, not a proof of anything.
        if eventually(Duration::from_millis(200), || !rx.is_empty()) {
            return written;
        }
        assert!(
            Instant::now() < deadline,
            "no event reached the remote listener within {TIMEOUT:?}\n{}",
            context()
        );
    }
}

/// Two writers (`writer`'s configuration each) and a reader (`reader`'s) with a
/// `remote_only` listener, on a database of their own named `label`: runs
/// [`check_crossing`] with 250 events a writer, shuts the three down and returns
/// the number of events that crossed.
#[track_caller]
pub fn check_two_writers_crossing(
    label: &str,
    writer: &dyn Fn() -> MqttConfig,
    reader: MqttConfig,
    context: &dyn Fn() -> String,
) -> usize {
    let writers = [node("writer-a", writer()), node("writer-b", writer())];
    let reader = node("reader", reader);
    let remote = reader.on::<User>().remote_only(true).subscribe();
    let all = [&writers[0], &writers[1], &reader];
    connected(&all);
    let db = Db::new(label);
    let mut conns: Vec<Conn> = writers.iter().map(|w| db.conn(w)).collect();
    let crossed = check_crossing(
        &[&writers[0], &writers[1]],
        &mut conns,
        &reader,
        &remote,
        250,
        context,
    );
    shutdown_all(&all);
    crossed
}

/// Commits `per_writer` events on each of `conns` (one thread each, so that
/// origins interleave), then a sentinel per writer, and checks that `remote`
/// (a listener of `reader`) receives each writer's events exactly once and in
/// commit order. Warm-up events (see [`warm_up`]) may come first. Returns the
/// number of events that crossed.
#[track_caller]
pub fn check_crossing(
    writers: &[&Emitter],
    conns: &mut [Conn],
    reader: &Emitter,
    remote: &Receiver<Event<User>>,
    per_writer: usize,
    context: &dyn Fn() -> String,
) -> usize {
    let warmups = warm_up(&mut conns[0], remote, context);
    std::thread::scope(|s| {
        for (w, conn) in conns.iter_mut().enumerate() {
            s.spawn(move || {
                for i in 0..per_writer {
                    insert(conn, &format!("w{w}-{i}"), true);
                }
            });
        }
    });
    // A sentinel per writer, committed after its batch: when it arrives, anything
    // the batch would bring twice (a QoS 1 redelivery that escaped deduplication)
    // has arrived before it, since each origin's events arrive in commit order.
    for (w, conn) in conns.iter_mut().enumerate() {
        insert(conn, &format!("sentinel-{w}"), true);
    }

    let mut by_origin: HashMap<String, Vec<Event<User>>> = HashMap::new();
    let mut sentinels = 0;
    while sentinels < writers.len() {
        let Ok(event) = remote.recv_timeout(TIMEOUT) else {
            let counts: Vec<_> = by_origin.iter().map(|(o, v)| (o, v.len())).collect();
            panic!(
                "events stopped arriving: {counts:?} so far; reader {:?}\n{}",
                reader.stats(),
                context()
            );
        };
        assert_eq!(event.meta.source, Source::Remote);
        if event.row.name.starts_with("sentinel-") {
            sentinels += 1;
        }
        by_origin
            .entry(event.meta.origin.to_string())
            .or_default()
            .push(event);
    }

    let arrived: usize = by_origin.values().map(Vec::len).sum();
    eprintln!(
        "{warmups} warm-up events written, {} arrived",
        arrived - writers.len() * (per_writer + 1)
    );
    for (w, writer) in writers.iter().enumerate() {
        let events = by_origin
            .remove(writer.node_id())
            .unwrap_or_else(|| panic!("nothing arrived from {}", writer.node_id()));
        let seqs: Vec<u64> = events.iter().map(|e| e.meta.seq).collect();
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "{}: seq not increasing: {seqs:?}",
            writer.node_id()
        );
        // Warm-ups first (those committed before the route carried them are not
        // here), then the batch in commit order, each once, then the sentinel.
        let names: Vec<&str> = events
            .iter()
            .map(|e| e.row.name.as_str())
            .skip_while(|n| n.starts_with("warmup-"))
            .collect();
        let expected: Vec<String> = (0..per_writer)
            .map(|i| format!("w{w}-{i}"))
            .chain([format!("sentinel-{w}")])
            .collect();
        assert_eq!(
            names,
            expected,
            "{}: not every event exactly once in commit order",
            writer.node_id()
        );
        let ids: HashSet<_> = events.iter().map(|e| e.meta.id).collect();
        assert_eq!(ids.len(), events.len(), "an event id arrived twice");
    }
    assert!(
        by_origin.is_empty(),
        "events of unknown origins: {by_origin:?}"
    );
    assert!(remote.is_empty(), "an event after the sentinels");

    let stats = reader.stats();
    assert_eq!(stats.remote_rejected, 0, "{stats:?}");
    // Every message the reader took from the broker reached the listener once:
    // QoS 1 redeliveries, if any, were recognised by their event id.
    assert_eq!(
        stats.remote_received - stats.remote_duplicates,
        arrived as u64,
        "{stats:?}"
    );
    for writer in writers {
        let stats = writer.stats();
        assert_eq!(
            (stats.publish_dropped, stats.publish_failed),
            (0, 0),
            "{stats:?}"
        );
    }
    writers.len() * (per_writer + 1)
}

/// On a broker without shared subscriptions: `reader`, whose broker URL is
/// `reader_url`, has a plain remote listener `plain` and a `group` listener of
/// group `mailer`. The group is reported (an error in the log, `groups_refused`),
/// the emitter does not claim to be ready, and `plain` still receives every event
/// committed through `writer_conn`, in order. `log_lines` is the test's
/// `log_capture::lines_containing` (capture started before the emitters).
#[track_caller]
pub fn check_group_refused(
    log_lines: fn(&str) -> Vec<String>,
    writer_conn: &mut Conn,
    reader: &Emitter,
    reader_url: &str,
    plain: &Receiver<Event<User>>,
    group: &Receiver<Event<User>>,
    context: &dyn Fn() -> String,
) {
    // The probe waits 5 s for an answer, once the group's client is connected.
    let waiting = Instant::now();
    assert!(
        eventually(TIMEOUT * 2, || reader.stats().groups_refused == 1),
        "the group was not reported refused: {:?}\n{}",
        reader.stats(),
        context()
    );
    eprintln!("group refused after {:?}", waiting.elapsed());
    let logged = log_lines(reader_url);
    assert!(
        logged.iter().any(|l| l.starts_with("ERROR")
            && l.contains("does not honour MQTT shared subscriptions")
            && l.contains("group=mailer")),
        "no error logged: {logged:?}"
    );
    // Its listeners would wait for nothing, so the emitter does not claim to be ready.
    assert!(reader.wait_connected(Duration::from_millis(300)).is_err());

    // The plain stream, a client of its own, still receives every event, in order.
    warm_up(writer_conn, plain, context);
    plain.try_iter().for_each(drop);
    for i in 0..20 {
        insert(writer_conn, &format!("after-{i}"), true);
    }
    let names: Vec<String> = (0..20).map(|_| recv(plain).row.name).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    assert_eq!(names, expected);
    // The group's subscription matched no topic: nothing reached it.
    assert!(group.is_empty(), "the group received events");
    let stats = reader.stats();
    assert_eq!(stats.groups_refused, 1, "reported once: {stats:?}");
    assert_eq!(
        stats.remote_rejected, 0,
        "the probe is not screened as an event: {stats:?}"
    );
}
