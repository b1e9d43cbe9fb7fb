//! The MQTT transport of diesel-emitter: publishes committed events to a broker and
//! hears other nodes' events from it, through Paho (the Eclipse C client, built from
//! source: it needs a C compiler and cmake).
//!
//! Applications meet it through the facade: `Emitter::builder().mqtt(MqttConfig)`.
//! [`MqttConfig`] is the configuration; the rest is the machinery behind
//! [`Transport`]: one publisher thread with its
//! loopback relay (`publisher`, `relay`), one subscriber per stream
//! (`subscriber`, with the checks of `screen`), signing and the counters.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod connect;
mod counters;
mod dedup;
pub mod hop;
mod publisher;
mod reject_log;
mod relay;
mod screen;
mod signing;
mod subscriber;

pub use config::{
    MqttConfig, MqttConfigError, Protocol, TlsConfig, DEFAULT_MAX_CLOCK_SKEW, DEFAULT_PREFIX,
    MIN_SIGNING_KEY_LEN,
};
/// The wire format, re-exported where it was before the transport had its own crate.
pub use emitter_core::wire::{Envelope, EnvelopeError, WIRE_VERSION};

use emitter_core::transport::{Node, Transport, TransportConfig};
use emitter_core::{EmitterBuilder, Error};
use std::sync::Arc;

/// `Emitter::builder().mqtt(config)`: the MQTT transport by its name.
///
/// On every server: each new user gets one welcome mail, whichever server sends it
/// (a `group` is an MQTT shared subscription), and every server's cache hears
/// every server's writes.
///
/// ```no_run
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
///
/// let emitter = Emitter::builder()
///     .node_id("api-1")
///     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883").topic_prefix("shop/events"))
///     .build()?;
/// let mailer = emitter
///     .on::<User>()
///     .actions([Action::Insert])
///     .group("mailer")
///     .listen(|event| { let _ = &event.row; /* send the mail */ });
/// let cache_invalidation = emitter
///     .on::<User>()
///     .allow_remote(true)
///     .listen(|event| match event.meta.source {
///         Source::Local => { /* written by this server */ }
///         Source::Remote => { /* written by event.meta.origin */ }
///     });
/// // Events other servers commit from now on reach both.
/// emitter.wait_connected(Duration::from_secs(5))?;
/// # drop((mailer, cache_invalidation));
/// # Ok(())
/// # }
/// ```
pub trait MqttBuilderExt {
    /// Publish committed events to, and hear other nodes through, this broker.
    fn mqtt(self, config: MqttConfig) -> EmitterBuilder;
}

impl MqttBuilderExt for EmitterBuilder {
    fn mqtt(self, config: MqttConfig) -> EmitterBuilder {
        self.transport(config)
    }
}

impl TransportConfig for MqttConfig {
    fn start(&self, node: &Node) -> Result<Arc<dyn Transport>, Error> {
        Ok(Arc::new(bridge::Bridge::start(
            self.clone(),
            node.id.clone(),
            node.instance,
        )?))
    }
}

impl From<MqttConfigError> for Error {
    fn from(error: MqttConfigError) -> Error {
        Error::Transport {
            transport: "MQTT",
            source: Box::new(error),
        }
    }
}

mod bridge {
    use super::config::MqttConfig;
    use super::counters::MqttCounters;
    use super::publisher::{self, PublisherHandle};
    use super::subscriber::Stream;
    use emitter_core::transport::{Closed, Outgoing, RemoteSink, Route, Transport};
    use emitter_core::{Error, Stats};
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
    }

    impl Transport for Bridge {
        fn publish(&self, event: Box<dyn Outgoing>) {
            self.publisher.publish(event);
        }

        fn publish_waiting(
            &self,
            event: Box<dyn Outgoing>,
            timeout: Duration,
        ) -> Result<(), Box<dyn Outgoing>> {
            self.publisher.publish_waiting(event, timeout)
        }

        fn attach(
            &self,
            route: Route<'_>,
            sink: &mut dyn FnMut() -> Arc<dyn RemoteSink>,
        ) -> Result<(), Error> {
            self.stream(route.group)?
                .attach(route.table, route.model, sink);
            Ok(())
        }

        fn detach(&self, route: Route<'_>) {
            let stream = self
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&route.group.cloned())
                .cloned();
            if let Some(stream) = stream {
                stream.detach(route.table, route.model);
            }
        }

        fn is_publishing(&self) -> bool {
            self.counters.connected.load(Relaxed)
        }

        fn url(&self) -> &str {
            &self.config.url
        }

        /// The publisher is connected and every subscriber is connected with all its
        /// subscriptions in place.
        fn is_ready(&self) -> bool {
            self.counters.connected.load(Relaxed)
                && self
                    .streams
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .all(|s| s.ready())
        }

        /// Publishes what is queued, then disconnects everything.
        fn close(&self, deadline: Instant) -> Closed {
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
            Closed { unsent, stopped }
        }

        fn fill_stats(&self, stats: &mut Stats) {
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
            let row: Result<serde_json::Value, _> = serde_json::from_str(envelope.row_json());
            if row.is_err() {
                return None;
            }
            self.screen.accepted(envelope.id());
            Some((
                table.to_owned(),
                envelope.action().to_string(),
                envelope.origin().to_string(),
            ))
        }
    }
}
