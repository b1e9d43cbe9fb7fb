//! The relay: one thread that publishes outbox rows and deletes each once the broker
//! acknowledged it.
//!
//! Rows are claimed in `seq` order (see [`ClaimScope`]), handed to the transport
//! (which signs, pipelines and retries them like any event) and settled through a
//! receipt per row: acknowledged rows are deleted in batches, refused ones are
//! counted against the row and end in the dead-letter table. The relay claims only
//! while the publisher is connected, so an outage leaves rows unclaimed in the table
//! instead of in memory. A relay that dies mid-batch leaves leased rows behind; once
//! the lease ends any relay publishes them again, and receivers drop the copies by id.

use super::config::OutboxConfig;
use super::store::{ClaimScope, OutboxError, OutboxStore};
use crate::stats::Stats;
use crate::transport::{Outgoing, Receipt, Transport};
use crossbeam_channel::{select, Receiver, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// What the relay reports in [`Stats`].
#[derive(Default)]
pub(crate) struct RelayCounters {
    backlog: AtomicU64,
    /// Milliseconds; `u64::MAX` when the outbox is empty.
    oldest_ms: AtomicU64,
    published: AtomicU64,
    dead_lettered: AtomicU64,
    errors: AtomicU64,
}

impl RelayCounters {
    pub(crate) fn fill(&self, stats: &mut Stats) {
        stats.outbox_backlog = self.backlog.load(Relaxed);
        stats.outbox_oldest = match self.oldest_ms.load(Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        };
        stats.outbox_published = self.published.load(Relaxed);
        stats.outbox_dead_lettered = self.dead_lettered.load(Relaxed);
        stats.outbox_errors = self.errors.load(Relaxed);
    }
}

/// What the relay knows of its own emitter, to claim its rows in `seq` order.
pub(crate) struct OwnRows {
    pub(crate) origin: Arc<str>,
    pub(crate) instance: u64,
    /// Every `seq` below the answer belongs to a transaction that committed or
    /// rolled back (the emitter's sequencer says; the relay does not know it).
    pub(crate) settled_below: Box<dyn Fn() -> u64 + Send>,
}

impl OwnRows {
    fn scope(&self) -> ClaimScope {
        ClaimScope::new(self.origin.clone(), self.instance, (self.settled_below)())
    }
}

pub(crate) struct RelayHandle {
    kick: Sender<()>,
    closing: Arc<Mutex<Option<Instant>>>,
    done: Receiver<()>,
    pub(crate) counters: Arc<RelayCounters>,
}

impl RelayHandle {
    pub(crate) fn start(
        config: OutboxConfig,
        store: Box<dyn OutboxStore>,
        transport: Weak<dyn Transport>,
        own: OwnRows,
    ) -> std::io::Result<RelayHandle> {
        let (kick, kicked) = crossbeam_channel::bounded(1);
        let (acks_tx, acks) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(0);
        let closing = Arc::new(Mutex::new(None));
        let counters = Arc::new(RelayCounters {
            oldest_ms: AtomicU64::new(u64::MAX),
            ..RelayCounters::default()
        });
        let relay = Relay {
            config,
            store: Some(store),
            transport,
            own,
            kicked,
            acks_tx,
            acks,
            closing: closing.clone(),
            counters: counters.clone(),
            claimed: HashMap::new(),
            acked: Vec::new(),
            received: None,
            last_backlog: None,
            _done: done_tx,
        };
        std::thread::Builder::new()
            .name("emitter-outbox".into())
            .spawn(move || relay.run())?;
        Ok(RelayHandle {
            kick,
            closing,
            done,
            counters,
        })
    }

    /// Wakes the relay: this process committed outbox rows.
    pub(crate) fn kick(&self) {
        let _ = self.kick.try_send(());
    }

    /// Publishes what the outbox holds until `deadline`, then stops the relay; rows
    /// left over stay in the table for the next relay.
    pub(crate) fn close(&self, deadline: Instant) -> bool {
        *self.closing.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.kick();
        // The thread drops its end of `done` when it returns.
        matches!(
            self.done.recv_deadline(deadline + Duration::from_secs(2)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        let mut closing = self.closing.lock().unwrap_or_else(|e| e.into_inner());
        closing.get_or_insert_with(Instant::now);
    }
}

/// Tells the relay how the publish of one row ended.
struct RowReceipt {
    id: i64,
    acks: Sender<(i64, Result<(), String>)>,
}

impl Receipt for RowReceipt {
    fn settled(self: Box<Self>, outcome: Result<(), String>) {
        let _ = self.acks.send((self.id, outcome));
    }
}

/// An outbox row on its way to the broker, already encoded.
struct RowMessage {
    table: String,
    topic_tail: String,
    payload: String,
    receipt: RowReceipt,
}

impl Outgoing for RowMessage {
    fn table(&self) -> &str {
        &self.table
    }
    fn topic(&self, prefix: &str) -> String {
        format!("{prefix}/{}", self.topic_tail)
    }
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        Ok(self.payload.clone().into_bytes())
    }
    fn into_receipt(self: Box<Self>) -> Option<Box<dyn Receipt>> {
        Some(Box::new(self.receipt))
    }
}

struct Relay {
    config: OutboxConfig,
    store: Option<Box<dyn OutboxStore>>,
    transport: Weak<dyn Transport>,
    own: OwnRows,
    kicked: Receiver<()>,
    acks_tx: Sender<(i64, Result<(), String>)>,
    acks: Receiver<(i64, Result<(), String>)>,
    closing: Arc<Mutex<Option<Instant>>>,
    counters: Arc<RelayCounters>,
    /// Rows handed to the publisher and not settled yet, with when they were claimed.
    claimed: HashMap<i64, Instant>,
    /// Acknowledged rows not deleted yet.
    acked: Vec<i64>,
    /// The outcome `wait` woke up for, not settled yet.
    received: Option<(i64, Result<(), String>)>,
    last_backlog: Option<Instant>,
    _done: Sender<()>,
}

impl Relay {
    fn run(mut self) {
        tracing::debug!(table = %self.config.table, "outbox relay started");
        loop {
            let closing = *self.closing.lock().unwrap_or_else(|e| e.into_inner());
            if closing.is_some_and(|deadline| Instant::now() >= deadline) {
                break;
            }
            self.settle();
            self.refresh_backlog();
            let lease = self.config.lease;
            self.claimed.retain(|_, at| at.elapsed() < lease);
            let Some(transport) = self.transport.upgrade() else {
                break;
            };
            if closing.is_some() && self.claimed.is_empty() && !transport.is_publishing() {
                // Nothing can be published before the deadline; the rows are safe
                // in the table.
                break;
            }
            if self.claimed.is_empty() && transport.is_publishing() && self.store.is_some() {
                match self.claim_and_publish(&*transport) {
                    Ok(0) if closing.is_some() => break,
                    Ok(_) => {}
                    Err(error) => self.lost_store(&error),
                }
            }
            drop(transport);
            if self.store.is_none() {
                self.reconnect();
            }
            self.wait();
        }
        self.settle();
        if !self.claimed.is_empty() {
            tracing::debug!(
                rows = self.claimed.len(),
                "outbox relay stopped with rows unacknowledged; they stay in the outbox"
            );
        }
    }

    fn claim_and_publish(&mut self, transport: &dyn Transport) -> Result<usize, OutboxError> {
        let Some(store) = self.store.as_mut() else {
            return Ok(0);
        };
        // Read before the claim: every row of ours below it is visible to it.
        let scope = self.own.scope();
        let rows = store.claim(self.config.batch, self.config.lease, &scope)?;
        let claimed = rows.len();
        let now = Instant::now();
        for row in rows {
            let receipt = RowReceipt {
                id: row.id,
                acks: self.acks_tx.clone(),
            };
            if !matches!(row.action.as_str(), "insert" | "update" | "delete") {
                let reason = format!("unknown action {:?}", row.action);
                receipt.acks.send((row.id, Err(reason))).ok();
                continue;
            }
            let message = RowMessage {
                topic_tail: format!("{}/{}", row.table, row.action),
                table: row.table,
                payload: row.payload,
                receipt,
            };
            if transport
                .publish_waiting(Box::new(message), Duration::from_secs(1))
                .is_err()
            {
                // The buffer stayed full: the rest of the batch waits for its lease.
                tracing::debug!("transport buffer full; outbox rows wait for the next claim");
                break;
            }
            self.claimed.insert(row.id, now);
        }
        Ok(claimed)
    }

    /// Deletes acknowledged rows and records failed ones.
    fn settle(&mut self) {
        let mut failed = Vec::new();
        let waited = self.received.take();
        for (id, outcome) in waited.into_iter().chain(self.acks.try_iter()) {
            self.claimed.remove(&id);
            match outcome {
                Ok(()) => self.acked.push(id),
                Err(reason) => failed.push((id, reason)),
            }
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let result = (|| {
            if !self.acked.is_empty() {
                store.remove(&self.acked)?;
                self.counters
                    .published
                    .fetch_add(self.acked.len() as u64, Relaxed);
                self.acked.clear();
            }
            for (id, reason) in &failed {
                if store.fail(*id, reason, self.config.max_attempts)? {
                    self.counters.dead_lettered.fetch_add(1, Relaxed);
                    tracing::error!(row = id, %reason, "outbox row moved to the dead-letter table");
                } else {
                    tracing::warn!(row = id, %reason, "outbox row not published; will retry");
                }
            }
            Ok(())
        })();
        if let Err(error) = result {
            // Failed rows keep their lease and are tried again once it ends.
            self.lost_store(&error);
        }
    }

    fn refresh_backlog(&mut self) {
        if self
            .last_backlog
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        self.last_backlog = Some(Instant::now());
        match store.backlog() {
            Ok(backlog) => {
                self.counters.backlog.store(backlog.rows, Relaxed);
                let oldest = backlog.oldest.map_or(u64::MAX, |age| {
                    age.as_millis().min(u64::MAX as u128 - 1) as u64
                });
                self.counters.oldest_ms.store(oldest, Relaxed);
            }
            Err(error) => self.lost_store(&error),
        }
    }

    fn lost_store(&mut self, error: &OutboxError) {
        self.counters.errors.fetch_add(1, Relaxed);
        tracing::error!(%error, "outbox relay lost its database connection; reconnecting");
        self.store = None;
    }

    fn reconnect(&mut self) {
        match self.config.open_store() {
            Ok(store) => self.store = Some(store),
            Err(error) => {
                self.counters.errors.fetch_add(1, Relaxed);
                tracing::warn!(%error, "outbox relay cannot reach the database");
            }
        }
    }

    /// Sleeps until an acknowledgement, a local commit or the poll interval.
    fn wait(&mut self) {
        let timeout = if self.claimed.is_empty() && self.store.is_some() {
            self.config.poll_interval
        } else if self.store.is_none() {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(100)
        };
        select! {
            recv(self.acks) -> ack => {
                // Kept for `settle`, which deletes in batches; the rest of the
                // batch's acknowledgements get a moment to arrive.
                self.received = ack.ok();
                std::thread::sleep(Duration::from_micros(200));
            }
            recv(self.kicked) -> _ => {}
            default(timeout) => {}
        }
    }
}
