//! The envelope decoder and the topic parser, fed whatever a broker could deliver.
//!
//! The input's first byte splits it: that many bytes (up to the input's length) are
//! the topic, the rest the payload. Decoding must return a value or an error, never
//! panic, and a decoded envelope must name a table and action its topic agrees with.
#![no_main]

use emitter_core::mqtt::Envelope;
use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "diesel/events";

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
    }
});
