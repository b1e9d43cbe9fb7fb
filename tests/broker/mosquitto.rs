//! A Mosquitto broker of a test's own: its configuration, process and log.

use super::*;

/// How a test broker is configured, on top of the fixed settings
/// (`listener <port> 127.0.0.1`, `max_queued_messages 0`, `persistence true` in the
/// broker's temp dir, `log_dest file`).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub allow_anonymous: bool,
    /// Lines that belong to the listener (TLS files), written after `listener`.
    pub listener_lines: Vec<String>,
    /// Other global lines (`password_file ...`).
    pub global_lines: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            allow_anonymous: true,
            listener_lines: Vec::new(),
            global_lines: Vec::new(),
        }
    }
}

/// A Mosquitto process of the test's own on a free loopback port. Killed on drop.
pub struct Broker {
    pub port: u16,
    pub dir: TempDir,
    conf: PathBuf,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
}

impl Broker {
    /// Starts a broker with the default configuration (anonymous access).
    pub fn start() -> Broker {
        Broker::start_with(BrokerConfig::default())
    }

    pub fn start_with(config: BrokerConfig) -> Broker {
        let dir = TempDir::new("broker");
        let port = free_port();
        let mut conf = String::new();
        conf.push_str(&format!("listener {port} 127.0.0.1\n"));
        for line in &config.listener_lines {
            conf.push_str(line);
            conf.push('\n');
        }
        conf.push_str(&format!("allow_anonymous {}\n", config.allow_anonymous));
        for line in &config.global_lines {
            conf.push_str(line);
            conf.push('\n');
        }
        conf.push_str("max_queued_messages 0\n");
        conf.push_str("persistence true\n");
        conf.push_str(&format!("persistence_location {}/\n", dir.path.display()));
        conf.push_str(&format!(
            "log_dest file {}\n",
            dir.join("mosquitto.log").display()
        ));
        conf.push_str("log_type error\nlog_type warning\nlog_type notice\nlog_type information\n");
        conf.push_str("connection_messages true\n");
        // Running as root, Mosquitto would switch to the `mosquitto` user, which
        // cannot write the temp dir.
        conf.push_str("user root\n");
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let mut broker = Broker {
            port,
            dir,
            conf: conf_path,
            child: None,
            watchdog: None,
        };
        broker.launch();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Starts the process and waits until it accepts TCP connections.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .expect("open the broker's stderr file");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start mosquitto");
        self.watchdog = Some(Watchdog::new(child.id()));
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if port_open(self.port) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                self.watchdog = None;
                panic!("mosquitto exited at start ({status}):\n{}", self.log());
            }
            if Instant::now() >= deadline {
                panic!(
                    "mosquitto did not listen on {} within {TIMEOUT:?}:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits (bounded) for the process to exit: Mosquitto saves its
    /// persistence file on the way out.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        drop(self.watchdog.take());
        sigterm(child.id());
        if wait_exit(&mut child, TIMEOUT).is_none() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mosquitto did not exit within {TIMEOUT:?} of SIGTERM");
        }
        let deadline = Instant::now() + TIMEOUT;
        while port_open(self.port) {
            assert!(
                Instant::now() < deadline,
                "port {} still open after the broker exited",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the broker again: same port, same configuration, same persistence.
    pub fn restart(&mut self) {
        self.launch();
    }

    /// The broker's log (and stderr), for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        format!("{log}{err}")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        drop(self.watchdog.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
