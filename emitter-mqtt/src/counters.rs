//! Broker-side counters, reported through [`Stats`](crate::Stats).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

#[derive(Default)]
pub(crate) struct MqttCounters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_dropped: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) unsent: AtomicU64,
    pub(crate) remote_received: AtomicU64,
    pub(crate) remote_rejected: AtomicU64,
    pub(crate) remote_duplicates: AtomicU64,
    pub(crate) remote_unsigned: AtomicU64,
    pub(crate) remote_bad_signature: AtomicU64,
    pub(crate) remote_replayed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) groups_refused: AtomicU64,
    pub(crate) connected: AtomicBool,
}

impl MqttCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
