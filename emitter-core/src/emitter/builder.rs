//! [`EmitterBuilder`]: an emitter's configuration, checked and started by
//! [`EmitterBuilder::build`] (node id, transport, outbox relay).

use super::{Emitter, Outbox, Shared};
use crate::commit::Sequencer;
use crate::error::Error;
use crate::listener::Registry;
use crate::outbox::relay::OwnRows;
use crate::outbox::OutboxConfig;
use crate::stats::Counters;
use crate::transport::{Node, Transport, TransportConfig};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};

/// Configures an [`Emitter`]; from [`Emitter::builder`]. With the facade's `mqtt`
/// feature, `.mqtt(MqttConfig::new("mqtt://127.0.0.1:1883"))` adds the broker
/// (see `diesel_emitter::MqttBuilderExt`).
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::builder().node_id("api-1").build()?;
/// assert_eq!(emitter.node_id(), "api-1");
/// assert!(!emitter.has_broker());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct EmitterBuilder {
    node_id: Option<String>,
    transport: Option<Arc<dyn TransportConfig>>,
    outbox: Option<OutboxConfig>,
}

impl EmitterBuilder {
    /// The node id, `origin` of every event this emitter commits. Default: `node-` and
    /// 12 random hex digits.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Emitter::builder().node_id("api-1").build()?.node_id(), "api-1");
    /// // A node id travels in every payload and must not hold topic wildcards.
    /// assert!(Emitter::builder().node_id("api/1").build().is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = Some(node_id.into());
        self
    }

    /// Publish committed events to, and hear other nodes through, this transport.
    /// With MQTT, `.mqtt(MqttConfig)` (from the facade's prelude) says the same. A
    /// transport that cannot start fails `build()`:
    ///
    /// ```
    /// use diesel_emitter::transport::{Node, Transport, TransportConfig};
    /// use diesel_emitter::{Emitter, Error};
    /// use std::sync::Arc;
    ///
    /// /// A transport that refuses every configuration.
    /// #[derive(Debug)]
    /// struct Unreachable;
    ///
    /// impl TransportConfig for Unreachable {
    ///     fn start(&self, node: &Node) -> Result<Arc<dyn Transport>, Error> {
    ///         Err(Error::BrokerUnreachable { url: "nowhere".into(), reason: format!("{} has no route", node.id) })
    ///     }
    /// }
    ///
    /// let refused = Emitter::builder().node_id("api-1").transport(Unreachable).build();
    /// assert!(matches!(refused, Err(Error::BrokerUnreachable { .. })));
    /// ```
    pub fn transport(mut self, config: impl TransportConfig) -> Self {
        self.transport = Some(Arc::new(config));
        self
    }

    /// Makes committed events durable: each transaction writes its events into the
    /// outbox table before it commits, and a relay publishes them from there (see
    /// [`outbox`](crate::outbox)). Needs a [`transport`](Self::transport); `build()` fails when
    /// the outbox tables are missing.
    ///
    /// With MQTT: `Emitter::builder().mqtt(MqttConfig::new(..)).outbox(Outbox::<PgConnection>::url("postgres://..."))`.
    /// Without a transport there is nothing to relay to:
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel_emitter::prelude::*;
    /// use diesel_emitter::outbox::OutboxError;
    /// use diesel_emitter::{Error, Outbox};
    ///
    /// let refused = Emitter::builder().outbox(Outbox::<SqliteConnection>::url("app.db")).build();
    /// assert!(matches!(refused, Err(Error::Outbox(OutboxError::NoBroker))));
    /// ```
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.outbox = Some(config);
        self
    }

    /// Validates the configuration and starts the emitter (and, with MQTT, its
    /// publisher thread, which connects in the background unless
    /// `MqttConfig::require_connection` asks to wait).
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::Error;
    ///
    /// let bad = Emitter::builder().node_id("api/1").build();
    /// assert!(matches!(bad, Err(Error::InvalidNodeId(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(self) -> Result<Emitter, Error> {
        let random = uuid::Uuid::new_v4().as_u64_pair();
        let node_id: Arc<str> = match self.node_id {
            Some(id) => validate_node_id(id)?,
            None => format!("node-{:012x}", random.0 >> 16),
        }
        .into();
        if let Some(outbox) = &self.outbox {
            outbox.validate()?;
            if self.transport.is_none() {
                return Err(crate::outbox::OutboxError::NoBroker.into());
            }
        }
        let node = Node {
            id: node_id.clone(),
            instance: random.1,
        };
        let transport = match &self.transport {
            Some(config) => Some(config.start(&node)?),
            None => None,
        };
        let sequencer = Arc::new(Mutex::new(Sequencer::default()));
        let outbox = match (self.outbox, &transport) {
            (Some(config), Some(transport)) => {
                let own = OwnRows {
                    origin: node_id.clone(),
                    instance: random.1,
                    settled_below: {
                        let sequencer = sequencer.clone();
                        Box::new(move || {
                            sequencer
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .settled_below()
                        })
                    },
                };
                Some(start_outbox(config, transport, own)?)
            }
            _ => None,
        };
        Ok(Emitter {
            shared: Arc::new(Shared {
                node_id,
                instance: random.1,
                counters: Counters::default(),
                commit_lock: sequencer,
                delivery_turn: Condvar::new(),
                registry: Registry::new(),
                shut_down: AtomicBool::new(false),
                transport,
                outbox,
            }),
        })
    }
}

/// Checks the outbox tables and starts the relay.
fn start_outbox(
    config: OutboxConfig,
    transport: &Arc<dyn Transport>,
    own: OwnRows,
) -> Result<Outbox, Error> {
    let mut store = config.open_store()?;
    store.check()?;
    let table = config.table.clone();
    let relay = if config.relay {
        Some(crate::outbox::relay::RelayHandle::start(
            config,
            store,
            Arc::downgrade(transport),
            own,
        )?)
    } else {
        None
    };
    Ok(Outbox { table, relay })
}

fn validate_node_id(id: String) -> Result<String, Error> {
    if !crate::wire::is_valid_node_id(&id) {
        return Err(Error::InvalidNodeId(id));
    }
    Ok(id)
}
