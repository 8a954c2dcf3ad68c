//! Messages ready for delivery: one FIFO per priority level, highest level first.

use std::collections::VecDeque;

use chute_protocol::PRIORITY_MAX;

use super::Message;

const LEVELS: usize = PRIORITY_MAX as usize + 1;

/// An eviction walk passes over at most this many messages in a row whose payload may not
/// leave yet (not durable yet, not logged, dead letters), so that its cost stays bounded.
const EVICT_SKIP_MAX: usize = 64;

#[derive(Debug, Default)]
pub struct Ready {
    levels: [VecDeque<Message>; LEVELS],
    len: usize,
}

fn level(message: &Message) -> usize {
    usize::from(message.priority.min(PRIORITY_MAX))
}

impl Ready {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A message delivered for the first time joins the back of its level.
    pub fn push_back(&mut self, message: Message) {
        self.len += 1;
        self.levels[level(&message)].push_back(message);
    }

    /// A message that was already next in line (a retry, a group's next) goes to the front.
    pub fn push_front(&mut self, message: Message) {
        self.len += 1;
        self.levels[level(&message)].push_front(message);
    }

    /// The next message to deliver: the front of the highest non-empty level.
    pub fn pop_front(&mut self) -> Option<Message> {
        let message = self.levels.iter_mut().rev().find_map(VecDeque::pop_front)?;
        self.len -= 1;
        Some(message)
    }

    /// The message `pop_front` would take.
    pub fn front_mut(&mut self) -> Option<&mut Message> {
        self.levels.iter_mut().rev().find_map(VecDeque::front_mut)
    }

    /// Evicts payloads until `bytes` are freed (or no more may go); returns the bytes freed.
    /// The messages delivered last go first: the lowest level first, each level from its back
    /// towards its head, which keeps its payload (it is delivered next). A level's walk ends at
    /// the first payload already evicted: the walk before this one got there, so what lies
    /// ahead of it was kept on purpose, and the walk costs only what arrived since.
    pub fn evict(&mut self, bytes: u64, evictable: impl Fn(&Message) -> bool) -> u64 {
        let mut freed = 0;
        for level in self.levels.iter_mut() {
            let mut skipped = 0;
            for message in level.iter_mut().skip(1).rev() {
                if freed >= bytes || skipped == EVICT_SKIP_MAX || !message.payload.is_held() {
                    break;
                }
                if !evictable(message) {
                    skipped += 1;
                    continue;
                }
                freed += message.payload_len();
                message.evict_payload();
            }
            if freed >= bytes {
                break;
            }
        }
        freed
    }

    /// The sequence number `pop_oldest` would take.
    pub fn oldest_seq(&self) -> Option<crate::ids::MessageSeq> {
        self.levels.iter().filter_map(|level| level.front().map(|m| m.seq)).min()
    }

    /// When the head of the line was published (Unix ms): the earliest among the fronts of the
    /// levels. A level is in publish order (a retry goes back to the front it left) except for
    /// messages that join at the back with an older publish time: delayed publishes when they
    /// come due, dead letters and redriven messages. For those the head may be younger than a
    /// message behind it; an exact oldest would cost an index kept on every move, and the head
    /// is what holds the line up. One peek per level: nothing on the paths that move messages.
    pub fn oldest_published_unix_ms(&self) -> Option<u64> {
        self.levels.iter().filter_map(|level| level.front().map(|m| m.published_unix_ms)).min()
    }

    /// The message published earliest among the fronts of the levels: what `drop-head`
    /// overflow removes.
    pub fn pop_oldest(&mut self) -> Option<Message> {
        let level = (0..LEVELS)
            .filter_map(|i| self.levels[i].front().map(|m| (m.seq, i)))
            .min()
            .map(|(_, i)| i)?;
        self.len -= 1;
        self.levels[level].pop_front()
    }

    /// Keeps the messages for which `keep` is true; returns the others, in delivery order.
    pub fn extract(&mut self, mut take: impl FnMut(&Message) -> bool) -> Vec<Message> {
        let mut taken = Vec::new();
        for level in self.levels.iter_mut().rev() {
            if !level.iter().any(&mut take) {
                continue;
            }
            let (out, kept): (Vec<Message>, Vec<Message>) = level.drain(..).partition(|m| take(m));
            taken.extend(out);
            level.extend(kept);
        }
        self.len -= taken.len();
        taken
    }

    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.levels.iter().rev().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Message> {
        self.levels.iter_mut().rev().flatten()
    }
}
