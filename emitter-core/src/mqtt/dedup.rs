//! A bounded memory of recent event ids, to drop QoS 1 redeliveries.

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

    /// Records `id`; false when it was seen within the last `capacity` ids.
    pub(crate) fn first_time(&mut self, id: Uuid) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_are_caught_and_memory_is_bounded() {
        let mut ids = RecentIds::new(2);
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert!(ids.first_time(a));
        assert!(!ids.first_time(a));
        assert!(ids.first_time(b));
        assert!(ids.first_time(c));
        assert_eq!(ids.seen.len(), 2);
        assert!(ids.first_time(a), "forgotten after the window");
    }
}
