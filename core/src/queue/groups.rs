//! Message groups: messages with the same group key are delivered one at a time, in order.
//!
//! A group is held by one message from its first delivery until it is settled for good
//! (acked, dead-lettered, expired, dropped): retries keep the hold, so the next message of the
//! group never overtakes one that failed. Messages of a held group that reach the front of the
//! queue wait here, in order.

use std::collections::{BTreeMap, VecDeque};

use super::Message;

#[derive(Debug, Default)]
struct Group {
    /// Sequence number of the message holding the group.
    holder: Option<u64>,
    waiting: VecDeque<Message>,
}

#[derive(Debug, Default)]
pub struct Groups {
    groups: BTreeMap<String, Group>,
    waiting_len: usize,
}

impl Groups {
    /// Messages waiting for their group.
    pub fn waiting_len(&self) -> usize {
        self.waiting_len
    }

    /// A message about to be delivered: returned if its group lets it through (and the group is
    /// now held by it), kept waiting otherwise.
    pub fn admit(&mut self, message: Message) -> Option<Message> {
        let Some(key) = message.group() else { return Some(message) };
        let group = self.groups.entry(key.to_string()).or_default();
        match group.holder {
            Some(holder) if holder != message.seq.0 => {
                group.waiting.push_back(message);
                self.waiting_len += 1;
                None
            }
            _ => {
                group.holder = Some(message.seq.0);
                Some(message)
            }
        }
    }

    /// The message holding its group is gone for good; returns the group's next message, which
    /// belongs at the front of the ready queue.
    pub fn release(&mut self, message: &Message) -> Option<Message> {
        let key = message.group()?;
        let group = self.groups.get_mut(key)?;
        if group.holder != Some(message.seq.0) {
            return None;
        }
        group.holder = None;
        let next = group.waiting.pop_front();
        if next.is_some() {
            self.waiting_len -= 1;
        }
        if group.waiting.is_empty() && next.is_none() {
            self.groups.remove(key);
        }
        next
    }

    /// Removes and returns the waiting messages for which `take` is true.
    pub fn extract(&mut self, mut take: impl FnMut(&Message) -> bool) -> Vec<Message> {
        let mut taken = Vec::new();
        for group in self.groups.values_mut() {
            if group.waiting.iter().any(&mut take) {
                let (out, kept): (Vec<Message>, Vec<Message>) =
                    group.waiting.drain(..).partition(|m| take(m));
                taken.extend(out);
                group.waiting.extend(kept);
            }
        }
        self.waiting_len -= taken.len();
        self.groups.retain(|_, g| g.holder.is_some() || !g.waiting.is_empty());
        taken
    }

    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.groups.values().flat_map(|g| g.waiting.iter())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Message> {
        self.groups.values_mut().flat_map(|g| g.waiting.iter_mut())
    }
}
