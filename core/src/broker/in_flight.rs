//! A connection's deliveries awaiting settlement, by tag.

use std::collections::VecDeque;
use std::ops::RangeInclusive;

use super::connection::InFlight;

/// Slots past this many settled ones (beyond the live count) are swept out at once.
const SETTLED_SLACK: usize = 64;

/// Tags are handed out in increasing order and mostly settled in that order, so a deque
/// sorted by tag does what a map would without a tree node per delivery (the map's inserts
/// and node shifts were a tenth of the broker's time at high rates). A settled delivery
/// leaves an empty slot until the slots before it are settled too; the slots are swept when
/// empty ones outnumber live ones, so memory stays within about twice the live deliveries
/// even while one old delivery is held for a long time.
#[derive(Debug, Default)]
pub(crate) struct InFlightTable {
    slots: VecDeque<(u64, Option<InFlight>)>,
    live: usize,
}

impl InFlightTable {
    /// `tag` must be larger than every tag inserted before.
    pub fn insert(&mut self, tag: u64, in_flight: InFlight) {
        assert!(
            self.slots.back().is_none_or(|(last, _)| *last < tag),
            "delivery tags must increase"
        );
        self.slots.push_back((tag, Some(in_flight)));
        self.live += 1;
    }

    pub fn get(&self, tag: u64) -> Option<&InFlight> {
        let at = self.position(tag)?;
        self.slots[at].1.as_ref()
    }

    pub fn remove(&mut self, tag: u64) -> Option<InFlight> {
        let at = self.position(tag)?;
        let removed = self.slots[at].1.take()?;
        self.live -= 1;
        self.sweep();
        Some(removed)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &InFlight)> {
        self.slots.iter().filter_map(|(tag, slot)| slot.as_ref().map(|f| (*tag, f)))
    }

    pub fn values(&self) -> impl Iterator<Item = &InFlight> {
        self.slots.iter().filter_map(|(_, slot)| slot.as_ref())
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut InFlight> {
        self.slots.iter_mut().filter_map(|(_, slot)| slot.as_mut())
    }

    /// The live deliveries whose tags lie in `tags`, in tag order.
    pub fn range(&self, tags: RangeInclusive<u64>) -> impl Iterator<Item = (u64, &InFlight)> {
        let start = self.slots.partition_point(|(tag, _)| tag < tags.start());
        self.slots
            .range(start..)
            .take_while(move |(tag, _)| tag <= tags.end())
            .filter_map(|(tag, slot)| slot.as_ref().map(|f| (*tag, f)))
    }

    pub fn range_mut(
        &mut self,
        tags: RangeInclusive<u64>,
    ) -> impl Iterator<Item = (u64, &mut InFlight)> {
        let start = self.slots.partition_point(|(tag, _)| tag < tags.start());
        self.slots
            .range_mut(start..)
            .take_while(move |(tag, _)| tag <= tags.end())
            .filter_map(|(tag, slot)| slot.as_mut().map(|f| (*tag, f)))
    }

    /// Every live delivery, newest first, leaving the table empty.
    pub fn drain_newest_first(&mut self) -> impl Iterator<Item = (u64, InFlight)> {
        self.live = 0;
        std::mem::take(&mut self.slots)
            .into_iter()
            .rev()
            .filter_map(|(tag, slot)| slot.map(|f| (tag, f)))
    }

    fn position(&self, tag: u64) -> Option<usize> {
        let at = self.slots.partition_point(|(t, _)| *t < tag);
        (self.slots.get(at)?.0 == tag).then_some(at)
    }

    fn sweep(&mut self) {
        while matches!(self.slots.front(), Some((_, None))) {
            self.slots.pop_front();
        }
        while matches!(self.slots.back(), Some((_, None))) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.live + SETTLED_SLACK {
            self.slots.retain(|(_, slot)| slot.is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ids::{MessageSeq, QueueId};
    use crate::queue::{Message, SegmentRef};
    use crate::time::Instant;

    fn in_flight(tag: u64) -> InFlight {
        let message = Message {
            seq: MessageSeq(tag),
            payload: Bytes::new(),
            published_unix_ms: 0,
            attempts: 1,
            priority: 0,
            expires_at: Instant::NEVER,
            segment: SegmentRef::NONE,
            extras: None,
        };
        InFlight { queue: QueueId(1), subscription: 1, message, lease_deadline: Instant::ZERO }
    }

    fn tags<'a>(entries: impl Iterator<Item = (u64, &'a InFlight)>) -> Vec<u64> {
        entries
            .map(|(tag, f)| {
                assert_eq!(f.message.seq.0, tag, "each tag keeps its own delivery");
                tag
            })
            .collect()
    }

    /// Settling out of order finds each delivery by its tag, once.
    #[test]
    fn finds_and_removes_by_tag_in_any_order() {
        let mut table = InFlightTable::default();
        for tag in [1, 2, 3, 5, 8] {
            table.insert(tag, in_flight(tag));
        }
        assert_eq!(table.remove(3).map(|f| f.message.seq.0), Some(3));
        assert!(table.remove(3).is_none(), "settled already");
        assert!(table.remove(4).is_none(), "never delivered");
        assert!(table.get(9).is_none() && table.get(0).is_none());
        assert_eq!(tags(table.range(2..=6)), [2, 5]);
        assert_eq!(tags(table.iter()), [1, 2, 5, 8]);
        for f in table.range_mut(5..=100).map(|(_, f)| f) {
            f.lease_deadline = Instant::from_nanos(7);
        }
        assert_eq!(
            table.values().filter(|f| f.lease_deadline == Instant::from_nanos(7)).count(),
            2
        );
        let drained: Vec<u64> = table.drain_newest_first().map(|(tag, _)| tag).collect();
        assert_eq!(drained, [8, 5, 2, 1]);
        assert!(table.iter().next().is_none());
        table.insert(9, in_flight(9));
        assert_eq!(tags(table.iter()), [9]);
    }

    /// One delivery held for a long time while many after it are settled: the settled slots
    /// are swept, so the table does not grow with the traffic behind the held one.
    #[test]
    fn a_held_delivery_does_not_pin_the_settled_ones() {
        let mut table = InFlightTable::default();
        table.insert(1, in_flight(1));
        // Rounds of ten deliveries; each round settles the round before it, so live ones sit
        // at both ends with settled ones between.
        let round = |r: u64| 2 + 10 * r..2 + 10 * (r + 1);
        for r in 0..10_000 {
            for tag in round(r) {
                table.insert(tag, in_flight(tag));
            }
            if r > 0 {
                for tag in round(r - 1) {
                    assert!(table.remove(tag).is_some());
                }
            }
        }
        let slots = table.slots.len();
        assert!(slots <= 2 * table.live + SETTLED_SLACK, "{slots} slots");
        let held: Vec<u64> = std::iter::once(1).chain(round(9_999)).collect();
        assert_eq!(tags(table.iter()), held);
        assert!(table.get(1).is_some());
    }
}
