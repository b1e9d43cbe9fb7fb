//! Collects the hop marks of `emitter_mqtt::hop` (TRACE events, one per step of an
//! event's path) with its `Recorder`, and turns them into the time each step took.
//!
//! The latency run sends one event at a time along one path, a millisecond apart,
//! so marks are matched to events by time (see [`steps`]).

use diesel_emitter::mqtt::hop::{beside_the_path, Recorder, HOPS, LISTENER_TIMED_FROM, TIMED_FROM};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
                let recording = marks.clone();
                let recorder = Recorder::new(move |hop| recording.mark(hop, Instant::now()));
                tracing::subscriber::set_global_default(recorder)
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

    /// Notes the mark of hop `hop` (its index in `HOPS`) made at `at`, while
    /// recording.
    fn mark(&self, hop: usize, at: Instant) {
        if !self.recording.load(Relaxed) {
            return;
        }
        if let Some(marks) = self.by_hop.lock().unwrap().get_mut(hop) {
            marks.push(at);
        }
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

/// One step's time: from the mark it is timed from (`hop::TIMED_FROM`, or the
/// instant before the commit) to its own, in microseconds.
pub struct Step {
    pub name: &'static str,
    /// The mark this step is timed from.
    pub from: &'static str,
    /// No later step is timed from this one (`hop::beside_the_path`): its time
    /// overlaps the path's.
    pub beside: bool,
    pub p50: f64,
    pub p99: f64,
    pub marks: usize,
}

/// The steps of the events of a run, the first `skip` left out: `sent` before each
/// commit, the hop marks, and `arrived` at the listener.
///
/// Each event's mark of a hop is the first mark of that hop at or after the
/// event's mark of the hop it is timed from: one relay read can carry two
/// publishes, whose mark it then is for both.
pub fn steps(
    sent: &[Instant],
    marks: &[Vec<Instant>],
    arrived: &[Option<Instant>],
    skip: usize,
) -> Vec<Step> {
    let sent: Vec<Option<Instant>> = sent.iter().copied().map(Some).collect();
    let last: Vec<Instant> = arrived.iter().flatten().copied().collect();
    let columns = marks
        .iter()
        .zip(HOPS)
        .zip(TIMED_FROM)
        .chain(std::iter::once((
            (&last, "listener"),
            Some(LISTENER_TIMED_FROM),
        )));
    // Each hop's mark per event, in HOPS order.
    let mut matched: Vec<Vec<Option<Instant>>> = Vec::new();
    let mut steps = Vec::new();
    for (index, ((hop_marks, name), timed_from)) in columns.enumerate() {
        let previous = timed_from.map_or(&sent, |from| &matched[from]);
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
            from: timed_from.map_or("commit", |from| HOPS[from]),
            // The last column is the listener's arrival, which ends the path.
            beside: index < HOPS.len() && beside_the_path(index),
            p50: at(0.5),
            p99: at(0.99),
            marks: hop_marks.len(),
        });
        matched.push(column);
    }
    steps
}
