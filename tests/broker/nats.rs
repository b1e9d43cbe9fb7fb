//! A NATS cluster of the test's own: `nats-server` processes on free loopback
//! ports, each with its own configuration file and JetStream store directory in a
//! temp dir, JetStream on (NATS's MQTT interface keeps its sessions and QoS 1
//! messages there), an MQTT 3.1.1 listener, and routes to every other node.
//! Killed on drop, and by a [`Watchdog`] should the test process die first.

use super::{free_port, port_open, unique, ChildGuard, TempDir, TIMEOUT};
use paho_mqtt as paho;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// One node's ports and files.
pub struct NatsNode {
    pub name: String,
    /// The NATS client port (not used by the tests, but it must not be the default 4222).
    pub client_port: u16,
    pub cluster_port: u16,
    /// The monitoring endpoint, polled to know when the cluster has formed.
    pub http_port: u16,
    pub mqtt_port: u16,
    conf: PathBuf,
    log: PathBuf,
    child: Option<ChildGuard>,
}

/// A running cluster; every node has formed its routes and agrees on a JetStream
/// metadata leader when [`start`](Self::start) returns.
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
    pub dir: TempDir,
}

/// `count` distinct free loopback ports (a port is released after `free_port` reads
/// it, so two calls could in principle return the same one).
fn free_ports(count: usize) -> Vec<u16> {
    let mut seen = HashSet::new();
    let mut ports = Vec::new();
    while ports.len() < count {
        let port = free_port();
        if seen.insert(port) {
            ports.push(port);
        }
    }
    ports
}

impl NatsCluster {
    /// Starts `size` nodes (at least 2) and waits until the cluster has formed.
    pub fn start(size: usize) -> NatsCluster {
        assert!(size >= 2, "a cluster has at least two nodes");
        let dir = TempDir::new("nats");
        let ports = free_ports(4 * size);
        let mut nodes: Vec<NatsNode> = (0..size)
            .map(|i| {
                let p = &ports[4 * i..4 * i + 4];
                NatsNode {
                    name: format!("n{}", i + 1),
                    client_port: p[0],
                    cluster_port: p[1],
                    http_port: p[2],
                    mqtt_port: p[3],
                    conf: dir.join(&format!("n{}.conf", i + 1)),
                    log: dir.join(&format!("n{}.log", i + 1)),
                    child: None,
                }
            })
            .collect();
        for node in &nodes {
            let routes: Vec<String> = nodes
                .iter()
                .filter(|other| other.name != node.name)
                .map(|other| format!("\"nats-route://127.0.0.1:{}\"", other.cluster_port))
                .collect();
            let store = dir.join(&format!("{}-store", node.name));
            std::fs::create_dir_all(&store).expect("create the JetStream store dir");
            // JetStream in a cluster needs a server name and a cluster name.
            let conf = format!(
                "server_name: {name}\n\
                 listen: 127.0.0.1:{client}\n\
                 http: 127.0.0.1:{http}\n\
                 jetstream {{ store_dir: \"{store}\" }}\n\
                 cluster {{\n  name: emitter-test\n  listen: 127.0.0.1:{cluster}\n  routes: [{routes}]\n}}\n\
                 mqtt {{ listen: 127.0.0.1:{mqtt} }}\n",
                name = node.name,
                client = node.client_port,
                http = node.http_port,
                store = store.display(),
                cluster = node.cluster_port,
                routes = routes.join(", "),
                mqtt = node.mqtt_port,
            );
            std::fs::write(&node.conf, conf).expect("write a nats-server config");
        }
        for node in &mut nodes {
            node.launch();
        }
        let cluster = NatsCluster { nodes, dir };
        cluster.await_formed();
        cluster.await_mqtt();
        cluster
    }

    /// The MQTT URL of node `i` (0-based).
    pub fn url(&self, i: usize) -> String {
        format!("mqtt://127.0.0.1:{}", self.nodes[i].mqtt_port)
    }

    /// Every node's log, for failure messages.
    pub fn log(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                format!("---- {} ----\n{text}", n.name)
            })
            .collect()
    }

    /// Polls every node's monitoring endpoint until it has a route to every other
    /// node, knows the JetStream metadata leader and listens for MQTT: before that,
    /// MQTT clients are refused (their sessions live in JetStream) or publishes
    /// from one node do not reach subscribers on another.
    fn await_formed(&self) {
        let others = (self.nodes.len() - 1) as u64;
        let deadline = Instant::now() + TIMEOUT * 3;
        for node in &self.nodes {
            loop {
                let routes = http_json(node.http_port, "/routez")
                    .and_then(|v| v["num_routes"].as_u64())
                    .unwrap_or(0);
                let leader = http_json(node.http_port, "/jsz")
                    .and_then(|v| v["meta_cluster"]["leader"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                if routes >= others && !leader.is_empty() && port_open(node.mqtt_port) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the NATS cluster did not form within {:?} ({} has {routes} routes, leader {leader:?}):\n{}",
                    TIMEOUT * 3,
                    node.name,
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl NatsCluster {
    /// Connects an MQTT client to each node in turn until one is accepted. A node
    /// sets up its MQTT state (JetStream streams shared by the cluster) at its first
    /// MQTT connection; when both nodes do that at once, as they would for the
    /// emitters of a test, one of them can wait 4 s for a JetStream answer and
    /// refuse the connection (its log: "unable to connect: lookup messages stream
    /// ... timeout"). Clients retry, but a test should not start on that.
    fn await_mqtt(&self) {
        let deadline = Instant::now() + TIMEOUT * 3;
        for node in &self.nodes {
            while let Err(error) = mqtt_connects(node.mqtt_port) {
                assert!(
                    Instant::now() < deadline,
                    "{} accepted no MQTT connection within {:?}: {error}\n{}",
                    node.name,
                    TIMEOUT * 3,
                    self.log()
                );
            }
        }
    }
}

/// Whether an MQTT 3.1.1 client is accepted on 127.0.0.1:`port` (clean session,
/// so the node keeps nothing of it).
fn mqtt_connects(port: u16) -> Result<(), paho::Error> {
    let create = paho::CreateOptionsBuilder::new()
        .server_uri(format!("tcp://127.0.0.1:{port}"))
        .client_id(format!("nats-ready-{}", unique()))
        .mqtt_version(paho::MQTT_VERSION_3_1_1)
        .persistence(None)
        .finalize();
    let client = paho::Client::new(create)?;
    let connect = paho::ConnectOptionsBuilder::new_v3()
        .clean_session(true)
        .connect_timeout(Duration::from_secs(5))
        .finalize();
    client.connect(connect)?;
    client.disconnect(None)
}

impl NatsNode {
    fn launch(&mut self) {
        let log = std::fs::File::create(&self.log).expect("create the node's log file");
        let err = log.try_clone().expect("clone the log file handle");
        let child = Command::new(NATS_SERVER)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("start nats-server");
        self.child = Some(ChildGuard::new(child));
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(
            self.child.as_mut().map(|c| c.child.try_wait()),
            Some(Ok(None))
        )
    }
}

/// GET `path` from the monitoring endpoint on 127.0.0.1:`port`, parsed as JSON;
/// `None` while the node does not answer.
fn http_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    // HTTP/1.0: the server closes the connection after the body, so read to end.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return None;
    }
    serde_json::from_str(body).ok()
}
