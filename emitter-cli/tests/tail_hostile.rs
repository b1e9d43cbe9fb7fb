//! `diesel-emitter tail` against payloads written to harm the terminal that reads it,
//! and against QoS 1's duplicates. Payloads are forged with `mosquitto_pub` on the
//! Mosquitto at 127.0.0.1:1883, on a topic prefix of each test's own.

mod support;

use std::process::{Command, Stdio};
use support::*;

/// Whether `text` holds a character a terminal would obey rather than print.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\t')
}

#[test]
fn escape_sequences_in_a_rejected_payload_reach_stderr_escaped() {
    let prefix = unique_prefix("hostile_stderr");
    let mut tail = Tail::start(&prefix, &[]);
    let topic = format!("{prefix}/users/update");
    // serde quotes the unknown action in its error: raw, it retitles the terminal,
    // rings its bell and clears the screen.
    let hostile = README_ENVELOPE.replace(
        r#""action":"update""#,
        r#""action":"\u001b]0;owned\u0007\u001b[2J""#,
    );
    mosquitto_pub(&topic, &hostile);
    mosquitto_pub(&topic, README_ENVELOPE);

    let report = tail.wait_stderr(|l| l.starts_with("rejected payload"));
    assert!(!has_control(&report), "{report:?}");
    assert!(report.contains(r"\u{1b}]0;owned\u{7}"), "{report:?}");
    tail.line();
    let stderr = tail.stop_cleanly();
    assert!(!has_control(&stderr), "{stderr:?}");
}

#[test]
fn escape_sequences_in_an_event_reach_stdout_escaped_in_both_formats() {
    let prefix = unique_prefix("hostile_stdout");
    let mut human = Tail::start(&prefix, &["--color", "never"]);
    let mut json = Tail::start(&prefix, &["--json"]);
    // JSON strings may carry DEL and the C1 controls (here the 8-bit CSI) raw.
    let hostile = README_ENVELOPE.replace(
        r#""name":"Ada""#,
        "\"name\":\"Ada\\u001b[2J\u{9b}2J\u{7f}\"",
    );
    mosquitto_pub(&format!("{prefix}/users/update"), &hostile);

    let line = human.line();
    assert!(!has_control(&line), "{line:?}");
    let line = json.line();
    assert!(!has_control(&line), "{line:?}");
    let value: serde_json::Value = serde_json::from_str(&line).expect("still JSON");
    assert_eq!(
        value["row"]["name"], "Ada\u{1b}[2J\u{9b}2J\u{7f}",
        "the same value"
    );
    human.stop_cleanly();
    json.stop_cleanly();
}

#[test]
fn dedupe_prints_an_event_delivered_twice_once_and_counts_the_copy() {
    let prefix = unique_prefix("dedupe");
    let mut tail = Tail::start(&prefix, &["--json", "--dedupe"]);
    let topic = format!("{prefix}/users/update");
    let second = README_ENVELOPE
        .replace("000000000001", "000000000002")
        .replace(r#""seq":42"#, r#""seq":43"#);
    mosquitto_pub(&topic, README_ENVELOPE);
    mosquitto_pub(&topic, README_ENVELOPE);
    mosquitto_pub(&topic, &second);

    assert_eq!(tail.line(), README_ENVELOPE);
    assert_eq!(
        tail.line(),
        second,
        "the copy was dropped, the next event printed"
    );
    let stderr = tail.stop_cleanly();
    assert!(stderr.contains("2 events, 1 duplicate"), "{stderr}");
}

#[test]
fn without_dedupe_an_event_delivered_twice_is_printed_twice() {
    let prefix = unique_prefix("no_dedupe");
    let mut tail = Tail::start(&prefix, &["--json"]);
    let topic = format!("{prefix}/users/update");
    mosquitto_pub(&topic, README_ENVELOPE);
    mosquitto_pub(&topic, README_ENVELOPE);

    assert_eq!(tail.line(), README_ENVELOPE);
    assert_eq!(tail.line(), README_ENVELOPE);
    tail.stop_cleanly();
}

#[test]
fn help_says_qos_1_can_deliver_an_event_twice_and_offers_dedupe() {
    let output = Command::new(env!("CARGO_BIN_EXE_diesel-emitter"))
        .args(["tail", "--help"])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(output.status.success());
    let help = squeeze(&String::from_utf8(output.stdout).unwrap());
    assert!(help.contains("QoS 1, which is at least once"), "{help}");
    assert!(help.contains("delivered twice"), "{help}");
    assert!(help.contains("--dedupe"), "{help}");
}
