//! The deliveries a connection has not settled yet, by tag.

use std::collections::BTreeMap;

use crate::seq_slots::SeqSlots;

/// Delivery tag → subscription, for deliveries not yet settled.
///
/// The server numbers a connection's deliveries in increasing order, so they go in a
/// [`SeqSlots`]: no tree node to allocate per delivery and free per ack (a `BTreeMap`'s
/// inserts, removals and merges were a few per cent of a consumer's time). Tags come from the
/// network, though, and a server may send one out of order or twice: those go to a map beside
/// it, so any sequence of tags is kept as a map would keep it, and none reaches the deque's
/// "keys must increase" assertion.
#[derive(Debug, Default)]
pub(super) struct Outstanding {
    in_order: SeqSlots<u32>,
    /// Tags not above the last one in `in_order` when they came.
    out_of_order: BTreeMap<u64, u32>,
}

impl Outstanding {
    /// Records `tag` for `subscription`; a tag already held takes the new subscription.
    pub fn insert(&mut self, tag: u64, subscription: u32) {
        if let Some(held) = self.out_of_order.get_mut(&tag) {
            *held = subscription;
        } else if self.in_order.last_key().is_none_or(|last| last < tag) {
            self.in_order.insert(tag, subscription);
        } else if let Some(held) = self.in_order.get_mut(tag) {
            *held = subscription;
        } else {
            self.out_of_order.insert(tag, subscription);
        }
    }

    /// Forgets `tag`, returning its subscription if it was held.
    pub fn remove(&mut self, tag: u64) -> Option<u32> {
        match self.in_order.remove(tag) {
            Some(subscription) => Some(subscription),
            None if self.out_of_order.is_empty() => None,
            None => self.out_of_order.remove(&tag),
        }
    }

    pub fn contains(&self, tag: u64) -> bool {
        self.in_order.get(tag).is_some() || self.out_of_order.contains_key(&tag)
    }

    pub fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    /// Each held tag's subscription, in no particular order.
    pub fn subscriptions(&self) -> impl Iterator<Item = u32> + '_ {
        self.in_order.values().chain(self.out_of_order.values()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any order of tags, repeats included, is kept as a map keeps it, and nothing panics.
    #[test]
    fn any_tag_order_behaves_as_a_map() {
        let mut outstanding = Outstanding::default();
        let mut model = BTreeMap::new();
        // Increasing, then back below the last, a repeat, a gap, and past a drained deque.
        let tags = [5, 6, 9, 3, 6, 7, 12, 1, 3, 13, u64::MAX, 0];
        for (i, tag) in tags.into_iter().enumerate() {
            outstanding.insert(tag, i as u32);
            model.insert(tag, i as u32);
            assert_eq!(outstanding.len(), model.len());
        }
        for tag in [6, 6, 3, 12, 13, u64::MAX, 9] {
            assert_eq!(outstanding.remove(tag), model.remove(&tag), "tag {tag}");
        }
        for tag in [4, 9, 3] {
            outstanding.insert(tag, 100);
            model.insert(tag, 100);
        }
        for tag in 0..20 {
            assert_eq!(outstanding.contains(tag), model.contains_key(&tag), "tag {tag}");
        }
        let mut held: Vec<u32> = outstanding.subscriptions().collect();
        let mut expected: Vec<u32> = model.values().copied().collect();
        held.sort_unstable();
        expected.sort_unstable();
        assert_eq!(held, expected);
        for tag in 0..20 {
            assert_eq!(outstanding.remove(tag), model.remove(&tag), "tag {tag}");
        }
        assert_eq!(outstanding.len(), 0);
    }
}
