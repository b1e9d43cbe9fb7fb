//! The publisher: one thread, one Paho client, many publishes in flight.
//!
//! Committing threads hand events over a bounded channel (the offline buffer) and
//! never wait for the broker. The thread encodes each event, keeps up to
//! `max_inflight` publishes awaiting their acknowledgement, and when the connection
//! drops puts every unacknowledged message back at the head of the queue to be sent
//! again after reconnecting: at least once, with receivers deduplicating by id.

use super::config::{MqttConfig, Protocol};
use super::connect::{client_options, connect_options, Backoff};
use super::counters::MqttCounters;
use super::topic::{event_topic, is_valid_level};
use crate::emits::Emits;
use crate::event::Event;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use paho_mqtt as paho;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// An event on its way to the broker, encoded on the publisher thread.
pub(crate) trait Outgoing: Send {
    fn table(&self) -> &'static str;
    fn topic(&self, prefix: &str) -> String;
    fn encode(&self) -> serde_json::Result<Vec<u8>>;
}

impl<M: Emits> Outgoing for Event<M> {
    fn table(&self) -> &'static str {
        M::TABLE
    }
    fn topic(&self, prefix: &str) -> String {
        event_topic(prefix, M::TABLE, self.action)
    }
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        super::envelope::encode(self)
    }
}

pub(crate) enum Command {
    Publish(Box<dyn Outgoing>),
    /// Publish everything before this, then disconnect; reply when done.
    Close {
        deadline: Instant,
        done: Sender<u64>,
    },
}

/// The committing side's handle.
pub(crate) struct PublisherHandle {
    tx: Sender<Command>,
    counters: Arc<MqttCounters>,
    closing: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl PublisherHandle {
    pub(crate) fn publish(&self, event: Box<dyn Outgoing>) {
        match self.tx.try_send(Command::Publish(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(Command::Publish(event))) => {
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
            Err(_) => {
                MqttCounters::add(&self.counters.publish_dropped, 1);
                tracing::error!("MQTT publisher stopped; event not published");
            }
        }
    }

    /// Asks the thread to publish what is queued and disconnect; returns the
    /// number of events that could not be sent by `deadline`.
    pub(crate) fn close(&self, deadline: Instant) -> Option<u64> {
        *self.closing.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        let (done, wait) = crossbeam_channel::bounded(1);
        self.tx
            .send_deadline(Command::Close { deadline, done }, deadline)
            .ok()?;
        wait.recv_deadline(deadline + Duration::from_millis(500))
            .ok()
    }
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
    let closing = Arc::new(std::sync::Mutex::new(None));
    let worker = Worker {
        closing: closing.clone(),
        config: config.clone(),
        paho_url: paho_url.to_owned(),
        client_id,
        origin,
        counters: counters.clone(),
        queue: VecDeque::new(),
        inflight: VecDeque::new(),
        first_connect,
        origin_property: None,
    };
    std::thread::Builder::new()
        .name("emitter-mqtt-pub".into())
        .spawn(move || worker.run(rx))?;
    Ok(PublisherHandle {
        tx,
        counters,
        closing,
    })
}

struct Pending {
    message: paho::Message,
    attempts: u32,
}

/// A publish awaiting its acknowledgement; the token keeps the message for a retry.
struct InFlight {
    token: paho::DeliveryToken,
    attempts: u32,
}

impl InFlight {
    fn into_pending(self) -> Pending {
        Pending {
            message: self.token.message().clone(),
            attempts: self.attempts,
        }
    }
}

/// Wakes the publisher thread when Paho completes a publish it is waiting for.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

struct Worker {
    closing: Arc<std::sync::Mutex<Option<Instant>>>,
    config: MqttConfig,
    paho_url: String,
    client_id: String,
    origin: Arc<str>,
    counters: Arc<MqttCounters>,
    queue: VecDeque<Pending>,
    inflight: VecDeque<InFlight>,
    first_connect: Option<Sender<Result<(), String>>>,
    /// The MQTT 5 user property naming the origin, built once.
    origin_property: Option<paho::Properties>,
}

const MAX_ATTEMPTS: u32 = 5;

impl Worker {
    fn run(mut self, rx: Receiver<Command>) {
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
        let client = match paho::AsyncClient::new(client_options(
            &self.paho_url,
            &self.client_id,
            &self.config,
        )) {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot create the MQTT publisher client; events will not be published");
                if let Some(tx) = self.first_connect.take() {
                    let _ = tx.send(Err(error.to_string()));
                }
                return self.drain_after_failure(rx);
            }
        };
        let options = connect_options(&self.config, true);
        let mut backoff = Backoff::new();
        let mut close: Option<(Instant, Sender<u64>)> = None;
        let mut ever_connected = false;
        loop {
            let mut connected = client.is_connected();
            if !connected {
                self.requeue_inflight();
                if self.counters.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!("MQTT publisher lost the broker; buffering events");
                }
                if close
                    .as_ref()
                    .is_some_and(|(deadline, _)| Instant::now() >= *deadline)
                {
                    break;
                }
                match client
                    .connect(options.clone())
                    .wait_for(Duration::from_secs(5))
                {
                    Ok(_) => {
                        connected = true;
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
                            let _ = tx.send(Err(error.to_string()));
                        }
                        let wait = backoff.next();
                        tracing::debug!(%error, retry_in = ?wait, "MQTT publisher cannot connect");
                        // Publishes wait in the bounded channel meanwhile, so the
                        // configured buffer bound holds while the broker is away.
                        let closing = *self.closing.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(deadline) = closing {
                            if Instant::now() >= deadline {
                                break;
                            }
                            std::thread::sleep(
                                wait.min(deadline.saturating_duration_since(Instant::now())),
                            );
                        } else {
                            std::thread::sleep(wait);
                        }
                        continue;
                    }
                }
            }
            self.reap(&waker, connected, false);
            self.fill(&client, &rx, &mut close);
            if close.is_some() && self.queue.is_empty() && self.inflight.is_empty() {
                break;
            }
            if let Some((deadline, _)) = &close {
                if Instant::now() >= *deadline {
                    break;
                }
            }
            if self.inflight.len() >= self.config.max_inflight
                || (close.is_some() && self.queue.is_empty())
            {
                // Wait for the oldest acknowledgement.
                self.wait_front(&waker, connected, Duration::from_millis(50));
            } else if self.queue.is_empty() && close.is_none() {
                let idle = if self.inflight.is_empty() {
                    Duration::from_millis(200)
                } else {
                    Duration::from_micros(200)
                };
                match rx.recv_timeout(idle) {
                    Ok(command) => self.accept(command, &mut close),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        close.get_or_insert((
                            Instant::now() + Duration::from_secs(5),
                            crossbeam_channel::bounded(1).0,
                        ));
                    }
                }
            }
        }
        self.reap(&waker, client.is_connected(), true);
        let mut unsent = (self.queue.len() + self.inflight.len()) as u64;
        while let Ok(command) = rx.try_recv() {
            match command {
                Command::Publish(_) => unsent += 1,
                Command::Close { deadline, done } => close = Some((deadline, done)),
            }
        }
        if unsent > 0 {
            MqttCounters::add(&self.counters.unsent, unsent);
            tracing::error!(
                unsent,
                "MQTT publisher stopped with events not acknowledged by the broker"
            );
        }
        if client.is_connected() {
            let _ = client.disconnect(None).wait_for(Duration::from_secs(2));
        }
        self.counters.connected.store(false, Ordering::Relaxed);
        if let Some((_, done)) = close {
            let _ = done.send(unsent);
        }
    }

    fn accept(&mut self, command: Command, close: &mut Option<(Instant, Sender<u64>)>) {
        match command {
            Command::Publish(event) => {
                if let Some(message) = self.message(&*event) {
                    self.queue.push_back(Pending {
                        message,
                        attempts: 0,
                    });
                }
            }
            Command::Close { deadline, done } => *close = Some((deadline, done)),
        }
    }

    fn message(&self, event: &dyn Outgoing) -> Option<paho::Message> {
        let table = event.table();
        if !is_valid_level(table) {
            MqttCounters::add(&self.counters.publish_failed, 1);
            tracing::error!(
                table,
                "table name is not a valid MQTT topic level; event not published"
            );
            return None;
        }
        let payload = match event.encode() {
            Ok(payload) => payload,
            Err(error) => {
                MqttCounters::add(&self.counters.publish_failed, 1);
                tracing::error!(table, %error, "event does not serialize; not published");
                return None;
            }
        };
        let mut builder = paho::MessageBuilder::new()
            .topic(event.topic(&self.config.prefix))
            .payload(payload)
            .qos(self.config.qos);
        if let Some(props) = &self.origin_property {
            builder = builder.properties(props.clone());
        }
        Some(builder.finalize())
    }

    fn fill(
        &mut self,
        client: &paho::AsyncClient,
        rx: &Receiver<Command>,
        close: &mut Option<(Instant, Sender<u64>)>,
    ) {
        if !client.is_connected() {
            return;
        }
        while self.inflight.len() < self.config.max_inflight {
            if self.queue.is_empty() {
                if close.is_some() {
                    // After Close nothing more is accepted from the channel.
                    if let Ok(command) = rx.try_recv() {
                        self.accept(command, close);
                        continue;
                    }
                    return;
                }
                match rx.try_recv() {
                    Ok(command) => {
                        self.accept(command, close);
                        continue;
                    }
                    Err(_) => return,
                }
            }
            let Some(mut pending) = self.queue.pop_front() else {
                return;
            };
            pending.attempts += 1;
            let token = client.publish(pending.message);
            self.inflight.push_back(InFlight {
                token,
                attempts: pending.attempts,
            });
        }
    }

    /// Collects finished publishes from the front of the window. On the final
    /// pass, waits a little for each one still outstanding.
    fn reap(&mut self, waker: &Waker, connected: bool, final_pass: bool) {
        while let Some(front) = self.inflight.front_mut() {
            match poll(&mut front.token, waker) {
                Some(outcome) => self.settle_front(outcome, connected),
                None if final_pass => {
                    if !self.wait_front(waker, connected, Duration::from_millis(100)) {
                        return;
                    }
                }
                None => return,
            }
        }
    }

    /// Waits up to `timeout` for the oldest publish; true when it settled.
    fn wait_front(&mut self, waker: &Waker, connected: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(front) = self.inflight.front_mut() else {
                return false;
            };
            if let Some(outcome) = poll(&mut front.token, waker) {
                self.settle_front(outcome, connected);
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
        match outcome {
            Ok(()) => MqttCounters::add(&self.counters.published, 1),
            Err(error) => {
                let mut pending = inflight.into_pending();
                if !connected {
                    // A lost connection is not the message's fault.
                    pending.attempts = pending.attempts.saturating_sub(1);
                }
                self.retry(pending, &error);
            }
        }
    }

    fn retry(&mut self, pending: Pending, error: &paho::Error) {
        if pending.attempts >= MAX_ATTEMPTS {
            MqttCounters::add(&self.counters.publish_failed, 1);
            tracing::error!(topic = pending.message.topic(), %error, attempts = pending.attempts, "publish failed; event not published");
        } else {
            tracing::debug!(topic = pending.message.topic(), %error, "publish failed; will retry");
            self.queue.push_front(pending);
        }
    }

    /// After a lost connection nothing in flight can be trusted: send it all again.
    fn requeue_inflight(&mut self) {
        while let Some(inflight) = self.inflight.pop_back() {
            let mut pending = inflight.into_pending();
            // A lost connection is not the message's fault.
            pending.attempts = pending.attempts.saturating_sub(1);
            self.queue.push_front(pending);
        }
    }

    fn drain_after_failure(self, rx: Receiver<Command>) {
        for command in rx {
            match command {
                Command::Publish(_) => MqttCounters::add(&self.counters.publish_failed, 1),
                Command::Close { done, .. } => {
                    let _ = done.send(0);
                    return;
                }
            }
        }
    }
}

/// Polls a publish without blocking. Paho hands the result to the first poll that
/// sees it, so each token is polled by this thread only.
fn poll(token: &mut paho::DeliveryToken, waker: &Waker) -> Option<paho::Result<()>> {
    match Pin::new(token).poll(&mut Context::from_waker(waker)) {
        Poll::Ready(outcome) => Some(outcome),
        Poll::Pending => None,
    }
}
