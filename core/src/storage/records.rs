//! The log's record types and their encoding (postcard bodies inside the framing of
//! [`super::format`]). Every change to the broker's durable state is one of these.

use bytes::{Bytes, BytesMut};
use chute_protocol::{Header, QueueOptions, Range};
use serde::{Deserialize, Serialize};

use super::format::append_record_with;

/// A message as the log stores it. Payload-bearing, so generic over the byte container like
/// the protocol's types: recovery decodes with `&[u8]` and shares the segment's buffer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct StoredMessage<P = Bytes> {
    pub seq: u64,
    pub published_unix_ms: u64,
    /// Deliveries before this record was written (non-zero for a copy moved forward).
    pub attempts: u32,
    pub priority: u8,
    pub id: Option<String>,
    pub headers: Vec<Header<P>>,
    pub group: Option<String>,
    pub topic: Option<String>,
    #[serde(serialize_with = "serialize_bytes")]
    pub payload: P,
}

fn serialize_bytes<P: AsRef<[u8]>, S: serde::Serializer>(
    value: &P,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(value.as_ref())
}

/// Every record, with its kind byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<P = Bytes> {
    /// Id counters, so ids are never reused even after the records that used them are gone.
    /// Written at the start of every segment.
    Counters(Counters),
    QueueDeclared(QueueDeclared),
    QueueDeleted {
        queue: u64,
    },
    Published {
        queue: u64,
        message: StoredMessage<P>,
    },
    /// These messages were handed to a consumer: one more attempt each.
    Delivered {
        queue: u64,
        seqs: Vec<Range>,
    },
    Acked {
        queue: u64,
        seqs: Vec<Range>,
    },
    Purged {
        queue: u64,
        seqs: Vec<Range>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub next_queue_id: u64,
    pub next_message_seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDeclared {
    pub queue: u64,
    pub name: String,
    pub options: QueueOptions,
}

#[derive(Serialize, Deserialize)]
struct QueueRef {
    queue: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
struct PublishedBody<P> {
    queue: u64,
    message: StoredMessage<P>,
}

#[derive(Serialize, Deserialize)]
struct SeqsBody {
    queue: u64,
    seqs: Vec<Range>,
}

/// The kind byte of each record. 0 is never a record (zero-filled space is not a record).
pub mod kind {
    pub const COUNTERS: u8 = 1;
    pub const QUEUE_DECLARED: u8 = 2;
    pub const QUEUE_DELETED: u8 = 3;
    pub const PUBLISHED: u8 = 4;
    pub const DELIVERED: u8 = 5;
    pub const ACKED: u8 = 6;
    pub const PURGED: u8 = 7;
}

/// A record body that does not decode, in a record whose checksum matched: written by a
/// different format, or a bug. Recovery refuses to guess.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record of kind {kind} does not decode: {detail}")]
pub struct RecordDecodeError {
    pub kind: u8,
    pub detail: String,
}

impl<P: AsRef<[u8]>> Record<P> {
    /// Appends the framed record to `out`; returns its length in bytes.
    pub fn encode(&self, out: &mut BytesMut) -> usize {
        match self {
            Record::Counters(counters) => append(out, kind::COUNTERS, counters),
            Record::QueueDeclared(declared) => append(out, kind::QUEUE_DECLARED, declared),
            Record::QueueDeleted { queue } => {
                append(out, kind::QUEUE_DELETED, &QueueRef { queue: *queue })
            }
            Record::Published { queue, message } => append(
                out,
                kind::PUBLISHED,
                &PublishedBody { queue: *queue, message: StoredMessage::borrowed(message) },
            ),
            Record::Delivered { queue, seqs } => {
                append(out, kind::DELIVERED, &SeqsBody { queue: *queue, seqs: seqs.clone() })
            }
            Record::Acked { queue, seqs } => {
                append(out, kind::ACKED, &SeqsBody { queue: *queue, seqs: seqs.clone() })
            }
            Record::Purged { queue, seqs } => {
                append(out, kind::PURGED, &SeqsBody { queue: *queue, seqs: seqs.clone() })
            }
        }
    }
}

impl<P: AsRef<[u8]>> StoredMessage<P> {
    /// A view with `&[u8]` payloads, for encoding without cloning.
    fn borrowed(&self) -> StoredMessage<&[u8]> {
        StoredMessage {
            seq: self.seq,
            published_unix_ms: self.published_unix_ms,
            attempts: self.attempts,
            priority: self.priority,
            id: self.id.clone(),
            headers: self
                .headers
                .iter()
                .map(|h| Header { name: h.name.clone(), value: h.value.as_ref() })
                .collect(),
            group: self.group.clone(),
            topic: self.topic.clone(),
            payload: self.payload.as_ref(),
        }
    }
}

fn append<T: Serialize>(out: &mut BytesMut, kind: u8, body: &T) -> usize {
    append_record_with(out, kind, |out| {
        chute_protocol::append_postcard(body, out).expect("log record bodies always serialize");
    })
}

impl Record {
    /// Decodes a record body; payloads share `body`'s buffer.
    pub fn decode(kind: u8, body: &Bytes) -> Result<Record, RecordDecodeError> {
        Ok(match kind {
            kind::COUNTERS => Record::Counters(decode_body(kind, body)?),
            kind::QUEUE_DECLARED => Record::QueueDeclared(decode_body(kind, body)?),
            kind::QUEUE_DELETED => {
                let QueueRef { queue } = decode_body(kind, body)?;
                Record::QueueDeleted { queue }
            }
            kind::PUBLISHED => {
                let PublishedBody::<&[u8]> { queue, message } = decode_body(kind, body)?;
                Record::Published { queue, message: share(message, body) }
            }
            kind::DELIVERED | kind::ACKED | kind::PURGED => {
                let SeqsBody { queue, seqs } = decode_body(kind, body)?;
                match kind {
                    kind::DELIVERED => Record::Delivered { queue, seqs },
                    kind::ACKED => Record::Acked { queue, seqs },
                    _ => Record::Purged { queue, seqs },
                }
            }
            other => {
                let detail = format!("unknown record kind {other}");
                return Err(RecordDecodeError { kind, detail });
            }
        })
    }
}

/// Decodes a whole body; trailing bytes are an error.
fn decode_body<'a, T: Deserialize<'a>>(kind: u8, body: &'a [u8]) -> Result<T, RecordDecodeError> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => {
            Err(RecordDecodeError { kind, detail: format!("{} trailing bytes", rest.len()) })
        }
        Err(err) => Err(RecordDecodeError { kind, detail: err.to_string() }),
    }
}

fn share(message: StoredMessage<&[u8]>, body: &Bytes) -> StoredMessage {
    StoredMessage {
        seq: message.seq,
        published_unix_ms: message.published_unix_ms,
        attempts: message.attempts,
        priority: message.priority,
        id: message.id,
        headers: message
            .headers
            .into_iter()
            .map(|h| Header { name: h.name, value: body.slice_ref(h.value) })
            .collect(),
        group: message.group,
        topic: message.topic,
        payload: body.slice_ref(message.payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(record: Record) {
        let mut out = BytesMut::new();
        let len = record.encode(&mut out);
        assert_eq!(len, out.len());
        let mut segment = BytesMut::from(&super::super::format::segment_header(0)[..]);
        segment.extend_from_slice(&out);
        let scan =
            super::super::format::scan_segment(&segment.freeze(), true).expect("valid segment");
        assert_eq!(scan.records.len(), 1);
        let decoded = Record::decode(scan.records[0].kind, &scan.records[0].body).unwrap();
        assert_eq!(decoded, record);
    }

    #[test]
    fn every_record_round_trips() {
        let message = StoredMessage {
            seq: 7,
            published_unix_ms: 1_700_000_000_000,
            attempts: 2,
            priority: 3,
            id: Some("order-1".into()),
            headers: vec![Header { name: "h".into(), value: Bytes::from_static(b"v") }],
            group: Some("g".into()),
            topic: Some("orders.eu".into()),
            payload: Bytes::from_static(b"payload"),
        };
        let seqs = vec![Range { first: 1, count: 3 }];
        round_trip(Record::Counters(Counters { next_queue_id: 3, next_message_seq: 99 }));
        round_trip(Record::QueueDeclared(QueueDeclared {
            queue: 1,
            name: "q".into(),
            options: QueueOptions::default(),
        }));
        round_trip(Record::QueueDeleted { queue: 1 });
        round_trip(Record::Published { queue: 1, message });
        round_trip(Record::Delivered { queue: 1, seqs: seqs.clone() });
        round_trip(Record::Acked { queue: 1, seqs: seqs.clone() });
        round_trip(Record::Purged { queue: 1, seqs });
    }

    /// A checksum-valid record of an unknown kind is refused, not skipped.
    #[test]
    fn unknown_kind_is_an_error() {
        assert!(Record::decode(200, &Bytes::new()).is_err());
    }
}
