//! When a committing thread may publish directly, against the shared Mosquitto at
//! 127.0.0.1:1883: only with the lane free, its buffer empty, credit left and the
//! connection up, so that nothing it publishes overtakes an earlier event.

use super::*;
use crate::config::MqttConfig;
use crate::publisher::in_flight::Alarm;
use std::time::Duration;

/// An event the lane can encode.
struct Probe;

impl Outgoing for Probe {
    fn table(&self) -> &str {
        "lane_probe"
    }
    fn topic(&self, prefix: &str) -> String {
        format!("{prefix}/lane_probe/insert")
    }
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        Ok(b"{}".to_vec())
    }
}

/// The publisher thread's buffer, both ends.
type Buffer = (Sender<Box<dyn Outgoing>>, Receiver<Box<dyn Outgoing>>);

struct Open {
    lane: Lane,
    published: Receiver<InFlight>,
    /// Its receiver is kept, so that the buffer stays open.
    buffer: Buffer,
    lost: Arc<AtomicBool>,
    client: paho::AsyncClient,
    _alarm: Alarm,
}

impl Open {
    /// Offers the lane one event; whether it went direct (else it belongs in the
    /// buffer).
    fn offer(&self) -> bool {
        self.lane
            .try_direct(Box::new(Probe), &self.buffer.0)
            .is_ok()
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.lane.lock().client = None;
        let _ = self
            .client
            .disconnect(None)
            .wait_for(Duration::from_secs(2));
    }
}

/// A lane as the publisher thread leaves it when it has nothing waiting: a
/// connected client and `credit`.
fn open_lane(credit: usize) -> Open {
    let client_id = format!(
        "lane-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    );
    let client = paho::AsyncClient::new(
        paho::CreateOptionsBuilder::new()
            .server_uri("tcp://127.0.0.1:1883")
            .client_id(client_id)
            .persistence(None)
            .finalize(),
    )
    .expect("a Paho client");
    client
        .connect(paho::ConnectOptions::new())
        .wait_for(Duration::from_secs(10))
        .expect("the shared Mosquitto at 127.0.0.1:1883");
    let config = MqttConfig::new("mqtt://127.0.0.1:1883").topic_prefix("test/lane");
    let alarm = Alarm::new();
    let lost = Arc::new(AtomicBool::new(false));
    let (lane, published) = Lane::new(
        Arc::new(Encoder::new(&config, "lane-test")),
        lost.clone(),
        alarm.waker().clone(),
        Arc::new(MqttCounters::default()),
    );
    {
        let mut state = lane.lock();
        state.client = Some(client.clone());
        state.credit = credit;
    }
    Open {
        lane,
        published,
        buffer: crossbeam_channel::bounded(4),
        lost,
        client,
        _alarm: alarm,
    }
}

#[test]
fn an_event_goes_direct_when_the_lane_is_free_and_the_buffer_empty() {
    let open = open_lane(2);
    assert!(open.offer());
    let inflight = open
        .published
        .try_recv()
        .expect("handed to the publisher thread");
    assert_eq!(inflight.attempts, 1);
    inflight
        .token
        .wait_for(Duration::from_secs(10))
        .expect("the broker acknowledged it");
    assert_eq!(open.lane.lock().credit, 1);
}

#[test]
fn an_event_behind_a_buffered_one_goes_into_the_buffer_too() {
    let open = open_lane(2);
    open.buffer.0.send(Box::new(Probe)).unwrap();
    assert!(!open.offer());
    assert!(open.published.is_empty());
    assert_eq!(open.lane.lock().credit, 2);
}

#[test]
fn without_credit_an_event_goes_into_the_buffer() {
    let open = open_lane(0);
    assert!(!open.offer());
    assert!(open.published.is_empty());
}

#[test]
fn after_the_connection_is_lost_an_event_goes_into_the_buffer() {
    let open = open_lane(2);
    open.lost.store(true, Ordering::SeqCst);
    assert!(!open.offer());
    assert!(open.published.is_empty());
}

#[test]
fn while_the_publisher_thread_holds_the_lane_an_event_goes_into_the_buffer() {
    let open = open_lane(2);
    let held = open.lane.lock();
    assert!(!open.offer());
    drop(held);
    assert!(open.published.is_empty());
}
