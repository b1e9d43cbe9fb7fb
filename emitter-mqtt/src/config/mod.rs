//! [`MqttConfig`]: where and how the emitter talks to the broker, validated at
//! `Emitter::builder().build()`.

mod error;
mod validate;

pub use error::MqttConfigError;

use std::path::PathBuf;
use std::time::Duration;

/// The MQTT protocol version.
///
/// ```
/// use diesel_emitter::{MqttConfig, Protocol};
/// let config = MqttConfig::new("mqtt://old-broker:1883").protocol(Protocol::V311);
/// # drop(config);
/// ```
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 5 (the default): the event's origin also travels as a user property.
    #[default]
    V5,
    /// MQTT 3.1.1, for brokers without MQTT 5.
    V311,
}

/// TLS settings for `mqtts://` and `ssl://` brokers (feature `tls`).
///
/// `TlsConfig::default()` checks the broker's host name; start from it:
/// `TlsConfig { ca_file: Some(path), ..TlsConfig::default() }`.
///
/// ```
/// use diesel_emitter::{MqttConfig, TlsConfig};
///
/// let config = MqttConfig::new("mqtts://broker.internal:8883").tls(TlsConfig {
///     ca_file: Some("/etc/ssl/broker-ca.pem".into()),
///     client_cert: Some("/etc/ssl/api.pem".into()),
///     client_key: Some("/etc/ssl/api.key".into()),
///     ..TlsConfig::default()
/// });
/// # drop(config);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities that sign the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// PEM file of this client's private key (mutual TLS).
    pub client_key: Option<PathBuf>,
    /// Check that the broker's certificate names the host in the URL (default true).
    pub verify_hostname: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_file: None,
            client_cert: None,
            client_key: None,
            verify_hostname: true,
        }
    }
}

/// How to reach the MQTT broker that carries events between servers.
///
/// ```
/// use diesel_emitter::MqttConfig;
/// let config = MqttConfig::new("mqtt://127.0.0.1:1883")
///     .topic_prefix("app/events")
///     .credentials("api", "secret")
///     .keep_alive(std::time::Duration::from_secs(20));
/// assert_eq!(config.prefix(), "app/events");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttConfig {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) client_id: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) keep_alive: Duration,
    pub(crate) qos: i32,
    pub(crate) buffer: usize,
    pub(crate) max_inflight: usize,
    pub(crate) protocol: Protocol,
    pub(crate) require_connection: Option<Duration>,
    pub(crate) session_expiry: Duration,
    pub(crate) max_payload: usize,
    pub(crate) dedup_window: usize,
    pub(crate) signing_key: Option<SigningKey>,
    pub(crate) replay_window: Duration,
    pub(crate) max_clock_skew: Duration,
}

/// A shared secret for signing envelopes; its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SigningKey(pub(crate) Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({} bytes)", self.0.len())
    }
}

/// The shortest signing key `build()` accepts, in bytes.
pub const MIN_SIGNING_KEY_LEN: usize = 16;

/// How far ahead of this node's clock a signed event may be dated, unless
/// [`MqttConfig::max_clock_skew`] says otherwise.
///
/// ```
/// assert_eq!(diesel_emitter::mqtt::DEFAULT_MAX_CLOCK_SKEW, std::time::Duration::from_secs(60));
/// ```
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The default topic prefix.
///
/// ```
/// use diesel_emitter::MqttConfig;
/// assert_eq!(MqttConfig::new("mqtt://127.0.0.1:1883").prefix(), "diesel/events");
/// ```
pub const DEFAULT_PREFIX: &str = "diesel/events";

impl MqttConfig {
    /// A broker at `url`: `mqtt://host:port`, `tcp://host:port`, or with TLS
    /// `mqtts://host:port`, `ssl://host:port`.
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// let local = MqttConfig::new("mqtt://127.0.0.1:1883");
    /// let secured = MqttConfig::new("mqtts://broker.internal:8883");
    /// assert_eq!(local.url(), "mqtt://127.0.0.1:1883");
    /// # drop(secured);
    /// ```
    pub fn new(url: impl Into<String>) -> Self {
        MqttConfig {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            client_id: None,
            username: None,
            password: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            qos: 1,
            buffer: 100_000,
            max_inflight: 500,
            protocol: Protocol::V5,
            require_connection: None,
            session_expiry: Duration::from_secs(3600),
            max_payload: 1 << 20,
            dedup_window: 100_000,
            signing_key: None,
            replay_window: Duration::from_secs(3600),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        }
    }

    /// The first topic levels of every event: `{prefix}/{table}/{action}`.
    /// Default `diesel/events`; no wildcards, no empty levels.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::MqttConfigError;
    ///
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").topic_prefix("shop/events");
    /// assert_eq!(config.prefix(), "shop/events");
    ///
    /// let wildcard = MqttConfig::new("mqtt://127.0.0.1:1883").topic_prefix("shop/#");
    /// let refused = Emitter::builder().mqtt(wildcard).build().unwrap_err();
    /// assert!(matches!(refused.transport_error::<MqttConfigError>(), Some(MqttConfigError::TopicPrefix(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The MQTT client id. Default: the node id and a random suffix, unique per
    /// emitter. The publisher connects as `{client_id}-pub`, the subscriber as
    /// `{client_id}-sub` (and `{client_id}-{group}` per group). Setting it makes the
    /// subscriber's broker session outlive restarts of this process (MQTT 5: for
    /// [`session_expiry`](Self::session_expiry); 3.1.1: until the broker expires it).
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// // A stable id per server: the broker keeps this server's events while it restarts.
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").client_id("billing-1");
    /// # drop(config);
    /// ```
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Username and password for the broker.
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").credentials("api", "secret");
    /// # drop(config);
    /// ```
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// TLS settings; implied (with defaults) by an `mqtts://` or `ssl://` URL.
    ///
    /// ```
    /// use diesel_emitter::{MqttConfig, TlsConfig};
    /// let config = MqttConfig::new("mqtts://broker.internal:8883")
    ///     .tls(TlsConfig { ca_file: Some("/etc/ssl/broker-ca.pem".into()), ..TlsConfig::default() });
    /// # drop(config);
    /// ```
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The keep-alive interval (default 30 s).
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// use std::time::Duration;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").keep_alive(Duration::from_secs(10));
    /// # drop(config);
    /// ```
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// QoS of publishes and subscriptions: 0, 1 (default) or 2.
    ///
    /// ```
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use diesel_emitter::MqttConfigError;
    /// let refused = Emitter::builder().mqtt(MqttConfig::new("mqtt://127.0.0.1:1883").qos(3)).build().unwrap_err();
    /// assert!(matches!(refused.transport_error::<MqttConfigError>(), Some(MqttConfigError::Qos(3))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn qos(mut self, qos: i32) -> Self {
        self.qos = qos;
        self
    }

    /// How many committed events wait for the broker while it is slow or away
    /// (default 100,000). Beyond it events are not published, and are counted in
    /// `Stats::publish_dropped` and logged.
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// // Room for a ten-minute broker outage at 500 events per second.
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").buffer(300_000);
    /// # drop(config);
    /// ```
    pub fn buffer(mut self, events: usize) -> Self {
        self.buffer = events;
        self
    }

    /// Publishes in flight at once, waiting for their acknowledgement (default 500:
    /// Paho's per-message bookkeeping grows with the window, and 500 measured faster
    /// than 1,000 here).
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").max_inflight(100);
    /// # drop(config);
    /// ```
    pub fn max_inflight(mut self, n: usize) -> Self {
        self.max_inflight = n;
        self
    }

    /// The protocol version (default MQTT 5).
    ///
    /// ```
    /// use diesel_emitter::{MqttConfig, Protocol};
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").protocol(Protocol::V311);
    /// # drop(config);
    /// ```
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Makes `build()` fail with [`Error::BrokerUnreachable`](crate::Error) unless the
    /// broker accepts a connection within `timeout`. By default a broker that is down
    /// at start is not an error: the emitter keeps trying in the background.
    ///
    /// ```no_run
    /// # include!("../../../src/doctest_setup.rs");
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// // Refuse to start a server whose events could not leave it.
    /// let emitter = Emitter::builder()
    ///     .mqtt(MqttConfig::new("mqtt://127.0.0.1:1883").require_connection(Duration::from_secs(5)))
    ///     .build()?;
    /// # drop(emitter);
    /// # Ok(())
    /// # }
    /// ```
    pub fn require_connection(mut self, timeout: Duration) -> Self {
        self.require_connection = Some(timeout);
        self
    }

    /// How long the broker keeps a subscriber's session (and queues its events)
    /// while it is away, with MQTT 5 and an explicit [`client_id`](Self::client_id).
    /// Default one hour.
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// use std::time::Duration;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883")
    ///     .client_id("billing-1")
    ///     .session_expiry(Duration::from_secs(24 * 3600));
    /// # drop(config);
    /// ```
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// Largest payload accepted from the broker, in bytes (default 1 MiB); larger
    /// ones are dropped and counted.
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").max_payload(64 * 1024);
    /// # drop(config);
    /// ```
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// How many recent event ids each subscriber remembers to drop QoS 1
    /// redeliveries (default 100,000).
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").dedup_window(1_000_000);
    /// # drop(config);
    /// ```
    pub fn dedup_window(mut self, ids: usize) -> Self {
        self.dedup_window = ids;
        self
    }

    /// Signs every published envelope with HMAC-SHA256 under `key`, and accepts
    /// only envelopes signed with it: unsigned, altered and forged payloads are
    /// dropped and counted (`Stats::remote_unsigned`, `Stats::remote_bad_signature`).
    /// Every node of a deployment needs the same key, at least
    /// [`MIN_SIGNING_KEY_LEN`] bytes (32 random bytes is the usual choice).
    ///
    /// The signature is the envelope's last member, `"sig"`: 64 hex digits of the
    /// HMAC over the topic, a NUL byte and the envelope without that member.
    /// Signed events older than the [`replay_window`](Self::replay_window), or
    /// dated later than [`max_clock_skew`](Self::max_clock_skew) ahead of this
    /// node's clock, are refused as replays (`Stats::remote_replayed`); ids seen
    /// before are refused as duplicates (`Stats::remote_duplicates`).
    ///
    /// ```
    /// use diesel_emitter::{Emitter, MqttBuilderExt, MqttConfig, MqttConfigError};
    ///
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883").signing_key(b"too short");
    /// let refused = Emitter::builder().mqtt(config).build().unwrap_err();
    /// assert!(matches!(refused.transport_error::<MqttConfigError>(), Some(MqttConfigError::SigningKey { .. })));
    /// ```
    pub fn signing_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.signing_key = Some(SigningKey(key.as_ref().to_vec()));
        self
    }

    /// How old a signed event may be and still be accepted (default one hour, the
    /// default [`session_expiry`](Self::session_expiry): a broker session does not
    /// hold events longer). Only with a [`signing_key`](Self::signing_key).
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// use std::time::Duration;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883")
    ///     .signing_key([7u8; 32])
    ///     .replay_window(Duration::from_secs(600));
    /// # drop(config);
    /// ```
    pub fn replay_window(mut self, window: Duration) -> Self {
        self.replay_window = window;
        self
    }

    /// How far in the future a signed event's `committed_at` may lie and still be
    /// accepted (default [`DEFAULT_MAX_CLOCK_SKEW`], one minute): the clocks of two
    /// servers never agree exactly. A signed event dated later than that is refused
    /// and counted with the replays (`Stats::remote_replayed`): accepted, it would
    /// stay replayable for as long as it seems fresh, which a date in the year 2999
    /// makes for ever. Only with a [`signing_key`](Self::signing_key).
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// use std::time::Duration;
    /// let config = MqttConfig::new("mqtt://127.0.0.1:1883")
    ///     .signing_key([7u8; 32])
    ///     .max_clock_skew(Duration::from_secs(5));
    /// # drop(config);
    /// ```
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// The broker URL as given.
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// assert_eq!(MqttConfig::new("mqtt://127.0.0.1:1883").url(), "mqtt://127.0.0.1:1883");
    /// ```
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The topic prefix.
    ///
    /// ```
    /// use diesel_emitter::MqttConfig;
    /// assert_eq!(MqttConfig::new("mqtt://h:1883").topic_prefix("a/b").prefix(), "a/b");
    /// ```
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}
