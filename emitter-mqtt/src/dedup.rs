//! A bounded memory of recent event ids, to drop QoS 1 redeliveries.
//!
//! Asking and remembering are two steps: an id is remembered only once its event
//! was accepted. Event ids are predictable (a per-node prefix and a counter), so a
//! payload that was refused must not use up its id, or anyone who may publish could
//! suppress a future event by sending a broken one under its id first.

use std::collections::{HashSet, VecDeque};
use uuid::Uuid;

pub(crate) struct RecentIds {
    order: VecDeque<Uuid>,
    seen: HashSet<Uuid>,
    capacity: usize,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> Self {
        RecentIds {
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            seen: HashSet::with_capacity(capacity.min(1 << 16)),
            capacity,
        }
    }

    /// Whether `id` was recorded within the last `capacity` ids.
    pub(crate) fn contains(&self, id: &Uuid) -> bool {
        self.seen.contains(id)
    }

    /// Remembers `id`, forgetting the oldest beyond `capacity`.
    pub(crate) fn record(&mut self, id: Uuid) {
        if !self.seen.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_caught_and_memory_is_bounded() {
        let mut ids = RecentIds::new(2);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert!(!ids.contains(&a));
        ids.record(a);
        assert!(ids.contains(&a));
        ids.record(a);
        ids.record(b);
        ids.record(c);
        assert_eq!(ids.seen.len(), 2);
        assert!(!ids.contains(&a), "forgotten after the window");
    }

    #[test]
    fn an_id_asked_about_but_not_recorded_is_not_remembered() {
        let mut ids = RecentIds::new(2);
        let a = Uuid::from_u128(1);
        assert!(!ids.contains(&a));
        assert!(!ids.contains(&a), "asking does not use the id up");
        ids.record(a);
        assert!(ids.contains(&a));
    }
}
