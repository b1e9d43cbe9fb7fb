//! How long the emitting side's commits waited: a `tracing` subscriber that counts
//! the TRACE events the emitter emits on `diesel_emitter::commit_wait` (the commit
//! lock, the delivery turn, delivering) and nothing else.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Counts the emitter's per-commit wait measurements (TRACE events on
/// `diesel_emitter::commit_wait`); every other callsite is disabled.
#[derive(Default)]
pub struct WaitCounter {
    commits: AtomicU64,
    lock_ns: AtomicU64,
    turn_ns: AtomicU64,
    deliver_ns: AtomicU64,
    /// Commits that waited for the delivery turn at all.
    turn_waits: AtomicU64,
    /// How many turn waits (`[0]`) and deliveries (`[1]`) took under 1 us, under
    /// 2, 4, ... (log2 buckets of microseconds).
    histogram: [[AtomicU64; 16]; 2],
}

/// The log2 bucket of `ns` in microseconds.
fn bucket(ns: u64) -> usize {
    ((u64::BITS - (ns / 1000).leading_zeros()) as usize).min(15)
}

pub const WAIT_TARGET: &str = "diesel_emitter::commit_wait";

/// A reading of the [`WaitCounter`]: commits, then nanoseconds waiting for the lock,
/// for the turn, delivering, and the commits that waited for the turn.
#[derive(Copy, Clone, Default)]
pub struct Waits(pub [u64; 5]);

impl Waits {
    pub fn since(self, earlier: Waits) -> Waits {
        Waits(std::array::from_fn(|i| self.0[i] - earlier.0[i]))
    }

    pub fn add(&mut self, other: Waits) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl WaitCounter {
    /// Prints and resets the histograms.
    pub fn print_histogram(&self) {
        for (name, row) in ["turn waits", "deliveries"].iter().zip(&self.histogram) {
            let counts: Vec<String> = row.iter().map(|c| c.swap(0, Relaxed).to_string()).collect();
            println!("    {name:<10} <1,2,4..us: {}", counts.join(" "));
        }
    }

    pub fn read(&self) -> Waits {
        Waits(
            [
                &self.commits,
                &self.lock_ns,
                &self.turn_ns,
                &self.deliver_ns,
                &self.turn_waits,
            ]
            .map(|a| a.load(Relaxed)),
        )
    }
}

struct WaitVisitor<'a>(&'a WaitCounter);

impl tracing::field::Visit for WaitVisitor<'_> {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        let counter = &self.0;
        match field.name() {
            "lock_ns" => counter.lock_ns.fetch_add(value, Relaxed),
            "turn_ns" => {
                if value > 0 {
                    counter.turn_waits.fetch_add(1, Relaxed);
                    counter.histogram[0][bucket(value)].fetch_add(1, Relaxed);
                }
                counter.turn_ns.fetch_add(value, Relaxed)
            }
            "deliver_ns" => {
                if value > 0 {
                    counter.histogram[1][bucket(value)].fetch_add(1, Relaxed);
                }
                counter.deliver_ns.fetch_add(value, Relaxed)
            }
            _ => 0,
        };
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// The subscriber: shares its counter with the bench.
pub struct Subscriber(pub Arc<WaitCounter>);

impl tracing::Subscriber for Subscriber {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enabled(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == WAIT_TARGET
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        self.0.commits.fetch_add(1, Relaxed);
        event.record(&mut WaitVisitor(&self.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
