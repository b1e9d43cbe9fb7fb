//! What `tail` prints: the readable line of an event, the `--json` line, the counts.

use emitter_core::wire::Envelope;
use emitter_core::Action;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Whether to colour the readable format: `--color always|never` decide; `auto`
/// colours a terminal unless `NO_COLOR` is set to something (no-color.org).
pub(crate) fn use_color(
    choice: crate::ColorArg,
    is_terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
) -> bool {
    match choice {
        crate::ColorArg::Always => true,
        crate::ColorArg::Never => false,
        crate::ColorArg::Auto => is_terminal && no_color.is_none_or(|v| v.is_empty()),
    }
}

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const CYAN: &str = "\x1b[36m";
const MAGENTA: &str = "\x1b[35m";

fn action_color(action: Action) -> &'static str {
    match action {
        Action::Insert => "\x1b[1;32m",
        Action::Update => "\x1b[1;33m",
        Action::Delete => "\x1b[1;31m",
    }
}

/// One readable line (without the newline):
/// `2026-11-26T20:00:00.123456Z api-1 #42 users update [name] {"id":7,"name":"Ada"}`.
pub(crate) fn human_line(envelope: &Envelope, color: bool) -> String {
    let paint = |code: &'static str| if color { code } else { "" };
    let reset = paint(RESET);
    let mut line = String::new();
    let _ = write!(
        line,
        "{}{}{reset} {}{}{reset} {}#{}{reset} {}{}{reset} {}{}{reset} {}[{}]{reset} {}",
        paint(DIM),
        humantime::format_rfc3339_micros(envelope.committed_at),
        paint(CYAN),
        printable(&envelope.origin),
        paint(DIM),
        envelope.seq,
        paint(BOLD),
        printable(&envelope.table),
        paint(action_color(envelope.action)),
        envelope.action,
        paint(MAGENTA),
        printable(&envelope.changed.join(",")),
        printable(&compact_json(envelope.row.get())),
    );
    line
}

/// The `--json` line: the payload as received, unless it spans lines (a sender that
/// pretty-prints), which would break one-envelope-per-line, or carries characters a
/// terminal obeys. JSON strings may hold DEL and the C1 controls (U+0080 to U+009F,
/// among them the 8-bit CSI) unescaped; those are written as `\u` escapes, which
/// read back as the same JSON value.
pub(crate) fn json_line(payload: &[u8]) -> Cow<'_, [u8]> {
    let text = match std::str::from_utf8(payload) {
        Ok(text) => text,
        // A decoded envelope is UTF-8; keep the line shape whatever happens.
        Err(_) => {
            return Cow::Owned(
                payload
                    .iter()
                    .map(|b| if b.is_ascii_control() { b' ' } else { *b })
                    .collect(),
            )
        }
    };
    let spans_lines = text.contains(['\n', '\r']);
    let obeyed = text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if !spans_lines && !obeyed {
        return Cow::Borrowed(payload);
    }
    let compact = if spans_lines {
        compact_json(text)
    } else {
        Cow::Borrowed(text)
    };
    let mut out = String::with_capacity(compact.len() + 16);
    for c in compact.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out.into_bytes())
}

/// Valid JSON text without the whitespace between tokens.
pub(crate) fn compact_json(text: &str) -> Cow<'_, str> {
    let mut in_string = false;
    let mut escaped = false;
    let needs = text.bytes().any(|b| {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            false
        } else {
            in_string = b == b'"';
            b.is_ascii_whitespace()
        }
    });
    if !needs {
        return Cow::Borrowed(text);
    }
    let (mut in_string, mut escaped) = (false, false);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c.is_ascii_whitespace() {
            continue;
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// Text from the wire made safe for a terminal: control characters (escape
/// sequences, C1 controls) are shown escaped instead of being obeyed.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`printable`] for text of several lines: line breaks stay, every other control
/// character is escaped.
pub(crate) fn printable_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&printable(line));
    }
    Cow::Owned(out)
}

/// The event ids `--dedupe` printed lately, at most `capacity` of them.
pub(crate) struct RecentIds {
    order: std::collections::VecDeque<uuid::Uuid>,
    seen: std::collections::HashSet<uuid::Uuid>,
    capacity: usize,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentIds {
            order: Default::default(),
            seen: Default::default(),
            capacity,
        }
    }

    /// Records `id`; false when it is among the last `capacity` recorded.
    pub(crate) fn first_time(&mut self, id: uuid::Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// What `tail` saw, reported on Ctrl-C.
#[derive(Default)]
pub(crate) struct Counts {
    /// Events printed, per table, per action (in `Action::ALL` order).
    shown: BTreeMap<String, [u64; 3]>,
    /// Valid envelopes that did not pass the filters.
    pub(crate) filtered: u64,
    /// Payloads that were not valid envelopes.
    pub(crate) rejected: u64,
    /// Events dropped by `--dedupe` as already printed.
    pub(crate) duplicates: u64,
}

impl Counts {
    pub(crate) fn shown(&mut self, table: &str, action: Action) {
        let index = Action::ALL.iter().position(|a| *a == action).unwrap_or(0);
        match self.shown.get_mut(table) {
            Some(counts) => counts[index] += 1,
            None => {
                let mut counts = [0; 3];
                counts[index] = 1;
                self.shown.insert(table.to_owned(), counts);
            }
        }
    }

    /// The summary, one line per table:
    /// ```text
    /// diesel-emitter tail: 3 events, 1 filtered out, 1 rejected payload
    ///   posts  1  (delete 1)
    ///   users  2  (insert 1, update 1)
    /// ```
    pub(crate) fn summary(&self) -> String {
        let total: u64 = self.shown.values().flatten().sum();
        let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let mut out = format!("diesel-emitter tail: {}", plural(total, "event"));
        if self.filtered > 0 {
            let _ = write!(out, ", {} filtered out", self.filtered);
        }
        if self.rejected > 0 {
            let _ = write!(out, ", {}", plural(self.rejected, "rejected payload"));
        }
        if self.duplicates > 0 {
            let _ = write!(out, ", {}", plural(self.duplicates, "duplicate"));
        }
        out.push('\n');
        let width = self
            .shown
            .keys()
            .map(|t| printable(t).chars().count())
            .max()
            .unwrap_or(0);
        let digits = total.to_string().len();
        for (table, counts) in &self.shown {
            let actions: Vec<String> = Action::ALL
                .iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(action, n)| format!("{action} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "  {:<width$}  {:>digits$}  ({})",
                printable(table),
                counts.iter().sum::<u64>(),
                actions.join(", "),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ColorArg;
    use std::ffi::OsStr;

    fn envelope() -> Envelope {
        let payload = br#"{"v":1,"id":"8cdbf11c-eb97-8211-8000-000000000001","origin":"api-1",
            "seq":42,"table":"users","action":"update","committed_at":"2026-11-26T20:00:00.123456Z",
            "changed":["name"],"row":{ "id": 7, "name": "Ada Lovelace" }}"#;
        Envelope::decode("diesel/events", "diesel/events/users/update", payload).unwrap()
    }

    #[test]
    fn the_readable_line_has_time_origin_seq_table_action_changed_and_compact_row() {
        assert_eq!(
            human_line(&envelope(), false),
            r#"2026-11-26T20:00:00.123456Z api-1 #42 users update [name] {"id":7,"name":"Ada Lovelace"}"#
        );
    }

    #[test]
    fn the_coloured_line_says_the_same_with_escape_codes() {
        let line = human_line(&envelope(), true);
        assert!(line.contains("\x1b[1;33mupdate\x1b[0m"), "{line:?}");
        assert!(line.contains("\x1b[36mapi-1\x1b[0m"), "{line:?}");
    }

    #[test]
    fn compaction_keeps_whitespace_inside_strings() {
        assert_eq!(
            compact_json("{ \"a b\" : [1, \"x \\\" y\"]\n}"),
            "{\"a b\":[1,\"x \\\" y\"]}"
        );
        assert!(matches!(compact_json(r#"{"a":1}"#), Cow::Borrowed(_)));
    }

    #[test]
    fn json_lines_are_the_payload_unless_it_spans_lines() {
        assert_eq!(&*json_line(br#"{"a": 1}"#), br#"{"a": 1}"#);
        assert_eq!(&*json_line(b"{\n  \"a\": 1\n}"), br#"{"a":1}"#);
    }

    #[test]
    fn json_lines_escape_the_controls_json_strings_may_hold_raw() {
        let payload = "{\"a\":\"x\u{9b}2J\u{7f}y\"}";
        let line = json_line(payload.as_bytes());
        assert_eq!(&*line, br#"{"a":"x\u009b2J\u007fy"}"#);
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["a"], "x\u{9b}2J\u{7f}y", "the same JSON value");
    }

    #[test]
    fn stderr_text_keeps_its_line_breaks_and_escapes_the_rest() {
        assert_eq!(printable_lines("a\nb"), "a\nb");
        assert_eq!(
            printable_lines("a\u{1b}]0;x\u{7}\nb"),
            "a\\u{1b}]0;x\\u{7}\nb"
        );
    }

    #[test]
    fn dedupe_remembers_the_last_ids_only() {
        let mut ids = RecentIds::new(1);
        let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        assert!(ids.first_time(a));
        assert!(!ids.first_time(a));
        assert!(ids.first_time(b));
        assert!(ids.first_time(a), "forgotten beyond the window");
    }

    #[test]
    fn control_characters_from_the_wire_are_escaped() {
        assert_eq!(printable("api\x1b[2J-1"), "api\\u{1b}[2J-1");
        assert_eq!(printable("noeud-été"), "noeud-été");
    }

    #[test]
    fn auto_colour_needs_a_terminal_and_no_no_color() {
        assert!(use_color(ColorArg::Auto, true, None));
        assert!(use_color(ColorArg::Auto, true, Some(OsStr::new(""))));
        assert!(!use_color(ColorArg::Auto, true, Some(OsStr::new("1"))));
        assert!(!use_color(ColorArg::Auto, false, None));
        assert!(use_color(ColorArg::Always, false, Some(OsStr::new("1"))));
        assert!(!use_color(ColorArg::Never, true, None));
    }

    #[test]
    fn the_summary_counts_per_table_and_action() {
        let mut counts = Counts::default();
        counts.shown("users", Action::Insert);
        counts.shown("users", Action::Update);
        counts.shown("posts", Action::Delete);
        counts.rejected = 1;
        assert_eq!(
            counts.summary(),
            "diesel-emitter tail: 3 events, 1 rejected payload\n\
             \x20 posts  1  (delete 1)\n\
             \x20 users  2  (insert 1, update 1)\n"
        );
    }
}
