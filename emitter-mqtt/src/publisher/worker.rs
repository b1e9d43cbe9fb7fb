//! The publishing thread: [`Worker`] connects, fills the in-flight window from the
//! offline buffer, collects acknowledgements, resends what a lost connection cut
//! off, gives up on what no resend can fix, and drains the buffer at shutdown.

use super::in_flight::{Alarm, InFlight, Pending};
use super::lane::Lane;
use super::message::{packet_size, Encoder, Unsendable};
use super::{Control, Outgoing};
use crate::client::Client;
use crate::config::MqttConfig;
use crate::connect::{client_options, publisher_connect_options, Backoff};
use crate::counters::MqttCounters;
use crate::hop::hop;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use paho_mqtt as paho;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct Worker {
    pub(super) control: Arc<Control>,
    pub(super) config: MqttConfig,
    pub(super) paho_url: String,
    pub(super) client_id: String,
    pub(super) counters: Arc<MqttCounters>,
    /// Encoded, not yet sent, in commit order.
    pub(super) queue: VecDeque<Pending>,
    /// To send again before `queue`: failed or cut off by a lost connection.
    pub(super) retries: VecDeque<Pending>,
    pub(super) inflight: VecDeque<InFlight>,
    pub(super) first_connect: Option<Sender<Result<(), String>>>,
    pub(super) encoder: Arc<Encoder>,
    /// Where committing threads publish directly, and what they published.
    pub(super) lane: Arc<Lane>,
    pub(super) published: Receiver<InFlight>,
    /// When every handle is gone (the emitter was dropped without shutdown): the
    /// deadline for what is queued.
    pub(super) abandoned: Option<Instant>,
}

const MAX_ATTEMPTS: u32 = 5;
/// The longest the idle thread sleeps before it looks for a shutdown request.
const IDLE_TICK: Duration = Duration::from_millis(50);
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
    pub(super) fn run(
        mut self,
        rx: Receiver<Box<dyn Outgoing>>,
        alarm: Alarm,
        lost: Arc<AtomicBool>,
    ) {
        // Declared before the client, so dropped after it: the client's socket
        // must be gone before the relay stops accepting.
        let stall = (self.config.keep_alive * 2).max(Duration::from_secs(10));
        let relay = match crate::relay::Relay::start(&self.paho_url, stall) {
            Ok(relay) => relay,
            Err(error) => return self.cannot_start(&error, &alarm, &rx),
        };
        let options = client_options(relay.server_uri(), &self.client_id, &self.config);
        let client = match Client::new(options) {
            Ok(client) => client,
            Err(error) => return self.cannot_start(&error, &alarm, &rx),
        };
        // Stop handing Paho publishes the moment the connection drops: they could
        // only fail, and are sent again after reconnecting anyway.
        client.set_connection_lost_callback({
            let lost = lost.clone();
            let ring = alarm.waker().clone();
            move |_| {
                lost.store(true, Ordering::SeqCst);
                ring.wake_by_ref();
            }
        });
        let options = publisher_connect_options(&self.config, relay.https_proxy());
        let mut backoff = Backoff::new();
        let mut ever_connected = false;
        let lane = self.lane.clone();
        loop {
            let deadline = self.deadline();
            let past_deadline = deadline.is_some_and(|d| Instant::now() >= d);
            if lost.load(Ordering::SeqCst) || !client.is_connected() {
                self.close_lane();
                // Publishes acknowledged before the drop are done, not resent.
                self.reap(&alarm, false, false);
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
                        lost.store(false, Ordering::SeqCst);
                        {
                            let mut lane = lane.lock();
                            lane.client = Some((*client).clone());
                            lane.max_packet = response
                                .properties()
                                .get_int(paho::PropertyCode::MaximumPacketSize)
                                .and_then(|n| usize::try_from(n).ok())
                                .filter(|&n| n > 0);
                        }
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
            let drained = {
                let mut lane = lane.lock();
                self.take_published();
                self.reap(&alarm, true, false);
                self.fill(&client, &rx, &lost, lane.max_packet);
                let drained = self.queue.is_empty() && self.retries.is_empty() && rx.is_empty();
                // Room left in the window is the committing side's to use, while
                // nothing waits here that a direct publish would overtake.
                lane.credit = if drained && deadline.is_none() {
                    self.config.max_inflight.saturating_sub(self.inflight.len())
                } else {
                    0
                };
                drained
            };
            if deadline.is_some() && drained && self.inflight.is_empty() {
                break;
            }
            if past_deadline {
                break;
            }
            if self.inflight.len() >= self.config.max_inflight {
                self.wait_acks(&alarm, self.ack_batch(), Duration::from_millis(50));
            } else if drained && deadline.is_some() {
                self.wait_acks(&alarm, 1, Duration::from_millis(50));
            } else if drained {
                // Asleep until an event comes, the oldest publish finishes or the
                // connection drops (each wakes the thread at once), or a shutdown
                // is noticed on the next tick. Polling for acknowledgements instead
                // cost more CPU than the publishes themselves.
                let oldest_finished = self
                    .inflight
                    .front_mut()
                    .is_some_and(|oldest| oldest.finished(alarm.waker()));
                if !oldest_finished {
                    // Waits for an event without taking it: it is taken under the
                    // lane's lock, by `fill`.
                    let mut wait = crossbeam_channel::Select::new();
                    wait.recv(&rx);
                    let alarm_index = wait.recv(&alarm.rx);
                    if wait.ready_timeout(IDLE_TICK) == Ok(alarm_index) {
                        let _ = alarm.rx.try_recv();
                    }
                }
            }
        }
        self.finish(Some(&client), &alarm, &rx);
    }

    fn cannot_start(
        mut self,
        error: &dyn std::fmt::Display,
        alarm: &Alarm,
        rx: &Receiver<Box<dyn Outgoing>>,
    ) {
        tracing::error!(%error, "cannot create the MQTT publisher client; events will not be published");
        if let Some(tx) = self.first_connect.take() {
            let _ = tx.send(Err(error.to_string()));
        }
        self.finish(None, alarm, rx)
    }

    /// The shutdown deadline, if shutting down.
    fn deadline(&self) -> Option<Instant> {
        self.control.closing().or(self.abandoned)
    }

    /// Counts what was not acknowledged, disconnects, and answers `close`.
    fn finish(mut self, client: Option<&Client>, alarm: &Alarm, rx: &Receiver<Box<dyn Outgoing>>) {
        // Before the client goes: the lane holds a handle of it.
        self.close_lane();
        if let Some(client) = client {
            self.reap(alarm, client.is_connected(), true);
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
        hop!("taken");
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
        hop!("encoded");
        self.queue.push_back(pending);
    }

    fn message(&self, event: &dyn Outgoing) -> Result<paho::Message, String> {
        self.encoder.message(event).map_err(|unsendable| {
            MqttCounters::add(&self.counters.publish_failed, 1);
            let table = event.table();
            match &unsendable {
                Unsendable::Table(_) => tracing::error!(
                    table,
                    "table name is not a valid MQTT topic level; event not published"
                ),
                Unsendable::Serialize(error) => {
                    tracing::error!(table, %error, "event does not serialize; not published")
                }
            }
            unsendable.reason()
        })
    }

    /// Takes what committing threads published directly into the window, behind
    /// what is there: they published it after all of that (under the lane's lock,
    /// which the caller holds).
    fn take_published(&mut self) {
        self.inflight.extend(self.published.try_iter());
    }

    /// Leaves the committing side no credit and no client (the connection is gone,
    /// or the thread is stopping), and takes what they published meanwhile.
    fn close_lane(&mut self) {
        let lane = self.lane.clone();
        let mut lane = lane.lock();
        lane.credit = 0;
        lane.client = None;
        self.take_published();
    }

    /// Publishes retries, then queued events, then new ones from the channel, until
    /// the window is full; gives up on a message larger than `max_packet`.
    fn fill(
        &mut self,
        client: &paho::AsyncClient,
        rx: &Receiver<Box<dyn Outgoing>>,
        lost: &AtomicBool,
        max_packet: Option<usize>,
    ) {
        while self.inflight.len() < self.config.max_inflight && !lost.load(Ordering::SeqCst) {
            let next = match self.retries.pop_front().or_else(|| self.queue.pop_front()) {
                Some(pending) => pending,
                None => match rx.try_recv() {
                    Ok(event) => {
                        self.enqueue(event);
                        continue;
                    }
                    Err(TryRecvError::Empty) => return,
                    Err(TryRecvError::Disconnected) => {
                        self.abandoned
                            .get_or_insert(Instant::now() + Duration::from_secs(5));
                        return;
                    }
                },
            };
            if let Some(max) = max_packet {
                let size = packet_size(&next.message);
                if size > max {
                    let reason =
                        format!("{size} bytes exceed the broker's maximum packet size of {max}");
                    self.give_up(next, &reason);
                    continue;
                }
            }
            let token = client.publish(next.message);
            hop!("to_paho");
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
    fn reap(&mut self, alarm: &Alarm, connected: bool, final_pass: bool) {
        while let Some(front) = self.inflight.front_mut() {
            match front.take_outcome() {
                Some(outcome) => self.settle_front(outcome, connected),
                None if final_pass => {
                    if !self.wait_acks(alarm, 1, Duration::from_millis(100)) {
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
    fn wait_acks(&mut self, alarm: &Alarm, batch: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let len = self.inflight.len();
            if len == 0 {
                return false;
            }
            // Acknowledgements come in order, so the deepest one stands for the
            // batch. Should it finish before the oldest, the oldest is waited for.
            let deepest = batch.min(len) - 1;
            if self.inflight[deepest].finished(alarm.waker())
                && self.inflight[0].finished(alarm.waker())
            {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            alarm.wait(deadline - now);
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

/// What is left of `limit` before `deadline` (all of it without one).
fn remaining(deadline: Option<Instant>, limit: Duration) -> Duration {
    match deadline {
        Some(deadline) => limit.min(deadline.saturating_duration_since(Instant::now())),
        None => limit,
    }
}
