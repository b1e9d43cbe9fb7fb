//! MQTT integration tests against the shared Mosquitto at 127.0.0.1:1883.
//!
//! Every test uses a topic prefix of its own (`test/<pid>/<n>/<nanos>/<test>`), so the
//! tests run in parallel, repeatedly, and beside other users of the broker.

mod broker;
#[path = "mqtt/configuration.rs"]
mod configuration;
#[path = "mqtt/delivery.rs"]
mod delivery;
#[path = "mqtt/groups.rs"]
mod groups;
#[path = "mqtt/processes.rs"]
mod processes;
#[path = "mqtt/wire.rs"]
mod wire;

use broker::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_emitter::prelude::*;
use diesel_emitter::{Error, MqttConfigError};
use diesel_emitter::{Event, Source};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};
