//! [`Screen`]: everything a received message must pass before anyone believes it.
//!
//! In order: the topic is one of ours, the signature holds (with a signing key),
//! the payload is an envelope of the topic's table and action with a valid origin,
//! a signed event is neither older than the replay window nor dated beyond the
//! clock-skew allowance, it is not this node's own, and its id was not accepted
//! before. Only a message that then decodes for at least one listener counts as
//! accepted and has its id remembered ([`Screen::accepted`]).
//!
//! The screen knows nothing of Paho: the subscriber feeds it, and so does the fuzz
//! target (through [`fuzzing`](crate::fuzzing)).

use super::config::{MqttConfig, SigningKey};
use super::counters::MqttCounters;
use super::dedup::RecentIds;
use super::reject_log::RejectLog;
use super::signing::SignatureError;
use emitter_core::wire::parse_topic;
use emitter_core::wire::{check, Checked, EnvelopeError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

pub(crate) struct Screen {
    prefix: String,
    node_id: Arc<str>,
    /// Groups take every origin's events, this node's included.
    takes_own: bool,
    signing_key: Option<SigningKey>,
    max_payload: usize,
    replay_window: Duration,
    max_clock_skew: Duration,
    recent: RecentIds,
    log: RejectLog,
    counters: Arc<MqttCounters>,
}

impl Screen {
    pub(crate) fn new(
        config: &MqttConfig,
        node_id: Arc<str>,
        takes_own: bool,
        counters: Arc<MqttCounters>,
    ) -> Screen {
        Screen {
            prefix: config.prefix.clone(),
            node_id,
            takes_own,
            signing_key: config.signing_key.clone(),
            max_payload: config.max_payload,
            replay_window: config.replay_window,
            max_clock_skew: config.max_clock_skew,
            recent: RecentIds::new(config.dedup_window),
            log: RejectLog::default(),
            counters,
        }
    }

    /// Counts `payload`, received on `topic`, and checks it; `Some` with its table
    /// and envelope when listeners may see it, `None` when it was dropped (and
    /// counted, and logged if it was refused).
    pub(crate) fn check<'a>(
        &mut self,
        topic: &'a str,
        payload: &'a [u8],
    ) -> Option<(&'a str, Checked<'a>)> {
        MqttCounters::add(&self.counters.remote_received, 1);
        let Some((table, action)) = parse_topic(&self.prefix, topic) else {
            let error = EnvelopeError::Topic {
                topic: topic.to_owned(),
                prefix: self.prefix.clone(),
            };
            self.reject(topic, &error);
            return None;
        };
        if let (Some(key), true) = (&self.signing_key, payload.len() <= self.max_payload) {
            if let Err(error) = key.verify(topic, payload) {
                let (counter, kind) = match error {
                    SignatureError::Unsigned => (&self.counters.remote_unsigned, "unsigned"),
                    SignatureError::Mismatch => (&self.counters.remote_bad_signature, "signature"),
                };
                MqttCounters::add(counter, 1);
                self.log.note(Instant::now(), kind, topic, &error);
                return None;
            }
        }
        let envelope = match check(payload, table, action, self.max_payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.reject(topic, &error);
                return None;
            }
        };
        if self.signing_key.is_some() {
            if let Some(why) = self.out_of_time(envelope.committed_at()) {
                MqttCounters::add(&self.counters.remote_replayed, 1);
                self.log.note(Instant::now(), "replay", topic, &why);
                return None;
            }
        }
        if !self.takes_own && envelope.origin() == &*self.node_id {
            return None;
        }
        if self.recent.contains(&envelope.id()) {
            MqttCounters::add(&self.counters.remote_duplicates, 1);
            return None;
        }
        Some((table, envelope))
    }

    /// Remembers the id of an event a listener accepted, so that copies of it are
    /// dropped as duplicates.
    pub(crate) fn accepted(&mut self, id: Uuid) {
        self.recent.record(id);
    }

    /// Counts and logs a payload dropped as not an acceptable envelope.
    pub(crate) fn reject(&mut self, topic: &str, error: &EnvelopeError) {
        MqttCounters::add(&self.counters.remote_rejected, 1);
        self.log.note(Instant::now(), error.kind(), topic, error);
    }

    /// Writes the summary of dropped payloads if one is due; with `finish`, also
    /// one that is not (the stream ends).
    pub(crate) fn flush_log(&mut self, finish: bool) {
        self.log.flush(Instant::now(), finish);
    }

    /// Why a signed event committed at `committed_at` is not fresh, if it is not:
    /// older than the replay window, or dated beyond the clock-skew allowance.
    fn out_of_time(&self, committed_at: SystemTime) -> Option<String> {
        match SystemTime::now().duration_since(committed_at) {
            Ok(age) if age > self.replay_window => Some(format!(
                "signed event committed {age:?} ago, before the replay window of {:?}",
                self.replay_window
            )),
            Ok(_) => None,
            Err(ahead) if ahead.duration() > self.max_clock_skew => Some(format!(
                "signed event dated {:?} in the future, beyond the clock-skew allowance of {:?}",
                ahead.duration(),
                self.max_clock_skew
            )),
            Err(_) => None,
        }
    }
}
