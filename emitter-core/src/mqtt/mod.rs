//! The MQTT bridge: publishing committed events and hearing other servers'.
//!
//! [`MqttConfig`] and the envelope are always compiled (configuration errors are
//! reported the same way with or without the `mqtt` feature, and [`Envelope`]
//! decodes the wire format without a broker client); the Paho clients and their
//! threads exist only with the feature.

#[cfg(feature = "mqtt")]
mod client;
mod config;
#[cfg(feature = "mqtt")]
mod connect;
#[cfg(feature = "mqtt")]
mod counters;
#[cfg(feature = "mqtt")]
mod dedup;
pub(crate) mod envelope;
#[cfg(all(test, feature = "mqtt"))]
mod properties;
#[cfg(feature = "mqtt")]
pub(crate) mod publisher;
#[cfg(feature = "mqtt")]
mod reject_log;
#[cfg(feature = "mqtt")]
mod relay;
#[cfg(feature = "mqtt")]
mod screen;
#[cfg(feature = "mqtt")]
mod signing;
#[cfg(feature = "mqtt")]
mod subscriber;
pub(crate) mod topic;

pub use config::{
    MqttConfig, MqttConfigError, Protocol, TlsConfig, DEFAULT_MAX_CLOCK_SKEW, DEFAULT_PREFIX,
    MIN_SIGNING_KEY_LEN,
};
pub use envelope::{Envelope, EnvelopeError, WIRE_VERSION};

#[cfg(feature = "mqtt")]
pub(crate) use bridge::Bridge;
#[cfg(feature = "mqtt")]
pub(crate) use envelope::{Checked, Rejected};
#[cfg(feature = "mqtt")]
pub(crate) use subscriber::RemoteSink;

#[cfg(feature = "mqtt")]
mod bridge {
    use super::config::MqttConfig;
    use super::counters::MqttCounters;
    use super::publisher::{self, Outgoing, PublisherHandle};
    use super::subscriber::{RemoteSink, Stream};
    use crate::error::Error;
    use crate::stats::Stats;
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// The emitter's link to the broker.
    pub(crate) struct Bridge {
        config: MqttConfig,
        paho_url: String,
        client_base: String,
        node_id: Arc<str>,
        counters: Arc<MqttCounters>,
        publisher: PublisherHandle,
        streams: Mutex<HashMap<Option<Arc<str>>, Arc<Stream>>>,
    }

    impl Bridge {
        pub(crate) fn start(
            config: MqttConfig,
            node_id: Arc<str>,
            instance: u64,
        ) -> Result<Bridge, Error> {
            let url = config.validate()?;
            let client_base = match &config.client_id {
                Some(id) => id.clone(),
                None => format!("{node_id}-{:06x}", instance & 0xff_ffff),
            };
            let counters = Arc::new(MqttCounters::default());
            let (first_tx, first_rx) = crossbeam_channel::bounded(1);
            let require = config.require_connection;
            let publisher = publisher::start(
                &config,
                &url.paho,
                format!("{client_base}-pub"),
                node_id.clone(),
                counters.clone(),
                require.map(|_| first_tx),
            )?;
            if let Some(timeout) = require {
                let result = first_rx
                    .recv_timeout(timeout)
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                if let Err(reason) = result {
                    publisher.close(Instant::now());
                    return Err(Error::BrokerUnreachable {
                        url: config.url.clone(),
                        reason,
                    });
                }
            }
            Ok(Bridge {
                config,
                paho_url: url.paho,
                client_base,
                node_id,
                counters,
                publisher,
                streams: Mutex::new(HashMap::new()),
            })
        }

        pub(crate) fn publish(&self, event: Box<dyn Outgoing>) {
            self.publisher.publish(event);
        }

        /// Hands over `event`, waiting up to `timeout` for room in the buffer.
        pub(crate) fn publish_waiting(
            &self,
            event: Box<dyn Outgoing>,
            timeout: Duration,
        ) -> Result<(), Box<dyn Outgoing>> {
            self.publisher.publish_waiting(event, timeout)
        }

        /// Whether the publisher is connected to the broker now.
        pub(crate) fn publisher_connected(&self) -> bool {
            self.counters.connected.load(Relaxed)
        }

        /// The stream of `group` (None: the plain one), started on first use.
        fn stream(&self, group: Option<&Arc<str>>) -> Result<Arc<Stream>, Error> {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(stream) = streams.get(&group.cloned()) {
                return Ok(stream.clone());
            }
            let client_id = match group {
                Some(group) => format!("{}-{group}", self.client_base),
                None => format!("{}-sub", self.client_base),
            };
            let stream = Stream::start(
                &self.config,
                &self.paho_url,
                client_id,
                group.cloned(),
                self.node_id.clone(),
                self.counters.clone(),
            )
            .map_err(|reason| Error::BrokerUnreachable {
                url: self.config.url.clone(),
                reason,
            })?;
            streams.insert(group.cloned(), stream.clone());
            Ok(stream)
        }

        pub(crate) fn attach(
            &self,
            group: Option<&Arc<str>>,
            table: &'static str,
            type_id: TypeId,
            sink: impl FnOnce() -> Arc<dyn RemoteSink>,
        ) -> Result<(), Error> {
            self.stream(group)?.attach(table, type_id, sink);
            Ok(())
        }

        pub(crate) fn detach(
            &self,
            group: Option<&Arc<str>>,
            table: &'static str,
            type_id: TypeId,
        ) {
            let stream = self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&group.cloned())
                .cloned();
            if let Some(stream) = stream {
                stream.detach(table, type_id);
            }
        }

        /// The broker URL as configured.
        pub(crate) fn url(&self) -> &str {
            &self.config.url
        }

        /// Whether the publisher is connected and every subscriber is connected with
        /// all its subscriptions in place.
        pub(crate) fn ready(&self) -> bool {
            self.counters.connected.load(Relaxed)
                && self
                    .streams
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .all(|s| s.ready())
        }

        /// Publishes what is queued, then disconnects everything. Returns the
        /// number of events not acknowledged by the broker by `deadline`, and
        /// whether every thread (publisher, relay, subscribers) has ended.
        pub(crate) fn close(&self, deadline: Instant) -> (u64, bool) {
            let (unsent, mut stopped) = match self.publisher.close(deadline) {
                Some(unsent) => (unsent, true),
                None => {
                    tracing::error!("MQTT publisher did not stop in time");
                    (self.counters.unsent.load(Relaxed), false)
                }
            };
            let streams: Vec<_> = self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .map(|(_, s)| s)
                .collect();
            for stream in streams {
                let grace = deadline.max(Instant::now() + Duration::from_millis(500));
                if !stream.stop(grace) {
                    tracing::warn!("an MQTT subscriber did not stop in time");
                    stopped = false;
                }
            }
            (unsent, stopped)
        }

        pub(crate) fn fill(&self, stats: &mut Stats) {
            let c = &self.counters;
            stats.published = c.published.load(Relaxed);
            stats.publish_dropped = c.publish_dropped.load(Relaxed);
            stats.publish_failed = c.publish_failed.load(Relaxed) + c.unsent.load(Relaxed);
            stats.remote_received = c.remote_received.load(Relaxed);
            stats.remote_rejected = c.remote_rejected.load(Relaxed);
            stats.remote_duplicates = c.remote_duplicates.load(Relaxed);
            stats.remote_unsigned = c.remote_unsigned.load(Relaxed);
            stats.remote_bad_signature = c.remote_bad_signature.load(Relaxed);
            stats.remote_replayed = c.remote_replayed.load(Relaxed);
            stats.broker_reconnects = c.reconnects.load(Relaxed);
            stats.groups_refused = c.groups_refused.load(Relaxed);
            stats.broker_connected = c.connected.load(Relaxed);
        }
    }

    /// An emitter dropped without `shutdown` still lets its subscriber threads go;
    /// the publisher thread sees its channel close and finishes by itself.
    impl Drop for Bridge {
        fn drop(&mut self) {
            for stream in self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
            {
                stream.request_stop();
            }
        }
    }
}

/// The subscriber's checks of a received message, without a broker: for the fuzz
/// target (`fuzz/`), not part of the API.
#[cfg(feature = "mqtt")]
#[doc(hidden)]
pub mod fuzzing {
    use super::config::MqttConfig;
    use super::counters::MqttCounters;
    use super::screen::Screen;
    use std::sync::Arc;

    /// One subscriber's screen, as a stream of node `node_id` holds it.
    pub struct Receiver {
        screen: Screen,
    }

    impl Receiver {
        /// A receiver under `prefix`, signed with `signing_key` when given.
        pub fn new(prefix: &str, node_id: &str, signing_key: Option<&[u8]>) -> Receiver {
            let mut config = MqttConfig::new("mqtt://127.0.0.1:1883").topic_prefix(prefix);
            if let Some(key) = signing_key {
                config = config.signing_key(key);
            }
            Receiver {
                screen: Screen::new(
                    &config,
                    node_id.into(),
                    false,
                    Arc::new(MqttCounters::default()),
                ),
            }
        }

        /// Screens `payload` on `topic` as the subscriber does, decodes its row as
        /// JSON (as a model would), and remembers its id if that worked. Returns
        /// the accepted envelope's table, action and origin.
        pub fn receive(&mut self, topic: &str, payload: &[u8]) -> Option<(String, String, String)> {
            let (table, envelope) = self.screen.check(topic, payload)?;
            let row: Result<serde_json::Value, _> = serde_json::from_str(envelope.inner.row.get());
            if row.is_err() {
                return None;
            }
            self.screen.accepted(envelope.inner.id);
            Some((
                table.to_owned(),
                envelope.inner.action.to_string(),
                envelope.inner.origin.to_string(),
            ))
        }
    }
}
