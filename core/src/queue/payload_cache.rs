//! A queue's payloads on their way back from the log: which messages a read in flight will
//! bring, and the payloads read back that wait for their message to reach the front of the
//! line (docs/STORAGE.md §17). Bounded by the reads a queue may have in flight.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

/// A payload to read back: its message's seq, where its record is, and its length.
pub type Wanted = (u64, crate::queue::RecordAt, u64);

#[derive(Debug, Default)]
pub struct Fetches {
    /// Messages whose payload a read in flight will bring.
    requested: BTreeSet<u64>,
    /// Payloads read back, by message, not yet delivered.
    arrived: BTreeMap<u64, Bytes>,
    /// Reads in flight for this queue.
    pub reads_in_flight: u32,
}

impl Fetches {
    pub fn is_requested(&self, seq: u64) -> bool {
        self.requested.contains(&seq)
    }

    /// Whether the message's payload is asked for or already back.
    pub fn is_fetching(&self, seq: u64) -> bool {
        self.requested.contains(&seq) || self.arrived.contains_key(&seq)
    }

    pub fn request(&mut self, seq: u64) {
        let fresh = self.requested.insert(seq);
        debug_assert!(fresh && !self.arrived.contains_key(&seq), "message {seq} read twice");
    }

    /// A payload came back. Kept only while its message is still in the queue (still
    /// requested): a message that left meanwhile has nobody to take it.
    pub fn arrive(&mut self, seq: u64, payload: Bytes) {
        if self.requested.remove(&seq) {
            self.arrived.insert(seq, payload);
        }
    }

    /// The payload read back for a message reaching the front, if it is back.
    pub fn take_arrived(&mut self, seq: u64) -> Option<Bytes> {
        self.arrived.remove(&seq)
    }

    /// The message left the queue: a read in flight for it is stale, a payload back for it
    /// is dropped.
    pub fn forget(&mut self, seq: u64) {
        self.requested.remove(&seq);
        self.arrived.remove(&seq);
    }

    /// Payload bytes read back and waiting for delivery.
    pub fn arrived_bytes(&self) -> u64 {
        self.arrived.values().map(|p| p.len() as u64).sum()
    }
}
