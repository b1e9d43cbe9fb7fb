//! Checking an [`MqttConfig`] at `build()`: the broker URL, parsed into the
//! [`BrokerUrl`] Paho connects to, the topic prefix, and the other settings
//! (QoS, client id, limits, signing key, TLS files).

use super::{MqttConfig, MqttConfigError, MIN_SIGNING_KEY_LEN};

/// A URL's parts after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerUrl {
    /// The URL in the form Paho understands (`tcp://` or `ssl://`).
    pub(crate) paho: String,
    pub(crate) tls: bool,
}

impl MqttConfig {
    pub(crate) fn validate(&self) -> Result<BrokerUrl, MqttConfigError> {
        let url = parse_url(&self.url)?;
        validate_prefix(&self.prefix)?;
        if !(0..=2).contains(&self.qos) {
            return Err(MqttConfigError::Qos(self.qos));
        }
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_control()) {
                return Err(MqttConfigError::ClientId(id.clone()));
            }
        }
        for (value, name) in [
            (self.buffer, "the buffer"),
            (self.max_inflight, "max_inflight"),
            (self.max_payload, "max_payload"),
            (self.dedup_window, "the dedup window"),
        ] {
            if value == 0 {
                return Err(MqttConfigError::Zero(name));
            }
        }
        if let Some(key) = &self.signing_key {
            if key.0.len() < MIN_SIGNING_KEY_LEN {
                return Err(MqttConfigError::SigningKey {
                    len: key.0.len(),
                    min: MIN_SIGNING_KEY_LEN,
                });
            }
        }
        if url.tls || self.tls.is_some() {
            if !cfg!(feature = "tls") {
                return Err(MqttConfigError::TlsUnavailable);
            }
            let tls = self.tls.clone().unwrap_or_default();
            for file in [&tls.ca_file, &tls.client_cert, &tls.client_key]
                .into_iter()
                .flatten()
            {
                if !file.exists() {
                    return Err(MqttConfigError::TlsFile(file.clone()));
                }
            }
        }
        Ok(url)
    }
}

fn parse_url(url: &str) -> Result<BrokerUrl, MqttConfigError> {
    let bad = |reason| MqttConfigError::Url {
        url: url.to_owned(),
        reason,
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("missing scheme (mqtt://, mqtts://, tcp://, ssl://)"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        _ => {
            return Err(bad(
                "unsupported scheme; use mqtt://, mqtts://, tcp:// or ssl://",
            ))
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') || authority.contains('@') || authority.contains('?') {
        return Err(bad("expected host[:port] after the scheme, nothing else"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, _)) if !host.ends_with(']') && host.contains(':') => (authority, None),
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("port must be 1-65535"))?,
        None if tls => 8883,
        None => 1883,
    };
    let scheme = if tls { "ssl" } else { "tcp" };
    Ok(BrokerUrl {
        paho: format!("{scheme}://{host}:{port}"),
        tls,
    })
}

fn validate_prefix(prefix: &str) -> Result<(), MqttConfigError> {
    // Topics starting with `$` are the broker's own (`$SYS/...`, `$share/...`):
    // publishing there is refused or, worse, read as broker state by monitors.
    if prefix.starts_with('$') {
        return Err(MqttConfigError::ReservedPrefix(prefix.to_owned()));
    }
    let ok = !prefix.is_empty() && prefix.split('/').all(emitter_core::wire::is_valid_level);
    if ok {
        Ok(())
    } else {
        Err(MqttConfigError::TopicPrefix(prefix.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_map_to_paho_urls_with_default_ports() {
        assert_eq!(
            parse_url("mqtt://localhost").unwrap().paho,
            "tcp://localhost:1883"
        );
        assert_eq!(
            parse_url("tcp://127.0.0.1:1884").unwrap().paho,
            "tcp://127.0.0.1:1884"
        );
        let tls = parse_url("mqtts://broker.local").unwrap();
        assert_eq!(
            (tls.paho.as_str(), tls.tls),
            ("ssl://broker.local:8883", true)
        );
        assert!(parse_url("ssl://[::1]:8883").unwrap().tls);
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in [
            "",
            "localhost:1883",
            "http://x",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://h/x",
            "mqtt://u@h",
        ] {
            assert!(
                matches!(parse_url(url), Err(MqttConfigError::Url { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn prefixes_with_wildcards_or_empty_levels_are_rejected() {
        for p in ["", "a//b", "/a", "a/", "a/+", "#", "a/b#"] {
            assert!(validate_prefix(p).is_err(), "{p}");
        }
        assert!(validate_prefix("diesel/events").is_ok());
    }

    #[test]
    fn a_prefix_starting_with_a_dollar_sign_is_the_brokers_and_refused() {
        for p in ["$SYS/", "$SYS/events", "$share/g/events", "$x"] {
            assert_eq!(
                validate_prefix(p),
                Err(MqttConfigError::ReservedPrefix(p.to_owned())),
                "{p}"
            );
        }
        assert!(
            validate_prefix("events/$SYS").is_ok(),
            "only the first level is the broker's"
        );
    }
}
