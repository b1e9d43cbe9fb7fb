//! A loopback relay between the publisher's Paho client and the broker, so that
//! Paho's socket writes never fail.
//!
//! Paho C 1.3.16 mishandles a QoS 1 or 2 publish whose write fails on the socket:
//! `MQTTAsync_processCommand` frees the command's topic and payload although the
//! message it has just put in the session's in-flight list owns the same two
//! buffers. The message is then resent from freed memory after a reconnect, and
//! freed a second time when the session is cleaned or acknowledged: heap
//! corruption (eclipse-paho/paho.mqtt.c #1621, #1622, #1532). Such a write fails
//! whenever the broker resets the connection before Paho's receive thread notices,
//! which a broker that goes away with publishes in flight makes likely.
//!
//! Paho connects to the relay instead of the broker (for TLS through Paho's HTTP
//! CONNECT proxy support, so that Paho still checks the broker's own host name; the
//! bytes stay encrypted end to end). A plain broker is reached over a Unix socket
//! in a directory only this user can enter: a Unix socket costs about half as much
//! CPU per message as a loopback TCP hop, and no other user can reach the broker
//! through it.
//!
//! When the broker's side ends, the relay ends Paho's side the orderly way, with a
//! FIN: Paho's receive thread sees the stream end and closes the connection. Until
//! Paho closes its socket the relay keeps reading and dropping what Paho writes, so
//! no write of Paho's ever sees a reset.

mod endpoint;

use endpoint::{unix_listener, Listener, Listening, PahoSide};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the relay waits for the broker to accept a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest tunnel request (Paho's `CONNECT host:port HTTP/1.1`) accepted.
const MAX_REQUEST: usize = 8 * 1024;
const BUFFER: usize = 64 * 1024;

pub(super) struct Relay {
    listening: Listening,
    server_uri: String,
    https_proxy: Option<String>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// One thread per relayed connection (each joins its own second thread), joined
    /// on drop so that a shut-down emitter leaves no thread behind.
    connections: Connections,
}

type Connections = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// How long dropping the relay waits for its connections to end. They end as soon
/// as Paho's socket is closed, which the publisher does before it drops the relay.
const DRAIN: Duration = Duration::from_secs(5);

impl Relay {
    /// Listens on a private Unix socket (a free loopback port for TLS brokers,
    /// or where Unix sockets are unavailable); each connection accepted there is
    /// relayed to the broker of `paho_url` (`tcp://host:port` or
    /// `ssl://host:port`). A write to the broker that makes no progress for
    /// `stall` ends the connection.
    pub(super) fn start(paho_url: &str, stall: Duration) -> io::Result<Relay> {
        let (scheme, authority) = paho_url
            .split_once("://")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no scheme"))?;
        let tunnel = scheme == "ssl";
        // Paho reaches a TLS broker through an HTTP proxy, which must be TCP.
        let unix = if tunnel { None } else { unix_listener() };
        let (listener, listening) = match unix {
            Some(both) => both,
            None => {
                let listener = TcpListener::bind(("127.0.0.1", 0))?;
                endpoint::wait_at_most(&listener, ACCEPT_WAIT)?;
                let addr = listener.local_addr()?;
                (Listener::Tcp(listener), Listening::Tcp(addr))
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let route = Arc::new(Route {
            broker: authority.to_owned(),
            tunnel,
            stall,
        });
        let connections = Connections::default();
        let accept = std::thread::Builder::new()
            .name("emitter-mqtt-relay".into())
            .spawn({
                let stop = stop.clone();
                let connections = connections.clone();
                move || accept_loop(listener, route, stop, connections)
            })?;
        let (server_uri, https_proxy) = match &listening {
            Listening::Tcp(addr) if tunnel => (paho_url.to_owned(), Some(format!("http://{addr}"))),
            Listening::Tcp(addr) => (format!("tcp://{addr}"), None),
            #[cfg(unix)]
            Listening::Unix(path) => (format!("unix://{}", path.display()), None),
        };
        Ok(Relay {
            listening,
            server_uri,
            https_proxy,
            stop,
            accept: Some(accept),
            connections,
        })
    }

    /// The server URI to give Paho.
    pub(super) fn server_uri(&self) -> &str {
        &self.server_uri
    }

    /// The HTTPS proxy to give Paho (TLS brokers only).
    pub(super) fn https_proxy(&self) -> Option<&str> {
        self.https_proxy.as_deref()
    }
}

/// Stops accepting. Relayed connections end with their Paho socket, which the
/// client closes when it disconnects or is dropped.
impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which sees `stop` before it relays anything; if
        // this fails, the loop's own wait ends within `ACCEPT_WAIT`.
        self.listening.knock();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections =
            std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = Instant::now() + DRAIN;
        for connection in connections {
            if !crate::publisher::join_by(connection, deadline) {
                tracing::warn!(
                    ?DRAIN,
                    "an MQTT relay connection did not end; left to end by itself"
                );
            }
        }
        #[cfg(unix)]
        if let Listening::Unix(path) = &self.listening {
            let _ = std::fs::remove_file(path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

struct Route {
    /// `host:port` of the broker.
    broker: String,
    /// Connections start with an HTTP CONNECT request (TLS brokers).
    tunnel: bool,
    stall: Duration,
}

/// How long one wait for a connection lasts before the accept loop checks that its
/// socket file is still there. The wait ends at once when Paho connects, and
/// `Relay::drop` ends it by connecting too, so an idle relay wakes once a second.
const ACCEPT_WAIT: Duration = Duration::from_secs(1);

fn accept_loop(
    mut listener: Listener,
    route: Arc<Route>,
    stop: Arc<AtomicBool>,
    connections: Connections,
) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let paho = match accepted {
            Ok(paho) => paho,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                listener.keep_bound();
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "MQTT relay cannot accept a connection");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let route = route.clone();
        let spawned = std::thread::Builder::new()
            .name("emitter-mqtt-relay".into())
            .spawn(move || relay(paho, &route));
        match spawned {
            Ok(thread) => {
                let mut connections = connections.lock().unwrap_or_else(|e| e.into_inner());
                // Those that ended (one per broker outage) need no keeping.
                connections.retain(|c| !c.is_finished());
                connections.push(thread);
            }
            // The connection was dropped with the closure: Paho sees it end
            // before it sent anything that could fail.
            Err(error) => tracing::error!(%error, "MQTT relay cannot start a thread"),
        }
    }
}

/// Relays one Paho connection until Paho closes it.
fn relay(paho: PahoSide, route: &Route) {
    if let PahoSide::Tcp(tcp) = &paho {
        let _ = tcp.set_nodelay(true);
    }
    let early = if route.tunnel {
        match tunnel_request(&paho) {
            Ok(early) => early,
            Err(error) => {
                tracing::warn!(%error, "MQTT relay: unexpected proxy request");
                return refuse(paho);
            }
        }
    } else {
        Vec::new()
    };
    let mut broker = match connect(&route.broker) {
        Ok(broker) => broker,
        Err(error) => {
            tracing::debug!(broker = %route.broker, %error, "MQTT relay cannot reach the broker");
            return refuse(paho);
        }
    };
    let _ = broker.set_nodelay(true);
    let _ = broker.set_write_timeout(Some(route.stall));
    if broker.write_all(&early).is_err() {
        let _ = broker.shutdown(Shutdown::Both);
        return refuse(paho);
    }
    let (paho_out, broker_in) = match (paho.try_clone(), broker.try_clone()) {
        (Ok(p), Ok(b)) => (p, b),
        _ => {
            let _ = broker.shutdown(Shutdown::Both);
            return refuse(paho);
        }
    };
    let downstream = std::thread::Builder::new()
        .name("emitter-mqtt-relay".into())
        .spawn(move || downstream(broker_in, paho_out));
    let Ok(downstream) = downstream else {
        let _ = broker.shutdown(Shutdown::Both);
        return refuse(paho);
    };
    upstream(paho, broker);
    // `upstream` shut the broker's side, which ends `downstream` at once.
    let _ = downstream.join();
}

/// Broker to Paho. When the broker's side ends, ends Paho's side with a FIN
/// (never a reset: `upstream` goes on reading it).
fn downstream(mut broker: TcpStream, mut paho: PahoSide) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match broker.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if paho.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = paho.shutdown(Shutdown::Write);
    let _ = broker.shutdown(Shutdown::Both);
}

/// Paho to broker, until Paho closes its socket. Once the broker's side has
/// ended, what Paho still writes is read and dropped: it was never
/// acknowledged, and the publisher sends it again after reconnecting.
fn upstream(mut paho: PahoSide, mut broker: TcpStream) {
    let mut buf = vec![0u8; BUFFER];
    let mut forwarding = true;
    loop {
        match paho.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                crate::hop::hop!("relay_read");
                if !forwarding {
                    continue;
                }
                if broker.write_all(&buf[..n]).is_ok() {
                    crate::hop::hop!("relay_sent");
                } else {
                    forwarding = false;
                    // Also ends `downstream`, which ends Paho's side.
                    let _ = broker.shutdown(Shutdown::Both);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = broker.shutdown(Shutdown::Both);
}

/// Ends Paho's side with a FIN and reads until Paho closes it.
fn refuse(mut paho: PahoSide) {
    let _ = paho.shutdown(Shutdown::Write);
    let _ = paho.set_read_timeout(None);
    let mut buf = vec![0u8; BUFFER];
    loop {
        match paho.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn connect(broker: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in broker.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Answers Paho's `CONNECT host:port HTTP/1.1` request and reads it; returns
/// the bytes Paho sent after it, for the broker.
///
/// The answer goes out first: Paho reads it right after writing its request
/// and sleeps 250 ms if it is not there yet. Paho sends its request with a
/// trailing NUL byte, which is dropped; so that it is not taken for the first
/// byte of the TLS handshake, this returns only once a byte past the request
/// arrived (Paho sends its TLS ClientHello right after reading the answer).
fn tunnel_request(paho: &PahoSide) -> io::Result<Vec<u8>> {
    let PahoSide::Tcp(tcp) = paho else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not TCP"));
    };
    let mut stream = tcp;
    stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut request = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = find(&request, b"\r\n\r\n") {
            let mut rest = request.split_off(end + 4);
            if !rest.is_empty() {
                if !request.starts_with(b"CONNECT ") {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "not CONNECT"));
                }
                if rest[0] == 0 {
                    rest.remove(0);
                }
                stream.set_read_timeout(None)?;
                return Ok(rest);
            }
            request.truncate(end + 4);
        }
        if request.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no request"));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
