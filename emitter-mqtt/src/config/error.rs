//! [`MqttConfigError`]: what `build()` reports about a bad [`MqttConfig`](super::MqttConfig).

// Named only by the docs below.
#[cfg(doc)]
use super::MIN_SIGNING_KEY_LEN;
use std::path::PathBuf;

/// A configuration problem found by `build()`.
///
/// ```
/// # include!("../../../src/doctest_setup.rs");
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use diesel_emitter::MqttConfigError;
///
/// // `build()` returns `Error::Transport`; this is the MQTT transport's error inside it.
/// let refused = Emitter::builder().mqtt(MqttConfig::new("http://127.0.0.1:1883")).build().unwrap_err();
/// match refused.transport_error::<MqttConfigError>() {
///     Some(MqttConfigError::Url { url, reason }) => {
///         assert_eq!(url, "http://127.0.0.1:1883");
///         eprintln!("{reason}");
///     }
///     other => panic!("expected a URL error, got {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MqttConfigError {
    /// The URL is not `scheme://host:port` with a supported scheme.
    #[error("bad broker URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The topic prefix is empty, has an empty level or a wildcard.
    #[error("bad topic prefix {0:?}: use one or more non-empty levels without `+`, `#` or NUL")]
    TopicPrefix(String),
    /// The topic prefix starts with `$`: such topics are the broker's own
    /// (`$SYS/...` for its statistics, `$share/...` for shared subscriptions).
    #[error("topic prefix {0:?} starts with `$`: topics starting with `$` are reserved for the broker ($SYS/...)")]
    ReservedPrefix(String),
    /// QoS is not 0, 1 or 2.
    #[error("QoS must be 0, 1 or 2, not {0}")]
    Qos(i32),
    /// The client id is empty or too long.
    #[error("bad client id {0:?}: use 1 to 64 characters")]
    ClientId(String),
    /// A zero buffer, in-flight window, payload limit or dedup window.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A TLS URL or setting without the `tls` feature.
    #[error("TLS needs the `tls` feature of diesel-emitter")]
    TlsUnavailable,
    /// The signing key is shorter than [`MIN_SIGNING_KEY_LEN`] bytes.
    #[error("signing key of {len} bytes is too short: use at least {min} bytes")]
    SigningKey {
        /// The key's length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A TLS file that does not exist.
    #[error("TLS file {0:?} does not exist")]
    TlsFile(PathBuf),
}
