//! The bench's own Mosquitto: a child process on a free loopback port with its own
//! configuration (unlimited queues and in-flight windows, no persistence, a log
//! file), killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Mosquitto child process, killed on drop.
pub struct Broker {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Broker {
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("MOSQUITTO") {
            return Some(path.into());
        }
        let default = Path::new("/usr/sbin/mosquitto");
        if default.exists() {
            return Some(default.into());
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("mosquitto"))
                .find(|p| p.exists())
        })
    }

    pub fn start(binary: &Path) -> Broker {
        let dir =
            std::env::temp_dir().join(format!("diesel-emitter-mqtt-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the broker's directory");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Broker::try_start(binary, &dir, port) {
                Ok(broker) => return broker,
                Err(error) => last_error = error,
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("cannot start mosquitto: {last_error}");
    }

    pub fn try_start(binary: &Path, dir: &Path, port: u16) -> Result<Broker, String> {
        let log = dir.join("mosquitto.log");
        let conf = dir.join("mosquitto.conf");
        // Run as root, Mosquitto drops to its own user: let it write the log.
        std::fs::write(&log, "").map_err(|e| e.to_string())?;
        set_mode(dir, 0o777);
        set_mode(&log, 0o666);
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\n\
                 allow_anonymous true\n\
                 max_queued_messages 0\n\
                 max_inflight_messages 0\n\
                 persistence false\n\
                 log_dest file {}\n\
                 log_type error\n\
                 log_type warning\n\
                 log_type notice\n\
                 log_type information\n",
                log.display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let mut broker = Broker {
            child,
            port,
            dir: dir.to_owned(),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                let log = broker.log();
                // Do not let Drop remove the directory before the retry.
                std::mem::forget(broker);
                return Err(format!("exited with {status}; log:\n{log}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(broker);
            }
            if Instant::now() >= deadline {
                let _ = broker.child.kill();
                let _ = broker.child.wait();
                let log = broker.log();
                std::mem::forget(broker);
                return Err(format!("no answer on port {port} within 5 s; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn paho_url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}
