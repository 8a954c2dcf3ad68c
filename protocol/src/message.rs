//! Messages as they travel: published, delivered, and dead-lettered.
//!
//! Payload-bearing types are generic over the byte container `P`. The decoder reads them with
//! `P = &[u8]` borrowed from the frame body and turns each slice into a `bytes::Bytes` that
//! shares the body's allocation, so a payload is never copied between the socket and the queue.
//!
//! The enums' serde names (`max-attempts`, `nack`) are what JSON shows; postcard encodes a
//! variant by its index, so they are not part of the wire format.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// An application header: a name and an opaque value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct Header<P = Bytes> {
    pub name: String,
    #[serde(serialize_with = "crate::bounded::bytes")]
    pub value: P,
}

/// When a published message first becomes deliverable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// This many milliseconds after the broker accepts it.
    DelayMs(u64),
    /// At this wall-clock time, in milliseconds since the Unix epoch.
    AtUnixMs(u64),
}

/// One message of a `Publish` batch. Its publish sequence number is implicit: the connection's
/// counter, starting at 1 and advancing by one per message across all `Publish` frames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct PublishMessage<P = Bytes> {
    /// Application message id; the deduplication key when the queue has a dedup window.
    pub id: Option<String>,
    #[serde(deserialize_with = "crate::bounded::headers")]
    pub headers: Vec<Header<P>>,
    #[serde(serialize_with = "crate::bounded::bytes")]
    pub payload: P,
    pub schedule: Option<Schedule>,
    /// Overrides the queue's TTL for this message.
    pub ttl_ms: Option<u64>,
    /// 0 (lowest, the default) to 9.
    pub priority: u8,
    /// Messages with the same group key are delivered one at a time, in order.
    pub group: Option<String>,
}

impl<P> PublishMessage<P> {
    /// A message with just a payload and every attribute at its default.
    pub fn new(payload: P) -> Self {
        PublishMessage {
            id: None,
            headers: Vec::new(),
            payload,
            schedule: None,
            ttl_ms: None,
            priority: 0,
            group: None,
        }
    }
}

/// One message of a `Deliver` batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct Delivery<P = Bytes> {
    /// Per-connection delivery tag, strictly increasing; acks and nacks name it.
    pub tag: u64,
    /// 1 on the first delivery, counting every failed attempt before this one.
    pub attempt: u32,
    /// True when this message was delivered before (to any consumer).
    pub redelivered: bool,
    pub id: Option<String>,
    #[serde(deserialize_with = "crate::bounded::headers")]
    pub headers: Vec<Header<P>>,
    #[serde(serialize_with = "crate::bounded::bytes")]
    pub payload: P,
    /// Wall-clock time the broker accepted the message, ms since the Unix epoch.
    pub published_unix_ms: u64,
    pub priority: u8,
    pub group: Option<String>,
    /// The topic the message was published to, when it was routed through a binding.
    pub topic: Option<String>,
}

/// How one delivery attempt ended, when it did not end in an ack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptOutcome {
    Nack,
    /// The lease ran out.
    Timeout,
    /// The consumer's connection closed with the delivery outstanding.
    Disconnect,
    Reject,
}

/// One failed attempt in a message's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at_unix_ms: u64,
    pub outcome: AttemptOutcome,
    /// The consumer's reason text, if it gave one.
    pub reason: Option<String>,
}

/// Why a message was dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadReason {
    MaxAttempts,
    Rejected,
    Expired,
    Overflow,
}

/// A dead letter without its payload, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterSummary {
    /// Broker-assigned id, stable across restarts; `DlqInspect` and `DlqRedrive` name it.
    pub dead_id: u64,
    pub message_id: Option<String>,
    /// The queue the message was dead-lettered from.
    pub source_queue: String,
    pub reason: DeadReason,
    pub dead_unix_ms: u64,
    pub published_unix_ms: u64,
    pub payload_len: u32,
    #[serde(deserialize_with = "crate::bounded::history")]
    pub history: Vec<AttemptRecord>,
}

/// A dead letter with its headers and payload, as inspected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct DeadLetter<P = Bytes> {
    pub summary: DeadLetterSummary,
    #[serde(deserialize_with = "crate::bounded::headers")]
    pub headers: Vec<Header<P>>,
    #[serde(serialize_with = "crate::bounded::bytes")]
    pub payload: P,
}

/// Converts a value decoded with borrowed byte slices into one holding `Bytes` that share the
/// frame body's allocation.
pub(crate) trait ShareBytes {
    type Shared;
    fn share(self, body: &Bytes) -> Self::Shared;
}

impl ShareBytes for &[u8] {
    type Shared = Bytes;
    fn share(self, body: &Bytes) -> Bytes {
        body.slice_ref(self)
    }
}

impl<T: ShareBytes> ShareBytes for Vec<T> {
    type Shared = Vec<T::Shared>;
    fn share(self, body: &Bytes) -> Vec<T::Shared> {
        self.into_iter().map(|item| item.share(body)).collect()
    }
}

impl ShareBytes for Header<&[u8]> {
    type Shared = Header;
    fn share(self, body: &Bytes) -> Header {
        Header { name: self.name, value: self.value.share(body) }
    }
}

impl ShareBytes for PublishMessage<&[u8]> {
    type Shared = PublishMessage;
    fn share(self, body: &Bytes) -> PublishMessage {
        PublishMessage {
            id: self.id,
            headers: self.headers.share(body),
            payload: self.payload.share(body),
            schedule: self.schedule,
            ttl_ms: self.ttl_ms,
            priority: self.priority,
            group: self.group,
        }
    }
}

impl ShareBytes for Delivery<&[u8]> {
    type Shared = Delivery;
    fn share(self, body: &Bytes) -> Delivery {
        Delivery {
            tag: self.tag,
            attempt: self.attempt,
            redelivered: self.redelivered,
            id: self.id,
            headers: self.headers.share(body),
            payload: self.payload.share(body),
            published_unix_ms: self.published_unix_ms,
            priority: self.priority,
            group: self.group,
            topic: self.topic,
        }
    }
}

impl ShareBytes for DeadLetter<&[u8]> {
    type Shared = DeadLetter;
    fn share(self, body: &Bytes) -> DeadLetter {
        DeadLetter {
            summary: self.summary,
            headers: self.headers.share(body),
            payload: self.payload.share(body),
        }
    }
}
