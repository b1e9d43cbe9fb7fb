//! Part 3: events committed flat out through the emitter to a remote listener;
//! lost and duplicated events are counted (the bench fails on any).

use super::broker::Broker;
use super::*;

#[derive(Default)]
struct Seen {
    calls: u64,
    ids: HashSet<String>,
    rows: HashSet<i64>,
}

pub struct Loss {
    n: u64,
    calls: u64,
    distinct_ids: u64,
    distinct_rows: u64,
    pub lost: u64,
    pub duplicated: u64,
    elapsed: Duration,
    writer: Stats,
    listener: Stats,
}

pub fn loss(broker: &Broker, base: &str, n: u64) -> Loss {
    let prefix = format!("{base}/loss");
    let changed: Arc<[&'static str]> = Row::COLUMNS.into();
    let listener = bench_emitter(broker, &prefix, "bench-loss-listener");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let distinct = Arc::new(AtomicU64::new(0));
    let _kept = {
        let (seen, distinct) = (seen.clone(), distinct.clone());
        listener
            .on::<Row>()
            .remote_only(true)
            .listen(move |ev: &Event<Row>| {
                let mut seen = seen.lock().unwrap();
                seen.calls += 1;
                seen.ids.insert(ev.meta.id.to_string());
                if seen.rows.insert(ev.row.id) {
                    distinct.fetch_add(1, Relaxed);
                }
            })
    };
    let writer = bench_emitter(broker, &prefix, "bench-loss-writer");
    wait_connected(&[&listener, &writer]);

    let start = Instant::now();
    for i in 0..n {
        writer.commit([insert_event(row(i as i64), &changed)]);
    }
    // Until everything arrived, or nothing new for 10 s.
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let now = distinct.load(Relaxed);
        if now >= n {
            break;
        }
        if now != last {
            (last, last_change) = (now, Instant::now());
        } else if last_change.elapsed() > Duration::from_secs(10) {
            eprintln!("loss: no progress for 10 s at {now} of {n}");
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    writer
        .shutdown(Duration::from_secs(10))
        .expect("writer shutdown");
    // Late duplicates, if any, have time to arrive.
    std::thread::sleep(Duration::from_millis(500));
    listener
        .shutdown(Duration::from_secs(10))
        .expect("listener shutdown");
    let seen = seen.lock().unwrap();
    let distinct_rows = seen.rows.len() as u64;
    Loss {
        n,
        calls: seen.calls,
        distinct_ids: seen.ids.len() as u64,
        distinct_rows,
        lost: n.saturating_sub(distinct_rows),
        duplicated: seen.calls - distinct_rows.min(seen.calls),
        elapsed,
        writer: writer.stats(),
        listener: listener.stats(),
    }
}

pub fn summary(loss: &Loss, broker_drops: usize) {
    println!(
        "3. {} events flat out: listener calls {}, distinct rows {}, distinct event ids {}, lost {}, duplicated {}",
        loss.n, loss.calls, loss.distinct_rows, loss.distinct_ids, loss.lost, loss.duplicated
    );
    println!(
        "   {:.0} events/s end to end; writer published {} (dropped {}, failed {}); listener received {}, \
         redeliveries dropped by dedup {}, rejected {}, reconnects {} -> {}",
        rate(loss.distinct_rows, loss.elapsed),
        loss.writer.published,
        loss.writer.publish_dropped,
        loss.writer.publish_failed,
        loss.listener.remote_received,
        loss.listener.remote_duplicates,
        loss.listener.remote_rejected,
        loss.writer.broker_reconnects + loss.listener.broker_reconnects,
        verdict(loss.lost == 0 && loss.duplicated == 0)
    );
    println!("   broker log lines \"{BROKER_DROP_LINE}\": {broker_drops}");
}
