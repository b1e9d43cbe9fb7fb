//! Collects the hop marks of `emitter_mqtt::hop` (TRACE events, one per step of an
//! event's path) with a `tracing` subscriber of the bench's own, and turns them into
//! the time each step took.
//!
//! The latency run sends one event at a time along one path, a millisecond apart,
//! so marks are matched to events by time (see [`steps`]).

use diesel_emitter::mqtt::hop::{HOPS, HOP_TARGET};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// The marks seen while recording, by hop.
#[derive(Default)]
pub struct Marks {
    recording: AtomicBool,
    by_hop: Mutex<Vec<Vec<Instant>>>,
}

impl Marks {
    /// Installs the collector as the process's subscriber (once; later calls
    /// return the same marks).
    pub fn install() -> Arc<Marks> {
        static MARKS: std::sync::OnceLock<Arc<Marks>> = std::sync::OnceLock::new();
        MARKS
            .get_or_init(|| {
                let marks = Arc::new(Marks {
                    recording: AtomicBool::new(false),
                    by_hop: Mutex::new(vec![Vec::new(); HOPS.len()]),
                });
                tracing::subscriber::set_global_default(Collector(marks.clone()))
                    .expect("no other subscriber in the bench");
                marks
            })
            .clone()
    }

    /// Forgets what was recorded and records from now on.
    pub fn start(&self) {
        for hop in self.by_hop.lock().unwrap().iter_mut() {
            hop.clear();
        }
        self.recording.store(true, Relaxed);
    }

    /// Stops recording; the marks, by hop in path order.
    pub fn stop(&self) -> Vec<Vec<Instant>> {
        self.recording.store(false, Relaxed);
        // A slot per hop stays behind, for the next recording.
        std::mem::replace(
            &mut *self.by_hop.lock().unwrap(),
            vec![Vec::new(); HOPS.len()],
        )
    }
}

struct Collector(Arc<Marks>);

impl Subscriber for Collector {
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
        if !self.0.recording.load(Relaxed) {
            return;
        }
        let at = Instant::now();
        let mut visitor = HopName(None);
        event.record(&mut visitor);
        if let Some(index) = visitor.0 {
            if let Some(hop) = self.0.by_hop.lock().unwrap().get_mut(index) {
                hop.push(at);
            }
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

/// The index in `HOPS` of the event's `hop` field.
struct HopName(Option<usize>);

impl Visit for HopName {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "hop" {
            self.0 = HOPS.iter().position(|h| *h == value);
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// One step's time: from the previous mark (or the instant before the commit) to
/// this one, in microseconds.
pub struct Step {
    pub name: &'static str,
    pub p50: f64,
    pub p99: f64,
    pub marks: usize,
}

/// The steps of the events of a run, the first `skip` left out: `sent` before each
/// commit, the hop marks, and `arrived` at the listener.
///
/// Each event's mark of a hop is the first mark of that hop at or after the event's
/// previous mark: one relay read can carry two publishes, whose mark it then is
/// for both.
pub fn steps(
    sent: &[Instant],
    marks: &[Vec<Instant>],
    arrived: &[Option<Instant>],
    skip: usize,
) -> Vec<Step> {
    let mut previous: Vec<Option<Instant>> = sent.iter().copied().map(Some).collect();
    let mut steps = Vec::new();
    let last: Vec<Instant> = arrived.iter().flatten().copied().collect();
    let columns = marks
        .iter()
        .zip(HOPS)
        .chain(std::iter::once((&last, "listener")));
    for (hop_marks, name) in columns {
        let mut sorted = hop_marks.clone();
        sorted.sort();
        let mut next = 0;
        let column: Vec<Option<Instant>> = previous
            .iter()
            .map(|from| {
                let from = (*from)?;
                while next < sorted.len() && sorted[next] < from {
                    next += 1;
                }
                sorted.get(next).copied()
            })
            .collect();
        let mut micros: Vec<f64> = previous
            .iter()
            .zip(&column)
            .skip(skip)
            .filter_map(|(from, to)| Some(to.as_ref()?.saturating_duration_since((*from)?)))
            .map(|d| d.as_secs_f64() * 1e6)
            .collect();
        micros.sort_by(f64::total_cmp);
        let at = |p: f64| {
            micros
                .get(((micros.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        steps.push(Step {
            name,
            p50: at(0.5),
            p99: at(0.99),
            marks: hop_marks.len(),
        });
        previous = column;
    }
    steps
}
