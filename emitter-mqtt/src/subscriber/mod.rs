//! Subscribers: the broker side of remote listeners.
//!
//! One Paho client per stream: the plain stream, shared by every `allow_remote` and
//! `remote_only` listener, and one per `group`, joined to the shared subscription
//! `$share/{group}/...`. A stream subscribes to `{prefix}/{table}/+` when the first
//! listener of a table registers and unsubscribes when the last one goes, and
//! subscribes again after every reconnect. Paho's receive thread delivers a
//! message itself when no listener makes it wait ([`inbox`]); the rest goes over an
//! unbounded channel to the stream's thread, so the socket is drained even while a
//! listener makes us wait.
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
use emitter_core::transport::{Deferred, RemoteSink};
use emitter_core::wire::table_filter;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod inbox;
mod share_probe;

use inbox::{Inbound, Inbox};
use share_probe::{Probe, Share};

#[derive(Default)]
struct Route {
    listeners: usize,
    sinks: HashMap<TypeId, (usize, Arc<dyn RemoteSink>)>,
}

/// One subscriber client and its routes.
pub(crate) struct Stream {
    group: Option<Arc<str>>,
    config: MqttConfig,
    client: Client,
    counters: Arc<MqttCounters>,
    /// Where Paho's receive thread hands messages; it holds the routes.
    inbox: Arc<Inbox>,
    /// Tables subscribed on the current connection.
    active: Mutex<Vec<&'static str>>,
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
        let client =
            Client::new(client_options(paho_url, &client_id, config)).map_err(|e| e.to_string())?;
        let probe = group.as_ref().map(|group| {
            let base = format!("{}/$probe/{group}/{client_id}", config.prefix);
            (format!("{base}/shared"), format!("{base}/direct"))
        });
        let share = match group {
            Some(_) => Share::Probing(Probe::new()),
            None => Share::Honoured,
        };
        let screen = Screen::new(config, node_id, group.is_some(), counters.clone());
        let (to_thread, inbound) = crossbeam_channel::unbounded();
        let inbox = Arc::new(Inbox::new(
            group.clone(),
            probe,
            screen,
            to_thread,
            counters.clone(),
        ));
        // Before connecting: a persistent session's messages may arrive at once.
        let arrived = inbox.clone();
        client.set_message_callback(move |_, message| {
            if let Some(message) = message {
                arrived.arrived(message);
            }
        });
        let lost = inbox.clone();
        client.set_connection_lost_callback(move |_| lost.send(Inbound::Lost));
        let disconnected = inbox.clone();
        client.set_disconnected_callback(move |_, _, _| disconnected.send(Inbound::Lost));
        let stream = Arc::new(Stream {
            group,
            config: config.clone(),
            client,
            counters,
            inbox,
            active: Mutex::new(Vec::new()),
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
            .spawn(move || worker.run(inbound, client_id))
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
            let mut routes = self.inbox.routes.write().unwrap_or_else(|e| e.into_inner());
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
            let mut routes = self.inbox.routes.write().unwrap_or_else(|e| e.into_inner());
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
                let _ = self.client.wait_connected(
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
        match self.client.wait_connected(token, Duration::from_secs(5)) {
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
        let routes = self.inbox.routes.read().unwrap_or_else(|e| e.into_inner());
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

    fn run(self: Arc<Self>, inbound: crossbeam_channel::Receiver<Inbound>, client_id: String) {
        // A session that outlives disconnects needs a client id that outlives us.
        let persistent = self.config.client_id.is_some();
        let options = connect_options(&self.config, !persistent);
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
                            .inbox
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
            match inbound.recv_timeout(Duration::from_millis(100)) {
                Ok(Inbound::Lost) => {
                    self.inbox.done();
                    tracing::warn!(client = %client_id, "MQTT subscriber lost the broker; reconnecting");
                    MqttCounters::add(&self.counters.reconnects, 1);
                    connected = false;
                    self.probe_lost();
                }
                Ok(item) => self.handle(item),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    self.inbox.flush_log(false);
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
        while let Ok(item) = inbound.try_recv() {
            match item {
                Inbound::Lost => self.inbox.done(),
                item => self.handle(item),
            }
        }
        self.inbox.flush_log(true);
        if self.client.is_connected() {
            // Nothing of ours is in flight on a subscriber: do not linger.
            let _ = self
                .client
                .wait(self.client.disconnect(None), Duration::from_millis(250));
        }
    }

    /// A message or the rest of a delivery from Paho's receive thread, with
    /// waiting allowed.
    fn handle(&self, item: Inbound) {
        match item {
            Inbound::Message(message) => {
                let topic = message.topic();
                match self.inbox.probe_topics() {
                    Some((shared, _)) if topic == shared => self.probe_answered(),
                    Some((_, direct)) if topic == direct => self.probe_echoed(),
                    _ => self.inbox.deliver_waiting(&message),
                }
            }
            Inbound::Finish(deferred) => deferred.into_iter().for_each(Deferred::finish),
            Inbound::Lost => {}
        }
        self.inbox.done();
    }
}
