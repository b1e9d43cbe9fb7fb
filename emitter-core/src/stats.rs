//! Counters for everything the emitter does, so that nothing is lost silently.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of an emitter's counters, from [`Emitter::stats`](crate::Emitter::stats).
///
/// Counts are per listener delivery: an event that reaches three listeners adds
/// one to `emitted` and three to `delivered`.
///
/// ```
/// # include!("../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let (emitter, mut conn) = setup()?;
/// let rx = emitter.on::<User>().capacity(1).when_full(WhenFull::Drop).subscribe();
/// diesel::insert_into(users::table)
///     .values(&vec![(users::id.eq(1), users::name.eq("a")), (users::id.eq(2), users::name.eq("b"))])
///     .execute(&mut conn)?;
///
/// let stats = emitter.stats();
/// // Every event a listener was offered is either delivered or dropped, never lost silently.
/// assert_eq!((stats.emitted, stats.delivered, stats.dropped), (2, 1, 1));
/// # drop(rx);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events committed through this emitter.
    pub emitted: u64,
    /// Events handed to a listener: a closure call that finished (also by panicking),
    /// or an event placed in a `subscribe()` receiver's queue.
    pub delivered: u64,
    /// Events a listener did not get: its queue was full under
    /// [`WhenFull::Drop`](crate::WhenFull::Drop), its receiver was gone, its filter
    /// panicked, or the emitter was already shut down (then counted once per event,
    /// as no listener is left).
    pub dropped: u64,
    /// Listener calls (or filters) that panicked. The listener keeps receiving.
    pub panics: u64,
    /// Events queued for closure listeners or being handled by one right now
    /// (`subscribe()` receivers are not counted: their queue is the caller's).
    pub queued: u64,
    /// Committed rows that could not be turned into events (a row that did not
    /// decode into its model). Each is logged with its table.
    pub capture_errors: u64,
    /// Write statements on a table with an `Emits` model that ran without capture,
    /// so their rows emitted nothing: statements the wrapper could not capture safely (the
    /// model does not match the real table, SQL it cannot read) run untouched. Each
    /// kind is logged once per table.
    pub uncaptured_writes: u64,
    /// Listeners currently registered.
    pub listeners: u64,
    /// Events the broker acknowledged (PUBACK at QoS 1).
    pub published: u64,
    /// Events not published because the MQTT buffer was full (broker away or slow).
    pub publish_dropped: u64,
    /// Events not published for another reason: not serializable, rejected by the
    /// broker after retries, or still unacknowledged when shutdown's deadline passed.
    pub publish_failed: u64,
    /// Messages received from the broker on the subscriptions of remote listeners.
    pub remote_received: u64,
    /// Received payloads dropped as malformed, oversized, of another wire version,
    /// with an origin that could not be a node id, or whose row does not decode
    /// into the model. Logged as a summary, at most one line per 10 seconds.
    pub remote_rejected: u64,
    /// Received events dropped as QoS 1 redeliveries (an id seen before).
    pub remote_duplicates: u64,
    /// With a signing key: received payloads dropped because they carry no signature.
    pub remote_unsigned: u64,
    /// With a signing key: received payloads dropped because their signature does
    /// not match (forged, altered, or signed with another key).
    pub remote_bad_signature: u64,
    /// With a signing key: correctly signed events dropped as replays, committed
    /// longer ago than `MqttConfig::replay_window`, or dated further ahead of this
    /// node's clock than `MqttConfig::max_clock_skew`.
    pub remote_replayed: u64,
    /// Times a broker connection was lost and re-established.
    pub broker_reconnects: u64,
    /// Whether the publisher is connected to the broker now.
    pub broker_connected: bool,
    /// Groups (listeners with [`group`](crate::ListenerBuilder::group)) whose broker
    /// does not honour MQTT shared subscriptions: it refused `$share/...`, closed
    /// three connections in a row after it, or (NATS 2.9, RabbitMQ 3.10) accepted
    /// it and delivered nothing through it, as two probe messages each group sends
    /// itself show (one through the group, one on a plain subscription). Logged as
    /// an error; such a group's listeners receive no remote events, every other
    /// listener keeps receiving, and [`Emitter::wait_connected`](crate::Emitter::wait_connected)
    /// times out while the group has listeners.
    pub groups_refused: u64,
    /// Rows waiting in the outbox table (with the outbox on), as the relay last
    /// counted them, about once a second.
    pub outbox_backlog: u64,
    /// How long the oldest waiting outbox row has waited, by the database's clock.
    pub outbox_oldest: Option<std::time::Duration>,
    /// Outbox rows this emitter's relay published and deleted.
    pub outbox_published: u64,
    /// Outbox rows this emitter's relay moved to the dead-letter table.
    pub outbox_dead_lettered: u64,
    /// Database errors the relay met (each followed by a reconnect).
    pub outbox_errors: u64,
}

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

#[derive(Default)]
pub(crate) struct Counters {
    emitted: Padded,
    delivered: Padded,
    dropped: Padded,
    panics: Padded,
    queued: Padded,
    capture_errors: Padded,
    uncaptured_writes: Padded,
}

impl Counters {
    pub(crate) fn emitted(&self, n: u64) {
        self.emitted.0.fetch_add(n, Relaxed);
    }
    pub(crate) fn delivered(&self) {
        self.delivered.0.fetch_add(1, Relaxed);
    }
    pub(crate) fn dropped(&self, n: u64) {
        self.dropped.0.fetch_add(n, Relaxed);
    }
    pub(crate) fn panicked(&self) {
        self.panics.0.fetch_add(1, Relaxed);
    }
    pub(crate) fn enqueued(&self) {
        self.queued.0.fetch_add(1, Relaxed);
    }
    pub(crate) fn dequeued(&self, n: u64) {
        self.queued.0.fetch_sub(n, Relaxed);
    }
    pub(crate) fn capture_error(&self) {
        self.capture_errors.0.fetch_add(1, Relaxed);
    }
    pub(crate) fn capture_error_logged(&self, error: &dyn std::fmt::Display) {
        self.capture_error();
        tracing::error!(%error, "a committed row could not be encoded for the outbox; it is not published");
    }
    pub(crate) fn uncaptured_write(&self) {
        self.uncaptured_writes.0.fetch_add(1, Relaxed);
    }
    pub(crate) fn queued(&self) -> u64 {
        self.queued.0.load(Relaxed)
    }

    pub(crate) fn snapshot(&self, listeners: u64) -> Stats {
        Stats {
            emitted: self.emitted.0.load(Relaxed),
            delivered: self.delivered.0.load(Relaxed),
            dropped: self.dropped.0.load(Relaxed),
            panics: self.panics.0.load(Relaxed),
            queued: self.queued.0.load(Relaxed),
            capture_errors: self.capture_errors.0.load(Relaxed),
            uncaptured_writes: self.uncaptured_writes.0.load(Relaxed),
            listeners,
            ..Stats::default()
        }
    }
}
