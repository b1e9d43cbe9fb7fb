//! The publisher: one thread, one Paho client, many publishes in flight.
//!
//! Committing threads hand events over a bounded channel (the offline buffer) and
//! never wait for the broker; when the thread has nothing waiting, a committing
//! thread publishes its event itself instead (see `lane`). The thread encodes each
//! event, keeps up to
//! `max_inflight` publishes awaiting their acknowledgement, and when the connection
//! drops puts every unacknowledged message back, in commit order, to be sent again
//! after reconnecting: at least once, with receivers deduplicating by id.
//!
//! The session is clean: when the connection drops Paho forgets its in-flight
//! messages, and the thread sends everything unacknowledged again (publishes Paho
//! had not written yet go out after reconnecting too; receivers drop the copies by
//! id). Paho reaches the broker through a loopback `relay` that never lets a
//! socket write of Paho's fail, because Paho C 1.3.16 corrupts its heap when a QoS 1
//! publish fails that way.

mod in_flight;
mod lane;
mod message;
mod worker;

use super::config::MqttConfig;
use super::counters::MqttCounters;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use emitter_core::transport::Outgoing;
use in_flight::Alarm;
use lane::Lane;
use message::Encoder;
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use worker::Worker;

/// Shutdown coordination, outside the data channel so that a full buffer never
/// delays it.
struct Control {
    /// Set by `close`: publish what is queued until then, then stop.
    closing: Mutex<Option<Instant>>,
    /// The worker's answer: how many events it could not get acknowledged.
    done_tx: Sender<u64>,
    done_rx: Receiver<u64>,
}

impl Control {
    fn closing(&self) -> Option<Instant> {
        *self.closing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The committing side's handle.
pub(crate) struct PublisherHandle {
    tx: Sender<Box<dyn Outgoing>>,
    lane: Arc<Lane>,
    counters: Arc<MqttCounters>,
    control: Arc<Control>,
    /// The thread, joined by `close`: it answers before it has dropped its Paho
    /// client and relay, whose threads and socket directory go with them.
    thread: Mutex<Thread>,
}

/// The publisher thread as `close` sees it across calls.
struct Thread {
    /// `None` once joined.
    handle: Option<std::thread::JoinHandle<()>>,
    /// Its answer to the shutdown request, once received (it answers once).
    unsent: Option<u64>,
}

/// How long `close` waits for the thread to end after it answered: dropping the
/// Paho client may wait for a request Paho has not finished (its connect timeout,
/// 5 s), and the relay then joins its threads.
const EXIT_GRACE: Duration = Duration::from_secs(12);

impl PublisherHandle {
    pub(crate) fn publish(&self, event: Box<dyn Outgoing>) {
        crate::hop::hop!("handed");
        let Err(event) = self.lane.try_direct(event, &self.tx) else {
            return;
        };
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => {
                let n = self
                    .counters
                    .publish_dropped
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n.is_power_of_two() {
                    tracing::error!(
                        table = event.table(),
                        dropped_so_far = n,
                        "MQTT buffer full; event not published"
                    );
                }
            }
            Err(TrySendError::Disconnected(event)) => {
                MqttCounters::add(&self.counters.publish_dropped, 1);
                tracing::error!(
                    table = event.table(),
                    "MQTT publisher stopped; event not published"
                );
            }
        }
    }

    /// Hands over `event`, waiting up to `timeout` for room in the buffer; gives
    /// it back when there was none.
    pub(crate) fn publish_waiting(
        &self,
        event: Box<dyn Outgoing>,
        timeout: Duration,
    ) -> Result<(), Box<dyn Outgoing>> {
        self.tx
            .send_timeout(event, timeout)
            .map_err(|e| e.into_inner())
    }

    /// Asks the thread to publish what is queued by `deadline` and disconnect;
    /// returns how many events were not acknowledged (also counted as failed), or
    /// `None` when the thread did not answer or end in time (a later call waits
    /// again). After a call that returned `Some`, the thread is gone and further
    /// calls return `Some(0)` at once.
    pub(crate) fn close(&self, deadline: Instant) -> Option<u64> {
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        let Some(handle) = thread.handle.take() else {
            return Some(0);
        };
        let unsent = match thread.unsent {
            Some(unsent) => unsent,
            None => {
                *self
                    .control
                    .closing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
                // The thread notices within one short wait and answers once it stopped.
                match self
                    .control
                    .done_rx
                    .recv_deadline(deadline + Duration::from_secs(6))
                {
                    Ok(unsent) => *thread.unsent.insert(unsent),
                    Err(_) => {
                        thread.handle = Some(handle);
                        return None;
                    }
                }
            }
        };
        if !finished_by(&handle, Instant::now() + EXIT_GRACE) {
            tracing::warn!(
                ?EXIT_GRACE,
                "MQTT publisher thread still ending its Paho client after shutdown"
            );
            thread.handle = Some(handle);
            return None;
        }
        let _ = handle.join();
        Some(unsent)
    }
}

/// Whether `thread` ends by `deadline`, polling: std offers no join with a timeout.
fn finished_by(thread: &std::thread::JoinHandle<()>, deadline: Instant) -> bool {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Joins `thread` if it ends by `deadline`; false (and the thread left to end by
/// itself) if not.
pub(crate) fn join_by(thread: std::thread::JoinHandle<()>, deadline: Instant) -> bool {
    if !finished_by(&thread, deadline) {
        return false;
    }
    let _ = thread.join();
    true
}

/// Starts the publisher thread.
pub(crate) fn start(
    config: &MqttConfig,
    paho_url: &str,
    client_id: String,
    origin: Arc<str>,
    counters: Arc<MqttCounters>,
    first_connect: Option<Sender<Result<(), String>>>,
) -> std::io::Result<PublisherHandle> {
    let (tx, rx) = crossbeam_channel::bounded(config.buffer);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let control = Arc::new(Control {
        closing: Mutex::new(None),
        done_tx,
        done_rx,
    });
    let alarm = Alarm::new();
    let lost = Arc::new(AtomicBool::new(true));
    let encoder = Arc::new(Encoder::new(config, &origin));
    let (lane, published) = Lane::new(
        encoder.clone(),
        lost.clone(),
        alarm.waker().clone(),
        counters.clone(),
    );
    let lane = Arc::new(lane);
    let worker = Worker {
        control: control.clone(),
        config: config.clone(),
        paho_url: paho_url.to_owned(),
        client_id,
        counters: counters.clone(),
        queue: VecDeque::new(),
        retries: VecDeque::new(),
        inflight: VecDeque::new(),
        first_connect,
        encoder,
        lane: lane.clone(),
        published,
        abandoned: None,
    };
    let thread = std::thread::Builder::new()
        .name("emitter-mqtt-pub".into())
        .spawn(move || worker.run(rx, alarm, lost))?;
    Ok(PublisherHandle {
        tx,
        lane,
        counters,
        control,
        thread: Mutex::new(Thread {
            handle: Some(thread),
            unsent: None,
        }),
    })
}
