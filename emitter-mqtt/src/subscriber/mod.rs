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
use super::hop::hop;
use super::screen::Screen;
use emitter_core::transport::RemoteSink;
use emitter_core::wire::table_filter;
use paho_mqtt as paho;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

mod share_probe;

use share_probe::{Phase, Share};

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
        hop!("received");
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
        hop!("checked");
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
            hop!("queued");
        }
    }
}
