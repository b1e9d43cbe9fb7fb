//! [`Encoder`]: an event as the MQTT message the publisher sends (topic, JSON
//! envelope, signature, the MQTT 5 origin property), built on whichever thread
//! hands the event to Paho.

use crate::config::{MqttConfig, Protocol, SigningKey};
use emitter_core::transport::Outgoing;
use emitter_core::wire::is_valid_level;
use paho_mqtt as paho;

pub(super) struct Encoder {
    prefix: String,
    signing_key: Option<SigningKey>,
    qos: i32,
    /// The MQTT 5 user property naming the origin, built once.
    origin_property: Option<paho::Properties>,
}

/// Why an event cannot become a message; no resend changes it.
pub(super) enum Unsendable {
    Table(String),
    Serialize(serde_json::Error),
}

impl Unsendable {
    pub(super) fn reason(&self) -> String {
        match self {
            Unsendable::Table(table) => {
                format!("table name {table:?} is not a valid MQTT topic level")
            }
            Unsendable::Serialize(error) => format!("event does not serialize: {error}"),
        }
    }
}

impl Encoder {
    pub(super) fn new(config: &MqttConfig, origin: &str) -> Encoder {
        let origin_property = (config.protocol == Protocol::V5)
            .then(|| {
                let mut props = paho::Properties::new();
                props
                    .push_string_pair(paho::PropertyCode::UserProperty, "origin", origin)
                    .ok()
                    .map(|()| props)
            })
            .flatten();
        Encoder {
            prefix: config.prefix.clone(),
            signing_key: config.signing_key.clone(),
            qos: config.qos,
            origin_property,
        }
    }

    pub(super) fn message(&self, event: &dyn Outgoing) -> Result<paho::Message, Unsendable> {
        let table = event.table();
        if !is_valid_level(table) {
            return Err(Unsendable::Table(table.to_owned()));
        }
        let payload = event.encode().map_err(Unsendable::Serialize)?;
        let topic = event.topic(&self.prefix);
        let payload = match &self.signing_key {
            Some(key) => key.sign(&topic, payload),
            None => payload,
        };
        let mut builder = paho::MessageBuilder::new()
            .topic(topic)
            .payload(payload)
            .qos(self.qos);
        if let Some(props) = &self.origin_property {
            builder = builder.properties(props.clone());
        }
        Ok(builder.finalize())
    }
}

/// An upper bound of the PUBLISH packet `message` makes: fixed header (type byte
/// and a length of at most 4 bytes), topic with its length, packet id, properties
/// with their length, payload.
pub(super) fn packet_size(message: &paho::Message) -> usize {
    let properties: usize = message
        .properties()
        .user_iter()
        .map(|(key, value)| 1 + 2 + key.len() + 2 + value.len())
        .sum();
    1 + 4 + 2 + message.topic().len() + 2 + 4 + properties + message.payload().len()
}
