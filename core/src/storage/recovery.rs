//! Recovery, as pure code: the driver reads the segment files one at a time, oldest first, and
//! hands each one's bytes over ([`LogReplay`]); this decides which records are valid, rebuilds
//! the durable state, keeping nothing of a segment's buffer, and says where a torn tail must be
//! cut. It refuses to guess: corruption in the middle of the log, a missing segment or
//! a record that does not decode stops the broker with the file and offset named.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use chute_protocol::{AttemptRecord, Durability, QueueOptions, Range, ATTEMPT_HISTORY_MAX};

use super::format::RECORD_HEADER_LEN;
use super::format::{parse_segment_file_name, scan_segment, RawRecord, ScanError, SegmentScan};
use super::log::SegmentState;
use super::manifest::{
    check_log_against, LogCutShort, Manifest, ManifestError, MANIFEST_FILE_NAME,
};
use super::read::RecordAt;
use super::records::{
    Counters, DeadLettered, Failed, Published, QueueRef, Record, RecordDecodeError, Redriven, Seqs,
    StoredDead, StoredMessage,
};
use super::seal::{Keyring, SealError, Sealer, SEAL_KIND, TAG_LEN};
use crate::ids::Lsn;
use crate::queue::Payload;

/// One segment file as the driver read it, whole.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    /// The file's name, for messages.
    pub name: String,
    pub bytes: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredQueue {
    pub name: String,
    pub options: QueueOptions,
    /// Live messages by sequence number.
    pub messages: BTreeMap<u64, RecoveredMessage>,
    /// Dedup window: message id → when its window closes (wall-clock ms).
    pub dedup: BTreeMap<String, u64>,
}

/// A live message as recovery holds it: the common fields inline and the rare ones boxed, so
/// that a million of them are cheap to insert, move and hold (recovery time is dominated by
/// this per-message work).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveredMessage {
    /// The segment holding its latest `Published` record.
    pub segment: Lsn,
    pub seq: u64,
    pub published_unix_ms: u64,
    pub attempts: u32,
    pub priority: u8,
    pub expires_unix_ms: Option<u64>,
    /// Copied out of the segment while the payload cache has room; only on disk beyond it.
    pub payload: Payload,
    /// Where its record is in `segment`, to read the payload back.
    pub record: RecordAt,
    pub rare: Option<Box<RareParts>>,
    /// No record after its `Published` one changed it (see `Message::matches_record`).
    pub matches_record: bool,
}

/// The attributes most messages do not have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RareParts {
    pub not_before_unix_ms: Option<u64>,
    pub id: Option<String>,
    pub headers: Vec<chute_protocol::Header>,
    pub group: Option<String>,
    pub topic: Option<String>,
    pub history: Vec<AttemptRecord>,
    pub dead: Option<StoredDead>,
}

impl RecoveredMessage {
    pub(crate) fn new(
        segment: Lsn,
        record: RecordAt,
        payload: Payload,
        stored: StoredMessage,
    ) -> RecoveredMessage {
        let rare = RareParts {
            not_before_unix_ms: stored.not_before_unix_ms,
            id: stored.id,
            headers: stored.headers,
            group: stored.group,
            topic: stored.topic,
            history: stored.history,
            dead: stored.dead,
        };
        RecoveredMessage {
            segment,
            seq: stored.seq,
            published_unix_ms: stored.published_unix_ms,
            attempts: stored.attempts,
            priority: stored.priority,
            expires_unix_ms: stored.expires_unix_ms,
            payload,
            record,
            rare: (rare != RareParts::default()).then(|| Box::new(rare)),
            matches_record: true,
        }
    }

    /// The rare attributes, boxed on first use.
    fn rare_mut(&mut self) -> &mut RareParts {
        self.rare.get_or_insert_with(Box::default)
    }

    pub fn dead(&self) -> Option<&StoredDead> {
        self.rare.as_ref()?.dead.as_ref()
    }
}

/// The newest segment ends in a torn write that must be cut before anything is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub file: String,
    /// Keep this many bytes; 0 means the file holds not even a whole header: delete it.
    pub valid_len: u64,
    pub dropped_bytes: u64,
    /// Every dropped byte is zero: space the storage worker preallocated and nothing wrote,
    /// rather than the remains of a write cut short.
    pub only_zeros: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveredLog {
    pub queues: BTreeMap<u64, RecoveredQueue>,
    /// (pattern, queue) bindings, with their owners.
    pub bindings: BTreeMap<(String, u64), Option<String>>,
    pub counters: Counters,
    /// Every segment kept, with its live messages counted.
    pub segments: BTreeMap<Lsn, SegmentState>,
    /// The newest segment kept, where appending resumes.
    pub last_segment: Option<Lsn>,
    pub end_lsn: Lsn,
    pub truncation: Option<Truncation>,
    pub records: u64,
    /// The manifest recovery read (sequence 0 when there was none).
    pub manifest: Manifest,
    pub manifest_check: ManifestCheck,
}

impl Default for Counters {
    fn default() -> Self {
        Counters { next_queue_id: 1, next_message_seq: 1 }
    }
}

/// A whole data directory's log in memory, as tests and tools hold one: [`recover_log`] and
/// `Broker::recover` are loops over the streaming recovery ([`LogReplay`], `Recovery`), which a
/// server uses to hold one segment at a time instead.
#[derive(Clone, Debug, Default)]
pub struct LogImage {
    /// Every segment file, oldest first.
    pub segments: Vec<SegmentFile>,
    /// The manifest file's bytes, if there is one (a data directory written before manifests
    /// existed has none).
    pub manifest: Option<Bytes>,
    /// The operator's explicit choice for this start (`chuted --accept-data-loss`): recover
    /// what the segments hold even where the manifest says more was durable. Never a setting
    /// that outlives one start.
    pub accept_data_loss: bool,
}

impl LogImage {
    /// Segment files without a manifest, as tests and tools that build logs by hand have them.
    pub fn segments(segments: Vec<SegmentFile>) -> LogImage {
        LogImage { segments, manifest: None, accept_data_loss: false }
    }
}

/// What recovery made of the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ManifestCheck {
    /// There was none (a data directory from before manifests, or a new one).
    #[default]
    Absent,
    /// The log holds everything the manifest says was durable.
    Agrees,
    /// The log was cut short, and the operator accepted the loss for this start.
    LossAccepted(LogCutShort),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error("the manifest {MANIFEST_FILE_NAME} {0}")]
    Manifest(#[from] ManifestError),
    #[error(
        "{0}; refusing to start, since confirmed messages may be gone (start once with \
         --accept-data-loss to recover what is left and accept the loss)"
    )]
    CutShort(LogCutShort),
    #[error("segment {file} is {source}")]
    Segment { file: String, source: ScanError },
    #[error("segment {file} starts at log position {base_lsn}, but the segment before it ends at {expected_lsn}: a segment is missing or out of order")]
    Gap { file: String, base_lsn: Lsn, expected_lsn: Lsn },
    #[error("segment {file}, record at log position {lsn}: {source}")]
    Record { file: String, lsn: Lsn, source: RecordDecodeError },
    /// A sealed segment whose key is missing or wrong, or one of its records that does not
    /// authenticate: nothing in it is read, nothing is cut.
    #[error("segment {file}, record at log position {lsn}: {source}")]
    Sealed { file: String, lsn: Lsn, source: SealError },
}

/// Rebuilds the durable state from segment files given oldest first, and checks it against the
/// manifest: a thin loop over [`LogReplay`], for tests and tools that hold a whole log.
/// `keyring` opens sealed segments (an empty one reads only segments in clear).
pub fn recover_log(image: &LogImage, keyring: &Keyring) -> Result<RecoveredLog, RecoveryError> {
    let mut replay = LogReplay::new();
    let count = image.segments.len();
    for (index, file) in image.segments.iter().enumerate() {
        replay.handle_segment(file.clone(), index + 1 == count, keyring)?;
    }
    replay.finish(image.manifest.as_deref(), image.accept_data_loss)
}

/// Recovery of a log handed over one segment file at a time, oldest first, so that a driver
/// holds one segment's bytes at once rather than the whole log: each segment is scanned,
/// checked against the one before it and applied, and what stays live is copied out of it
/// (payloads and header values), so nothing recovery keeps refers to a segment's buffer once
/// [`handle_segment`](LogReplay::handle_segment) returns. [`finish`](LogReplay::finish) then
/// checks the whole against the manifest. After an error, recovery is over: drop it.
#[derive(Debug, Default)]
pub struct LogReplay {
    state: RecoveredLog,
    /// Where the next segment must start: the end of the last one with a whole header.
    expected_lsn: Option<Lsn>,
    /// The newest segment was handed over; no other may follow it.
    newest_seen: bool,
    arena: PayloadArena,
    /// Payloads of live messages are copied out while they take at most this many bytes
    /// (`storage.payload_cache_bytes`); beyond it they stay on disk only, read back when
    /// delivered. Messages settled later in the log give their bytes back.
    payload_cache_bytes: u64,
    held_bytes: u64,
}

/// The bytes of a payload arena's chunk.
const ARENA_CHUNK_BYTES: usize = 256 * 1024;

/// Where recovery copies payloads and header values out of segments: chunks of 256 KiB, each
/// value a slice of one, so that recovery makes one allocation per chunk rather than one per
/// message, and a recovered message pins at most its chunk (as a published one pins its
/// publish frame, up to 4 MiB: `own_payloads`), never a segment. Values over a quarter of a
/// chunk get an allocation of their own.
///
/// Chunks rather than an allocation per payload for the memory the broker keeps after
/// recovery: recovery's index of live messages (`RecoveredLog`, about 90 MB for 500,000
/// messages) is freed once the broker is built, and with small payload allocations between its
/// nodes, the freed nodes left holes no page could be returned from. `bench/queued-memory.sh
/// 500000 1024`, resident after recovery: 660 MB with an allocation per payload; chunks of
/// 64 KiB 594 MB, 256 KiB 571 MB, 1 MiB 564 MB; 570 MB before recovery streamed (which copied
/// payloads once the index was built). A larger chunk only lets one long-lived message pin
/// more.
#[derive(Debug, Default)]
struct PayloadArena {
    chunk: BytesMut,
}

/// Where replay keeps payloads: the arena while the payload cache has room.
struct Cache<'a> {
    arena: &'a mut PayloadArena,
    bytes_max: u64,
    held_bytes: &'a mut u64,
}

impl Cache<'_> {
    /// The payload of the record `at`, copied out while the cache has room (and the record's
    /// place is known, so it could be read back); only on disk beyond.
    fn keep(&mut self, payload: &Bytes, at: RecordAt) -> Payload {
        let len = payload.len() as u64;
        let room = self.held_bytes.saturating_add(len) <= self.bytes_max;
        match u32::try_from(len) {
            Ok(len) if !room && at.is_known() && len > 0 => Payload::OnDisk { len },
            _ => {
                *self.held_bytes += len;
                Payload::Held(self.arena.copy(payload))
            }
        }
    }

    /// A live message was settled: its payload's room is free again.
    fn release(&mut self, payload: &Payload) {
        if payload.is_held() {
            *self.held_bytes = self.held_bytes.saturating_sub(payload.len());
        }
    }
}

impl PayloadArena {
    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.is_empty() {
            return Bytes::new();
        }
        if bytes.len() > ARENA_CHUNK_BYTES / 4 {
            return Bytes::copy_from_slice(bytes);
        }
        if self.chunk.capacity() - self.chunk.len() < bytes.len() {
            self.chunk = BytesMut::with_capacity(ARENA_CHUNK_BYTES);
        }
        self.chunk.extend_from_slice(bytes);
        self.chunk.split().freeze()
    }
}

impl LogReplay {
    /// A replay that copies every live payload out of the segments.
    pub fn new() -> LogReplay {
        LogReplay::with_payload_cache(u64::MAX)
    }

    /// A replay that copies live payloads out while they take at most `payload_cache_bytes`,
    /// oldest first (the ones delivered first); the others stay on disk.
    pub fn with_payload_cache(payload_cache_bytes: u64) -> LogReplay {
        LogReplay { payload_cache_bytes, ..LogReplay::default() }
    }

    /// Scans, checks and applies the next segment file. `newest` says it is the last one of the
    /// data directory: only the newest may end in a torn tail (§10.2 of docs/STORAGE.md), which
    /// is reported for the driver to cut; in any other segment the same bytes are corruption.
    ///
    /// # Panics
    ///
    /// If a segment is handed over after the one said to be the newest: a driver bug.
    pub fn handle_segment(
        &mut self,
        file: SegmentFile,
        newest: bool,
        keyring: &Keyring,
    ) -> Result<(), RecoveryError> {
        assert!(!self.newest_seen, "segment {} handed over after the newest", file.name);
        self.newest_seen = newest;
        let state = &mut self.state;
        let scan = scan_segment(&file.bytes, newest)
            .map_err(|source| RecoveryError::Segment { file: file.name.clone(), source })?;
        // MUTANT truncate-valid-record: the last valid record is cut as if torn.
        #[cfg(feature = "mutants")]
        let scan = crate::mutants::truncate_valid_record(scan, newest);
        if let Some(dropped) = scan.torn_tail {
            let truncation = Truncation {
                file: file.name.clone(),
                valid_len: scan.valid_len,
                dropped_bytes: dropped,
                only_zeros: file
                    .bytes
                    .get(scan.valid_len as usize..)
                    .unwrap_or_default()
                    .iter()
                    .all(|&b| b == 0),
            };
            state.truncation = Some(truncation);
        }
        let Some(end_lsn) = scan.next_lsn() else { return Ok(()) };
        // The header's base position has no checksum of its own; the file's name repeats it.
        if let Some(named) = parse_segment_file_name(&file.name) {
            if named != scan.base_lsn {
                let reason = format!(
                    "its header says it starts at log position {}, its name says {named}",
                    scan.base_lsn
                );
                let source = ScanError::BadHeader { reason };
                return Err(RecoveryError::Segment { file: file.name.clone(), source });
            }
        }
        if let Some(expected) = self.expected_lsn {
            if scan.base_lsn != expected {
                let (file, base_lsn, expected_lsn) = (file.name.clone(), scan.base_lsn, expected);
                return Err(RecoveryError::Gap { file, base_lsn, expected_lsn });
            }
        }
        self.expected_lsn = Some(end_lsn);
        let records = open_records(&file.name, &scan, keyring)?;
        // A sealed record's body on disk is its plain body and the tag.
        let tag_len = if scan.key_id.is_some() { TAG_LEN as u64 } else { 0 };
        let mut cache = Cache {
            arena: &mut self.arena,
            bytes_max: self.payload_cache_bytes,
            held_bytes: &mut self.held_bytes,
        };
        for raw in &records {
            let record = Record::decode(raw.kind, &raw.body).map_err(|source| {
                RecoveryError::Record { file: file.name.clone(), lsn: raw.lsn, source }
            })?;
            let len = RECORD_HEADER_LEN as u64 + raw.body.len() as u64 + tag_len;
            let at = RecordAt::new(scan.base_lsn, raw.lsn, raw.lsn.plus(len));
            state.apply(scan.base_lsn, at, record, &mut cache);
            state.records += 1;
        }
        let seal_markers = scan
            .records
            .iter()
            .filter(|raw| raw.kind == SEAL_KIND)
            .filter_map(|raw| Some((raw.lsn, raw.body[..].try_into().ok()?)))
            .collect();
        // Seal markers are records of the log too, though they change no state.
        state.records += (scan.records.len() - records.len()) as u64;
        assert!(scan.base_lsn <= end_lsn, "a segment ends before it starts");
        let segment = SegmentState {
            end_lsn,
            checkpoint_end_lsn: scan.base_lsn,
            key_id: scan.key_id,
            seal_markers,
            ..SegmentState::default()
        };
        state.segments.insert(scan.base_lsn, segment);
        state.last_segment = Some(scan.base_lsn);
        state.end_lsn = end_lsn;
        Ok(())
    }

    /// The state the segments rebuilt, checked against the manifest's bytes if the data
    /// directory has one. `accept_data_loss` is the operator's choice for this start
    /// (`--accept-data-loss`): recover what the segments hold even where the manifest says
    /// more was durable.
    pub fn finish(
        self,
        manifest: Option<&[u8]>,
        accept_data_loss: bool,
    ) -> Result<RecoveredLog, RecoveryError> {
        let mut state = self.state;
        state.count_live();
        assert_eq!(state.last_segment.is_some(), !state.segments.is_empty());
        assert!(state.last_segment.is_none_or(|newest| newest <= state.end_lsn));
        let Some(bytes) = manifest else { return Ok(state) };
        let manifest = Manifest::decode_file(bytes)?;
        let oldest = state.segments.keys().next().copied();
        let check = check_log_against(&manifest, oldest, state.last_segment, state.end_lsn);
        state.manifest_check = match check {
            Ok(()) => ManifestCheck::Agrees,
            Err(cut) if accept_data_loss => ManifestCheck::LossAccepted(cut),
            Err(cut) => return Err(RecoveryError::CutShort(cut)),
        };
        // The next manifest written follows this one; a loss accepted is not reported again.
        state.manifest =
            Manifest { durable_lsn: manifest.durable_lsn.min(state.end_lsn), ..manifest };
        assert!(state.manifest.durable_lsn <= state.end_lsn);
        Ok(state)
    }
}

/// The records of a scanned segment with their bodies in clear: a segment in clear's as they
/// are; a sealed segment's opened under the key its header names and the salt of the seal
/// marker before each, markers left out. Refuses a missing or wrong key even for a segment
/// without records (appends may resume in it), and any record that does not authenticate.
fn open_records(
    file: &str,
    scan: &SegmentScan,
    keyring: &Keyring,
) -> Result<Vec<RawRecord>, RecoveryError> {
    let Some(key_id) = scan.key_id else { return Ok(scan.records.clone()) };
    let refuse =
        |lsn: Lsn, source: SealError| RecoveryError::Sealed { file: file.to_string(), lsn, source };
    if keyring.key_ids().all(|id| id != key_id) {
        return Err(refuse(scan.base_lsn, SealError::MissingKey { key_id }));
    }
    let mut opened = Vec::with_capacity(scan.records.len());
    let mut sealer: Option<Sealer> = None;
    for raw in &scan.records {
        if raw.kind == SEAL_KIND {
            let marker = keyring.open_marker(key_id, raw.lsn, &raw.body);
            sealer = Some(marker.map_err(|source| refuse(raw.lsn, source))?);
            continue;
        }
        let sealer = sealer.as_ref().ok_or_else(|| refuse(raw.lsn, SealError::NoMarker))?;
        let body = sealer
            .open(raw.lsn, &record_aad(raw), &raw.body)
            .map_err(|source| refuse(raw.lsn, source))?;
        opened.push(RawRecord { lsn: raw.lsn, kind: raw.kind, body });
    }
    debug_assert!(opened.iter().all(|raw| raw.kind != SEAL_KIND));
    Ok(opened)
}

/// The associated data of a sealed record: its `len` and `kind` bytes, as on disk.
pub(super) fn record_aad(raw: &RawRecord) -> [u8; 5] {
    // The scan bounded the body by RECORD_LEN_MAX, so `len` fits.
    let len = 1 + raw.body.len() as u32;
    let mut aad = [0u8; 5];
    aad[..4].copy_from_slice(&len.to_le_bytes());
    aad[4] = raw.kind;
    aad
}

impl RecoveredLog {
    fn apply(&mut self, segment: Lsn, at: RecordAt, record: Record, cache: &mut Cache<'_>) {
        match record {
            Record::Counters(counters) => {
                self.counters.next_queue_id =
                    self.counters.next_queue_id.max(counters.next_queue_id);
                self.counters.next_message_seq =
                    self.counters.next_message_seq.max(counters.next_message_seq);
            }
            Record::QueueDeclared(declared) => {
                let queue = self.queues.entry(declared.queue).or_insert_with(|| RecoveredQueue {
                    name: declared.name.clone(),
                    options: declared.options.clone(),
                    messages: BTreeMap::new(),
                    dedup: BTreeMap::new(),
                });
                queue.name = declared.name;
                queue.options = declared.options;
                self.counters.next_queue_id =
                    self.counters.next_queue_id.max(declared.queue.saturating_add(1));
            }
            Record::QueueDeleted(QueueRef { queue }) => {
                self.queues.remove(&queue);
                self.bindings.retain(|(_, q), _| *q != queue);
            }
            Record::Published(Published { queue, message }) => {
                self.apply_published(segment, at, queue, message, cache)
            }
            Record::Delivered(Seqs { queue, seqs }) => {
                self.for_each_live(queue, &seqs, |messages, seq| {
                    // MUTANT forget-ack-on-recovery: a delivery is taken for an ack.
                    #[cfg(feature = "mutants")]
                    if crate::mutants::active(crate::mutants::Mutant::ForgetAckOnRecovery) {
                        messages.remove(&seq);
                        return;
                    }
                    if let Some(message) = messages.get_mut(&seq) {
                        message.attempts = message.attempts.saturating_add(1);
                        message.matches_record = false;
                    }
                });
            }
            Record::Acked(Seqs { queue, seqs }) | Record::Purged(Seqs { queue, seqs }) => {
                self.for_each_live(queue, &seqs, |messages, seq| {
                    if let Some(gone) = messages.remove(&seq) {
                        cache.release(&gone.payload);
                    }
                });
            }
            Record::Failed(failed) => self.apply_failed(failed),
            Record::DeadLettered(dead) => self.apply_dead_lettered(dead),
            Record::Redriven(redriven) => self.apply_redriven(redriven),
            Record::Bound(binding) => {
                self.bindings.entry((binding.pattern, binding.queue)).or_insert(None);
            }
            Record::BoundBy(binding) => {
                let owner = Some(binding.owner);
                self.bindings.entry((binding.pattern, binding.queue)).or_insert(owner);
            }
            Record::Unbound(binding) => {
                self.bindings.remove(&(binding.pattern, binding.queue));
            }
            Record::DedupEntry(entry) => {
                if let Some(queue) = self.queues.get_mut(&entry.queue) {
                    let expires = queue.dedup.entry(entry.id).or_insert(0);
                    *expires = (*expires).max(entry.expires_unix_ms);
                }
            }
        }
    }

    fn apply_published(
        &mut self,
        segment: Lsn,
        at: RecordAt,
        queue: u64,
        mut message: StoredMessage,
        cache: &mut Cache<'_>,
    ) {
        self.counters.next_message_seq =
            self.counters.next_message_seq.max(message.seq.saturating_add(1));
        let Some(queue) = self.queues.get_mut(&queue) else { return };
        // The record's payload and header values are slices of the segment's buffer, and a
        // slice keeps the whole buffer alive: copied out, so that recovery holds one segment's
        // bytes at a time.
        let payload = cache.keep(&message.payload, at);
        message.payload = Bytes::new();
        for header in &mut message.headers {
            header.value = cache.arena.copy(&header.value);
        }
        if let (Some(id), Some(window_ms)) = (&message.id, queue.options.dedup_window_ms) {
            let expires = queue.dedup.entry(id.clone()).or_insert(0);
            *expires = (*expires).max(message.published_unix_ms.saturating_add(window_ms));
        }
        // A later copy (moved forward by compaction) replaces the earlier one.
        let recovered = RecoveredMessage::new(segment, at, payload, message);
        if let Some(earlier) = queue.messages.insert(recovered.seq, recovered) {
            cache.release(&earlier.payload);
        }
    }

    fn apply_failed(&mut self, failed: Failed) {
        let Some(message) =
            self.queues.get_mut(&failed.queue).and_then(|q| q.messages.get_mut(&failed.seq))
        else {
            return;
        };
        message.matches_record = false;
        let rare = message.rare_mut();
        if rare.history.len() == ATTEMPT_HISTORY_MAX {
            rare.history.remove(0);
        }
        let record = AttemptRecord {
            at_unix_ms: failed.at_unix_ms,
            outcome: failed.outcome,
            reason: failed.reason,
        };
        rare.history.push(record);
        rare.not_before_unix_ms = failed.retry_at_unix_ms;
    }

    fn apply_dead_lettered(&mut self, dead: DeadLettered) {
        let Some(source) = self.queues.get_mut(&dead.queue) else { return };
        let Some(mut message) = source.messages.remove(&dead.seq) else { return };
        let Some(target) = dead.target.and_then(|t| self.queues.get_mut(&t)) else { return };
        // An in-memory queue comes back empty, dead letters moved into it included.
        if target.options.durability == Durability::None {
            return;
        }
        message.attempts = 0;
        message.matches_record = false;
        message.expires_unix_ms =
            target.options.ttl_ms.map(|ttl| dead.at_unix_ms.saturating_add(ttl));
        let rare = message.rare_mut();
        rare.not_before_unix_ms = None;
        rare.dead = Some(StoredDead {
            source: dead.queue,
            reason: dead.reason,
            dead_unix_ms: dead.at_unix_ms,
        });
        target.messages.insert(dead.seq, message);
    }

    fn apply_redriven(&mut self, redriven: Redriven) {
        let mut moving = Vec::new();
        self.for_each_live(redriven.queue, &redriven.seqs, |messages, seq| {
            if let Some(entry) = messages.remove(&seq) {
                moving.push(entry);
            }
        });
        for mut message in moving {
            let Some(source) = message.dead().map(|d| d.source) else { continue };
            let Some(queue) = self.queues.get_mut(&source) else { continue };
            message.attempts = 0;
            message.matches_record = false;
            message.expires_unix_ms =
                queue.options.ttl_ms.map(|ttl| redriven.at_unix_ms.saturating_add(ttl));
            message.rare_mut().dead = None;
            if queue.options.durability != Durability::None {
                queue.messages.insert(message.seq, message);
            }
        }
    }

    /// Visits the live messages of `queue` named by `seqs`. Ranges are intersected with what is
    /// live, so a range's width costs nothing.
    fn for_each_live(
        &mut self,
        queue: u64,
        seqs: &[Range],
        mut visit: impl FnMut(&mut BTreeMap<u64, RecoveredMessage>, u64),
    ) {
        let Some(queue) = self.queues.get_mut(&queue) else { return };
        for range in seqs {
            let Some(last) = range.last() else { continue };
            let live: Vec<u64> =
                queue.messages.range(range.first..=last).map(|(seq, _)| *seq).collect();
            for seq in live {
                visit(&mut queue.messages, seq);
            }
        }
    }

    /// Counts each segment's live messages, for compaction.
    fn count_live(&mut self) {
        for queue in self.queues.values() {
            for message in queue.messages.values() {
                let state = self
                    .segments
                    .get_mut(&message.segment)
                    .expect("a live message's segment was kept");
                state.live_messages += 1;
                state.live_bytes += message.payload.len();
            }
        }
    }
}
