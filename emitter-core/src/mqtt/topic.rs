//! Topics: `{prefix}/{table}/{action}` and what a topic level may contain.

use crate::action::Action;

/// Whether `level` can be one MQTT topic level of ours: non-empty, no `/`, no
/// wildcard, no NUL.
pub(crate) fn is_valid_level(level: &str) -> bool {
    !level.is_empty() && !level.contains(['/', '+', '#', '\0'])
}

/// The topic of an event.
#[cfg(feature = "mqtt")]
pub(crate) fn event_topic(prefix: &str, table: &str, action: Action) -> String {
    format!("{prefix}/{table}/{action}")
}

/// The filter that matches every action on `table`.
#[cfg(feature = "mqtt")]
pub(crate) fn table_filter(prefix: &str, table: &str) -> String {
    format!("{prefix}/{table}/+")
}

/// The table and action of a topic under `prefix`, if it is one of ours.
pub(crate) fn parse_topic<'t>(prefix: &str, topic: &'t str) -> Option<(&'t str, Action)> {
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

#[cfg(all(test, feature = "mqtt"))]
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
    fn foreign_topics_do_not_parse() {
        assert_eq!(parse_topic("app/events", "app/eventsx/users/insert"), None);
        assert_eq!(parse_topic("app/events", "app/events/users/upsert"), None);
        assert_eq!(parse_topic("app/events", "app/events/users/insert/x"), None);
        assert_eq!(parse_topic("app/events", "app/events//insert"), None);
    }
}
