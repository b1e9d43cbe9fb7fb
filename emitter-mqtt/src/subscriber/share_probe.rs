//! A group stream's check that the broker honours shared subscriptions: the
//! `$share` probe and its verdict ([`Share`]).

use super::Stream;
use crate::counters::MqttCounters;
use paho_mqtt as paho;
use std::time::{Duration, Instant};

/// How long a group stream waits for its probes to come back through the broker
/// before it gives its verdict. A round trip takes milliseconds; a `shared` probe
/// still in flight then turns the verdict around when it comes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in a row that ended, after `$share` subscriptions were made on
/// them, before a verdict; then the broker counts as closing them for it. One or
/// two can be a broker restart.
const PROBE_LOSSES: u32 = 3;

/// Whether the broker honours the shared subscriptions of a group stream.
///
/// Brokers without shared subscriptions answer `$share/{group}/...` in different
/// ways: a SUBACK failure, a closed connection, or (NATS 2.9, RabbitMQ 3.10) a
/// granted subscription to a topic nobody publishes on. Only delivery tells them
/// apart, so a group stream sends itself two empty messages under
/// `{prefix}/$probe/{group}/{client id}/`: `shared`, which it subscribes to through
/// `$share/{group}/...`, and `direct`, subscribed to plainly. `direct` is the
/// control: when it comes back and `shared` does not, the broker does not honour
/// shared subscriptions; when neither does, or the broker closes the connection
/// after the probes were published (Mosquitto 2.0 with `max_queued_messages 0`
/// does so to a client whose publish its ACL denies, as a node that may only read
/// under the prefix meets), the check proves nothing and the group is not refused.
/// The topics belong to this client alone and lie four levels under the prefix,
/// so that no table subscription (`{prefix}/{table}/+`) and no `diesel-emitter
/// tail` (`{prefix}/+/+`) sees them. QoS 0: Paho's QoS 1 resend path is the one
/// that corrupts its heap on reset connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Share {
    /// A plain stream, or the `shared` probe came back.
    Honoured,
    /// No verdict yet.
    Probing(Probe),
    /// The check proved nothing: logged once, treated as honoured.
    Unverified,
    /// Reported (logged and counted once). `parked`: the broker closed every
    /// connection that subscribed, so the stream stops reconnecting.
    Refused { parked: bool },
}

/// A group stream's probe while there is no verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Probe {
    /// Where the current connection is.
    phase: Phase,
    /// Whether the `direct` probe came back on it.
    direct: bool,
    /// Connections in a row lost after their `$share` subscriptions.
    lost: u32,
    /// A probe Paho had not written when its connection ended, which it then sends
    /// first thing on the next connection (a broker that closes the connection for
    /// the first probe may leave the second so).
    stranded: bool,
}

impl Probe {
    pub(super) fn new() -> Probe {
        Probe {
            phase: Phase::Idle,
            direct: false,
            lost: 0,
            stranded: false,
        }
    }
}

/// How far a group stream's current connection got with the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not connected, or not yet subscribed.
    Idle,
    /// `$share` subscriptions made (the tables', then the probe's).
    Subscribed,
    /// Both probes published, at this instant.
    Published(Instant),
}

impl Share {
    /// Whether a group's listeners can expect remote events, as far as we know.
    pub(super) fn usable(self) -> bool {
        matches!(self, Share::Honoured | Share::Unverified)
    }
}

/// The shared-subscription probe of a group stream (see [`Share`]).
impl Stream {
    pub(super) fn share(&self) -> Share {
        *self.share.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_share(&self, share: Share) {
        *self.share.lock().unwrap_or_else(|e| e.into_inner()) = share;
    }

    /// The probe's subscriptions: `shared` through the group, `direct` plainly.
    pub(super) fn probe_filters(&self) -> Option<[String; 2]> {
        let (group, (shared, direct)) = (self.group.as_ref()?, self.inbox.probe_topics()?);
        Some([format!("$share/{group}/{shared}"), direct.clone()])
    }

    /// Changes the probe, while there is no verdict.
    fn probing(&self, change: impl FnOnce(&mut Probe)) {
        if let Share::Probing(probe) = &mut *self.share.lock().unwrap_or_else(|e| e.into_inner()) {
            change(probe);
        }
    }

    /// Sets the current connection's phase, while there is no verdict.
    pub(super) fn set_phase(&self, phase: Phase) {
        self.probing(|probe| probe.phase = phase);
    }

    /// After every (re)connection until the verdict is in, once the tables are
    /// subscribed: subscribe to both probe topics and publish on them.
    pub(super) fn send_probe(&self) {
        let (Some(filters), Some((shared, direct))) =
            (self.probe_filters(), self.inbox.probe_topics())
        else {
            return;
        };
        if !matches!(self.share(), Share::Probing(_)) {
            return;
        }
        self.set_phase(Phase::Subscribed);
        for filter in &filters {
            let token = self.client.subscribe(filter.as_str(), 1);
            if let Err(error) = self.client.wait_connected(token, Duration::from_secs(5)) {
                if !self.client.is_connected() {
                    // Cut off while subscribing: `probe_lost` counts it.
                } else if filter.starts_with("$share/") {
                    self.refuse(
                        &format!("it refused the subscription to {filter}: {error}"),
                        false,
                    );
                } else {
                    self.unverified(&format!(
                        "the probe subscription {filter} was refused: {error}"
                    ));
                }
                return;
            }
        }
        // Before publishing: a broker that closes the connection for a publish
        // (refused by its ACL) may do so before the second one is written.
        self.set_phase(Phase::Published(Instant::now()));
        for topic in [shared, direct] {
            let probe = paho::Message::new(topic.as_str(), Vec::new(), 0);
            let sent = self.client.publish(probe).into();
            // Not waited for beyond the connection: a broker that refuses the
            // first probe closes the connection, and Paho may then hold the
            // second until the next one (5 s lost per connection, 3 connections
            // before the verdict).
            if let Err(error) = self.client.wait_connected(sent, Duration::from_secs(5)) {
                // The connection is going; the next one sends them again.
                tracing::debug!(%error, "shared subscription probe not sent");
                if matches!(error, paho::Error::Timeout) {
                    self.set_stranded(true);
                }
                return;
            }
        }
        self.set_stranded(false);
        tracing::debug!(group = ?self.group, "shared subscription probes sent");
    }

    /// The `shared` probe came back: the broker honours shared subscriptions.
    pub(super) fn probe_answered(&self) {
        let before = std::mem::replace(
            &mut *self.share.lock().unwrap_or_else(|e| e.into_inner()),
            Share::Honoured,
        );
        match before {
            Share::Probing(_) | Share::Unverified => {
                tracing::debug!(group = ?self.group, "the broker honours shared subscriptions")
            }
            Share::Refused { .. } => tracing::warn!(
                group = ?self.group,
                "the broker delivered the shared subscription probe late: group listeners receive events after all"
            ),
            Share::Honoured => return,
        }
        self.release_probe();
    }

    /// Notes whether a probe this connection published is still unsent (see
    /// `Probe::stranded`).
    fn set_stranded(&self, stranded: bool) {
        self.probing(|probe| probe.stranded = stranded);
    }

    /// The `direct` probe came back: the broker delivers to this client here.
    pub(super) fn probe_echoed(&self) {
        self.probing(|probe| probe.direct = true);
    }

    /// Called while connected: the verdict, once the `shared` probe is overdue.
    pub(super) fn probe_expired(&self) {
        let Share::Probing(Probe {
            phase: Phase::Published(sent),
            direct,
            ..
        }) = self.share()
        else {
            return;
        };
        if sent.elapsed() < PROBE_TIMEOUT {
            return;
        }
        if direct {
            let reason = format!(
                "it accepted the subscription but delivered nothing through it within {PROBE_TIMEOUT:?}, \
                 while a plain subscription to the same kind of topic received"
            );
            self.refuse(&reason, false);
        } else {
            self.unverified(&format!(
                "no probe came back within {PROBE_TIMEOUT:?} (no right to publish under the prefix?)"
            ));
        }
    }

    /// Called when a connection ends.
    pub(super) fn probe_lost(&self) {
        let mut share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        let Share::Probing(probe) = &mut *share else {
            return;
        };
        let published_here = matches!(probe.phase, Phase::Published(_));
        // A probe stranded by the connection before went out on this one, first:
        // this one too was closed for what we published.
        let published = published_here || probe.stranded;
        // Only a connection that made `$share` subscriptions, or sent a probe,
        // tells about the broker.
        let lost = probe.lost + u32::from(probe.phase != Phase::Idle || probe.stranded);
        *probe = Probe {
            phase: Phase::Idle,
            direct: false,
            lost,
            // Stranded on this connection: it goes out on the next.
            stranded: published_here && probe.stranded,
        };
        drop(share);
        if lost < PROBE_LOSSES {
            return;
        }
        if published {
            // Closed for what we published (an ACL refusing it), not for subscribing.
            self.unverified(&format!(
                "the broker closed the connection after the probes were published, {lost} times \
                 in a row (no right to publish under the prefix?)"
            ));
        } else {
            let reason =
                format!("it closed the connection after the subscription, {lost} times in a row");
            self.refuse(&reason, true);
        }
    }

    /// Gives up the check: the group counts as served, with a warning.
    pub(super) fn unverified(&self, reason: &str) {
        self.set_share(Share::Unverified);
        tracing::warn!(
            group = self.group.as_deref().unwrap_or_default(),
            broker = %self.config.url,
            "cannot check that the broker honours MQTT shared subscriptions: {reason}"
        );
        self.release_probe();
    }

    /// Logs and counts that the broker does not honour shared subscriptions. The
    /// table subscriptions stay (harmless if they receive nothing, and right should
    /// the probe come back after all); other streams, the plain one included, have
    /// clients of their own and are not affected.
    pub(super) fn refuse(&self, reason: &str, parked: bool) {
        self.set_share(Share::Refused { parked });
        self.release_probe();
        MqttCounters::add(&self.counters.groups_refused, 1);
        let group = self.group.as_deref().unwrap_or_default();
        tracing::error!(
            group,
            broker = %self.config.url,
            "the broker does not honour MQTT shared subscriptions ($share/...): {reason}; \
             listeners of group {group} receive no remote events, other listeners are not affected \
             (use a broker with shared subscriptions, Mosquitto 2 for one, or listeners without a group)"
        );
        if parked && self.client.is_connected() {
            let _ = self
                .client
                .wait(self.client.disconnect(None), Duration::from_millis(250));
        }
    }

    pub(super) fn release_probe(&self) {
        if let Some(filters) = self.probe_filters() {
            if self.client.is_connected() {
                // Not waited for: a reply lost with the connection changes nothing.
                drop(self.client.unsubscribe_many(&filters));
            }
        }
    }
}
