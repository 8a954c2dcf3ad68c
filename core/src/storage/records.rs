//! The log's record types and their encoding (postcard bodies inside the framing of
//! [`super::format`]). Every change to the broker's durable state is one of these.

use bytes::{Bytes, BytesMut};
use chute_protocol::{AttemptOutcome, AttemptRecord, DeadReason, Header, QueueOptions, Range};
use serde::{Deserialize, Serialize};

use super::format::{append_record_with, append_sealed_record_with};
use super::seal::Sealer;
use crate::ids::Lsn;

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
    pub expires_unix_ms: Option<u64>,
    pub not_before_unix_ms: Option<u64>,
    pub id: Option<String>,
    pub headers: Vec<Header<P>>,
    pub group: Option<String>,
    pub topic: Option<String>,
    pub history: Vec<AttemptRecord>,
    pub dead: Option<StoredDead>,
    #[serde(serialize_with = "serialize_bytes")]
    pub payload: P,
}

fn serialize_bytes<P: AsRef<[u8]>, S: serde::Serializer>(
    value: &P,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(value.as_ref())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDead {
    pub source: u64,
    pub reason: DeadReason,
    pub dead_unix_ms: u64,
}

/// Id counters, so ids are never reused even after the records that used them are gone.
/// Written at the start of every segment.
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRef {
    pub queue: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct Published<P = Bytes> {
    pub queue: u64,
    pub message: StoredMessage<P>,
}

/// Messages of one queue, by sequence number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seqs {
    pub queue: u64,
    pub seqs: Vec<Range>,
}

/// A failed attempt, and when the message may be tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub queue: u64,
    pub seq: u64,
    pub outcome: AttemptOutcome,
    pub reason: Option<String>,
    pub at_unix_ms: u64,
    pub retry_at_unix_ms: Option<u64>,
}

/// A message left its queue for good without being acked: into `target` (a dead-letter
/// queue) or, with no target, dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLettered {
    pub queue: u64,
    pub seq: u64,
    pub target: Option<u64>,
    pub reason: DeadReason,
    pub at_unix_ms: u64,
}

/// Dead letters moved back from the dead-letter queue `queue` to their source queues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redriven {
    pub queue: u64,
    pub seqs: Vec<Range>,
    pub at_unix_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub queue: u64,
    pub pattern: String,
}

/// A message id remembered by a queue's dedup window; written in checkpoints so the window
/// outlives the segments that published the ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    pub queue: u64,
    pub id: String,
    pub expires_unix_ms: u64,
}

/// A binding with the user who made it (`Bound` has none: written without authentication,
/// or by a version that did not record owners).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedBinding {
    pub queue: u64,
    pub pattern: String,
    pub owner: String,
}

macro_rules! records {
    ($( $kind:literal $variant:ident($body:ty) $(shared $borrowed:ty)?; )*) => {
        /// Every record. Its kind byte is fixed forever for this format version.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Record<P = Bytes> { $( $variant($body), )* }

        /// The kind byte of each record. 0 is never a record (zeroed space is not a record).
        pub mod kind { $( #[allow(non_upper_case_globals)] pub const $variant: u8 = $kind; )* }

        impl<P: AsRef<[u8]>> Record<P> {
            /// Appends the framed record to `out`; returns its length in bytes.
            pub fn encode(&self, out: &mut BytesMut) -> usize {
                match self { $( Record::$variant(body) => append(out, $kind, body), )* }
            }

            /// Appends the framed record, its body sealed under `sealer` for its log position
            /// `lsn` (a record of a sealed segment); returns its length in bytes.
            pub fn encode_sealed(&self, out: &mut BytesMut, lsn: Lsn, sealer: &Sealer) -> usize {
                match self {
                    $( Record::$variant(body) => append_sealed(out, $kind, lsn, sealer, body), )*
                }
            }
        }

        impl Record {
            /// Decodes a record body; payloads share `body`'s buffer.
            pub fn decode(kind: u8, body: &Bytes) -> Result<Record, RecordDecodeError> {
                match kind {
                    $( $kind => records!(@decode kind, body, $variant $(, $borrowed)?), )*
                    other => Err(RecordDecodeError { kind, detail: format!("unknown record kind {other}") }),
                }
            }
        }
    };
    (@decode $kind:ident, $body:ident, $variant:ident) => {
        decode_body($kind, $body).map(Record::$variant)
    };
    (@decode $kind:ident, $body:ident, $variant:ident, $borrowed:ty) => {
        decode_body::<$borrowed>($kind, $body).map(|b| Record::$variant(share(b, $body)))
    };
}

records! {
    1 Counters(Counters);
    2 QueueDeclared(QueueDeclared);
    3 QueueDeleted(QueueRef);
    4 Published(Published<P>) shared Published<&[u8]>;
    5 Delivered(Seqs);
    6 Acked(Seqs);
    7 Purged(Seqs);
    8 Failed(Failed);
    9 DeadLettered(DeadLettered);
    10 Redriven(Redriven);
    11 Bound(BindingRecord);
    12 Unbound(BindingRecord);
    13 DedupEntry(DedupEntry);
    14 BoundBy(OwnedBinding);
    // 15 is the seal marker of sealed segments (`seal::SEAL_KIND`), a kind of the framing that
    // recovery reads before any record is decoded: never a record of this list.
}

/// A record body that does not decode, in a record whose checksum matched: written by a
/// different format, or a bug. Recovery refuses to guess.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record of kind {kind} does not decode: {detail}")]
pub struct RecordDecodeError {
    pub kind: u8,
    pub detail: String,
}

fn append<T: Serialize>(out: &mut BytesMut, kind: u8, body: &T) -> usize {
    append_record_with(out, kind, |out| {
        chute_protocol::append_postcard(body, out).expect("log record bodies always serialize");
    })
}

fn append_sealed<T: Serialize>(
    out: &mut BytesMut,
    kind: u8,
    lsn: Lsn,
    sealer: &Sealer,
    body: &T,
) -> usize {
    append_sealed_record_with(out, kind, lsn, sealer, |out| {
        chute_protocol::append_postcard(body, out).expect("log record bodies always serialize");
    })
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

fn share(published: Published<&[u8]>, body: &Bytes) -> Published {
    let message = published.message;
    let headers = message
        .headers
        .into_iter()
        .map(|h| Header { name: h.name, value: body.slice_ref(h.value) });
    Published {
        queue: published.queue,
        message: StoredMessage {
            seq: message.seq,
            published_unix_ms: message.published_unix_ms,
            attempts: message.attempts,
            priority: message.priority,
            expires_unix_ms: message.expires_unix_ms,
            not_before_unix_ms: message.not_before_unix_ms,
            id: message.id,
            headers: headers.collect(),
            group: message.group,
            topic: message.topic,
            history: message.history,
            dead: message.dead,
            payload: body.slice_ref(message.payload),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(record: Record) {
        let mut out = BytesMut::new();
        let len = record.encode(&mut out);
        assert_eq!(len, out.len());
        let mut segment =
            BytesMut::from(&super::super::format::segment_header(crate::ids::Lsn(0))[..]);
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
            expires_unix_ms: Some(1_700_000_060_000),
            not_before_unix_ms: Some(1_700_000_001_000),
            id: Some("order-1".into()),
            headers: vec![Header { name: "h".into(), value: Bytes::from_static(b"v") }],
            group: Some("g".into()),
            topic: Some("orders.eu".into()),
            history: vec![AttemptRecord {
                at_unix_ms: 5,
                outcome: AttemptOutcome::Nack,
                reason: Some("busy".into()),
            }],
            dead: Some(StoredDead { source: 1, reason: DeadReason::MaxAttempts, dead_unix_ms: 9 }),
            payload: Bytes::from_static(b"payload"),
        };
        let seqs = Seqs { queue: 1, seqs: vec![Range { first: 1, count: 3 }] };
        round_trip(Record::Counters(Counters { next_queue_id: 3, next_message_seq: 99 }));
        round_trip(Record::QueueDeclared(QueueDeclared {
            queue: 1,
            name: "q".into(),
            options: QueueOptions::default(),
        }));
        round_trip(Record::QueueDeleted(QueueRef { queue: 1 }));
        round_trip(Record::Published(Published { queue: 1, message }));
        round_trip(Record::Delivered(seqs.clone()));
        round_trip(Record::Acked(seqs.clone()));
        round_trip(Record::Purged(seqs.clone()));
        round_trip(Record::Failed(Failed {
            queue: 1,
            seq: 2,
            outcome: AttemptOutcome::Timeout,
            reason: None,
            at_unix_ms: 3,
            retry_at_unix_ms: Some(4),
        }));
        round_trip(Record::DeadLettered(DeadLettered {
            queue: 1,
            seq: 2,
            target: Some(3),
            reason: DeadReason::Rejected,
            at_unix_ms: 4,
        }));
        round_trip(Record::Redriven(Redriven { queue: 2, seqs: seqs.seqs, at_unix_ms: 7 }));
        round_trip(Record::Bound(BindingRecord { queue: 1, pattern: "a.*".into() }));
        round_trip(Record::Unbound(BindingRecord { queue: 1, pattern: "a.#".into() }));
        round_trip(Record::BoundBy(OwnedBinding {
            queue: 1,
            pattern: "a.#".into(),
            owner: "alice".into(),
        }));
        round_trip(Record::DedupEntry(DedupEntry { queue: 1, id: "x".into(), expires_unix_ms: 5 }));
    }

    /// A checksum-valid record of an unknown kind is refused, not skipped.
    #[test]
    fn unknown_kind_is_an_error() {
        assert!(Record::decode(200, &Bytes::new()).is_err());
    }
}
