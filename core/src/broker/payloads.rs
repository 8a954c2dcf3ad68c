//! The payload cache (docs/STORAGE.md §17): payloads of ready messages leave memory once their
//! record is synced and the payloads held exceed `storage.payload_cache_bytes`, and come back
//! through `Read` requests when dispatch reaches them with a consumer that has credit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;

use bytes::Bytes;
use chute_protocol::Durability;

use super::Broker;
use crate::ids::{ConnId, Lsn, MessageSeq, QueueId};
use crate::io::Output;
use crate::queue::{ColdRun, Message, ReadPlan, RecordAt, SegmentRef, Wanted};
use crate::storage::failure::{OsError, StorageFailure};
use crate::storage::io::{ReadId, StorageRequest};
use crate::storage::read::{payload_in, SegmentKeys};

/// A read covers consecutive records of one segment spanning at most this many bytes: large
/// enough that a cold backlog of small messages is read in few requests, small enough that
/// what waits for delivery stays modest.
pub(super) const READ_SPAN_BYTES_MAX: u64 = 1024 * 1024;
/// Reads one queue may have in flight: one being delivered from while the next one comes.
pub(super) const READS_PER_QUEUE_MAX: u32 = 2;
/// Reads the broker may have in flight, all queues together.
pub(super) const READS_IN_FLIGHT_MAX: usize = 64;

/// The reads in flight.
#[derive(Debug, Default)]
pub(super) struct PayloadReads {
    next_id: u64,
    in_flight: BTreeMap<ReadId, PendingRead>,
    /// Queues that wanted a read while `READS_IN_FLIGHT_MAX` were in flight: dispatched again
    /// when one completes.
    waiting: BTreeSet<QueueId>,
    /// Reads asked for since the start, and the bytes they span.
    reads_total: u64,
    read_bytes_total: u64,
    /// Payload bytes evicted since the start (a payload read back and evicted again counts
    /// twice).
    evicted_bytes_total: u64,
}

/// The payload cache, for operators (`chute_payload_*` metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayloadCacheStats {
    /// `storage.payload_cache_bytes`.
    pub cache_bytes: u64,
    /// Payload bytes held in memory now, every queue's (read back and not yet delivered
    /// included).
    pub held_bytes: u64,
    pub reads_in_flight: u64,
    /// Reads asked for since the start, and the bytes they span.
    pub reads_total: u64,
    pub read_bytes_total: u64,
    /// Payload bytes that left memory since the start.
    pub evicted_bytes_total: u64,
    /// Ready messages held only in the log, payload and metadata (docs/STORAGE.md §18), and
    /// the cold runs that stand for them.
    pub cold_messages: u64,
    pub cold_runs: u64,
}

#[derive(Debug)]
pub(super) struct PendingRead {
    pub(super) queue: QueueId,
    pub(super) base_lsn: Lsn,
    pub(super) offset: u64,
    pub(super) len: u64,
    brings: Brings,
}

impl PendingRead {
    /// The read failed at `offset`: the records it was for were synced and confirmed, so this
    /// is lost data, which halts the broker.
    pub(super) fn failed(&self, offset: u64, error: OsError) -> StorageFailure {
        StorageFailure::Read { base_lsn: self.base_lsn, offset, error }
    }

    /// The bytes read at `offset` are not what the log holds there, and why.
    pub(super) fn damaged(&self, (offset, reason): (u64, String)) -> StorageFailure {
        self.failed(offset, OsError::new(ErrorKind::InvalidData, reason))
    }
}

/// What a read is for.
#[derive(Debug)]
enum Brings {
    /// The payloads of messages in memory: (seq, record, payload length) of each.
    Payloads(Vec<Wanted>),
    /// The first messages of the cold run of `level` that starts at `first`.
    Cold { level: u8, first: MessageSeq },
    /// The payload of dead letter `seq`, for an inspection `conn` asked for.
    Inspection { conn: ConnId, request_id: u32, seq: MessageSeq, at: RecordAt },
}

impl Broker {
    /// Payload bytes held in memory, every queue's, in flight included (what the payload
    /// cache bounds, beside the payloads read back and not yet delivered).
    pub fn held_payload_bytes(&self) -> u64 {
        self.queues.values().map(|q| q.held_payload_bytes()).sum()
    }

    /// Reads of evicted payloads in flight.
    pub fn reads_in_flight(&self) -> usize {
        self.reads.in_flight.len()
    }

    pub fn payload_cache_stats(&self) -> PayloadCacheStats {
        let runs = || self.queues.values().flat_map(|q| q.cold_runs().map(|(_, run)| run));
        PayloadCacheStats {
            cache_bytes: self.config.storage.payload_cache_bytes,
            held_bytes: self.held_payload_bytes(),
            reads_in_flight: self.reads.in_flight.len() as u64,
            reads_total: self.reads.reads_total,
            read_bytes_total: self.reads.read_bytes_total,
            evicted_bytes_total: self.reads.evicted_bytes_total,
            cold_messages: runs().map(ColdRun::message_count).sum(),
            cold_runs: runs().count() as u64,
        }
    }

    /// After a sync: while the payloads held exceed the cache, evict those furthest from
    /// delivery whose records are now durable. Cheap when under the cap: one sum over queues.
    pub(super) fn evict_payloads(&mut self) {
        let cache_bytes = self.config.storage.payload_cache_bytes;
        let held = self.held_payload_bytes();
        let Some(mut excess) = held.checked_sub(cache_bytes).filter(|e| *e > 0) else { return };
        let synced = self.log.synced_lsn();
        for queue in self.queues.values_mut() {
            if queue.options.durability == Durability::None {
                continue;
            }
            let freed = queue.evict_payloads(excess, |m| is_evictable(m, synced));
            self.reads.evicted_bytes_total += freed;
            excess = excess.saturating_sub(freed);
            if excess == 0 {
                break;
            }
        }
    }

    /// Asks for the next payloads of the queue's line that are on disk, as far as its reads
    /// and the broker's allow.
    pub(super) fn read_payloads(&mut self, queue_id: QueueId) {
        loop {
            let Some(queue) = self.queues.get(&queue_id) else { return };
            if queue.fetches.reads_in_flight >= READS_PER_QUEUE_MAX {
                return;
            }
            if self.reads.in_flight.len() >= READS_IN_FLIGHT_MAX {
                self.reads.waiting.insert(queue_id);
                return;
            }
            let Some(plan) = queue.next_read(READ_SPAN_BYTES_MAX) else { return };
            let queue = self.queues.get_mut(&queue_id).expect("looked up above");
            let (segment, offset, len, brings) = match plan {
                ReadPlan::Payloads { segment, wanted } => {
                    let first = wanted.first().expect("a read brings a payload").1;
                    let last = wanted.last().expect("a read brings a payload").1;
                    let offset = u64::from(first.offset);
                    for (seq, _, _) in &wanted {
                        queue.fetches.request(*seq);
                    }
                    (segment, offset, last.end() - offset, Brings::Payloads(wanted))
                }
                ReadPlan::Cold { level, first, segment, offset, len } => {
                    queue.cold_read_started(level, first);
                    (segment, offset, len, Brings::Cold { level, first })
                }
            };
            queue.fetches.reads_in_flight += 1;
            let base_lsn = segment.get().expect("a record read back is logged");
            self.start_read(PendingRead { queue: queue_id, base_lsn, offset, len, brings });
        }
    }

    /// Asks the storage worker for a read (the caller checked `READS_IN_FLIGHT_MAX`).
    fn start_read(&mut self, read: PendingRead) {
        let id = ReadId(self.reads.next_id);
        self.reads.next_id += 1;
        self.reads.reads_total += 1;
        self.reads.read_bytes_total += read.len;
        let (base_lsn, offset) = (read.base_lsn, read.offset);
        let len = u32::try_from(read.len).expect("a read spans a few MiB at most");
        self.reads.in_flight.insert(id, read);
        let request = StorageRequest::Read { id, base_lsn, offset, len };
        self.outputs.push_back(Output::Storage(request));
    }

    /// Reads dead letter `seq`'s record (`at` in `segment`) back to answer an inspection; false
    /// if the broker has as many reads in flight as it allows.
    pub(super) fn read_for_inspection(
        &mut self,
        (conn, request_id): (ConnId, u32),
        queue: QueueId,
        seq: MessageSeq,
        segment: SegmentRef,
        at: RecordAt,
    ) -> bool {
        if self.reads.in_flight.len() >= READS_IN_FLIGHT_MAX {
            return false;
        }
        let base_lsn = segment.get().expect("a payload on disk is logged");
        let brings = Brings::Inspection { conn, request_id, seq, at };
        let (offset, len) = (u64::from(at.offset), u64::from(at.len));
        self.start_read(PendingRead { queue, base_lsn, offset, len, brings });
        true
    }

    /// A read completed: its payloads wait for delivery. A read that failed, came back short
    /// or holds anything but the records asked for halts the broker (the records were synced:
    /// this is lost data), unless every message it was for left meanwhile.
    pub(super) fn handle_read(&mut self, id: ReadId, result: Result<Bytes, OsError>) {
        let Some(read) = self.reads.in_flight.remove(&id) else { return };
        self.dirty_queues.extend(std::mem::take(&mut self.reads.waiting));
        if let Brings::Inspection { conn, request_id, seq, at } = read.brings {
            return self.answer_inspection(&read, (conn, request_id), seq, at, result);
        }
        let Some(queue) = self.queues.get_mut(&read.queue) else { return };
        queue.fetches.reads_in_flight -= 1;
        let wanted = match &read.brings {
            Brings::Payloads(wanted) => wanted,
            Brings::Cold { level, first } => {
                return self.handle_cold_read(&read, *level, *first, result)
            }
            Brings::Inspection { .. } => unreachable!("answered above"),
        };
        let wanted: Vec<Wanted> =
            wanted.iter().copied().filter(|(seq, _, _)| queue.fetches.is_requested(*seq)).collect();
        if wanted.is_empty() {
            return;
        }
        let parsed = result
            .map_err(|error| read.failed(read.offset, error))
            .and_then(|bytes| self.parse_read(&read, &bytes, &wanted).map_err(|e| read.damaged(e)));
        match parsed {
            Ok(payloads) => {
                let queue = self.queues.get_mut(&read.queue).expect("looked up above");
                for (seq, payload) in payloads {
                    queue.fetches.arrive(seq, payload);
                }
                self.dirty_queues.insert(read.queue);
            }
            Err(failure) => self.halt(failure),
        }
    }

    /// The keys that open the records of the segment a read is of, or the reason there are none.
    pub(super) fn read_keys(&self, read: &PendingRead) -> Result<SegmentKeys<'_>, (u64, String)> {
        let Some(segment) = self.log.segments().get(&read.base_lsn) else {
            return Err((read.offset, "the segment is no longer in the log".into()));
        };
        Ok(SegmentKeys {
            key_id: segment.key_id,
            markers: &segment.seal_markers,
            keyring: &self.config.keyring,
        })
    }

    /// The payloads of `wanted` in a read's bytes, or the offset of the first record that is
    /// not what was asked for and why.
    fn parse_read(
        &self,
        read: &PendingRead,
        bytes: &Bytes,
        wanted: &[Wanted],
    ) -> Result<Vec<(u64, Bytes)>, (u64, String)> {
        let keys = self.read_keys(read)?;
        let mut payloads = Vec::with_capacity(wanted.len());
        for &(seq, at, len) in wanted {
            let payload = payload_in(bytes, read.offset, read.base_lsn, seq, at, keys)
                .map_err(|reason| (u64::from(at.offset), reason))?;
            if payload.len() as u64 != len {
                let reason =
                    format!("message {seq}'s payload is {} bytes, not {len}", payload.len());
                return Err((u64::from(at.offset), reason));
            }
            payloads.push((seq, payload));
        }
        // MUTANT read-fills-wrong-message: each payload of a read but the first is filled with
        // the bytes of the record before it, cut or padded to its own length.
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::ReadFillsWrongMessage) {
            let originals: Vec<Bytes> = payloads.iter().map(|(_, p)| p.clone()).collect();
            for (index, (_, payload)) in payloads.iter_mut().enumerate().skip(1) {
                let mut wrong = originals[index - 1].to_vec();
                wrong.resize(payload.len(), 0);
                *payload = Bytes::from(wrong);
            }
        }
        Ok(payloads)
    }
}

/// Whether a held payload may leave memory: its record is synced (so it can be read back after
/// any crash), known, not empty, and it is not a dead letter (those are inspected, and an
/// inspection answers at once).
fn is_evictable(message: &Message, synced: Lsn) -> bool {
    let Some(base) = message.segment.get() else { return false };
    message.record.is_known()
        && message.payload_len() > 0
        && message.dead().is_none()
        && message.record.end_lsn(base) <= synced
}
