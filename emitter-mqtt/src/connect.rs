//! Paho client and connection options from an [`MqttConfig`], and reconnect backoff.

use super::config::{MqttConfig, MqttConfigError, Protocol};
use paho_mqtt as paho;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

impl MqttConfig {
    /// Checks this configuration and turns it into the Paho options of one client:
    /// for programs that talk to the broker themselves with `paho-mqtt` 0.14 (the
    /// `diesel-emitter tail` tool does) and should accept the same URLs, credentials,
    /// TLS settings and protocol versions as the emitter.
    ///
    /// The client id is the configuration's [`client_id`](Self::client_id) when set,
    /// with a broker session that outlives disconnects (as the emitter's subscribers
    /// have), otherwise `default_client_id` with a clean session. `connect_timeout`
    /// bounds each connection attempt (Paho counts whole seconds, at least one).
    ///
    /// ```
    /// use emitter_mqtt::MqttConfig;
    /// use std::time::Duration;
    ///
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").credentials("tail", "secret");
    /// let (create, connect) = config.paho_options("tail-1", Duration::from_secs(5))?;
    /// let client = paho_mqtt::AsyncClient::new(create)?;
    /// assert!(connect.clean_start());
    /// # drop(client);
    ///
    /// assert!(MqttConfig::new("http://x").paho_options("tail-1", Duration::from_secs(5)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // Hidden: its types are paho-mqtt 0.14's, so it cannot follow this crate's semver;
    // it serves the workspace's own `diesel-emitter tail`.
    #[doc(hidden)]
    pub fn paho_options(
        &self,
        default_client_id: &str,
        connect_timeout: Duration,
    ) -> Result<(paho::CreateOptions, paho::ConnectOptions), MqttConfigError> {
        let url = self.validate()?;
        let client_id = self.client_id.as_deref().unwrap_or(default_client_id);
        let clean = self.client_id.is_none();
        Ok((
            client_options(&url.paho, client_id, self),
            connect_options_with(self, clean, connect_timeout),
        ))
    }
}

impl MqttConfig {
    /// Why the broker cannot be reached, told by a TCP connection attempt of its
    /// own: `cannot resolve host ...`, `connection refused by host:port`, or the
    /// system's reason. Paho reports all of these as "TCP connect completion
    /// failure" or "General failure", which sends an operator looking in the wrong
    /// place. `None` when the URL is invalid or a TCP connection succeeds (then
    /// the trouble is TLS or MQTT, and Paho's own reason is the one to give).
    ///
    /// ```
    /// use emitter_mqtt::MqttConfig;
    /// use std::time::Duration;
    ///
    /// let config = MqttConfig::new("mqtt://no-such-host.invalid:1883");
    /// let reason = config.diagnose_connect(Duration::from_secs(2)).unwrap();
    /// assert!(reason.starts_with("cannot resolve host no-such-host.invalid"), "{reason}");
    /// ```
    // Hidden: a helper for this workspace's `diesel-emitter tail`, not an API.
    #[doc(hidden)]
    pub fn diagnose_connect(&self, timeout: Duration) -> Option<String> {
        let url = self.validate().ok()?;
        let authority = url.paho.split_once("://")?.1;
        let (host, _) = authority.rsplit_once(':')?;
        let addrs: Vec<SocketAddr> = match authority.to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(error) => return Some(format!("cannot resolve host {host}: {error}")),
        };
        if addrs.is_empty() {
            return Some(format!("cannot resolve host {host}: it has no address"));
        }
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, timeout) {
                Ok(_) => return None,
                Err(error) => last = Some(error),
            }
        }
        let error = last?;
        Some(if error.kind() == std::io::ErrorKind::ConnectionRefused {
            format!("connection refused by {authority} (nothing listens there)")
        } else {
            format!("cannot connect to {authority}: {error}")
        })
    }
}

pub(crate) fn client_options(
    paho_url: &str,
    client_id: &str,
    config: &MqttConfig,
) -> paho::CreateOptions {
    let version = match config.protocol {
        Protocol::V5 => paho::MQTT_VERSION_5,
        Protocol::V311 => paho::MQTT_VERSION_3_1_1,
    };
    paho::CreateOptionsBuilder::new()
        .server_uri(paho_url)
        .client_id(client_id)
        .mqtt_version(version)
        // We keep our own bounded queue and resend after reconnecting.
        .persistence(None)
        .max_buffered_messages(config.max_inflight.min(i32::MAX as usize) as i32)
        .finalize()
}

/// Connection options. `clean` is false for a broker session that survives
/// disconnects: a subscriber's when its client id is explicit.
pub(crate) fn connect_options(config: &MqttConfig, clean: bool) -> paho::ConnectOptions {
    connect_options_with(config, clean, Duration::from_secs(5))
}

/// The publisher's connection options: a clean session (it resends what was cut
/// off itself), and for TLS brokers its relay as the HTTPS proxy (see `publisher`).
pub(crate) fn publisher_connect_options(
    config: &MqttConfig,
    https_proxy: Option<&str>,
) -> paho::ConnectOptions {
    let mut builder = connect_builder(config, true, Duration::from_secs(5));
    if let Some(proxy) = https_proxy {
        builder.https_proxy(proxy);
    }
    builder.finalize()
}

fn connect_options_with(
    config: &MqttConfig,
    clean: bool,
    connect_timeout: Duration,
) -> paho::ConnectOptions {
    connect_builder(config, clean, connect_timeout).finalize()
}

fn connect_builder(
    config: &MqttConfig,
    clean: bool,
    connect_timeout: Duration,
) -> paho::ConnectOptionsBuilder {
    let mut builder = match config.protocol {
        Protocol::V5 => paho::ConnectOptionsBuilder::new_v5(),
        Protocol::V311 => paho::ConnectOptionsBuilder::new_v3(),
    };
    builder
        .keep_alive_interval(config.keep_alive)
        .connect_timeout(connect_timeout)
        .max_inflight(config.max_inflight.min(65_535) as i32);
    match config.protocol {
        Protocol::V5 => {
            builder.clean_start(clean);
            if !clean {
                let mut props = paho::Properties::new();
                let secs = config.session_expiry.as_secs().min(u32::MAX as u64) as u32;
                if props
                    .push_u32(paho::PropertyCode::SessionExpiryInterval, secs)
                    .is_ok()
                {
                    builder.properties(props);
                }
            }
        }
        Protocol::V311 => {
            builder.clean_session(clean);
        }
    }
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder.user_name(user.as_str()).password(password.as_str());
    }
    #[cfg(feature = "tls")]
    if let Some(ssl) = ssl_options(config) {
        builder.ssl_options(ssl);
    }
    builder
}

#[cfg(feature = "tls")]
fn ssl_options(config: &MqttConfig) -> Option<paho::SslOptions> {
    let url_tls = config.url.to_ascii_lowercase();
    if config.tls.is_none() && !(url_tls.starts_with("mqtts://") || url_tls.starts_with("ssl://")) {
        return None;
    }
    let tls = config.tls.clone().unwrap_or_default();
    let mut builder = paho::SslOptionsBuilder::new();
    // Files were checked to exist by `validate`, so these only fail on odd paths.
    if let Some(ca) = &tls.ca_file {
        let _ = builder.trust_store(ca);
    }
    if let Some(cert) = &tls.client_cert {
        let _ = builder.key_store(cert);
    }
    if let Some(key) = &tls.client_key {
        let _ = builder.private_key(key);
    }
    builder
        .enable_server_cert_auth(true)
        .verify(tls.verify_hostname);
    Some(builder.finalize())
}

/// Exponential backoff between connection attempts: 50 ms doubling to 2 s.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            next: Duration::from_millis(50),
        }
    }
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(2));
        wait
    }
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }
}
