//! [`Client`]: a Paho client that is never destroyed from inside Paho's own lock.
//!
//! A paho-mqtt 0.14 token of a connect, subscribe, unsubscribe or disconnect holds
//! a handle of its client, and Paho C runs the token's callback while it holds its
//! process-wide lock. When a waiter gives up on such a token (a timeout) and then
//! drops the client, the callback that comes later drops the client's last handle:
//! `MQTTAsync_destroy` then waits inside that same lock for ever, and with it every
//! Paho client of the process (seen in the test suite: a publisher shut down while
//! its connect was still in flight). So a token still in flight when its waiter
//! gives up is kept here, and the client is destroyed only once those finished.

use paho_mqtt as paho;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long dropping a client waits for its unfinished tokens (Paho fails a
/// connect after its connect timeout, 5 s by default here).
const SETTLE: Duration = Duration::from_secs(10);

/// How often [`Client::wait_connected`] looks whether the connection is still up.
const CONNECTED_CHECK: Duration = Duration::from_millis(20);

pub(crate) struct Client {
    /// `None` only while dropping.
    paho: Option<paho::AsyncClient>,
    /// Tokens given up on while still in flight.
    unfinished: Mutex<Vec<paho::Token>>,
}

impl Client {
    pub(crate) fn new(options: paho::CreateOptions) -> paho::Result<Client> {
        Ok(Client {
            paho: Some(paho::AsyncClient::new(options)?),
            unfinished: Mutex::new(Vec::new()),
        })
    }

    /// Waits up to `timeout` for `token` of this client; a token still in flight
    /// then is kept until it finishes.
    pub(crate) fn wait(
        &self,
        token: paho::Token,
        timeout: Duration,
    ) -> paho::Result<paho::ServerResponse> {
        let outcome = token.clone().wait_for(timeout);
        self.settle(token, outcome)
    }

    /// [`wait`](Self::wait), but only while the client is connected: a request
    /// whose connection went may stay unanswered until the next one (a QoS 0
    /// publish Paho had not written when the broker closed the connection does),
    /// and its waiter would wait out `timeout` for nothing.
    pub(crate) fn wait_connected(
        &self,
        token: paho::Token,
        timeout: Duration,
    ) -> paho::Result<paho::ServerResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = token.clone().wait_for(left.min(CONNECTED_CHECK));
            let timed_out = matches!(outcome, Err(paho::Error::Timeout));
            if !timed_out || left <= CONNECTED_CHECK || !self.is_connected() {
                return self.settle(token, outcome);
            }
        }
    }

    /// Keeps `token` if its waiter gave up on it (`outcome` is a timeout).
    fn settle(
        &self,
        token: paho::Token,
        outcome: paho::Result<paho::ServerResponse>,
    ) -> paho::Result<paho::ServerResponse> {
        let mut unfinished = self.unfinished.lock().unwrap_or_else(|e| e.into_inner());
        // Those whose callback ran can go: the client keeps its own handle.
        unfinished.retain_mut(|t| t.try_wait().is_none());
        if matches!(outcome, Err(paho::Error::Timeout)) {
            unfinished.push(token);
        }
        outcome
    }
}

impl Deref for Client {
    type Target = paho::AsyncClient;

    fn deref(&self) -> &paho::AsyncClient {
        self.paho
            .as_ref()
            .unwrap_or_else(|| unreachable!("the client is taken only by drop"))
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut paho::AsyncClient {
        self.paho
            .as_mut()
            .unwrap_or_else(|| unreachable!("the client is taken only by drop"))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let Some(client) = self.paho.take() else {
            return;
        };
        let unfinished =
            std::mem::take(&mut *self.unfinished.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = Instant::now() + SETTLE;
        for token in &unfinished {
            let left = deadline.saturating_duration_since(Instant::now());
            if matches!(token.clone().wait_for(left), Err(paho::Error::Timeout)) {
                // Destroying it now could deadlock every client of the process;
                // keeping it costs a few kilobytes.
                tracing::warn!(
                    ?SETTLE,
                    "a Paho request of an MQTT client did not finish; the client is leaked"
                );
                std::mem::forget(unfinished);
                std::mem::forget(client);
                return;
            }
        }
        // A token's result is set from inside its Paho callback, which drops its own
        // handle of the token, and with it maybe a handle of the client, only when
        // it returns. Paho runs callbacks holding its process-wide lock, so a call
        // that takes the lock returns after every callback that was still running:
        // only then are this client's last handles the ones dropped here.
        if !unfinished.is_empty() {
            let _ = client.is_connected();
        }
        drop(unfinished);
        drop(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A "broker" that takes TCP connections and never answers: a connect to it
    /// stays in flight until the connection ends.
    fn silent_broker() -> (TcpListener, String) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        (listener, url)
    }

    fn options(url: &str) -> paho::CreateOptions {
        paho::CreateOptionsBuilder::new()
            .server_uri(url)
            .client_id("emitter-client-test")
            .persistence(None)
            .finalize()
    }

    /// Whether a new Paho client can still be created within `timeout`: a
    /// client destroyed inside Paho's lock leaves every later one waiting.
    fn paho_still_usable(timeout: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let client = paho::AsyncClient::new(options("tcp://127.0.0.1:1"));
            let _ = tx.send(client.is_ok());
        });
        rx.recv_timeout(timeout).unwrap_or(false)
    }

    #[test]
    fn dropping_a_client_whose_connect_is_still_in_flight_keeps_paho_usable() {
        let (broker, url) = silent_broker();
        let client = Client::new(options(&url)).unwrap();
        let outcome = client.wait(
            client.connect(paho::ConnectOptions::new()),
            Duration::from_millis(200),
        );
        assert!(matches!(outcome, Err(paho::Error::Timeout)), "{outcome:?}");
        // The broker hangs up a little later: Paho fails the connect and calls
        // back into its token, which would hold the client's last handle.
        let (connection, _) = broker.accept().unwrap();
        let hang_up = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(connection);
        });
        drop(client);
        hang_up.join().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(paho_still_usable(Duration::from_secs(10)));
    }
}
