//! Subscribers: the broker side of remote listeners.
//!
//! One Paho client per stream: the plain stream, shared by every `allow_remote` and
//! `remote_only` listener, and one per `group`, joined to the shared subscription
//! `$share/{group}/...`. A stream subscribes to `{prefix}/{table}/+` when the first
//! listener of a table registers and unsubscribes when the last one goes, and
//! subscribes again after every reconnect. Paho hands messages over an unbounded
//! channel, so the socket is drained even while a listener makes us wait.
//!
//! A group stream also checks that the broker honours shared subscriptions (see
//! [`Share`]): NATS 2.9, for one, takes `$share/...` as an ordinary topic and
//! delivers nothing through it, which would otherwise leave a group's listeners
//! silently deaf.

use super::client::Client;
use super::config::MqttConfig;
use super::connect::{client_options, connect_options, Backoff};
use super::counters::MqttCounters;
use super::screen::Screen;
use emitter_core::transport::RemoteSink;
use emitter_core::wire::table_filter;
use paho_mqtt as paho;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a group stream waits for its probes to come back through the broker
/// before it gives its verdict. A round trip takes milliseconds; a `shared` probe
/// still in flight then turns the verdict around when it comes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in a row that ended, after `$share` subscriptions were made on
/// them, before a verdict; then the broker counts as closing them for it. One or
/// two can be a broker restart.
const PROBE_LOSSES: u32 = 3;

/// Whether the broker honours the shared subscriptions of a group stream.
///
/// Brokers without shared subscriptions answer `$share/{group}/...` in different
/// ways: a SUBACK failure, a closed connection, or (NATS 2.9, RabbitMQ 3.10) a
/// granted subscription to a topic nobody publishes on. Only delivery tells them
/// apart, so a group stream sends itself two empty messages under
/// `{prefix}/$probe/{group}/{client id}/`: `shared`, which it subscribes to through
/// `$share/{group}/...`, and `direct`, subscribed to plainly. `direct` is the
/// control: when it comes back and `shared` does not, the broker does not honour
/// shared subscriptions; when neither does, or the broker closes the connection
/// after the probes were published (Mosquitto 2.0 with `max_queued_messages 0`
/// does so to a client whose publish its ACL denies, as a node that may only read
/// under the prefix meets), the check proves nothing and the group is not refused.
/// The topics belong to this client alone and lie four levels under the prefix,
/// so that no table subscription (`{prefix}/{table}/+`) and no `diesel-emitter
/// tail` (`{prefix}/+/+`) sees them. QoS 0: Paho's QoS 1 resend path is the one
/// that corrupts its heap on reset connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Share {
    /// A plain stream, or the `shared` probe came back.
    Honoured,
    /// No verdict yet: where the current connection is (`phase`), whether the
    /// `direct` probe came back on it, and how many connections in a row were lost
    /// after their `$share` subscriptions.
    Probing {
        phase: Phase,
        direct: bool,
        lost: u32,
    },
    /// The check proved nothing: logged once, treated as honoured.
    Unverified,
    /// Reported (logged and counted once). `parked`: the broker closed every
    /// connection that subscribed, so the stream stops reconnecting.
    Refused { parked: bool },
}

/// How far a group stream's current connection got with the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not connected, or not yet subscribed.
    Idle,
    /// `$share` subscriptions made (the tables', then the probe's).
    Subscribed,
    /// Both probes published, at this instant.
    Published(Instant),
}

impl Share {
    /// Whether a group's listeners can expect remote events, as far as we know.
    fn usable(self) -> bool {
        matches!(self, Share::Honoured | Share::Unverified)
    }
}

#[derive(Default)]
struct Route {
    listeners: usize,
    sinks: HashMap<TypeId, (usize, Arc<dyn RemoteSink>)>,
}

/// One subscriber client and its routes.
pub(crate) struct Stream {
    group: Option<Arc<str>>,
    node_id: Arc<str>,
    config: MqttConfig,
    client: Client,
    counters: Arc<MqttCounters>,
    routes: RwLock<HashMap<&'static str, Route>>,
    /// Tables subscribed on the current connection.
    active: Mutex<Vec<&'static str>>,
    /// A group stream's probe topics, `shared` and `direct` (see [`Share`]);
    /// `None` for the plain stream.
    probe: Option<(String, String)>,
    share: Mutex<Share>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Stream {
    pub(crate) fn start(
        config: &MqttConfig,
        paho_url: &str,
        client_id: String,
        group: Option<Arc<str>>,
        node_id: Arc<str>,
        counters: Arc<MqttCounters>,
    ) -> Result<Arc<Stream>, String> {
        let mut client =
            Client::new(client_options(paho_url, &client_id, config)).map_err(|e| e.to_string())?;
        let events = client.start_consuming_events(None);
        let probe = group.as_ref().map(|group| {
            let base = format!("{}/$probe/{group}/{client_id}", config.prefix);
            (format!("{base}/shared"), format!("{base}/direct"))
        });
        let share = match group {
            Some(_) => Share::Probing {
                phase: Phase::Idle,
                direct: false,
                lost: 0,
            },
            None => Share::Honoured,
        };
        let stream = Arc::new(Stream {
            group,
            node_id,
            config: config.clone(),
            client,
            counters,
            routes: RwLock::new(HashMap::new()),
            active: Mutex::new(Vec::new()),
            probe,
            share: Mutex::new(share),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let worker = stream.clone();
        let name = match &stream.group {
            Some(group) => format!("emitter-mqtt-{group}"),
            None => "emitter-mqtt-sub".to_owned(),
        };
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run(events, client_id))
            .map_err(|e| e.to_string())?;
        *stream.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(stream)
    }

    fn filter(&self, table: &str) -> String {
        let filter = table_filter(&self.config.prefix, table);
        match &self.group {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter,
        }
    }

    /// Adds a listener of model `type_id` on `table`; subscribes on the first.
    pub(crate) fn attach(
        &self,
        table: &'static str,
        type_id: TypeId,
        sink: &mut dyn FnMut() -> Arc<dyn RemoteSink>,
    ) {
        let first = {
            let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
            let route = routes.entry(table).or_default();
            route.listeners += 1;
            route.sinks.entry(type_id).or_insert_with(|| (0, sink())).0 += 1;
            route.listeners == 1
        };
        if first {
            self.subscribe(table);
        }
    }

    /// Removes a listener; unsubscribes after the last of its table.
    pub(crate) fn detach(&self, table: &'static str, type_id: TypeId) {
        let last = {
            let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
            let Some(route) = routes.get_mut(table) else {
                return;
            };
            route.listeners = route.listeners.saturating_sub(1);
            if let Some(entry) = route.sinks.get_mut(&type_id) {
                entry.0 = entry.0.saturating_sub(1);
                if entry.0 == 0 {
                    route.sinks.remove(&type_id);
                }
            }
            let last = route.listeners == 0;
            if last {
                routes.remove(table);
            }
            last
        };
        if last {
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            active.retain(|t| *t != table);
            if self.client.is_connected() {
                let _ = self.client.wait(
                    self.client.unsubscribe(self.filter(table)),
                    Duration::from_secs(5),
                );
            }
            tracing::debug!(table, group = ?self.group, "broker subscription released");
        }
    }

    fn subscribe(&self, table: &'static str) {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.contains(&table) || !self.client.is_connected() {
            return;
        }
        let token = self.client.subscribe(self.filter(table), self.config.qos);
        match self.client.wait(token, Duration::from_secs(5)) {
            Ok(_) => {
                active.push(table);
                tracing::debug!(table, group = ?self.group, "broker subscription taken");
            }
            Err(error) => {
                tracing::warn!(table, %error, "subscribe failed; retried after the next reconnect")
            }
        }
    }

    /// Whether the client is connected, every table with listeners is subscribed,
    /// and, for a group with listeners, the broker was seen to deliver through a
    /// shared subscription.
    pub(crate) fn ready(&self) -> bool {
        if !self.client.is_connected() {
            return false;
        }
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        if !routes.is_empty() && !self.share().usable() {
            return false;
        }
        let active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        routes.keys().all(|t| active.contains(t))
    }

    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the stream's thread; false if it had not ended by `deadline` (it
    /// then ends by itself, within its 100 ms receive timeout and a disconnect).
    pub(crate) fn stop(&self, deadline: Instant) -> bool {
        self.request_stop();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        match handle {
            Some(handle) => super::publisher::join_by(handle, deadline),
            None => true,
        }
    }

    fn run(self: Arc<Self>, events: crossbeam_channel::Receiver<paho::Event>, client_id: String) {
        // A session that outlives disconnects needs a client id that outlives us.
        let persistent = self.config.client_id.is_some();
        let options = connect_options(&self.config, !persistent);
        let mut screen = Screen::new(
            &self.config,
            self.node_id.clone(),
            self.group.is_some(),
            self.counters.clone(),
        );
        let mut backoff = Backoff::new();
        let mut connected = false;
        while !self.stop.load(Ordering::Relaxed) {
            if !connected && matches!(self.share(), Share::Refused { parked: true }) {
                // Reconnecting would only be cut off again; wait for shutdown.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            if !connected {
                self.active
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                match self
                    .client
                    .wait(self.client.connect(options.clone()), Duration::from_secs(5))
                {
                    Ok(_) => {
                        connected = true;
                        backoff.reset();
                        tracing::info!(client = %client_id, "MQTT subscriber connected");
                        let tables: Vec<&'static str> = self
                            .routes
                            .read()
                            .unwrap_or_else(|e| e.into_inner())
                            .keys()
                            .copied()
                            .collect();
                        for table in tables {
                            self.subscribe(table);
                        }
                        self.send_probe();
                    }
                    Err(error) => {
                        let wait = backoff.next();
                        tracing::debug!(%error, retry_in = ?wait, "MQTT subscriber cannot connect");
                        // In steps, so that a shutdown meanwhile is not kept waiting.
                        let until = Instant::now() + wait;
                        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        continue;
                    }
                }
            }
            match events.recv_timeout(Duration::from_millis(100)) {
                Ok(paho::Event::Message(message)) => self.handle(&message, &mut screen),
                Ok(paho::Event::ConnectionLost) | Ok(paho::Event::Disconnected { .. }) => {
                    tracing::warn!(client = %client_id, "MQTT subscriber lost the broker; reconnecting");
                    MqttCounters::add(&self.counters.reconnects, 1);
                    connected = false;
                    self.probe_lost();
                }
                Ok(paho::Event::Connected) => {}
                Ok(paho::Event::Shutdown) => break,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    screen.flush_log(false);
                    if !self.client.is_connected() {
                        connected = false;
                        self.probe_lost();
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            if connected {
                // Here, not on idle ticks only: a busy stream must reach a verdict too.
                self.probe_expired();
            }
        }
        // Deliver what already arrived before leaving.
        while let Ok(paho::Event::Message(message)) = events.try_recv() {
            self.handle(&message, &mut screen);
        }
        screen.flush_log(true);
        if self.client.is_connected() {
            // Nothing of ours is in flight on a subscriber: do not linger.
            let _ = self
                .client
                .wait(self.client.disconnect(None), Duration::from_millis(250));
        }
    }

    fn handle(&self, message: &paho::Message, screen: &mut Screen) {
        let topic = message.topic();
        if let Some((shared, direct)) = &self.probe {
            if topic == shared {
                self.probe_answered();
                return;
            }
            if topic == direct {
                self.probe_echoed();
                return;
            }
        }
        let Some((table, envelope)) = screen.check(topic, message.payload()) else {
            return;
        };
        let sinks: Vec<Arc<dyn RemoteSink>> = {
            let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
            match routes.get(table) {
                Some(route) => route.sinks.values().map(|(_, sink)| sink.clone()).collect(),
                None => return,
            }
        };
        let origin: Arc<str> = Arc::from(envelope.origin());
        let mut accepted = false;
        for sink in sinks {
            match sink.deliver(&envelope, &origin, self.group.as_deref()) {
                Ok(()) => accepted = true,
                Err(error) => screen.reject(topic, &error),
            }
        }
        // Only now: a payload no listener could decode must not use up its id.
        if accepted {
            screen.accepted(envelope.id());
        }
    }
}

/// The shared-subscription probe of a group stream (see [`Share`]).
impl Stream {
    fn share(&self) -> Share {
        *self.share.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_share(&self, share: Share) {
        *self.share.lock().unwrap_or_else(|e| e.into_inner()) = share;
    }

    /// The probe's subscriptions: `shared` through the group, `direct` plainly.
    fn probe_filters(&self) -> Option<[String; 2]> {
        let (group, (shared, direct)) = (self.group.as_ref()?, self.probe.as_ref()?);
        Some([format!("$share/{group}/{shared}"), direct.clone()])
    }

    /// Sets the current connection's phase, while there is no verdict.
    fn set_phase(&self, phase: Phase) {
        let mut share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        if let Share::Probing { direct, lost, .. } = *share {
            *share = Share::Probing {
                phase,
                direct,
                lost,
            };
        }
    }

    /// After every (re)connection until the verdict is in, once the tables are
    /// subscribed: subscribe to both probe topics and publish on them.
    fn send_probe(&self) {
        let (Some(filters), Some((shared, direct))) = (self.probe_filters(), self.probe.as_ref())
        else {
            return;
        };
        if !matches!(self.share(), Share::Probing { .. }) {
            return;
        }
        self.set_phase(Phase::Subscribed);
        for filter in &filters {
            let token = self.client.subscribe(filter.as_str(), 1);
            if let Err(error) = self.client.wait(token, Duration::from_secs(5)) {
                if !self.client.is_connected() {
                    // Cut off while subscribing: `probe_lost` counts it.
                } else if filter.starts_with("$share/") {
                    self.refuse(
                        &format!("it refused the subscription to {filter}: {error}"),
                        false,
                    );
                } else {
                    self.unverified(&format!(
                        "the probe subscription {filter} was refused: {error}"
                    ));
                }
                return;
            }
        }
        // Before publishing: a broker that closes the connection for a publish
        // (refused by its ACL) may do so before the second one is written.
        self.set_phase(Phase::Published(Instant::now()));
        for topic in [shared, direct] {
            let probe = paho::Message::new(topic.as_str(), Vec::new(), 0);
            let sent = self.client.publish(probe).into();
            if let Err(error) = self.client.wait(sent, Duration::from_secs(5)) {
                // The connection is going; the next one sends them again.
                tracing::debug!(%error, "shared subscription probe not sent");
                return;
            }
        }
        tracing::debug!(group = ?self.group, "shared subscription probes sent");
    }

    /// The `shared` probe came back: the broker honours shared subscriptions.
    fn probe_answered(&self) {
        let before = std::mem::replace(
            &mut *self.share.lock().unwrap_or_else(|e| e.into_inner()),
            Share::Honoured,
        );
        match before {
            Share::Probing { .. } | Share::Unverified => {
                tracing::debug!(group = ?self.group, "the broker honours shared subscriptions")
            }
            Share::Refused { .. } => tracing::warn!(
                group = ?self.group,
                "the broker delivered the shared subscription probe late: group listeners receive events after all"
            ),
            Share::Honoured => return,
        }
        self.release_probe();
    }

    /// The `direct` probe came back: the broker delivers to this client here.
    fn probe_echoed(&self) {
        let mut share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        if let Share::Probing { phase, lost, .. } = *share {
            *share = Share::Probing {
                phase,
                direct: true,
                lost,
            };
        }
    }

    /// Called while connected: the verdict, once the `shared` probe is overdue.
    fn probe_expired(&self) {
        let Share::Probing {
            phase: Phase::Published(sent),
            direct,
            ..
        } = self.share()
        else {
            return;
        };
        if sent.elapsed() < PROBE_TIMEOUT {
            return;
        }
        if direct {
            let reason = format!(
                "it accepted the subscription but delivered nothing through it within {PROBE_TIMEOUT:?}, \
                 while a plain subscription to the same kind of topic received"
            );
            self.refuse(&reason, false);
        } else {
            self.unverified(&format!(
                "no probe came back within {PROBE_TIMEOUT:?} (no right to publish under the prefix?)"
            ));
        }
    }

    /// Called when a connection ends.
    fn probe_lost(&self) {
        let mut share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        let Share::Probing { phase, lost, .. } = *share else {
            return;
        };
        // Only a connection that made `$share` subscriptions tells about the broker.
        let lost = lost + u32::from(phase != Phase::Idle);
        *share = Share::Probing {
            phase: Phase::Idle,
            direct: false,
            lost,
        };
        drop(share);
        if lost < PROBE_LOSSES {
            return;
        }
        if let Phase::Published(_) = phase {
            // Closed for what we published (an ACL refusing it), not for subscribing.
            self.unverified(&format!(
                "the broker closed the connection after the probes were published, {lost} times \
                 in a row (no right to publish under the prefix?)"
            ));
        } else {
            let reason =
                format!("it closed the connection after the subscription, {lost} times in a row");
            self.refuse(&reason, true);
        }
    }

    /// Gives up the check: the group counts as served, with a warning.
    fn unverified(&self, reason: &str) {
        self.set_share(Share::Unverified);
        tracing::warn!(
            group = self.group.as_deref().unwrap_or_default(),
            broker = %self.config.url,
            "cannot check that the broker honours MQTT shared subscriptions: {reason}"
        );
        self.release_probe();
    }

    /// Logs and counts that the broker does not honour shared subscriptions. The
    /// table subscriptions stay (harmless if they receive nothing, and right should
    /// the probe come back after all); other streams, the plain one included, have
    /// clients of their own and are not affected.
    fn refuse(&self, reason: &str, parked: bool) {
        self.set_share(Share::Refused { parked });
        self.release_probe();
        MqttCounters::add(&self.counters.groups_refused, 1);
        let group = self.group.as_deref().unwrap_or_default();
        tracing::error!(
            group,
            broker = %self.config.url,
            "the broker does not honour MQTT shared subscriptions ($share/...): {reason}; \
             listeners of group {group} receive no remote events, other listeners are not affected \
             (use a broker with shared subscriptions, Mosquitto 2 for one, or listeners without a group)"
        );
        if parked && self.client.is_connected() {
            let _ = self
                .client
                .wait(self.client.disconnect(None), Duration::from_millis(250));
        }
    }

    fn release_probe(&self) {
        if let Some(filters) = self.probe_filters() {
            if self.client.is_connected() {
                // Not waited for: a reply lost with the connection changes nothing.
                drop(self.client.unsubscribe_many(&filters));
            }
        }
    }
}
