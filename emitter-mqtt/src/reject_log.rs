//! Logging what the subscriber drops, without letting the sender write the log.
//!
//! Every dropped payload is counted exactly (`Stats`), but a flood of them must not
//! become a flood of log lines: [`RejectLog`] writes the first at once and then at
//! most one line per [`INTERVAL`], saying how many were dropped since, for which
//! reasons, and the last topic and reason. Text that came from the network (topics,
//! serde's error text, which quotes the payload) is passed through [`escape`]
//! first, so that it can neither forge log lines nor reach a terminal as escape
//! sequences.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The shortest time between two log lines about dropped payloads.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// How much of a network-derived text a log line carries.
const MAX_CHARS: usize = 200;

/// `text` with every control character written as an escape (`\u{1b}`), cut after
/// [`MAX_CHARS`] characters with the length of the rest said.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    let long = text.chars().nth(MAX_CHARS).is_some();
    if !long && !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(4 * MAX_CHARS) + 16);
    for (shown, (at, c)) in text.char_indices().enumerate() {
        if shown == MAX_CHARS {
            let _ = write!(out, "... ({} more bytes)", text.len() - at);
            break;
        }
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Dropped payloads since the last line, and when that line was written.
#[derive(Default)]
pub(crate) struct RejectLog {
    last_line: Option<Instant>,
    since: u64,
    by_reason: BTreeMap<&'static str, u64>,
    /// Topic and reason of the last one, escaped.
    last: Option<(String, String)>,
}

impl RejectLog {
    /// Notes one dropped payload; writes a line if none was written within [`INTERVAL`].
    pub(crate) fn note(
        &mut self,
        now: Instant,
        kind: &'static str,
        topic: &str,
        reason: &dyn std::fmt::Display,
    ) {
        self.since += 1;
        *self.by_reason.entry(kind).or_default() += 1;
        self.last = Some((
            escape(topic).into_owned(),
            escape(&reason.to_string()).into_owned(),
        ));
        self.flush(now, false);
    }

    /// Writes the line that is due: with `force`, whatever is pending (at the end
    /// of a stream); otherwise only once [`INTERVAL`] has passed since the last.
    pub(crate) fn flush(&mut self, now: Instant, force: bool) {
        if self.since == 0 {
            return;
        }
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= INTERVAL);
        if !(due || force) {
            return;
        }
        let Some((topic, reason)) = self.last.take() else {
            return;
        };
        let reasons = self
            .by_reason
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        tracing::warn!(
            dropped = self.since,
            reasons = %reasons,
            last_topic = %topic,
            last_reason = %reason,
            "remote payloads dropped (counted in stats; at most one such line per {INTERVAL:?})"
        );
        self.since = 0;
        self.by_reason.clear();
        self.last_line = Some(now);
    }

    /// Dropped payloads not yet written about.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u64 {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_is_cut() {
        assert_eq!(escape("users/insert"), "users/insert");
        assert_eq!(escape("a\nb\u{1b}]0;x\u{7}"), "a\\u{a}b\\u{1b}]0;x\\u{7}");
        let long = "é".repeat(1000);
        let cut = escape(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_CHARS)), "{cut}");
        assert!(cut.ends_with("... (1600 more bytes)"), "{cut}");
    }

    #[test]
    fn the_first_rejection_is_written_at_once_then_one_line_per_interval() {
        let start = Instant::now();
        let mut log = RejectLog::default();
        log.note(start, "malformed", "t", &"x");
        assert_eq!(log.pending(), 0, "the first one is written at once");
        for i in 0..50_000u32 {
            log.note(
                start + Duration::from_micros(i.into()),
                "malformed",
                "t",
                &"x",
            );
        }
        assert_eq!(log.pending(), 50_000, "a flood within the interval waits");
        log.flush(start + INTERVAL / 2, false);
        assert_eq!(log.pending(), 50_000);
        log.flush(start + INTERVAL, false);
        assert_eq!(log.pending(), 0, "written once the interval passed");
    }

    #[test]
    fn a_forced_flush_writes_what_is_pending() {
        let start = Instant::now();
        let mut log = RejectLog::default();
        log.note(start, "malformed", "t", &"x");
        log.note(start, "origin", "t", &"y");
        assert_eq!(log.pending(), 1);
        log.flush(start, true);
        assert_eq!(log.pending(), 0);
    }
}
