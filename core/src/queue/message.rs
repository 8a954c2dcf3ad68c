//! A message as the broker holds it. Rare attributes live behind one box so that the common
//! message (payload, no id, no headers) stays small: memory per queued message is what decides
//! how many a broker can hold.

use bytes::Bytes;
use chute_protocol::{Delivery, Header};

use crate::ids::MessageSeq;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub seq: MessageSeq,
    pub payload: Bytes,
    pub published_unix_ms: u64,
    /// Deliveries made so far; the next delivery is attempt `attempts + 1`.
    pub attempts: u32,
    pub priority: u8,
    /// The log segment holding its record; `None` on queues that are not logged.
    pub segment: Option<u64>,
    pub extras: Option<Box<MessageExtras>>,
}

/// Attributes most messages do not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageExtras {
    pub id: Option<String>,
    pub headers: Vec<Header>,
    pub group: Option<String>,
    pub topic: Option<String>,
}

impl MessageExtras {
    /// `None` when every attribute is absent, so plain messages carry no box.
    pub fn boxed_if_any(self) -> Option<Box<MessageExtras>> {
        let empty = self.id.is_none()
            && self.headers.is_empty()
            && self.group.is_none()
            && self.topic.is_none();
        (!empty).then(|| Box::new(self))
    }
}

impl Message {
    pub fn payload_len(&self) -> u64 {
        self.payload.len() as u64
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
