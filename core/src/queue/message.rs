//! A message as the broker holds it. Rare attributes live behind one box so that the common
//! message (payload, no id, no headers, no history) stays small: memory per queued message is
//! what decides how many a broker can hold.

use bytes::Bytes;
use chute_protocol::{AttemptRecord, DeadReason, Delivery, Header, ATTEMPT_HISTORY_MAX};

use crate::ids::{MessageSeq, QueueId};
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub seq: MessageSeq,
    pub payload: Bytes,
    pub published_unix_ms: u64,
    /// Deliveries made so far; the next delivery is attempt `attempts + 1`.
    pub attempts: u32,
    pub priority: u8,
    /// When its time to live runs out (`Instant::NEVER` without a TTL).
    pub expires_at: Instant,
    /// The log segment holding its record; `None` on queues that are not logged.
    pub segment: Option<u64>,
    pub extras: Option<Box<MessageExtras>>,
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
        self.payload.len() as u64
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

    /// The wire form of this message's delivery under `tag`.
    pub fn to_delivery(&self, tag: u64) -> Delivery {
        let extras = self.extras.as_deref();
        Delivery {
            tag,
            attempt: self.attempts,
            redelivered: self.attempts > 1,
            id: extras.and_then(|e| e.id.clone()),
            headers: extras.map(|e| e.headers.clone()).unwrap_or_default(),
            payload: self.payload.clone(),
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
        self.payload.len() + extras + 48
    }
}
