//! Messages not yet due: delayed publishes and retries waiting out their backoff, ordered by
//! when they become ready.

use std::collections::BTreeMap;

use super::Message;
use crate::time::Instant;

#[derive(Debug, Default)]
pub struct Delayed {
    by_due: BTreeMap<(Instant, u64), Message>,
}

impl Delayed {
    pub fn len(&self) -> usize {
        self.by_due.len()
    }

    pub fn insert(&mut self, due: Instant, message: Message) {
        self.by_due.insert((due, message.seq.0), message);
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.by_due.first_key_value().map(|((due, _), _)| *due)
    }

    /// The next message due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Message> {
        if self.next_due()? > now {
            return None;
        }
        self.by_due.pop_first().map(|(_, message)| message)
    }

    /// Removes and returns the messages for which `take` is true.
    pub fn extract(&mut self, mut take: impl FnMut(&Message) -> bool) -> Vec<Message> {
        let keys: Vec<(Instant, u64)> =
            self.by_due.iter().filter(|(_, m)| take(m)).map(|(key, _)| *key).collect();
        keys.iter().filter_map(|key| self.by_due.remove(key)).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.by_due.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Message> {
        self.by_due.values_mut()
    }
}
