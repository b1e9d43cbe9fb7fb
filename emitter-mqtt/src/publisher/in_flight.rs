//! A message's life between encoding and the broker's acknowledgement: [`Pending`]
//! while it waits to be sent (or sent again), [`InFlight`] while Paho holds it, and
//! how the publisher thread learns that a publish finished.

use crossbeam_channel::{Receiver, Sender};
use emitter_core::transport::Receipt;
use paho_mqtt as paho;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

pub(super) struct Pending {
    pub(super) message: paho::Message,
    pub(super) attempts: u32,
    /// Connections lost while this message was the oldest one unacknowledged.
    pub(super) strikes: u32,
    pub(super) receipt: Option<Box<dyn Receipt>>,
}

impl Pending {
    pub(super) fn settle(self, outcome: Result<(), String>) {
        if let Some(receipt) = self.receipt {
            receipt.settled(outcome);
        }
    }
}

/// A publish awaiting its acknowledgement; the token keeps the message for a retry.
pub(super) struct InFlight {
    pub(super) token: paho::DeliveryToken,
    /// The outcome, once a poll saw it: Paho hands it out only once, and a
    /// publish behind the oldest one can finish first.
    pub(super) outcome: Option<paho::Result<()>>,
    pub(super) attempts: u32,
    pub(super) strikes: u32,
    pub(super) receipt: Option<Box<dyn Receipt>>,
}

impl InFlight {
    /// Whether the publish finished, keeping its outcome for `take_outcome`;
    /// `waker` is woken when it finishes.
    pub(super) fn finished(&mut self, waker: &Waker) -> bool {
        if self.outcome.is_none() {
            self.outcome = poll(&mut self.token, waker);
        }
        self.outcome.is_some()
    }

    /// The outcome, if the publish finished.
    pub(super) fn take_outcome(&mut self) -> Option<paho::Result<()>> {
        self.finished(Waker::noop());
        self.outcome.take()
    }

    pub(super) fn into_pending(self) -> Pending {
        Pending {
            message: self.token.message().clone(),
            attempts: self.attempts,
            strikes: self.strikes,
            receipt: self.receipt,
        }
    }
}

/// What wakes the publisher thread besides a new event: a publish it polled
/// finished, or the connection dropped. A channel rather than a thread park, so
/// that one wait covers new events too (`crossbeam_channel::Select`).
pub(super) struct Alarm {
    pub(super) rx: Receiver<()>,
    /// Rings the alarm: the waker of Paho's tokens, and the connection-lost
    /// callback's (from any thread; never blocks).
    waker: Waker,
}

impl Alarm {
    pub(super) fn new() -> Alarm {
        // One pending ring is enough: the thread looks at everything when it wakes.
        let (tx, rx) = crossbeam_channel::bounded(1);
        Alarm {
            rx,
            waker: Waker::from(Arc::new(Ring(tx))),
        }
    }

    /// The waker that rings the alarm.
    pub(super) fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Waits up to `timeout` for a ring.
    pub(super) fn wait(&self, timeout: Duration) {
        let _ = self.rx.recv_timeout(timeout);
    }
}

struct Ring(Sender<()>);

impl Wake for Ring {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.0.try_send(());
    }
}

/// Polls a publish without blocking. Paho hands the result to the first poll that
/// sees it, so each token is polled by this thread only.
fn poll(token: &mut paho::DeliveryToken, waker: &Waker) -> Option<paho::Result<()>> {
    match Pin::new(token).poll(&mut Context::from_waker(waker)) {
        Poll::Ready(outcome) => Some(outcome),
        Poll::Pending => None,
    }
}
