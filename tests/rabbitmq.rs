//! Remote events through RabbitMQ's MQTT plugin: the machine's shared RabbitMQ
//! node, with the listener `.ci/run` puts on 127.0.0.1:1884. RabbitMQ 3.10 speaks
//! MQTT 3.1.1 only and has no shared subscriptions.

mod broker;
mod log_capture;

use broker::rabbitmq::rabbitmq_url;
use broker::scale::{check_group_refused, check_two_writers_crossing};
use broker::*;
use diesel_emitter::prelude::*;
use diesel_emitter::Protocol;
use std::time::Instant;

fn rabbitmq_config(prefix: &str) -> MqttConfig {
    MqttConfig::new(rabbitmq_url())
        .protocol(Protocol::V311)
        .topic_prefix(prefix)
}

#[test]
fn remote_events_through_rabbitmq_arrive_exactly_once_in_order_per_origin() {
    let started = Instant::now();
    let prefix = unique_prefix("rabbitmq");
    let crossed = check_two_writers_crossing(
        "rabbitmq",
        &|| rabbitmq_config(&prefix),
        rabbitmq_config(&prefix),
        &String::new,
    );
    eprintln!(
        "RabbitMQ: {crossed} events crossed in {:?}",
        started.elapsed()
    );
}

#[test]
fn a_group_on_rabbitmq_is_reported_refused_and_plain_remote_listeners_keep_receiving() {
    log_capture::start();
    let prefix = unique_prefix("rabbitmq-group");
    let writer = node("writer", rabbitmq_config(&prefix));
    let reader = node("reader", rabbitmq_config(&prefix));
    let plain = reader.on::<User>().remote_only(true).subscribe();
    // RabbitMQ 3.10 binds `$share/mailer/...` like any other topic filter.
    let group = reader.on::<User>().group("mailer").subscribe();
    connected(&[&writer]);
    let db = Db::new("rabbitmq-group");
    let mut conn = db.conn(&writer);
    check_group_refused(
        log_capture::lines_containing,
        &mut conn,
        &reader,
        &rabbitmq_url(),
        &plain,
        &group,
        &String::new,
    );
    shutdown_all(&[&writer, &reader]);
}
