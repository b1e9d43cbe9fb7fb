//! [`Lane`]: the committing thread hands its event to Paho itself when the
//! publisher thread has nothing waiting, which spares the event one thread
//! hand-off (a wake-up of the publisher thread, 10-30 µs on a small VM) on its way
//! to the broker.
//!
//! Publishes must reach Paho in commit order. The lane's lock is held by whoever
//! hands a publish to Paho: the publisher thread while it takes events from the
//! buffer and publishes them, a committing thread while it publishes directly. A
//! committing thread goes direct only when it gets the lock at once, the buffer is
//! empty, the connection is up and the publisher thread left it credit (room in the
//! in-flight window, nothing queued or to resend); otherwise its event goes into
//! the buffer as before. What went direct is handed to the publisher thread in the
//! same critical section, through `direct`, and joins the in-flight window there in
//! order: acknowledgements, resends after a lost connection and shutdown treat it
//! like any other publish.

use super::in_flight::InFlight;
use super::message::{packet_size, Encoder};
use crate::counters::MqttCounters;
use crate::hop::hop;
use crossbeam_channel::{Receiver, Sender};
use emitter_core::transport::Outgoing;
use paho_mqtt as paho;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

pub(super) struct Lane {
    state: Mutex<LaneState>,
    encoder: Arc<Encoder>,
    /// Set by Paho's connection-lost callback, which must not take the lock (it
    /// runs under Paho's own, which a direct publish holds the lane's lock to take).
    lost: Arc<AtomicBool>,
    direct: Sender<InFlight>,
    /// Wakes the publisher thread when a direct publish is acknowledged.
    waker: Waker,
    counters: Arc<MqttCounters>,
}

/// What the publisher thread leaves the committing side, under the lock.
pub(super) struct LaneState {
    /// The connected client; `None` while there is none.
    pub(super) client: Option<paho::AsyncClient>,
    /// How many more publishes may go direct before the publisher thread looks again.
    pub(super) credit: usize,
    /// The largest packet the broker accepts, as its MQTT 5 CONNACK says. A broker
    /// disconnects a client that sends a larger one, and resending it after the
    /// reconnect would repeat that for ever, so such an event fails at once (the
    /// publisher thread's `fill`) and never goes direct.
    pub(super) max_packet: Option<usize>,
}

impl Lane {
    /// The lane, and the receiver of what went direct (the publisher thread's).
    pub(super) fn new(
        encoder: Arc<Encoder>,
        lost: Arc<AtomicBool>,
        waker: Waker,
        counters: Arc<MqttCounters>,
    ) -> (Lane, Receiver<InFlight>) {
        // Unbounded, yet never longer than the credit the publisher thread gave.
        let (direct, published) = crossbeam_channel::unbounded();
        let lane = Lane {
            state: Mutex::new(LaneState {
                client: None,
                credit: 0,
                max_packet: None,
            }),
            encoder,
            lost,
            direct,
            waker,
            counters,
        };
        (lane, published)
    }

    /// The publisher thread's hold on the lane.
    pub(super) fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `event` to Paho on this thread if the lane is free and `buffer` (the
    /// publisher thread's) is empty; gives it back otherwise (and when it cannot
    /// become a message: the publisher thread then reports why).
    pub(super) fn try_direct(
        &self,
        event: Box<dyn Outgoing>,
        buffer: &Sender<Box<dyn Outgoing>>,
    ) -> Result<(), Box<dyn Outgoing>> {
        let Ok(mut state) = self.state.try_lock() else {
            return Err(event);
        };
        if state.credit == 0 || !buffer.is_empty() || self.lost.load(Ordering::SeqCst) {
            return Err(event);
        }
        let Some(client) = &state.client else {
            return Err(event);
        };
        hop!("taken");
        let Ok(message) = self.encoder.message(&*event) else {
            return Err(event);
        };
        if state
            .max_packet
            .is_some_and(|max| packet_size(&message) > max)
        {
            return Err(event);
        }
        hop!("encoded");
        let token = client.publish(message);
        hop!("to_paho");
        let mut inflight = InFlight {
            token,
            outcome: None,
            attempts: 1,
            strikes: 0,
            receipt: event.into_receipt(),
        };
        // Registers the waker, so that the acknowledgement wakes the publisher.
        inflight.finished(&self.waker);
        state.credit -= 1;
        // The publisher thread keeps the receiver until it has left no credit
        // (under this lock), so this fails only if that thread died.
        if self.direct.send(inflight).is_err() {
            MqttCounters::add(&self.counters.unsent, 1);
            tracing::error!(
                "MQTT publisher thread is gone; a published event will not be confirmed"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
