//! Bare Paho clients, configured like the emitter's: the side the emitter is
//! measured against.

use super::INFLIGHT;
use paho_mqtt as paho;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A Paho client configured like the emitter's (MQTT 5, no persistence, `inflight`
/// publishes in flight and buffered), not yet connected.
pub fn paho_client(url: &str, client_id: &str, inflight: usize) -> paho::AsyncClient {
    let create = paho::CreateOptionsBuilder::new()
        .server_uri(url)
        .client_id(client_id)
        .mqtt_version(paho::MQTT_VERSION_5)
        .persistence(None)
        .max_buffered_messages(inflight as i32)
        .finalize();
    paho::AsyncClient::new(create).expect("create a Paho client")
}

pub fn paho_connect(client: &paho::AsyncClient, inflight: usize) {
    let options = paho::ConnectOptionsBuilder::new_v5()
        .clean_start(true)
        .keep_alive_interval(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .max_inflight(inflight as i32)
        .finalize();
    client
        .connect(options)
        .wait_for(Duration::from_secs(10))
        .expect("connect a Paho client to the bench broker");
}

/// A Paho subscriber whose messages are handed to `handler` on its own thread.
pub struct PahoSub {
    client: paho::AsyncClient,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PahoSub {
    pub fn start(
        url: &str,
        client_id: &str,
        filter: &str,
        mut handler: impl FnMut(&paho::Message) + Send + 'static,
    ) -> PahoSub {
        let client = paho_client(url, client_id, INFLIGHT);
        let messages = client.start_consuming();
        paho_connect(&client, INFLIGHT);
        client
            .subscribe(filter, 1)
            .wait_for(Duration::from_secs(10))
            .expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(client_id.to_owned())
            .spawn(move || {
                while !stopping.load(Relaxed) {
                    match messages.recv_timeout(Duration::from_millis(50)) {
                        Ok(Some(message)) => handler(&message),
                        Ok(None) => eprintln!("bench subscriber: connection lost"),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                }
            })
            .expect("spawn the subscriber thread");
        PahoSub {
            client,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PahoSub {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.client.stop_consuming();
        let _ = self
            .client
            .disconnect(None)
            .wait_for(Duration::from_secs(2));
    }
}
