//! The order listeners see (`seq` per origin, each thread's commit order) and the
//! metadata each event carries.

use super::*;

#[test]
fn seq_increases_per_origin_and_per_thread_commit_order_is_kept() {
    const THREADS: i64 = 4;
    const PER_THREAD: i64 = 2_000;
    let emitter = emitter();
    // A closure listener, with a queue smaller than the total so committers block too.
    let (tx, rx): (Sender<Event<Item>>, _) = unbounded();
    let _sub = emitter
        .on::<Item>()
        .capacity(64)
        .listen(move |ev: &Event<Item>| tx.send(ev.clone()).unwrap());
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let emitter = emitter.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    // The id says which thread and in which order it committed.
                    insert(&emitter, t * 1_000_000 + i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    emitter.shutdown(LONG).unwrap();
    let events: Vec<Event<Item>> = rx.try_iter().collect();
    assert_eq!(events.len(), (THREADS * PER_THREAD) as usize);
    for pair in events.windows(2) {
        assert!(
            pair[0].meta.seq < pair[1].meta.seq,
            "seq goes {} then {}",
            pair[0].meta.seq,
            pair[1].meta.seq
        );
    }
    assert_eq!(events[0].meta.seq, 1);
    assert_eq!(
        events.last().unwrap().meta.seq,
        (THREADS * PER_THREAD) as u64
    );
    let mut next: HashMap<i64, i64> = HashMap::new();
    for ev in &events {
        let (t, i) = (ev.row.id / 1_000_000, ev.row.id % 1_000_000);
        let expected = next.entry(t).or_insert(0);
        assert_eq!(i, *expected, "thread {t}'s commits arrive in order");
        *expected += 1;
    }
    assert!(next.values().all(|&n| n == PER_THREAD));
}

#[test]
fn meta_fields_carry_origin_table_source_and_unique_ids() {
    let emitter = emitter();
    let rx = emitter.on::<Item>().subscribe();
    let before = SystemTime::now();
    emitter.commit([pending(Action::Insert, 1), pending(Action::Update, 2)]);
    for id in 3..=100 {
        insert(&emitter, id);
    }
    let after = SystemTime::now();
    let events: Vec<Event<Item>> = rx.try_iter().collect();
    assert_eq!(events.len(), 100);
    let mut ids = HashSet::new();
    for (n, ev) in events.iter().enumerate() {
        assert_eq!(&*ev.meta.origin, "test-node");
        assert_eq!(&*ev.meta.origin, emitter.node_id());
        assert_eq!(ev.meta.table, "items");
        assert_eq!(ev.meta.source, Source::Local);
        assert_eq!(ev.meta.seq, n as u64 + 1);
        assert!(before <= ev.meta.committed_at && ev.meta.committed_at <= after);
        assert_eq!(ev.changed(), Item::COLUMNS);
        assert!(ids.insert(ev.meta.id), "event id {} repeats", ev.meta.id);
    }
    assert_eq!(
        events[0].meta.committed_at, events[1].meta.committed_at,
        "events of one commit share its time"
    );
    // Ids are unique across emitters too, even with the same node id.
    let other = self::emitter();
    let rx2 = other.on::<Item>().subscribe();
    insert(&other, 1);
    let ev = rx2.try_recv().unwrap();
    assert_eq!(ev.meta.seq, 1);
    assert!(!ids.contains(&ev.meta.id));
}
