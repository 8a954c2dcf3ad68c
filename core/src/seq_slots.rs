//! Values keyed by numbers handed out in increasing order and mostly removed in that order:
//! a broker's in-flight deliveries by tag, a client's unconfirmed publishes by sequence
//! number.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

/// Slots past this many empty ones (beyond the live count) are swept out at once.
const EMPTY_SLACK: usize = 64;

/// A deque sorted by key does what a map would without a tree node per entry (a map's inserts
/// and node shifts were a tenth of the broker's time at high rates). A removed entry leaves an
/// empty slot until the slots before it are removed too; empty slots are swept when they
/// outnumber live ones, so memory stays within about twice the live entries even while one old
/// entry is held for a long time.
#[derive(Debug)]
pub struct SeqSlots<T> {
    slots: VecDeque<(u64, Option<T>)>,
    live: usize,
}

impl<T> Default for SeqSlots<T> {
    fn default() -> Self {
        SeqSlots { slots: VecDeque::new(), live: 0 }
    }
}

impl<T> SeqSlots<T> {
    /// `key` must be larger than every key inserted before.
    // Inlined so that a large value is built in its slot rather than copied there.
    #[inline]
    pub fn insert(&mut self, key: u64, value: T) {
        assert!(self.slots.back().is_none_or(|(last, _)| *last < key), "keys must increase");
        self.slots.push_back((key, Some(value)));
        self.live += 1;
    }

    /// The largest key held (an empty slot at the back is swept at once, so it is live).
    pub fn last_key(&self) -> Option<u64> {
        self.slots.back().map(|(key, _)| *key)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn get(&self, key: u64) -> Option<&T> {
        let at = self.position(key)?;
        self.slots[at].1.as_ref()
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let at = self.position(key)?;
        self.slots[at].1.as_mut()
    }

    pub fn remove(&mut self, key: u64) -> Option<T> {
        let at = self.position(key)?;
        let removed = self.slots[at].1.take()?;
        self.live -= 1;
        self.sweep();
        Some(removed)
    }

    /// Removes the entries whose keys lie in `keys`, handing each to `take`, in key order.
    pub fn remove_range(&mut self, keys: RangeInclusive<u64>, mut take: impl FnMut(u64, T)) {
        let start = self.slots.partition_point(|(key, _)| key < keys.start());
        for (key, slot) in self.slots.range_mut(start..) {
            if *key > *keys.end() {
                break;
            }
            if let Some(value) = slot.take() {
                self.live -= 1;
                take(*key, value);
            }
        }
        self.sweep();
    }

    /// [`SeqSlots::remove_range`] for values the caller does not need: each is dropped where
    /// it lies (no move out), and `removed` hears its key.
    pub fn discard_range(&mut self, keys: RangeInclusive<u64>, mut removed: impl FnMut(u64)) {
        let start = self.slots.partition_point(|(key, _)| key < keys.start());
        for (key, slot) in self.slots.range_mut(start..) {
            if *key > *keys.end() {
                break;
            }
            if slot.is_some() {
                *slot = None;
                self.live -= 1;
                removed(*key);
            }
        }
        self.sweep();
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.slots.iter().filter_map(|(key, slot)| slot.as_ref().map(|v| (*key, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|(_, slot)| slot.as_ref())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|(_, slot)| slot.as_mut())
    }

    /// The entries whose keys lie in `keys`, in key order.
    pub fn range(&self, keys: RangeInclusive<u64>) -> impl Iterator<Item = (u64, &T)> {
        let start = self.slots.partition_point(|(key, _)| key < keys.start());
        self.slots
            .range(start..)
            .take_while(move |(key, _)| key <= keys.end())
            .filter_map(|(key, slot)| slot.as_ref().map(|v| (*key, v)))
    }

    pub fn range_mut(&mut self, keys: RangeInclusive<u64>) -> impl Iterator<Item = (u64, &mut T)> {
        let start = self.slots.partition_point(|(key, _)| key < keys.start());
        self.slots
            .range_mut(start..)
            .take_while(move |(key, _)| key <= keys.end())
            .filter_map(|(key, slot)| slot.as_mut().map(|v| (*key, v)))
    }

    /// Every entry, in key order (reversible), leaving none.
    pub fn drain(&mut self) -> impl DoubleEndedIterator<Item = (u64, T)> {
        self.live = 0;
        std::mem::take(&mut self.slots).into_iter().filter_map(|(key, slot)| slot.map(|v| (key, v)))
    }

    fn position(&self, key: u64) -> Option<usize> {
        // Keys usually come without gaps (sequence numbers, delivery tags): try the place a
        // gapless run puts `key` before searching.
        let first = self.slots.front()?.0;
        let guess = usize::try_from(key.checked_sub(first)?).ok()?;
        if self.slots.get(guess).is_some_and(|(k, _)| *k == key) {
            return Some(guess);
        }
        let at = self.slots.partition_point(|(k, _)| *k < key);
        (self.slots.get(at)?.0 == key).then_some(at)
    }

    fn sweep(&mut self) {
        while matches!(self.slots.front(), Some((_, None))) {
            self.slots.pop_front();
        }
        while matches!(self.slots.back(), Some((_, None))) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.live + EMPTY_SLACK {
            self.slots.retain(|(_, slot)| slot.is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each value is its key times ten, so a wrong pairing shows.
    fn keys<'a>(entries: impl Iterator<Item = (u64, &'a u64)>) -> Vec<u64> {
        entries
            .map(|(key, value)| {
                assert_eq!(*value, key * 10, "each key keeps its own value");
                key
            })
            .collect()
    }

    fn slots(keys: &[u64]) -> SeqSlots<u64> {
        let mut slots = SeqSlots::default();
        for &key in keys {
            slots.insert(key, key * 10);
        }
        slots
    }

    /// Removing out of order finds each entry by its key, once.
    #[test]
    fn finds_and_removes_by_key_in_any_order() {
        let mut table = slots(&[1, 2, 3, 5, 8]);
        assert_eq!(table.remove(3), Some(30));
        assert!(table.remove(3).is_none(), "removed already");
        assert!(table.remove(4).is_none(), "never inserted");
        assert!(table.get(9).is_none() && table.get(0).is_none());
        assert_eq!(keys(table.range(2..=6)), [2, 5]);
        assert_eq!(keys(table.iter()), [1, 2, 5, 8]);
        for value in table.range_mut(5..=100).map(|(_, v)| v) {
            *value += 1;
        }
        assert_eq!(table.values().copied().collect::<Vec<_>>(), [10, 20, 51, 81]);
        let drained: Vec<u64> = table.drain().rev().map(|(key, _)| key).collect();
        assert_eq!(drained, [8, 5, 2, 1]);
        assert!(table.iter().next().is_none());
        table.insert(9, 90);
        assert_eq!(keys(table.iter()), [9]);
    }

    /// A range removal reaches exactly the live entries in it, in order, and the deque shrinks
    /// once its front is gone.
    #[test]
    fn removes_ranges_in_any_order() {
        let mut table = slots(&[1, 2, 3, 4, 5, 6]);
        let mut taken = Vec::new();
        table.remove_range(3..=4, |key, value| taken.push((key, value)));
        assert_eq!(taken, [(3, 30), (4, 40)]);
        assert_eq!(table.slots.len(), 6, "1 and 2 still wait at the front");
        table.remove_range(1..=2, |_, _| {});
        assert_eq!(table.slots.len(), 2);
        table.remove_range(4..=4, |_, _| panic!("4 was removed already"));
        table.remove_range(9..=12, |_, _| panic!("never inserted"));
        assert_eq!(keys(table.iter()), [5, 6]);
    }

    /// One entry held for a long time while many after it are removed: the empty slots are
    /// swept, so the deque does not grow with the traffic behind the held one.
    #[test]
    fn a_held_entry_does_not_pin_the_removed_ones() {
        let mut table = slots(&[1]);
        // Rounds of ten; each round removes the round before it, so live entries sit at both
        // ends with empty slots between.
        let round = |r: u64| 2 + 10 * r..2 + 10 * (r + 1);
        for r in 0..10_000 {
            for key in round(r) {
                table.insert(key, key * 10);
            }
            if r > 0 {
                for key in round(r - 1) {
                    assert!(table.remove(key).is_some());
                }
            }
        }
        let slot_count = table.slots.len();
        assert!(slot_count <= 2 * table.live + EMPTY_SLACK, "{slot_count} slots");
        let held: Vec<u64> = std::iter::once(1).chain(round(9_999)).collect();
        assert_eq!(keys(table.iter()), held);
    }

    /// The guess a gapless run suggests must not be trusted where keys have gaps: a key is
    /// found at its true place, and a missing key is not mistaken for the one at its guess.
    #[test]
    fn finds_keys_past_gaps() {
        let mut table = slots(&[10, 11, 20, 21, 22]);
        assert_eq!(table.get(20), Some(&200));
        assert_eq!(table.get(22), Some(&220));
        assert_eq!(table.get(12), None);
        assert_eq!(table.get(9), None);
        assert_eq!(table.get(u64::MAX), None);
        assert_eq!(table.remove(21), Some(210));
        assert_eq!(table.get(21), None);
        assert_eq!(table.get(22), Some(&220));
    }
}
