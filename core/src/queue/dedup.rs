//! The deduplication window: message ids seen on a queue, each remembered until its window
//! closes. Bounded: past `entries_max`, the oldest ids are forgotten early (counted).

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Instant;

#[derive(Debug, Default)]
pub struct Dedup {
    expires: BTreeMap<String, Instant>,
    by_expiry: BTreeSet<(Instant, String)>,
    /// Ids forgotten before their window closed because the window was full.
    pub evicted: u64,
}

impl Dedup {
    /// Whether `id` was seen within its window.
    pub fn contains(&self, id: &str, now: Instant) -> bool {
        self.expires.get(id).is_some_and(|at| *at > now)
    }

    /// Remembers `id` until `expires`.
    pub fn insert(&mut self, id: &str, expires: Instant, entries_max: usize) {
        if let Some(previous) = self.expires.insert(id.to_string(), expires) {
            self.by_expiry.remove(&(previous, id.to_string()));
        }
        self.by_expiry.insert((expires, id.to_string()));
        while self.expires.len() > entries_max {
            let Some((_, oldest)) = self.by_expiry.pop_first() else { break };
            self.expires.remove(&oldest);
            self.evicted += 1;
        }
    }

    /// Forgets ids whose window closed.
    pub fn expire(&mut self, now: Instant) {
        while self.by_expiry.first().is_some_and(|(at, _)| *at <= now) {
            let (_, id) = self.by_expiry.pop_first().expect("first exists");
            self.expires.remove(&id);
        }
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|(at, _)| *at)
    }

    /// Every remembered id and when its window closes, for checkpoints.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Instant)> {
        self.expires.iter().map(|(id, at)| (id.as_str(), *at))
    }
}
