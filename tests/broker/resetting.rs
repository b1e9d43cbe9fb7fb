//! A minimal broker in this process whose connections end with a TCP reset, for
//! the publisher's write-failure path.

use super::*;

/// A minimal MQTT broker in this process for one publishing client (CONNECT,
/// PUBLISH at QoS 0 or 1, PINGREQ, DISCONNECT; MQTT 3.1.1 and 5). Its first
/// `resets` connections end abruptly once `after` publishes arrived on each: it
/// stops reading while the client is still writing and closes the socket with
/// input unread, which makes the kernel answer with a TCP reset, so the client's
/// next writes fail. Later connections acknowledge everything. It records the `id`
/// of every event it acknowledged.
pub struct ResettingBroker {
    pub port: u16,
    state: Arc<Mutex<ResetState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ResetState {
    acked: HashSet<String>,
    resets: usize,
    connections: usize,
}

impl ResettingBroker {
    pub fn start(resets: usize, after: usize) -> ResettingBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(ResetState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (state, stop) = (state.clone(), stop.clone());
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let reset = {
                        let mut state = state.lock().unwrap();
                        state.connections += 1;
                        state.resets < resets
                    };
                    if let Ok(true) = serve_resetting(stream, reset.then_some(after), &state) {
                        state.lock().unwrap().resets += 1;
                    }
                }
            }
        });
        ResettingBroker {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The ids of the events acknowledged so far.
    pub fn acked(&self) -> HashSet<String> {
        self.state.lock().unwrap().acked.clone()
    }

    /// Connections reset so far.
    pub fn resets(&self) -> usize {
        self.state.lock().unwrap().resets
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }
}

impl Drop for ResettingBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// One MQTT packet: (type, flags, body).
fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte)?;
        len |= ((byte[0] & 0x7f) as usize) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok((first[0] >> 4, first[0] & 0x0f, body))
}

/// Serves one connection; true when it ended it with a reset.
fn serve_resetting(
    mut stream: TcpStream,
    reset_after: Option<usize>,
    state: &Mutex<ResetState>,
) -> std::io::Result<bool> {
    let (kind, _, connect) = read_packet(&mut stream)?;
    // CONNECT: protocol name (2 + 4 bytes), then the protocol level.
    if kind != 1 || connect.len() < 7 {
        return Ok(false);
    }
    let v5 = connect[6] == 5;
    stream.write_all(if v5 {
        &[0x20, 3, 0, 0, 0]
    } else {
        &[0x20, 2, 0, 0]
    })?;
    let mut publishes = 0;
    loop {
        let (kind, flags, body) = read_packet(&mut stream)?;
        match kind {
            3 => {
                publishes += 1;
                if reset_after.is_some_and(|after| publishes >= after) {
                    // Let the client's next publishes arrive unread, then close.
                    std::thread::sleep(Duration::from_millis(20));
                    return Ok(true);
                }
                let qos = (flags >> 1) & 3;
                let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                let mut at = 2 + topic_len;
                let packet_id = (qos > 0).then(|| [body[at], body[at + 1]]);
                if qos > 0 {
                    at += 2;
                }
                if v5 {
                    let (mut props, mut shift) = (0usize, 0);
                    loop {
                        let byte = body[at];
                        at += 1;
                        props |= ((byte & 0x7f) as usize) << shift;
                        if byte & 0x80 == 0 {
                            break;
                        }
                        shift += 7;
                    }
                    at += props;
                }
                let id = serde_json::from_slice::<serde_json::Value>(&body[at..])
                    .ok()
                    .and_then(|v| v["id"].as_str().map(str::to_owned));
                if let Some(id) = id {
                    state.lock().unwrap().acked.insert(id);
                }
                if let Some([hi, lo]) = packet_id {
                    stream.write_all(&[0x40, 2, hi, lo])?;
                }
            }
            12 => stream.write_all(&[0xd0, 0])?,
            14 => return Ok(false),
            _ => {}
        }
    }
}
