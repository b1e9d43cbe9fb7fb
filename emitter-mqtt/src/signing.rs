//! Signed envelopes: an HMAC-SHA256 over the topic and the envelope, so that a
//! receiver holding the key can tell events its peers sent from forged ones.
//!
//! The signature travels inside the JSON object as its last member,
//! `,"sig":"<64 lowercase hex digits>"}`, computed over the topic, one NUL byte and
//! the envelope as it reads without that member (ending in `}`). A consumer in any
//! language verifies by cutting the last 74 bytes, appending `}` and comparing.
//! Binding the topic means a signed payload cannot be replayed under another
//! prefix, table or action.

pub(crate) use super::config::SigningKey;
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// `,"sig":"` + 64 hex digits + `"}`.
const TRAILER_LEN: usize = 8 + 64 + 2;
const TRAILER_HEAD: &[u8] = b",\"sig\":\"";

/// Why a signed receiver refused a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignatureError {
    /// The payload carries no signature.
    #[error("unsigned payload, but this node requires signed events")]
    Unsigned,
    /// The signature does not match the topic and payload (forged, tampered with,
    /// or signed with another key).
    #[error("signature does not match: forged, altered, or signed with another key")]
    Mismatch,
}

impl SigningKey {
    fn mac(&self, topic: &str) -> HmacSha256 {
        // Any key length is valid for HMAC; `MqttConfig` validation sets the minimum.
        let mut mac = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(topic.as_bytes());
        mac.update(&[0]);
        mac
    }

    /// Appends the signature member to `envelope`, an encoded JSON object.
    pub(crate) fn sign(&self, topic: &str, mut envelope: Vec<u8>) -> Vec<u8> {
        let mut mac = self.mac(topic);
        mac.update(&envelope);
        let tag = hex::encode(mac.finalize().into_bytes());
        let closing = envelope.pop();
        debug_assert_eq!(closing, Some(b'}'), "an envelope is one JSON object");
        envelope.reserve(TRAILER_LEN);
        envelope.extend_from_slice(TRAILER_HEAD);
        envelope.extend_from_slice(tag.as_bytes());
        envelope.extend_from_slice(b"\"}");
        envelope
    }

    /// Checks the signature of `payload` received on `topic`.
    pub(crate) fn verify(&self, topic: &str, payload: &[u8]) -> Result<(), SignatureError> {
        let Some(split) = payload.len().checked_sub(TRAILER_LEN) else {
            return Err(SignatureError::Unsigned);
        };
        let (body, trailer) = payload.split_at(split);
        let hex_tag = &trailer[TRAILER_HEAD.len()..TRAILER_HEAD.len() + 64];
        if !trailer.starts_with(TRAILER_HEAD) || !trailer.ends_with(b"\"}") {
            return Err(SignatureError::Unsigned);
        }
        let mut tag = [0u8; 32];
        hex::decode_to_slice(hex_tag, &mut tag).map_err(|_| SignatureError::Mismatch)?;
        let mut mac = self.mac(topic);
        mac.update(body);
        mac.update(b"}");
        mac.verify_slice(&tag).map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "app/events/users/insert";
    const ENVELOPE: &[u8] = br#"{"v":1,"id":"x","row":{"sig":"not this one"}}"#;

    fn key(k: &str) -> SigningKey {
        SigningKey(k.as_bytes().to_vec())
    }

    #[test]
    fn a_signed_envelope_is_still_json_with_sig_as_its_last_member() {
        let signed = key("0123456789abcdef").sign(TOPIC, ENVELOPE.to_vec());
        let value: serde_json::Value = serde_json::from_slice(&signed).expect("JSON");
        assert_eq!(value["row"]["sig"], "not this one");
        let sig = value["sig"].as_str().expect("sig is a string");
        assert_eq!(sig.len(), 64);
        assert!(signed.ends_with(format!(",\"sig\":\"{sig}\"}}").as_bytes()));
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_topic_nul_and_the_unsigned_envelope() {
        let signed = key("k").sign("t", b"{}".to_vec());
        let mut mac = HmacSha256::new_from_slice(b"k").unwrap();
        mac.update(b"t\0{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            String::from_utf8(signed).unwrap(),
            format!(r#"{{,"sig":"{expected}"}}"#)
        );
    }

    #[test]
    fn verify_accepts_what_the_same_key_signed() {
        let k = key("0123456789abcdef");
        let signed = k.sign(TOPIC, ENVELOPE.to_vec());
        assert_eq!(k.verify(TOPIC, &signed), Ok(()));
    }

    #[test]
    fn verify_rejects_another_key_another_topic_and_any_changed_byte() {
        let k = key("0123456789abcdef");
        let signed = k.sign(TOPIC, ENVELOPE.to_vec());
        assert_eq!(
            key("fedcba9876543210").verify(TOPIC, &signed),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            k.verify("app/events/users/delete", &signed),
            Err(SignatureError::Mismatch)
        );
        for i in 0..signed.len() - TRAILER_LEN {
            let mut altered = signed.clone();
            altered[i] ^= 0x01;
            assert_eq!(
                k.verify(TOPIC, &altered),
                Err(SignatureError::Mismatch),
                "byte {i}"
            );
        }
    }

    #[test]
    fn verify_calls_a_payload_without_the_trailer_unsigned() {
        let k = key("0123456789abcdef");
        assert_eq!(k.verify(TOPIC, ENVELOPE), Err(SignatureError::Unsigned));
        assert_eq!(k.verify(TOPIC, b"{}"), Err(SignatureError::Unsigned));
        assert_eq!(k.verify(TOPIC, b""), Err(SignatureError::Unsigned));
    }

    #[test]
    fn the_key_stays_out_of_debug_output() {
        assert_eq!(
            format!("{:?}", key("hunter2-hunter2")),
            "SigningKey(15 bytes)"
        );
    }
}
