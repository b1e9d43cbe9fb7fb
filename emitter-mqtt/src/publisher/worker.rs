//! The publishing thread: [`Worker`] connects, fills the in-flight window from the
//! offline buffer, collects acknowledgements, resends what a lost connection cut
//! off, gives up on what no resend can fix, and drains the buffer at shutdown.

use super::in_flight::{InFlight, Pending, Unpark};
use super::{Control, Outgoing};
use crate::client::Client;
use crate::config::{MqttConfig, Protocol};
use crate::connect::{client_options, publisher_connect_options, Backoff};
use crate::counters::MqttCounters;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use emitter_core::wire::is_valid_level;
use paho_mqtt as paho;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

pub(super) struct Worker {
    pub(super) control: Arc<Control>,
    pub(super) config: MqttConfig,
    pub(super) paho_url: String,
    pub(super) client_id: String,
    pub(super) origin: Arc<str>,
    pub(super) counters: Arc<MqttCounters>,
    /// Encoded, not yet sent, in commit order.
    pub(super) queue: VecDeque<Pending>,
    /// To send again before `queue`: failed or cut off by a lost connection.
    pub(super) retries: VecDeque<Pending>,
    pub(super) inflight: VecDeque<InFlight>,
    pub(super) first_connect: Option<Sender<Result<(), String>>>,
    /// The MQTT 5 user property naming the origin, built once.
    pub(super) origin_property: Option<paho::Properties>,
    /// The largest packet the broker accepts, as its MQTT 5 CONNACK says. A broker
    /// disconnects a client that sends a larger one, and resending it after the
    /// reconnect would repeat that for ever, so such an event fails at once.
    pub(super) max_packet: Option<usize>,
    /// When every handle is gone (the emitter was dropped without shutdown): the
    /// deadline for what is queued.
    pub(super) abandoned: Option<Instant>,
}

const MAX_ATTEMPTS: u32 = 5;
/// With a full window the thread sleeps until this share of it is acknowledged
/// (the publish at that depth of the window finishes), not until the oldest is:
/// one wake-up and one burst of publishes per batch instead of one per event,
/// where each wake-up costs more than the publish it lets through.
const ACK_BATCH_DIVISOR: usize = 8;
/// A message that was the oldest unacknowledged one when the connection dropped
/// this many times is given up: Mosquitto 2.0 answers a publish over its
/// `message_size_limit` by closing the connection (often before its PUBACK with
/// the reason code reaches the client), and resending it would repeat that for ever.
const MAX_STRIKES: u32 = 3;

impl Worker {
    pub(super) fn run(mut self, rx: Receiver<Box<dyn Outgoing>>) {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        if self.config.protocol == Protocol::V5 {
            let mut props = paho::Properties::new();
            if props
                .push_string_pair(paho::PropertyCode::UserProperty, "origin", &self.origin)
                .is_ok()
            {
                self.origin_property = Some(props);
            }
        }
        // Declared before the client, so dropped after it: the client's socket
        // must be gone before the relay stops accepting.
        let stall = (self.config.keep_alive * 2).max(Duration::from_secs(10));
        let relay = match crate::relay::Relay::start(&self.paho_url, stall) {
            Ok(relay) => relay,
            Err(error) => return self.cannot_start(&error, &waker, &rx),
        };
        let options = client_options(relay.server_uri(), &self.client_id, &self.config);
        let client = match Client::new(options) {
            Ok(client) => client,
            Err(error) => return self.cannot_start(&error, &waker, &rx),
        };
        // Stop handing Paho publishes the moment the connection drops: they could
        // only fail, and are sent again after reconnecting anyway.
        let lost = Arc::new(AtomicBool::new(true));
        client.set_connection_lost_callback({
            let lost = lost.clone();
            move |_| lost.store(true, Ordering::SeqCst)
        });
        let options = publisher_connect_options(&self.config, relay.https_proxy());
        let mut backoff = Backoff::new();
        let mut ever_connected = false;
        loop {
            let deadline = self.deadline();
            let past_deadline = deadline.is_some_and(|d| Instant::now() >= d);
            if lost.load(Ordering::SeqCst) || !client.is_connected() {
                // Publishes acknowledged before the drop are done, not resent.
                self.reap(&waker, false, false);
                self.requeue_inflight();
                if self.counters.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!("MQTT publisher lost the broker; buffering events");
                }
                let nothing_to_send =
                    self.queue.is_empty() && self.retries.is_empty() && rx.is_empty();
                if past_deadline || (deadline.is_some() && nothing_to_send) {
                    break;
                }
                let wait = remaining(deadline, Duration::from_secs(5));
                match client.wait(client.connect(options.clone()), wait) {
                    Ok(response) => {
                        self.max_packet = response
                            .properties()
                            .get_int(paho::PropertyCode::MaximumPacketSize)
                            .and_then(|n| usize::try_from(n).ok())
                            .filter(|&n| n > 0);
                        lost.store(false, Ordering::SeqCst);
                        self.counters.connected.store(true, Ordering::Relaxed);
                        if ever_connected {
                            MqttCounters::add(&self.counters.reconnects, 1);
                        }
                        ever_connected = true;
                        backoff.reset();
                        tracing::info!(broker = %self.paho_url, "MQTT publisher connected");
                        if let Some(tx) = self.first_connect.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Err(error) => {
                        if let Some(tx) = self.first_connect.take() {
                            // Paho's "TCP connect completion failure" hides whether
                            // the host is unknown or nothing listens there.
                            let reason = self
                                .config
                                .diagnose_connect(Duration::from_secs(2))
                                .unwrap_or_else(|| error.to_string());
                            let _ = tx.send(Err(reason));
                        }
                        let pause = backoff.next();
                        tracing::debug!(%error, retry_in = ?pause, "MQTT publisher cannot connect");
                        // Publishes wait in the bounded channel meanwhile, so the
                        // configured buffer bound holds while the broker is away.
                        std::thread::sleep(remaining(deadline, pause));
                        continue;
                    }
                }
            }
            self.reap(&waker, true, false);
            self.fill(&client, &rx, &lost);
            let drained = self.queue.is_empty() && self.retries.is_empty() && rx.is_empty();
            if deadline.is_some() && drained && self.inflight.is_empty() {
                break;
            }
            if past_deadline {
                break;
            }
            if self.inflight.len() >= self.config.max_inflight {
                self.wait_acks(&waker, self.ack_batch(), Duration::from_millis(50));
            } else if drained && deadline.is_some() {
                self.wait_acks(&waker, 1, Duration::from_millis(50));
            } else if drained {
                let idle = if self.inflight.is_empty() {
                    Duration::from_millis(50)
                } else {
                    Duration::from_micros(200)
                };
                match rx.recv_timeout(idle) {
                    Ok(event) => self.enqueue(event),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        self.abandoned
                            .get_or_insert(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
        }
        self.finish(Some(&client), &waker, &rx);
    }

    fn cannot_start(
        mut self,
        error: &dyn std::fmt::Display,
        waker: &Waker,
        rx: &Receiver<Box<dyn Outgoing>>,
    ) {
        tracing::error!(%error, "cannot create the MQTT publisher client; events will not be published");
        if let Some(tx) = self.first_connect.take() {
            let _ = tx.send(Err(error.to_string()));
        }
        self.finish(None, waker, rx)
    }

    /// The shutdown deadline, if shutting down.
    fn deadline(&self) -> Option<Instant> {
        self.control.closing().or(self.abandoned)
    }

    /// Counts what was not acknowledged, disconnects, and answers `close`.
    fn finish(mut self, client: Option<&Client>, waker: &Waker, rx: &Receiver<Box<dyn Outgoing>>) {
        if let Some(client) = client {
            self.reap(waker, client.is_connected(), true);
        }
        let unsent = (self.queue.len() + self.retries.len() + self.inflight.len()) as u64
            + rx.try_iter().count() as u64;
        if unsent > 0 {
            MqttCounters::add(&self.counters.unsent, unsent);
            tracing::error!(
                unsent,
                "MQTT publisher stopped with events not acknowledged by the broker"
            );
        }
        if let Some(client) = client.filter(|c| c.is_connected()) {
            let _ = client.wait(client.disconnect(None), Duration::from_secs(1));
        }
        self.counters.connected.store(false, Ordering::Relaxed);
        let _ = self.control.done_tx.try_send(unsent);
    }

    fn enqueue(&mut self, event: Box<dyn Outgoing>) {
        let message = self.message(&*event);
        let pending = Pending {
            message: match message {
                Ok(message) => message,
                Err(reason) => {
                    if let Some(receipt) = event.into_receipt() {
                        receipt.settled(Err(reason));
                    }
                    return;
                }
            },
            attempts: 0,
            strikes: 0,
            receipt: event.into_receipt(),
        };
        self.queue.push_back(pending);
    }

    fn message(&self, event: &dyn Outgoing) -> Result<paho::Message, String> {
        let table = event.table();
        if !is_valid_level(table) {
            MqttCounters::add(&self.counters.publish_failed, 1);
            tracing::error!(
                table,
                "table name is not a valid MQTT topic level; event not published"
            );
            return Err(format!(
                "table name {table:?} is not a valid MQTT topic level"
            ));
        }
        let payload = match event.encode() {
            Ok(payload) => payload,
            Err(error) => {
                MqttCounters::add(&self.counters.publish_failed, 1);
                tracing::error!(table, %error, "event does not serialize; not published");
                return Err(format!("event does not serialize: {error}"));
            }
        };
        let topic = event.topic(&self.config.prefix);
        let payload = match &self.config.signing_key {
            Some(key) => key.sign(&topic, payload),
            None => payload,
        };
        let mut builder = paho::MessageBuilder::new()
            .topic(topic)
            .payload(payload)
            .qos(self.config.qos);
        if let Some(props) = &self.origin_property {
            builder = builder.properties(props.clone());
        }
        Ok(builder.finalize())
    }

    /// Publishes retries, then queued events, then new ones from the channel, until
    /// the window is full.
    fn fill(
        &mut self,
        client: &paho::AsyncClient,
        rx: &Receiver<Box<dyn Outgoing>>,
        lost: &AtomicBool,
    ) {
        while self.inflight.len() < self.config.max_inflight && !lost.load(Ordering::SeqCst) {
            let next = match self.retries.pop_front().or_else(|| self.queue.pop_front()) {
                Some(pending) => pending,
                None => match rx.try_recv() {
                    Ok(event) => {
                        self.enqueue(event);
                        continue;
                    }
                    Err(_) => return,
                },
            };
            if let Some(max) = self.max_packet {
                let size = packet_size(&next.message);
                if size > max {
                    let reason =
                        format!("{size} bytes exceed the broker's maximum packet size of {max}");
                    self.give_up(next, &reason);
                    continue;
                }
            }
            let token = client.publish(next.message);
            self.inflight.push_back(InFlight {
                token,
                outcome: None,
                attempts: next.attempts + 1,
                strikes: next.strikes,
                receipt: next.receipt,
            });
        }
    }

    /// Collects finished publishes from the front of the window, in order. On
    /// the final pass, waits a little for each one still outstanding.
    fn reap(&mut self, waker: &Waker, connected: bool, final_pass: bool) {
        while let Some(front) = self.inflight.front_mut() {
            match front.take_outcome() {
                Some(outcome) => self.settle_front(outcome, connected),
                None if final_pass => {
                    if !self.wait_acks(waker, 1, Duration::from_millis(100)) {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// How many acknowledgements a full window waits for.
    fn ack_batch(&self) -> usize {
        (self.config.max_inflight / ACK_BATCH_DIVISOR).max(1)
    }

    /// Waits up to `timeout` until the `batch` oldest publishes (or all in
    /// flight, if fewer) finished, or at least the oldest one did when acks
    /// came out of order; true when the oldest one finished.
    fn wait_acks(&mut self, waker: &Waker, batch: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let len = self.inflight.len();
            if len == 0 {
                return false;
            }
            // Acknowledgements come in order, so the deepest one stands for the
            // batch. Should it finish before the oldest, the oldest is waited for.
            let deepest = batch.min(len) - 1;
            if self.inflight[deepest].finished(waker) && self.inflight[0].finished(waker) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    fn settle_front(&mut self, outcome: paho::Result<()>, connected: bool) {
        let Some(inflight) = self.inflight.pop_front() else {
            return;
        };
        let error = match outcome {
            Ok(()) => {
                MqttCounters::add(&self.counters.published, 1);
                if let Some(receipt) = inflight.receipt {
                    receipt.settled(Ok(()));
                }
                return;
            }
            Err(error) => error,
        };
        let mut pending = inflight.into_pending();
        if let paho::Error::ReasonCode(code, _) = &error {
            // The broker's verdict on the message itself.
            if is_final_refusal(*code) {
                return self.give_up(pending, &format!("the broker refused it ({code})"));
            }
        } else if !connected {
            // A lost connection is not the message's fault.
            pending.attempts = pending.attempts.saturating_sub(1);
        }
        if pending.attempts >= MAX_ATTEMPTS {
            self.give_up(
                pending,
                &format!("publish failed {MAX_ATTEMPTS} times: {error}"),
            );
        } else {
            tracing::debug!(topic = pending.message.topic(), %error, "publish failed; will retry");
            self.retries.push_back(pending);
        }
    }

    /// After a lost connection nothing in flight can be trusted: send it all again,
    /// after the retries that are older still.
    fn requeue_inflight(&mut self) {
        let mut oldest = true;
        for mut inflight in std::mem::take(&mut self.inflight) {
            // Acknowledged behind an older one still outstanding: done, not resent.
            if let Some(Ok(())) = inflight.take_outcome() {
                MqttCounters::add(&self.counters.published, 1);
                if let Some(receipt) = inflight.receipt {
                    receipt.settled(Ok(()));
                }
                continue;
            }
            let mut pending = inflight.into_pending();
            pending.attempts = pending.attempts.saturating_sub(1);
            if std::mem::take(&mut oldest) {
                pending.strikes += 1;
                if pending.strikes >= MAX_STRIKES {
                    let reason = format!(
                        "the broker closed the connection each of the {MAX_STRIKES} times this \
                         message was the oldest in flight (larger than its message_size_limit?)"
                    );
                    self.give_up(pending, &reason);
                    continue;
                }
            }
            self.retries.push_back(pending);
        }
    }

    /// Counts, logs and reports a message that will not be sent again.
    fn give_up(&self, pending: Pending, reason: &str) {
        MqttCounters::add(&self.counters.publish_failed, 1);
        tracing::error!(topic = pending.message.topic(), size = pending.message.payload().len(), %reason, "event not published");
        pending.settle(Err(reason.to_owned()));
    }
}

/// PUBACK reason codes that no resend can change.
fn is_final_refusal(code: paho::ReasonCode) -> bool {
    use paho::ReasonCode::*;
    matches!(
        code,
        PacketTooLarge | NotAuthorized | TopicNameInvalid | PayloadFormatInvalid
    )
}

/// An upper bound of the PUBLISH packet `message` makes: fixed header (type byte
/// and a length of at most 4 bytes), topic with its length, packet id, properties
/// with their length, payload.
fn packet_size(message: &paho::Message) -> usize {
    let properties: usize = message
        .properties()
        .user_iter()
        .map(|(key, value)| 1 + 2 + key.len() + 2 + value.len())
        .sum();
    1 + 4 + 2 + message.topic().len() + 2 + 4 + properties + message.payload().len()
}

/// What is left of `limit` before `deadline` (all of it without one).
fn remaining(deadline: Option<Instant>, limit: Duration) -> Duration {
    match deadline {
        Some(deadline) => limit.min(deadline.saturating_duration_since(Instant::now())),
        None => limit,
    }
}
