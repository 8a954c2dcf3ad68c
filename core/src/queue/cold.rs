//! Cold runs: ready messages whose payload and metadata are only in the log (docs/STORAGE.md
//! §18). A run stands for consecutive messages of one priority level whose `Published` records
//! lie in one segment in log order, each exactly as the broker holds the message; it keeps
//! where the records are and which sequence numbers they carry, not the messages. Reading the
//! records back (`Published` records are decoded the way recovery decodes them) gives the
//! messages again, so a cold queued message costs a few bits instead of its 88 bytes.

use std::collections::VecDeque;

use crate::ids::MessageSeq;

use super::{Message, SegmentRef};

/// Sequence numbers `first`, `first + step`, ... (`count` of them). Sequence numbers are shared
/// by every queue, so one queue's messages are spaced by what other queues got between them:
/// a queue published alone, or queues published in turn, take one stride per run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stride {
    first: u64,
    step: u32,
    count: u32,
}

impl Stride {
    fn last(self) -> u64 {
        self.first + u64::from(self.step) * u64::from(self.count - 1)
    }
}

/// The messages of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdRun {
    /// The segment holding their records.
    pub segment: SegmentRef,
    /// File offset of a record boundary at or before the first member's record, where the next
    /// read starts: the records of other queues and of messages no longer in the run are read
    /// and skipped.
    pub offset: u64,
    /// File offset just past the last member's record.
    pub end: u64,
    /// Payload bytes of the members.
    pub payload_bytes: u64,
    /// When the first member was published (Unix ms), as far as the run knows: the head's age
    /// when the run leads the line. Once members were read back, the publish time of the last
    /// of them (the next one's is not in memory).
    pub first_published_unix_ms: u64,
    /// A read of its first records is in flight.
    pub reading: bool,
    /// The length of the record at `offset` when a read held only its start (0 otherwise):
    /// the next read must be at least that long.
    pub next_record_len: u64,
    seqs: VecDeque<Stride>,
    count: u64,
}

impl ColdRun {
    /// A run of one message, which must be [`ColdRun::can_hold`]-able.
    pub fn new(message: &Message) -> ColdRun {
        let stride = Stride { first: message.seq.0, step: 1, count: 1 };
        ColdRun {
            segment: message.segment,
            offset: u64::from(message.record.offset),
            end: message.record.end(),
            payload_bytes: message.payload_len(),
            first_published_unix_ms: message.published_unix_ms,
            reading: false,
            next_record_len: 0,
            seqs: VecDeque::from([stride]),
            count: 1,
        }
    }

    /// Whether a message may be cold at all: its payload is on disk only, its state is the
    /// state its record holds, and nothing needs it before delivery (no TTL to check, not a
    /// dead letter to inspect).
    pub fn can_hold(message: &Message) -> bool {
        // MUTANT cold-run-holds-changed-message: a message changed since its record goes cold.
        #[cfg(feature = "mutants")]
        let matches_record = message.matches_record
            || crate::mutants::active(crate::mutants::Mutant::ColdRunHoldsChangedMessage);
        #[cfg(not(feature = "mutants"))]
        let matches_record = message.matches_record;
        matches_record
            && !message.payload.is_held()
            && message.record.is_known()
            && message.segment.is_some()
            && message.expires_at == crate::time::Instant::NEVER
            && message.dead().is_none()
    }

    /// Whether `message` may join the back of the run: cold, in the same segment, and after the
    /// last member both in the log and in sequence.
    pub fn follows(&self, message: &Message) -> bool {
        ColdRun::can_hold(message)
            && message.segment == self.segment
            && u64::from(message.record.offset) >= self.end
            && message.seq.0 > self.last_seq()
    }

    /// Adds `message` at the back (the caller checked [`ColdRun::follows`]).
    pub fn push(&mut self, message: &Message) {
        debug_assert!(self.follows(message));
        let seq = message.seq.0;
        let back = self.seqs.back_mut().expect("a run holds a message");
        let gap = seq - back.last();
        match u32::try_from(gap) {
            Ok(step) if back.count == 1 => {
                back.step = step;
                back.count = 2;
            }
            Ok(step) if step == back.step && back.count < u32::MAX => back.count += 1,
            _ => self.seqs.push_back(Stride { first: seq, step: 1, count: 1 }),
        }
        self.end = message.record.end();
        self.payload_bytes += message.payload_len();
        self.count += 1;
    }

    /// How many messages it stands for (never 0: an emptied run leaves the line).
    pub fn message_count(&self) -> u64 {
        self.count
    }

    /// The first member's sequence number.
    pub fn first_seq(&self) -> MessageSeq {
        MessageSeq(self.seqs.front().expect("a run holds a message").first)
    }

    fn last_seq(&self) -> u64 {
        self.seqs.back().expect("a run holds a message").last()
    }

    /// The first member came back from the log: it leaves the run, whose next read starts at
    /// `next_offset` (just past its record). Returns whether the run is now empty.
    pub fn pop_front(&mut self, payload_len: u64, next_offset: u64) -> bool {
        let front = self.seqs.front_mut().expect("a run holds a message");
        front.count -= 1;
        front.first += u64::from(front.step);
        if front.count == 0 {
            self.seqs.pop_front();
        }
        self.count -= 1;
        self.payload_bytes -= payload_len;
        self.offset = next_offset;
        self.seqs.is_empty()
    }

    /// Asserts what a run must be (for tests and the simulator): members in increasing
    /// sequence order, as many as it counts, each with a payload (an empty one never leaves
    /// memory), and its records between its offsets, inside the segment's `file_len` bytes.
    pub fn check(&self, file_len: u64) {
        let mut counted = 0;
        let mut last: Option<u64> = None;
        for stride in &self.seqs {
            assert!(stride.count > 0 && stride.step > 0, "an empty or flat stride {stride:?}");
            assert!(last.is_none_or(|last| stride.first > last), "strides out of order");
            last = Some(stride.last());
            counted += u64::from(stride.count);
        }
        assert!(counted > 0, "an empty cold run");
        assert_eq!(counted, self.count, "a cold run counts {} of {counted}", self.count);
        assert!(self.payload_bytes >= self.count, "cold members without payload bytes");
        assert!(self.offset < self.end, "a cold run's next read starts past its end");
        assert!(self.end <= file_len, "a cold run ends past its segment ({file_len} bytes)");
    }

    /// Every member's sequence number, in order.
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.seqs
            .iter()
            .flat_map(|s| (0..u64::from(s.count)).map(move |i| s.first + u64::from(s.step) * i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Lsn;
    use crate::queue::{Payload, RecordAt};
    use crate::time::Instant;

    fn cold(seq: u64, offset: u32) -> Message {
        Message {
            seq: MessageSeq(seq),
            payload: Payload::OnDisk { len: 10 },
            published_unix_ms: 7,
            attempts: 0,
            priority: 0,
            expires_at: Instant::NEVER,
            segment: SegmentRef::new(Lsn(0)),
            record: RecordAt { offset, len: 40 },
            extras: None,
            matches_record: true,
        }
    }

    #[test]
    fn evenly_spaced_messages_take_one_stride() {
        let mut run = ColdRun::new(&cold(10, 24));
        for i in 1..1000 {
            let message = cold(10 + 3 * i, 24 + 40 * i as u32);
            assert!(run.follows(&message));
            run.push(&message);
        }
        assert_eq!(run.seqs.len(), 1);
        assert_eq!(run.message_count(), 1000);
        assert_eq!(run.payload_bytes, 10_000);
        assert_eq!(run.seqs().take(3).collect::<Vec<_>>(), [10, 13, 16]);
        assert_eq!(run.seqs().last(), Some(10 + 3 * 999));
    }

    #[test]
    fn irregular_gaps_start_new_strides_and_pop_in_order() {
        let seqs = [5, 6, 9, 12, 13, 20];
        let mut run = ColdRun::new(&cold(seqs[0], 24));
        for (i, &seq) in seqs.iter().enumerate().skip(1) {
            run.push(&cold(seq, 24 + 40 * i as u32));
        }
        assert_eq!(run.seqs().collect::<Vec<_>>(), seqs);
        for (i, &seq) in seqs.iter().enumerate() {
            assert_eq!(run.first_seq(), MessageSeq(seq));
            let empty = run.pop_front(10, 64 + 40 * i as u64);
            assert_eq!(empty, i == seqs.len() - 1);
        }
        assert_eq!((run.message_count(), run.payload_bytes, run.offset), (0, 0, 64 + 40 * 5));
    }

    #[test]
    fn only_cold_messages_that_follow_may_join() {
        let run = ColdRun::new(&cold(10, 100));
        assert!(!run.follows(&cold(9, 140)), "an earlier sequence number");
        assert!(!run.follows(&cold(11, 60)), "an earlier record");
        let mut held = cold(11, 140);
        held.payload = Payload::Held(bytes::Bytes::from_static(b"0123456789"));
        assert!(!run.follows(&held), "a payload in memory");
        let mut changed = cold(11, 140);
        changed.matches_record = false;
        assert!(!run.follows(&changed), "a state its record does not hold");
        let mut ttl = cold(11, 140);
        ttl.expires_at = Instant::from_millis(5);
        assert!(!run.follows(&ttl), "a TTL to check");
        let mut other = cold(11, 140);
        other.segment = SegmentRef::new(Lsn(1 << 20));
        assert!(!run.follows(&other), "another segment");
        assert!(run.follows(&cold(11, 140)));
    }
}
