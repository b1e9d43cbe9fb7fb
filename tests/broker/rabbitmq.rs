//! RabbitMQ's MQTT plugin, the machine's shared node: `.ci/run` enables the plugin
//! and puts its listener on 127.0.0.1:1884 (1883, its default, is Mosquitto's).
//! RabbitMQ 3.10 speaks MQTT 3.1.1 (and 3.1) only.

use super::{port_open, TIMEOUT};
use std::time::Instant;

/// Where `.ci/run` puts RabbitMQ's MQTT listener.
pub const RABBITMQ_MQTT_PORT: u16 = 1884;

/// The MQTT URL of the shared RabbitMQ node, once it accepts connections.
#[track_caller]
pub fn rabbitmq_url() -> String {
    let deadline = Instant::now() + TIMEOUT;
    while !port_open(RABBITMQ_MQTT_PORT) {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{RABBITMQ_MQTT_PORT}: RabbitMQ's MQTT plugin is not \
             enabled there (.ci/run enables it)"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    format!("mqtt://127.0.0.1:{RABBITMQ_MQTT_PORT}")
}
