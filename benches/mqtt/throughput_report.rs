//! Part 1's report: the publish-rate table, CPU per event by thread role, and the
//! verdict against the 0.90x-bare target.

use super::*;

pub fn summary(tput: &Throughput) {
    let acked = |v: Variant| {
        tput.variants
            .iter()
            .find(|m| m.variant == v)
            .map_or(f64::NAN, |m| m.acked)
    };
    let best = |bare: bool| {
        tput.variants
            .iter()
            .filter(|m| {
                matches!(
                    (bare, m.variant),
                    (true, Variant::Bare(_)) | (false, Variant::Emitter(_))
                )
            })
            .map(|m| m.acked)
            .fold(0.0, f64::max)
    };
    let best_bare = best(true);
    println!(
        "1. publish rate, QoS 1, row {} B / envelope {} B, a counting Paho subscriber attached;\n   \
         median of {} rounds x {} events; acked = every PUBACK in, delivered = the subscriber has all;\n   \
         loop = the commit/publish loop alone; CPU per event in us (bench process = main thread +\n   \
         emitter publisher thread + counting subscriber thread + the publisher's relay threads +\n   \
         Paho C and other threads; broker)",
        tput.row_bytes, tput.envelope_bytes, tput.runs, tput.n
    );
    println!(
        "   {:<36} {:>8} {:>9} {:>6} {:>6} {:>7} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6}",
        "",
        "acked/s",
        "deliv'd/s",
        "/bare",
        "/best",
        "loop",
        "proc",
        "main",
        "pub",
        "sub",
        "relay",
        "paho",
        "broker"
    );
    for m in &tput.variants {
        let same = match m.variant {
            Variant::Emitter(w) | Variant::Bare(w) => acked(Variant::Bare(w)),
            _ => acked(Variant::Bare(INFLIGHT)),
        };
        let c = &m.cpu;
        println!(
            "   {:<36} {:>8.0} {:>9.0} {:>6.2} {:>6.2} {:>5.0}ms | {:>5.1} {:>5.1} {:>5.1} {:>5.1} {:>5.1} {:>5.1} {:>6.1}",
            m.variant.label(),
            m.acked,
            m.delivered,
            m.acked / same,
            m.acked / best_bare,
            m.issued.as_secs_f64() * 1e3,
            m.per_event(c.process()),
            m.per_event(c.main),
            m.per_event(c.publisher),
            m.per_event(c.counter),
            m.per_event(c.relay),
            m.per_event(c.paho),
            m.per_event(c.broker),
        );
    }
    println!(
        "   (/bare: vs the bare client with the same window; /best: vs the faster bare client)"
    );
    println!(
        "   machine CPU during the rounds ({} cores): this bench + its broker {:.0}%, other processes {:.0}%",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        tput.load.ours * 100.0,
        tput.load.others * 100.0
    );
    let same_window = acked(Variant::Emitter(INFLIGHT)) / acked(Variant::Bare(INFLIGHT));
    let best_vs_best = best(false) / best_bare;
    println!(
        "   target emitter >= 0.90 x bare: same window ({INFLIGHT}) {same_window:.3} -> {}; best emitter / best bare {best_vs_best:.3} -> {}",
        verdict(same_window >= 0.90),
        verdict(best_vs_best >= 0.90),
    );
    // Rounds run back to back, so a ratio within a round is less exposed to drift in
    // the machine's load than a ratio of medians.
    let paired = |a: Variant, b: Variant| {
        let rates = |v: Variant| {
            tput.variants
                .iter()
                .find(|m| m.variant == v)
                .map(|m| m.rates.clone())
        };
        match (rates(a), rates(b)) {
            (Some(a), Some(b)) => median(a.iter().zip(&b).map(|(a, b)| a / b).collect()),
            _ => f64::NAN,
        }
    };
    println!(
        "   median of per-round ratios: emitter{INFLIGHT}/bare{INFLIGHT} {:.3}, emitter{INFLIGHT_SMALL}/bare{INFLIGHT_SMALL} {:.3}, \
         emitter+sqlite/bare{INFLIGHT} {:.3}",
        paired(Variant::Emitter(INFLIGHT), Variant::Bare(INFLIGHT)),
        paired(Variant::Emitter(INFLIGHT_SMALL), Variant::Bare(INFLIGHT_SMALL)),
        paired(Variant::EmitterSqlite, Variant::Bare(INFLIGHT)),
    );
}
