//! Listener groups: every event handled exactly once across a group's members.

use super::*;

#[test]
fn group_members_each_handle_every_event_exactly_once_across_the_group() {
    const PER_WRITER: usize = 40;
    let prefix = unique_prefix("group");
    let a = shared_node("a", &prefix);
    let members: Vec<Emitter> = (1..=3)
        .map(|i| shared_node(&format!("mailer{i}"), &prefix))
        .collect();
    let group_rx: Vec<_> = members
        .iter()
        .map(|m| m.on::<User>().group("mailer").subscribe())
        .collect();
    let mut all: Vec<&Emitter> = members.iter().collect();
    all.push(&a);
    connected(&all);
    // Every writer's local listener records the ids it committed.
    let writers: Vec<&Emitter> = vec![&a, &members[0], &members[2]];
    let local_rx: Vec<_> = writers.iter().map(|w| w.on::<User>().subscribe()).collect();

    let db = Db::new("t6");
    let mut conns: Vec<Conn> = writers.iter().map(|w| db.conn(w)).collect();
    for i in 0..PER_WRITER {
        for (w, conn) in conns.iter_mut().enumerate() {
            insert(conn, &format!("w{w}-{i}"), true);
        }
    }
    let mut expected = HashSet::new();
    for rx in &local_rx {
        for _ in 0..PER_WRITER {
            expected.insert(recv(rx).meta.id);
        }
    }
    let total = writers.len() * PER_WRITER;
    assert_eq!(expected.len(), total);

    let mut handled: Vec<Vec<Event<User>>> = vec![Vec::new(); members.len()];
    let deadline = Instant::now() + TIMEOUT;
    while handled.iter().map(Vec::len).sum::<usize>() < total && Instant::now() < deadline {
        for (i, rx) in group_rx.iter().enumerate() {
            handled[i].extend(rx.try_iter());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Nothing extra (a second delivery): sentinels. MQTT keeps the messages of one
    // publisher in order on their way to one subscriber, but the group spreads a
    // writer's events over its members, so one sentinel fences one (writer, member)
    // path only. Each writer in turn writes sentinels, one at a time and each awaited,
    // until every member has handled one of that writer's: then a copy of any event
    // still on its way would already have been handled. Sentinels are not counted.
    use diesel_emitter::crossbeam_channel::Select;
    let is_sentinel = |event: &Event<User>| event.row.name.starts_with("sentinel");
    let mut sentinels = 0;
    for (w, conn) in conns.iter_mut().enumerate() {
        let writer = writers[w].node_id();
        let mut fenced = vec![false; members.len()];
        for k in 0.. {
            assert!(
                k < 10 * members.len(),
                "writer {writer}'s sentinels reached only {fenced:?} of the members"
            );
            let name = format!("sentinel-{w}-{k}");
            insert(conn, &name, true);
            sentinels += 1;
            loop {
                let mut select = Select::new();
                for rx in &group_rx {
                    select.recv(rx);
                }
                let op = select
                    .select_timeout(TIMEOUT)
                    .unwrap_or_else(|_| panic!("{name} reached no member"));
                let i = op.index();
                let event = op.recv(&group_rx[i]).expect("the group listener is open");
                if is_sentinel(&event) {
                    assert_eq!(&*event.meta.origin, writer, "{event:?}");
                    assert_eq!(event.row.name, name, "sentinels one at a time");
                    fenced[i] = true;
                    break;
                }
                handled[i].push(event);
            }
            if fenced.iter().all(|f| *f) {
                break;
            }
        }
    }
    let mut count: HashMap<_, usize> = HashMap::new();
    for event in handled.iter().flatten() {
        *count.entry(event.meta.id).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events handled more than once: {twice:?}");
    let got: HashSet<_> = count.keys().copied().collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} events handled by no member: {missing:?}",
        missing.len()
    );
    assert_eq!(got, expected);
    let own: usize = handled
        .iter()
        .flatten()
        .filter(|e| members.iter().any(|m| m.node_id() == &*e.meta.origin))
        .count();
    assert_eq!(
        own,
        2 * PER_WRITER,
        "events committed by members are handled by the group too"
    );
    eprintln!(
        "group split: {:?} ({sentinels} sentinels)",
        handled.iter().map(Vec::len).collect::<Vec<_>>()
    );
    shutdown_all(&all);
}
