//! [`EmitterBuilder`]: an emitter's configuration, checked and started by
//! [`EmitterBuilder::build`] (node id, broker bridge, outbox relay).

#[cfg(feature = "mqtt")]
use super::Outbox;
use super::{Emitter, Shared};
use crate::commit::Sequencer;
use crate::error::Error;
use crate::listener::Registry;
use crate::mqtt::MqttConfig;
#[cfg(feature = "mqtt")]
use crate::outbox::relay::OwnRows;
use crate::outbox::OutboxConfig;
use crate::stats::Counters;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};

/// Configures an [`Emitter`]; from [`Emitter::builder`].
///
/// ```no_run
/// # use diesel::prelude::*;
/// # use diesel::connection::SimpleConnection;
/// # use diesel_emitter::prelude::*;
/// # diesel::table! { users (id) { id -> Integer, name -> Text } }
/// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
/// # #[diesel(table_name = users)]
/// # struct User { id: i32, name: String }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let emitter = Emitter::builder()
///     .node_id("api-1")
///     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883").topic_prefix("shop/events"))
///     .build()?;
/// # drop(emitter);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct EmitterBuilder {
    node_id: Option<String>,
    mqtt: Option<MqttConfig>,
    outbox: Option<OutboxConfig>,
}

impl EmitterBuilder {
    /// The node id, `origin` of every event this emitter commits. Default: `node-` and
    /// 12 random hex digits.
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
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

    /// Publish committed events to, and hear other nodes through, this broker.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let emitter = Emitter::builder()
    ///     .mqtt(MqttConfig::new("mqtts://broker.internal:8883").credentials("api", "secret"))
    ///     .build()?;
    /// # drop(emitter);
    /// # Ok(())
    /// # }
    /// ```
    pub fn mqtt(mut self, config: MqttConfig) -> Self {
        self.mqtt = Some(config);
        self
    }

    /// Makes committed events durable: each transaction writes its events into the
    /// outbox table before it commits, and a relay publishes them from there (see
    /// [`outbox`](crate::outbox)). Needs [`mqtt`](Self::mqtt); `build()` fails when
    /// the outbox tables are missing.
    ///
    /// ```no_run
    /// # use diesel::prelude::*;
    /// # use diesel_emitter::prelude::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::Outbox;
    ///
    /// // With PostgreSQL: `Outbox::<PgConnection>::url("postgres://...")`.
    /// let emitter = Emitter::builder()
    ///     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883"))
    ///     .outbox(Outbox::<SqliteConnection>::url("app.db"))
    ///     .build()?;
    /// # drop(emitter);
    /// # Ok(())
    /// # }
    /// ```
    pub fn outbox(mut self, config: OutboxConfig) -> Self {
        self.outbox = Some(config);
        self
    }

    /// Validates the configuration and starts the emitter (and, with MQTT, its
    /// publisher thread, which connects in the background unless
    /// [`MqttConfig::require_connection`] asks to wait).
    ///
    /// ```
    /// # use diesel::prelude::*;
    /// # use diesel::connection::SimpleConnection;
    /// # use diesel_emitter::prelude::*;
    /// # diesel::table! { users (id) { id -> Integer, name -> Text } }
    /// # #[derive(Queryable, Selectable, serde::Serialize, serde::Deserialize, Clone, Debug, Emits)]
    /// # #[diesel(table_name = users)]
    /// # struct User { id: i32, name: String }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::Error;
    ///
    /// let bad = Emitter::builder().mqtt(MqttConfig::new("http://127.0.0.1")).build();
    /// assert!(matches!(bad, Err(Error::Mqtt(_))));
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
            if self.mqtt.is_none() {
                return Err(crate::outbox::OutboxError::NoBroker.into());
            }
        }
        #[cfg(feature = "mqtt")]
        let bridge = match self.mqtt {
            Some(config) => Some(Arc::new(crate::mqtt::Bridge::start(
                config,
                node_id.clone(),
                random.1,
            )?)),
            None => None,
        };
        let sequencer = Arc::new(Mutex::new(Sequencer::default()));
        #[cfg(feature = "mqtt")]
        let outbox = match (self.outbox, &bridge) {
            (Some(config), Some(bridge)) => {
                let own = OwnRows {
                    origin: node_id.clone(),
                    instance: random.1,
                    sequencer: sequencer.clone(),
                };
                Some(start_outbox(config, bridge, own)?)
            }
            _ => None,
        };
        #[cfg(not(feature = "mqtt"))]
        if let Some(config) = self.mqtt {
            config.validate()?;
            return Err(Error::MqttUnavailable);
        }
        Ok(Emitter {
            shared: Arc::new(Shared {
                node_id,
                instance: random.1,
                counters: Counters::default(),
                commit_lock: sequencer,
                delivery_turn: Condvar::new(),
                registry: Registry::new(),
                shut_down: AtomicBool::new(false),
                #[cfg(feature = "mqtt")]
                bridge,
                #[cfg(feature = "mqtt")]
                outbox,
            }),
        })
    }
}

/// Checks the outbox tables and starts the relay.
#[cfg(feature = "mqtt")]
fn start_outbox(
    config: OutboxConfig,
    bridge: &Arc<crate::mqtt::Bridge>,
    own: OwnRows,
) -> Result<Outbox, Error> {
    let mut store = config.open_store()?;
    store.check()?;
    let table = config.table.clone();
    let relay = if config.relay {
        Some(crate::outbox::relay::RelayHandle::start(
            config,
            store,
            Arc::downgrade(bridge),
            own,
        )?)
    } else {
        None
    };
    Ok(Outbox { table, relay })
}

fn validate_node_id(id: String) -> Result<String, Error> {
    if !crate::mqtt::topic::is_valid_node_id(&id) {
        return Err(Error::InvalidNodeId(id));
    }
    Ok(id)
}
