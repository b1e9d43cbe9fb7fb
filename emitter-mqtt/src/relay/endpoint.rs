//! The relay's two kinds of socket: where it listens for Paho (a Unix socket in a
//! private directory, or a loopback TCP port for TLS brokers), and Paho's end of
//! each relayed connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
#[cfg(unix)]
use std::os::unix::net::{UnixListener, UnixStream};
#[cfg(unix)]
use std::path::PathBuf;
#[cfg(unix)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where the relay accepts Paho's connections.
pub(super) enum Listening {
    Tcp(SocketAddr),
    /// The socket, inside a directory of its own (removed with the relay).
    #[cfg(unix)]
    Unix(PathBuf),
}

impl Listening {
    /// Connects and hangs up at once, to wake an accept loop waiting here.
    pub(super) fn knock(&self) {
        let _ = match self {
            Listening::Tcp(addr) => {
                TcpStream::connect_timeout(addr, Duration::from_secs(1)).map(drop)
            }
            #[cfg(unix)]
            Listening::Unix(path) => UnixStream::connect(path).map(drop),
        };
    }
}

/// Makes `accept` on `socket` give up after `wait` (`SO_RCVTIMEO`, which Linux
/// applies to `accept`; where a system ignores it, only a connection ends the wait).
#[cfg(unix)]
pub(super) fn wait_at_most<S: std::os::fd::AsFd>(socket: &S, wait: Duration) -> io::Result<()> {
    socket2::SockRef::from(socket).set_read_timeout(Some(wait))
}

#[cfg(windows)]
pub(super) fn wait_at_most<S: std::os::windows::io::AsSocket>(
    socket: &S,
    wait: Duration,
) -> io::Result<()> {
    socket2::SockRef::from(socket).set_read_timeout(Some(wait))
}

/// A listening socket whose `accept` waits at most `ACCEPT_WAIT`.
pub(super) enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// A connection waiting to be accepted, as a blocking stream.
    pub(super) fn accept(&self) -> io::Result<PahoSide> {
        let paho = match self {
            Listener::Tcp(listener) => listener.accept().map(|(s, _)| PahoSide::Tcp(s))?,
            #[cfg(unix)]
            Listener::Unix(listener, _) => listener.accept().map(|(s, _)| PahoSide::Unix(s))?,
        };
        // A TCP stream accepted on Linux inherits the listener's timeout; the relay
        // sets the timeouts it wants on each stream itself.
        paho.set_read_timeout(None)?;
        Ok(paho)
    }

    /// Binds the socket again if its file is gone: temporary-file cleaners
    /// (systemd-tmpfiles after ten days, say) remove sockets of long-running
    /// processes, and Paho could not reconnect after the next broker outage.
    pub(super) fn keep_bound(&mut self) {
        #[cfg(unix)]
        if let Listener::Unix(listener, path) = self {
            if path.exists() {
                return;
            }
            match bind_unix(path) {
                Ok(bound) => {
                    tracing::warn!(path = %path.display(), "MQTT relay socket was removed; bound it again");
                    *listener = bound;
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "MQTT relay socket was removed and cannot be bound again");
                }
            }
        }
    }
}

/// Paho's end of a relayed connection.
pub(super) enum PahoSide {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
}

impl PahoSide {
    pub(super) fn try_clone(&self) -> io::Result<PahoSide> {
        match self {
            PahoSide::Tcp(s) => s.try_clone().map(PahoSide::Tcp),
            #[cfg(unix)]
            PahoSide::Unix(s) => s.try_clone().map(PahoSide::Unix),
        }
    }

    pub(super) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            PahoSide::Tcp(s) => s.shutdown(how),
            #[cfg(unix)]
            PahoSide::Unix(s) => s.shutdown(how),
        }
    }

    pub(super) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            PahoSide::Tcp(s) => s.set_read_timeout(timeout),
            #[cfg(unix)]
            PahoSide::Unix(s) => s.set_read_timeout(timeout),
        }
    }
}

impl Read for PahoSide {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PahoSide::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            PahoSide::Unix(s) => s.read(buf),
        }
    }
}

impl Write for PahoSide {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PahoSide::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            PahoSide::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Creates a directory only this user can enter, with a listening socket in it;
/// `None` where Unix sockets are unavailable or the path would be too long.
#[cfg(unix)]
pub(super) fn unix_listener() -> Option<(Listener, Listening)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| remove_leftovers(&std::env::temp_dir()));
    // `sun_path` holds 108 bytes with its NUL; Paho checks the same bound.
    const MAX_PATH: usize = 100;
    let unique = format!(
        "{DIR_PREFIX}{}-{}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let path = std::env::temp_dir().join(unique).join("relay.sock");
    if path.as_os_str().len() > MAX_PATH || path.to_str().is_none() {
        return None;
    }
    match bind_unix(&path) {
        Ok(listener) => Some((
            Listener::Unix(listener, path.clone()),
            Listening::Unix(path),
        )),
        Err(error) => {
            tracing::debug!(%error, "MQTT relay cannot listen on a Unix socket; using TCP");
            None
        }
    }
}

/// The prefix of every relay directory's name: `diesel-emitter-{pid}-{n}-{hex}`.
#[cfg(unix)]
const DIR_PREFIX: &str = "diesel-emitter-";

/// Removes the relay directories in `tmp` that processes of this user left when
/// they were killed (SIGKILL leaves no chance to clean up): only directories named
/// as ours, owned by this user, of a process that no longer exists, holding
/// nothing but the relay socket. Linux only: it needs `/proc` to tell whether a
/// process exists.
#[cfg(unix)]
pub(super) fn remove_leftovers(tmp: &std::path::Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Ok(me) = std::fs::metadata("/proc/self") else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(tmp) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(relay_dir_pid) else {
                continue;
            };
            if pid == std::process::id()
                || std::path::Path::new("/proc").join(pid.to_string()).exists()
            {
                continue;
            }
            let dir = entry.path();
            // Not followed if a link: only a directory of this user's own.
            let ours =
                std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == me.uid());
            if !ours {
                continue;
            }
            let only_the_socket = std::fs::read_dir(&dir).is_ok_and(|entries| {
                let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
                names.is_empty() || names == ["relay.sock"]
            });
            let socket = dir.join("relay.sock");
            if !only_the_socket
                || std::fs::symlink_metadata(&socket).is_ok_and(|m| !m.file_type().is_socket())
            {
                continue;
            }
            let _ = std::fs::remove_file(&socket);
            if std::fs::remove_dir(&dir).is_ok() {
                tracing::debug!(dir = %dir.display(), "removed the MQTT relay directory of a process that is gone");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = tmp;
}

/// The process id in a relay directory's name, if `name` is one.
#[cfg(unix)]
fn relay_dir_pid(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix(DIR_PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let n = parts.next()?;
    let hex = parts.next()?;
    let valid = parts.next().is_none()
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(pid)
}

/// Binds a Unix socket at `path`, in a directory only this user
/// can enter, created for it.
#[cfg(unix)]
fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no directory"))?;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    let bound = UnixListener::bind(path).and_then(|listener| {
        wait_at_most(&listener, super::ACCEPT_WAIT)?;
        Ok(listener)
    });
    if bound.is_err() {
        let _ = std::fs::remove_dir(dir);
    }
    bound
}

#[cfg(not(unix))]
pub(super) fn unix_listener() -> Option<(Listener, Listening)> {
    None
}
