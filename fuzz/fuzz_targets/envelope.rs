//! The envelope decoder, the topic parser and the subscriber's receive path, fed
//! whatever a broker could deliver.
//!
//! The input's first byte splits it: that many bytes (up to the input's length) are
//! the topic, the rest the payload. Decoding must return a value or an error, never
//! panic, and a decoded envelope must name a table and action its topic agrees with.
//! The receive path (the checks every remote message passes, signed and unsigned)
//! must accept only envelopes of its topic from a valid origin, and never accept
//! the same message twice.
#![no_main]

use emitter_core::wire::Envelope;
use emitter_mqtt::fuzzing::Receiver;
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "diesel/events";
const KEY: &[u8] = b"a 32-byte key for the fuzz target";

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (topic, payload) = rest.split_at((split as usize).min(rest.len()));
    let topic = String::from_utf8_lossy(topic);
    for topic in [topic.as_ref(), &format!("{PREFIX}/{topic}")] {
        if let Ok(envelope) = Envelope::decode(PREFIX, topic, payload) {
            let expected = format!("{PREFIX}/{}/{}", envelope.table, envelope.action);
            assert_eq!(topic, expected, "decoded an envelope its topic disagrees with");
        }
        for key in [None, Some(KEY)] {
            let mut receiver = Receiver::new(PREFIX, "fuzz-node", key);
            if let Some((table, action, origin)) = receiver.receive(topic, payload) {
                assert_eq!(topic, format!("{PREFIX}/{table}/{action}"));
                assert!(
                    !origin.is_empty()
                        && origin.len() <= 128
                        && !origin.chars().any(|c| c.is_control() || "/+#".contains(c)),
                    "accepted an origin no node could have: {origin:?}"
                );
                assert_ne!(origin, "fuzz-node", "accepted this node's own event");
                assert!(
                    receiver.receive(topic, payload).is_none(),
                    "accepted the same event twice"
                );
            }
        }
    }
});
