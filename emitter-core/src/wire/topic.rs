//! Topics: `{prefix}/{table}/{action}`, and what a topic level and a node id may
//! contain.

use crate::action::Action;

/// Whether `level` can be one MQTT topic level of ours: non-empty, no `/`, no
/// wildcard, no NUL.
pub fn is_valid_level(level: &str) -> bool {
    !level.is_empty() && !level.contains(['/', '+', '#', '\0'])
}

/// The longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 128;

/// Whether `id` may be a node id, ours or a remote envelope's `origin`: 1 to
/// [`MAX_NODE_ID_LEN`] bytes, without `/`, `+`, `#`, NUL or control characters.
/// A remote origin is held to the same rule because it reaches listeners as
/// `meta.origin` and logs: an empty one, a 100 KB one or one carrying a newline
/// could only mislead them.
pub fn is_valid_node_id(id: &str) -> bool {
    let bad = |c: char| matches!(c, '/' | '+' | '#' | '\0') || c.is_control();
    !id.is_empty() && id.len() <= MAX_NODE_ID_LEN && !id.chars().any(bad)
}

/// The topic of an event.
pub fn event_topic(prefix: &str, table: &str, action: Action) -> String {
    format!("{prefix}/{table}/{action}")
}

/// The filter that matches every action on `table`.
pub fn table_filter(prefix: &str, table: &str) -> String {
    format!("{prefix}/{table}/+")
}

/// The table and action of a topic under `prefix`, if it is one of ours.
pub fn parse_topic<'t>(prefix: &str, topic: &'t str) -> Option<(&'t str, Action)> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix('/')?;
    let (table, action) = rest.split_once('/')?;
    let action = match action {
        "insert" => Action::Insert,
        "update" => Action::Update,
        "delete" => Action::Delete,
        _ => return None,
    };
    is_valid_level(table).then_some((table, action))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        let t = event_topic("app/events", "users", Action::Update);
        assert_eq!(t, "app/events/users/update");
        assert_eq!(
            parse_topic("app/events", &t),
            Some(("users", Action::Update))
        );
    }

    #[test]
    fn node_ids_are_1_to_128_bytes_without_topic_characters_or_controls() {
        assert!(is_valid_node_id("api-1"));
        assert!(is_valid_node_id("nœud-été"));
        assert!(is_valid_node_id(&"x".repeat(128)));
        for bad in ["", "a/b", "a+", "#", "a\0", "a\nb", "\u{1b}]0;x", "a\u{9b}"] {
            assert!(!is_valid_node_id(bad), "{bad:?}");
        }
        assert!(!is_valid_node_id(&"x".repeat(129)));
    }

    #[test]
    fn foreign_topics_do_not_parse() {
        assert_eq!(parse_topic("app/events", "app/eventsx/users/insert"), None);
        assert_eq!(parse_topic("app/events", "app/events/users/upsert"), None);
        assert_eq!(parse_topic("app/events", "app/events/users/insert/x"), None);
        assert_eq!(parse_topic("app/events", "app/events//insert"), None);
    }
}
