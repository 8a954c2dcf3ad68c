//! A message as the broker holds it. Rare attributes live behind one box so that the common
//! message (payload, no id, no headers, no history) stays small: memory per queued message is
//! what decides how many a broker can hold.

use std::num::NonZeroU64;

use bytes::{Bytes, BytesMut};
use chute_protocol::{
    AttemptRecord, DeadReason, Delivery, Header, PublishMessage, ATTEMPT_HISTORY_MAX,
};

use crate::ids::{Lsn, MessageSeq, QueueId};
pub use crate::storage::read::RecordAt;
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub seq: MessageSeq,
    pub payload: Payload,
    pub published_unix_ms: u64,
    /// Deliveries made so far; the next delivery is attempt `attempts + 1`.
    pub attempts: u32,
    pub priority: u8,
    /// When its time to live runs out (`Instant::NEVER` without a TTL).
    pub expires_at: Instant,
    /// The log segment holding its record; none on queues that are not logged.
    pub segment: SegmentRef,
    /// Where in that segment its record is, to read the payload back once it left memory.
    pub record: RecordAt,
    pub extras: Option<Box<MessageExtras>>,
    /// Its state is what its latest `Published` record holds (it was published, copied
    /// forward or recovered as that record says, and not delivered, failed, dead-lettered or
    /// redriven since), so decoding the record gives the message back: it may go cold
    /// (`cold.rs`). A due time that passed is the one difference allowed: cold messages are
    /// ready.
    pub matches_record: bool,
}

/// A message's payload: in memory, or only in its log record (evicted by the payload cache,
/// docs/STORAGE.md §17), with its length kept for the queue's byte counts. 32 bytes, as a
/// `Bytes` alone: the second variant fits beside the first's non-null pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Held(Bytes),
    OnDisk { len: u32 },
}

impl Payload {
    pub fn len(&self) -> u64 {
        match self {
            Payload::Held(bytes) => bytes.len() as u64,
            Payload::OnDisk { len } => u64::from(*len),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn held(&self) -> Option<&Bytes> {
        match self {
            Payload::Held(bytes) => Some(bytes),
            Payload::OnDisk { .. } => None,
        }
    }

    pub fn is_held(&self) -> bool {
        matches!(self, Payload::Held(_))
    }

    /// The bytes of a payload the caller knows is held (delivering, logging).
    ///
    /// # Panics
    ///
    /// If it is on disk: the broker reads a payload back before it needs its bytes.
    pub fn bytes(&self) -> &Bytes {
        self.held().expect("a payload needed in memory was on disk")
    }
}

/// A recovered message's own copy of its payload, in an allocation of exactly its size.
///
/// Payloads arrive as slices of a connection's read buffer (or, in recovery, of a whole
/// segment file), and a slice keeps its whole buffer alive. Kept as such, one long-queued
/// message would pin a 64 MiB segment, and the tails of read buffers that frames straddled
/// were 15-30 % of the memory of a million queued 256-byte messages, varying from run to run
/// with how reads fell. See [`own_payloads`] for published ones.
pub fn own_payload(payload: &Bytes) -> Bytes {
    Bytes::copy_from_slice(payload)
}

/// Gives a publish batch's payloads one allocation of exactly their total size, each message
/// a slice of it: one memcpy and one allocation per frame rather than per message, and what a
/// queued message keeps alive is at most its own batch, published together and consumed in
/// order (not a read buffer shared with other frames and their tails).
pub fn own_payloads(messages: &mut [PublishMessage]) {
    let total = messages.iter().map(|m| m.payload.len()).sum();
    let mut buffer = BytesMut::with_capacity(total);
    for message in messages.iter() {
        buffer.extend_from_slice(&message.payload);
    }
    let mut buffer = buffer.freeze();
    for message in messages.iter_mut() {
        let len = message.payload.len();
        message.payload = buffer.split_to(len);
    }
}

/// The base LSN of the log segment holding a message's record, if it is logged, in 8 bytes
/// where an `Option<u64>` takes 16: a million queued messages are 8 MB smaller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentRef(Option<NonZeroU64>);

impl SegmentRef {
    /// Not logged.
    pub const NONE: SegmentRef = SegmentRef(None);

    /// The segment starting at `base_lsn`. (`u64::MAX`, which would read as none, is not a
    /// segment base: a log reaches it after 16 EiB.)
    pub fn new(base_lsn: Lsn) -> SegmentRef {
        SegmentRef(NonZeroU64::new(base_lsn.0.wrapping_add(1)))
    }

    pub fn get(self) -> Option<Lsn> {
        self.0.map(|stored| Lsn(stored.get() - 1))
    }

    pub fn is_some(self) -> bool {
        self.0.is_some()
    }

    pub fn is_none(self) -> bool {
        self.0.is_none()
    }
}

/// Why and when a message became a dead letter, and where from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadInfo {
    pub source: QueueId,
    pub reason: DeadReason,
    pub dead_unix_ms: u64,
}

/// Attributes most messages do not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageExtras {
    pub id: Option<String>,
    pub headers: Vec<Header>,
    pub group: Option<String>,
    pub topic: Option<String>,
    /// Failed attempts, oldest first; only the most recent `ATTEMPT_HISTORY_MAX` are kept.
    pub history: Vec<AttemptRecord>,
    pub dead: Option<DeadInfo>,
    /// Not deliverable before this wall-clock time (a delayed publish or a retry backoff).
    pub not_before_unix_ms: Option<u64>,
}

impl MessageExtras {
    fn is_empty(&self) -> bool {
        self.id.is_none()
            && self.headers.is_empty()
            && self.group.is_none()
            && self.topic.is_none()
            && self.history.is_empty()
            && self.dead.is_none()
            && self.not_before_unix_ms.is_none()
    }

    /// `None` when every attribute is absent, so plain messages carry no box.
    pub fn boxed_if_any(self) -> Option<Box<MessageExtras>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

impl Message {
    pub fn payload_len(&self) -> u64 {
        self.payload.len()
    }

    /// Its payload leaves memory (its record is durable): only the length stays.
    pub fn evict_payload(&mut self) {
        debug_assert!(
            self.record.is_known() && self.segment.is_some(),
            "evicting an unlogged payload"
        );
        let len = u32::try_from(self.payload.len()).expect("payloads are far below 4 GiB");
        self.payload = Payload::OnDisk { len };
    }

    pub fn group(&self) -> Option<&str> {
        self.extras.as_deref()?.group.as_deref()
    }

    pub fn id(&self) -> Option<&str> {
        self.extras.as_deref()?.id.as_deref()
    }

    pub fn dead(&self) -> Option<&DeadInfo> {
        self.extras.as_deref()?.dead.as_ref()
    }

    pub fn history(&self) -> &[AttemptRecord] {
        self.extras.as_deref().map_or(&[], |e| &e.history)
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at <= now
    }

    /// Edits the rare attributes, boxing them on first use and unboxing when all are gone.
    pub fn edit_extras(&mut self, edit: impl FnOnce(&mut MessageExtras)) {
        let mut extras = self.extras.take().map(|e| *e).unwrap_or_default();
        edit(&mut extras);
        self.extras = extras.boxed_if_any();
    }

    /// Adds a failed attempt to the history, forgetting the oldest beyond the limit.
    pub fn record_attempt(&mut self, record: AttemptRecord) {
        self.edit_extras(|extras| {
            if extras.history.len() == ATTEMPT_HISTORY_MAX {
                extras.history.remove(0);
            }
            extras.history.push(record);
        });
    }

    /// Whether a delivery now (attempt `attempts`) is not the message's first: an earlier
    /// attempt in this queue, or any failed attempt in the history, which survives
    /// dead-lettering and redrive.
    pub fn was_delivered_before(&self) -> bool {
        self.attempts > 1 || !self.history().is_empty()
    }

    /// The wire form of this message's delivery under `tag`.
    pub fn to_delivery(&self, tag: u64) -> Delivery {
        let extras = self.extras.as_deref();
        Delivery {
            tag,
            attempt: self.attempts,
            redelivered: self.was_delivered_before(),
            id: extras.and_then(|e| e.id.clone()),
            headers: extras.map(|e| e.headers.clone()).unwrap_or_default(),
            payload: self.payload.bytes().clone(),
            published_unix_ms: self.published_unix_ms,
            priority: self.priority,
            group: extras.and_then(|e| e.group.clone()),
            topic: extras.and_then(|e| e.topic.clone()),
        }
    }

    /// Bytes a delivery of this message adds to a `Deliver` frame, over-estimated so that
    /// batches never exceed the frame limit.
    pub fn delivery_size_estimate(&self) -> usize {
        let extras = self.extras.as_deref().map_or(0, |e| {
            let headers: usize = e.headers.iter().map(|h| h.name.len() + h.value.len() + 10).sum();
            headers
                + e.id.as_ref().map_or(0, |s| s.len() + 5)
                + e.group.as_ref().map_or(0, |s| s.len() + 5)
                + e.topic.as_ref().map_or(0, |s| s.len() + 5)
        });
        self.payload.len() as usize + extras + 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per queued message is what limits how many a broker holds: the common message
    /// (no id, headers or history) takes 88 bytes besides its payload (80 before it kept where
    /// its record is, so that the payload can leave memory), and a slot of the ready line, a
    /// message or a cold run, no more.
    #[test]
    fn a_plain_message_is_eighty_eight_bytes() {
        assert_eq!(std::mem::size_of::<Payload>(), 32);
        assert_eq!(std::mem::size_of::<Message>(), 88);
        assert_eq!(std::mem::size_of::<super::super::ready::Slot>(), 88);
        let segment = SegmentRef::new(Lsn(0));
        assert_eq!((segment.get(), SegmentRef::NONE.get()), (Some(Lsn(0)), None));
        assert_eq!(SegmentRef::new(Lsn(1 << 40)).get(), Some(Lsn(1 << 40)));
    }
}
