//! A connection's outbound bytes, held back until the log is durable enough to send them.
//!
//! A confirm may leave only once its publish is synced; a delivery (on queues that count
//! attempts exactly) only once its `Delivered` record is. Frames keep their order: once one
//! frame is held back, every frame encoded after it waits behind it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::ids::Lsn;
pub(crate) use crate::storage::gate::Gate;

#[derive(Debug)]
struct Held {
    gate: Gate,
    bytes: Bytes,
    confirms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// Bytes that may be sent now.
    ready: BytesMut,
    /// Frames being encoded, all under `open_gate`.
    open: BytesMut,
    open_gate: Gate,
    open_confirms: u64,
    held: VecDeque<Held>,
    /// Handed to the driver in `Send` but not yet reported `Flushed`.
    pub unflushed_bytes: u64,
    /// Deliveries chosen in the current dispatch pass and not yet encoded.
    pub chosen_bytes: u64,
    /// Publishes accepted whose confirms the log does not yet allow to leave.
    pub unconfirmed: u64,
}

impl Outbound {
    /// Frames encoded from now on wait for at least `gate`.
    pub fn raise_gate(&mut self, gate: Gate) {
        let raised = self.open_gate.max(gate);
        if raised == self.open_gate {
            return;
        }
        if !self.open.is_empty() {
            let bytes = self.open.split().freeze();
            let confirms = std::mem::take(&mut self.open_confirms);
            self.held.push_back(Held { gate: self.open_gate, bytes, confirms });
        }
        assert_eq!(self.open_confirms, 0, "confirms left behind the gate they were encoded under");
        self.open_gate = raised;
    }

    /// The buffer frames are encoded into.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.open
    }

    /// Publishes accepted and not yet confirmed to the client: they count against the
    /// unconfirmed window from acceptance until their `Confirm` may leave.
    pub fn accept_unconfirmed(&mut self) {
        self.unconfirmed += 1;
    }

    /// The frames just encoded confirm `count` publishes.
    pub fn add_confirms(&mut self, count: u64) {
        assert!(!self.open.is_empty(), "confirms counted without a frame that carries them");
        self.open_confirms += count;
    }

    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.open.is_empty() && self.held.is_empty()
    }

    /// Whether bytes are waiting for the log.
    pub fn is_waiting(&self) -> bool {
        !self.held.is_empty() || !self.open.is_empty()
    }

    /// Bytes queued for this connection's socket, wherever they are.
    pub fn backlog(&self) -> u64 {
        let held: usize = self.held.iter().map(|h| h.bytes.len()).sum();
        let queued = self.ready.len() + self.open.len() + held;
        self.unflushed_bytes + queued as u64 + self.chosen_bytes
    }

    /// Moves everything whose gate the log has passed to `ready`, in order.
    pub fn release(&mut self, written_lsn: Lsn, synced_lsn: Lsn) {
        while let Some(front) = self.held.front() {
            if !front.gate.is_open(written_lsn, synced_lsn) {
                return;
            }
            let held = self.held.pop_front().expect("front exists");
            debug_assert!(!held.bytes.is_empty(), "an empty frame run held back");
            self.release_confirms(held.confirms);
            self.ready.extend_from_slice(&held.bytes);
        }
        if self.open_gate.is_open(written_lsn, synced_lsn) && !self.open.is_empty() {
            let confirms = std::mem::take(&mut self.open_confirms);
            self.release_confirms(confirms);
            if self.ready.is_empty() {
                self.ready = self.open.split();
            } else {
                self.ready.extend_from_slice(&self.open.split());
            }
        }
    }

    fn release_confirms(&mut self, confirms: u64) {
        assert!(confirms <= self.unconfirmed, "released more confirms than were counted");
        self.unconfirmed -= confirms;
    }

    /// Everything that may be sent now.
    pub fn take_ready(&mut self) -> Option<Bytes> {
        if self.ready.is_empty() {
            return None;
        }
        let bytes = self.ready.split().freeze();
        self.unflushed_bytes += bytes.len() as u64;
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(outbound: &mut Outbound, bytes: &[u8]) {
        outbound.buffer().extend_from_slice(bytes);
    }

    /// Bytes behind a gate wait for it, and so does everything encoded after them.
    #[test]
    fn held_bytes_keep_their_order() {
        let mut outbound = Outbound::default();
        encode(&mut outbound, b"a");
        outbound.raise_gate(Gate::synced(Lsn(10)));
        encode(&mut outbound, b"confirm");
        for _ in 0..3 {
            outbound.accept_unconfirmed();
        }
        outbound.add_confirms(3);
        encode(&mut outbound, b"b");
        outbound.release(Lsn(0), Lsn(0));
        assert_eq!(outbound.take_ready().as_deref(), Some(&b"a"[..]));
        outbound.release(Lsn(100), Lsn(9));
        assert_eq!(outbound.take_ready(), None, "written is not synced");
        assert_eq!(outbound.unconfirmed, 3);
        outbound.release(Lsn(10), Lsn(10));
        assert_eq!(outbound.take_ready().as_deref(), Some(&b"confirmb"[..]));
        assert_eq!(outbound.unconfirmed, 0);
        assert!(outbound.is_empty());
    }

    /// A written-gate opens on a write; a synced position implies written.
    #[test]
    fn written_gates() {
        let mut outbound = Outbound::default();
        outbound.raise_gate(Gate::written(Lsn(5)));
        encode(&mut outbound, b"x");
        outbound.release(Lsn(4), Lsn(0));
        assert_eq!(outbound.take_ready(), None);
        outbound.release(Lsn(0), Lsn(5));
        assert_eq!(outbound.take_ready().as_deref(), Some(&b"x"[..]));
    }
}
