//! The relay's unit tests: brokers played by plain sockets on loopback.

use super::*;
#[cfg(unix)]
use std::os::unix::net::UnixStream;

/// Connects to the relay the way Paho does.
fn paho(relay: &Relay) -> PahoSide {
    match &relay.listening {
        Listening::Tcp(addr) => PahoSide::Tcp(TcpStream::connect(addr).unwrap()),
        #[cfg(unix)]
        Listening::Unix(path) => PahoSide::Unix(UnixStream::connect(path).unwrap()),
    }
}

fn broker() -> (TcpListener, String) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    (listener, authority)
}

#[test]
fn writes_keep_succeeding_after_the_broker_resets_and_the_stream_ends() {
    let (broker, authority) = broker();
    let relay = Relay::start(&format!("tcp://{authority}"), Duration::from_secs(10)).unwrap();
    assert_eq!(relay.https_proxy(), None);
    let mut client = paho(&relay);
    client.write_all(b"hello").unwrap();
    let (mut server, _) = broker.accept().unwrap();
    let mut hello = [0u8; 5];
    server.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"hello");
    // Closed with input unread: the kernel resets the connection.
    client.write_all(&[1u8; 4096]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(server);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for _ in 0..50 {
        client
            .write_all(&[2u8; 4096])
            .expect("writes to the relay succeed");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).expect("an orderly end"), 0);
    client.write_all(b"after the end").expect("still no reset");
}

#[test]
fn an_unreachable_broker_ends_the_stream_without_a_reset() {
    let (broker, authority) = broker();
    drop(broker);
    let relay = Relay::start(&format!("tcp://{authority}"), Duration::from_secs(10)).unwrap();
    let mut client = paho(&relay);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"connect").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    client.write_all(b"more").expect("no reset");
}

#[test]
fn tls_connections_are_tunnelled_after_an_answer_sent_first() {
    let (broker, authority) = broker();
    let relay = Relay::start(&format!("ssl://{authority}"), Duration::from_secs(10)).unwrap();
    assert_eq!(relay.server_uri(), format!("ssl://{authority}"));
    let Listening::Tcp(addr) = relay.listening else {
        panic!("a TLS tunnel listens on TCP");
    };
    assert_eq!(relay.https_proxy(), Some(format!("http://{addr}").as_str()));
    let mut client = paho(&relay);
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let answer = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut got = vec![0u8; answer.len()];
    client.read_exact(&mut got).unwrap();
    assert_eq!(got, answer);
    // Paho's request ends with a NUL byte; the TLS handshake follows.
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n\0");
    client.write_all(request.as_bytes()).unwrap();
    client.write_all(b"\x16hello").unwrap();
    let (mut server, _) = broker.accept().unwrap();
    let mut first = [0u8; 6];
    server.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"\x16hello");
    server.write_all(b"back").unwrap();
    let mut back = [0u8; 4];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"back");
}

/// A relay to the broker at `authority`, and the Unix socket it listens on.
#[cfg(unix)]
fn unix_relay(authority: &str) -> (Relay, std::path::PathBuf) {
    let relay = Relay::start(&format!("tcp://{authority}"), Duration::from_secs(10)).unwrap();
    let Listening::Unix(path) = &relay.listening else {
        panic!("a plain broker is relayed through a Unix socket");
    };
    let path = path.clone();
    (relay, path)
}

#[cfg(unix)]
#[test]
fn a_plain_broker_is_relayed_through_a_unix_socket_only_this_user_can_reach() {
    use std::os::unix::fs::PermissionsExt;
    let (_broker, authority) = broker();
    let (relay, path) = unix_relay(&authority);
    assert_eq!(relay.server_uri(), format!("unix://{}", path.display()));
    let dir = path.parent().unwrap().to_owned();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the socket's directory is private");
    drop(relay);
    assert!(
        !dir.exists(),
        "the socket's directory is removed with the relay"
    );
}

#[cfg(unix)]
#[test]
fn dropping_a_waiting_relay_opens_no_connection_to_the_broker() {
    let (broker, authority) = broker();
    let (relay, path) = unix_relay(&authority);
    // One connection relayed: the accept loop is running, and waits again.
    let client = UnixStream::connect(&path).unwrap();
    let _relayed = broker.accept().unwrap();
    // As the publisher does: Paho's socket goes first, then the relay, which
    // waits for its connections to end.
    drop(client);
    drop(relay);
    assert!(
        UnixStream::connect(&path).is_err(),
        "nothing listens after the drop"
    );
    // A relayed knock would reach the broker from a thread of its own: watch
    // for it a while.
    broker.set_nonblocking(true).unwrap();
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        assert_eq!(
            broker.accept().map(|_| ()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "the knock that woke the accept loop was not relayed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(unix)]
#[test]
fn a_socket_removed_by_a_temp_cleaner_is_bound_again() {
    let (broker, authority) = broker();
    let (_relay, path) = unix_relay(&authority);
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_dir(path.parent().unwrap()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = loop {
        match UnixStream::connect(&path) {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => panic!("the socket was not bound again: {error}"),
        }
    };
    client.write_all(b"again").unwrap();
    let (mut server, _) = broker.accept().unwrap();
    let mut got = [0u8; 5];
    server.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"again");
}

#[cfg(target_os = "linux")]
#[test]
fn leftover_directories_of_dead_processes_are_removed_and_nothing_else() {
    use std::os::unix::net::UnixListener;
    let tmp = std::env::temp_dir().join(format!("emitter-sweep-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let dead = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let relay_dir = |name: &str, extra: bool| {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        drop(UnixListener::bind(dir.join("relay.sock")).unwrap());
        if extra {
            std::fs::write(dir.join("notes.txt"), "not ours").unwrap();
        }
        dir
    };
    let left_by_the_dead = relay_dir(&format!("diesel-emitter-{dead}-0-1f"), false);
    let ours = relay_dir(
        &format!("diesel-emitter-{}-0-1f", std::process::id()),
        false,
    );
    let of_a_living_process = relay_dir("diesel-emitter-1-0-1f", false);
    let with_other_files = relay_dir(&format!("diesel-emitter-{dead}-1-2e"), true);
    let other_name = relay_dir(&format!("diesel-emitter-cli-auth-{dead}"), false);

    endpoint::remove_leftovers(&tmp);

    assert!(!left_by_the_dead.exists());
    for kept in [&ours, &of_a_living_process, &with_other_files, &other_name] {
        assert!(kept.join("relay.sock").exists(), "{}", kept.display());
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}
