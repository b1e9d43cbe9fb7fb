//! Processes of a test's own and what they leave: temp dirs, free ports, child
//! guards, watchdogs that clean up after a killed test, and signals.

use super::*;

/// A directory of its own, removed when the guard drops (or, should this process
/// die without running Drop guards, by a [`Watchdog`]).
pub struct TempDir {
    pub path: PathBuf,
    _watchdog: Watchdog,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("diesel-emitter-mqtt-{tag}-{}", unique()));
        std::fs::create_dir_all(&path).expect("create a temp dir");
        let _watchdog = Watchdog::remove_dir(&path);
        TempDir { path, _watchdog }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A free loopback port: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local addr").port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Waits up to `timeout` for `child` to exit.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills process `pid` (SIGKILL) should this test process die without running its
/// Drop guards (an abort in a C library skips them): a `sh` that waits for EOF on
/// a pipe only this process holds. Dropping the watchdog disarms it.
pub struct Watchdog {
    sh: Child,
}

impl Watchdog {
    /// Kills `pid` if this process dies first.
    pub fn new(pid: u32) -> Watchdog {
        Watchdog::arm(Some(pid), None)
    }

    /// Removes `dir` if this process dies first.
    pub fn remove_dir(dir: &Path) -> Watchdog {
        Watchdog::arm(None, Some(dir))
    }

    fn arm(pid: Option<u32>, dir: Option<&Path>) -> Watchdog {
        let sh = Command::new("sh")
            .arg("-c")
            .arg(concat!(
                "cat >/dev/null; ",
                r#"if [ -n "$1" ]; then kill -KILL "$1" 2>/dev/null; fi; "#,
                // Give a killed broker a moment to let go of its files.
                r#"if [ -n "$2" ]; then sleep 1; rm -rf "$2"; fi"#
            ))
            .arg("sh")
            .arg(pid.map(|p| p.to_string()).unwrap_or_default())
            .arg(dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a watchdog");
        Watchdog { sh }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

/// Kills a child process (SIGKILL) when dropped, unless it already exited; a
/// [`Watchdog`] kills it if this process dies first.
pub struct ChildGuard {
    pub child: Child,
    watchdog: Option<Watchdog>,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        let watchdog = Some(Watchdog::new(child.id()));
        ChildGuard { child, watchdog }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.watchdog.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}
