//! The log as the broker drives it: where the next record goes, which segments exist and how
//! much of each is still live, and the group-commit state (written, synced, one sync in
//! flight). Pure bookkeeping; the storage worker does the I/O.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::failure::StorageFailure;
use super::format::{append_record, segment_header_for};
use super::io::{StorageDone, StorageRequest};
use super::manifest::Manifest;
use super::records::{Counters, Record};
use super::seal::{EncryptionConfig, KeyId, Keyring, Sealer, MARKER_BODY_LEN, SEAL_KIND};
use crate::ids::Lsn;

/// Storage settings an operator may tune.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// A segment stops taking records once it holds this many bytes.
    pub segment_bytes_max: u64,
    /// The oldest segment is compacted (its live messages copied forward, then the segment
    /// deleted) once its live payload falls below this share of its size.
    pub compact_live_percent: u8,
    /// After a sync, the manifest's durable end is brought up to date at most this often, so
    /// that a newest segment cut inside records synced more than this long ago is noticed at
    /// the next start. 0: only when segments are created or deleted, and at a graceful stop.
    pub manifest_interval_ms: u32,
    /// Payloads of queued messages held in memory, at most (docs/STORAGE.md §17): beyond it,
    /// payloads of ready messages far from the head leave memory once their record is synced,
    /// and are read back from the log when delivery reaches them.
    pub payload_cache_bytes: u64,
    /// Encryption at rest: the key files (docs/STORAGE.md §16).
    pub encryption: EncryptionConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            segment_bytes_max: 64 * 1024 * 1024,
            compact_live_percent: 25,
            manifest_interval_ms: 1_000,
            payload_cache_bytes: 256 * 1024 * 1024,
            encryption: EncryptionConfig::default(),
        }
    }
}

/// What the broker must know about one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentState {
    /// Log position just past its last record.
    pub end_lsn: Lsn,
    /// Messages published into it (or copied into it) that are not yet settled.
    pub live_messages: u64,
    pub live_bytes: u64,
    /// Position just past the checkpoint the segment starts with.
    pub checkpoint_end_lsn: Lsn,
    /// Compaction copied the live messages forward; the segment may go once this is synced.
    pub delete_after_lsn: Option<Lsn>,
    /// The key its records are sealed with; `None`: written in clear.
    pub key_id: Option<KeyId>,
    /// A sealed segment's seal markers (position, body), oldest first: reading one record
    /// back needs the salt of the marker before it.
    pub seal_markers: Vec<(Lsn, [u8; MARKER_BODY_LEN])>,
}

/// Progress the broker reacts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Written(Lsn),
    Synced(Lsn),
}

#[derive(Debug)]
pub struct Log {
    config: StorageConfig,
    /// Base position of the segment records are appended to.
    active_base: Lsn,
    /// Records encoded and not yet handed to the worker; they start at `end_lsn - pending.len()`.
    pending: BytesMut,
    end_lsn: Lsn,
    written_lsn: Lsn,
    synced_lsn: Lsn,
    sync_in_flight: Option<Lsn>,
    segments: BTreeMap<Lsn, SegmentState>,
    requests: VecDeque<StorageRequest>,
    /// The last manifest handed to the worker (or found by recovery).
    manifest: Manifest,
    /// The keys: the current one seals new segments.
    keyring: Keyring,
    /// Seals the records appended to the active segment, when it is sealed.
    sealer: Option<Sealer>,
    /// Seal markers (salts) made since this log was created or resumed.
    salts_made: u64,
    /// Where the last record appended starts.
    last_append_lsn: Lsn,
}

impl Log {
    /// A log whose first segment starts at `base_lsn`, to be created; its manifests follow
    /// `manifest` (the default, for a data directory that had none).
    pub fn create(
        config: StorageConfig,
        keyring: Keyring,
        base_lsn: Lsn,
        manifest: Manifest,
    ) -> Log {
        let mut log = Log::resume(config, keyring, BTreeMap::new(), base_lsn, base_lsn, manifest);
        log.open_segment(base_lsn);
        assert_eq!(log.segments.len(), 1);
        assert_eq!(log.requests.len(), 2, "a new log asks for its segment and its manifest");
        log
    }

    /// A log continuing recovered segments; appends go to the newest one, which ends at
    /// `end_lsn`. Everything recovered is on disk. `manifest` is the one recovery read (or the
    /// default, sequence 0, when there was none): the next one written follows it. Call
    /// [`Log::prepare_appends`] before appending to recovered segments.
    pub fn resume(
        config: StorageConfig,
        keyring: Keyring,
        segments: BTreeMap<Lsn, SegmentState>,
        active_base: Lsn,
        end_lsn: Lsn,
        manifest: Manifest,
    ) -> Log {
        assert!(active_base <= end_lsn, "the newest segment starts past the end of the log");
        assert!(
            segments
                .last_key_value()
                .is_none_or(|(base, state)| { *base == active_base && state.end_lsn == end_lsn }),
            "appends resume in the newest segment, at its end"
        );
        Log {
            config,
            active_base,
            pending: BytesMut::new(),
            end_lsn,
            written_lsn: end_lsn,
            synced_lsn: end_lsn,
            sync_in_flight: None,
            segments,
            requests: VecDeque::new(),
            manifest,
            keyring,
            sealer: None,
            salts_made: 0,
            last_append_lsn: end_lsn,
        }
    }

    /// Makes the recovered newest segment ready for appends. A sealed segment is never
    /// appended to again under the salt it had: appends resume after a new seal marker. When
    /// the newest segment is not in the form new segments take (encryption turned on or off,
    /// or the current key changed), a new segment is started at once, so that nothing more is
    /// written in clear, or under a key being retired. A newest segment holding no records
    /// first gets one (a harmless `Counters` record, or a seal marker), since the new segment
    /// takes its name from the log position and must not reuse the empty one's.
    pub fn prepare_appends(&mut self) {
        assert!(self.pending.is_empty() && self.requests.is_empty(), "prepared after appending");
        let newest_key = self.segments[&self.active_base].key_id;
        if let Some(key_id) = newest_key {
            self.start_sealing(key_id);
        }
        if newest_key == self.keyring.current() {
            return;
        }
        if self.end_lsn == self.active_base {
            // The counters only ever rise to a recorded value: the defaults change nothing.
            self.append(&Record::<&[u8]>::Counters(Counters::default()));
        }
        self.rotate();
        assert_eq!(self.segments[&self.active_base].key_id, self.keyring.current());
    }

    /// Starts a run of appends sealed under `key_id` in the active segment: a new salt, and
    /// its marker as the next record.
    fn start_sealing(&mut self, key_id: KeyId) {
        let sealer = self
            .keyring
            .sealer(key_id, self.salts_made)
            .unwrap_or_else(|| panic!("key id {key_id} is in the keyring (recovery checked)"));
        self.salts_made += 1;
        let lsn = self.end_lsn;
        let marker = sealer.marker_body(lsn);
        let len = append_record(&mut self.pending, SEAL_KIND, &marker);
        self.advance_end(len as u64);
        let segment = self.segments.get_mut(&self.active_base).expect("active segment");
        segment.seal_markers.push((lsn, marker));
        self.sealer = Some(sealer);
    }

    // ---- getters ----

    pub fn end_lsn(&self) -> Lsn {
        self.end_lsn
    }

    pub fn written_lsn(&self) -> Lsn {
        self.written_lsn
    }

    pub fn synced_lsn(&self) -> Lsn {
        self.synced_lsn
    }

    pub fn active_base(&self) -> Lsn {
        self.active_base
    }

    /// Where the record appended last starts.
    pub fn last_append_lsn(&self) -> Lsn {
        self.last_append_lsn
    }

    pub fn segments(&self) -> &BTreeMap<Lsn, SegmentState> {
        &self.segments
    }

    /// Whether the active segment is full and the next record should start a new one. Records
    /// always get at least half a segment of room past the segment's checkpoint: otherwise a
    /// checkpoint near or above the segment size (many dedup ids) would start a new segment,
    /// with a new copy of itself, for every few records.
    pub fn active_is_full(&self) -> bool {
        let header_bytes = super::format::SEGMENT_HEADER_LEN as u64;
        let segment_bytes_max = self.config.segment_bytes_max;
        let checkpoint_end =
            self.segments[&self.active_base].checkpoint_end_lsn.max(self.active_base);
        // Checked: a checkpoint past the end of the log would be a bookkeeping bug.
        let records_bytes = self.end_lsn.bytes_since(checkpoint_end);
        self.end_lsn.bytes_since(self.active_base) + header_bytes >= segment_bytes_max
            && records_bytes >= segment_bytes_max / 2
    }

    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// New settings, from the next segment decision on (an operator's reload).
    pub fn reconfigure(&mut self, config: StorageConfig) {
        self.config = config;
    }

    // ---- writing ----

    /// Encodes a record at the end of the log; returns the position just past it.
    pub fn append<P: AsRef<[u8]>>(&mut self, record: &Record<P>) -> Lsn {
        self.last_append_lsn = self.end_lsn;
        let pending_before = self.pending.len();
        let len = match &self.sealer {
            Some(sealer) => record.encode_sealed(&mut self.pending, self.end_lsn, sealer),
            None => record.encode(&mut self.pending),
        } as u64;
        assert!(len > 0, "a record takes room in the log");
        assert_eq!(self.pending.len() - pending_before, len as usize);
        self.advance_end(len)
    }

    fn advance_end(&mut self, len: u64) -> Lsn {
        self.end_lsn = self.end_lsn.plus(len);
        self.segments.get_mut(&self.active_base).expect("active segment").end_lsn = self.end_lsn;
        self.end_lsn
    }

    /// Starts a new segment at the current end. The caller writes the checkpoint records that
    /// every segment begins with.
    pub fn rotate(&mut self) {
        self.flush();
        let base_lsn = self.end_lsn;
        self.open_segment(base_lsn);
        assert_eq!(self.active_base, base_lsn);
    }

    fn open_segment(&mut self, base_lsn: Lsn) {
        assert!(self.pending.is_empty(), "records left unflushed in the segment before");
        assert!(
            self.segments
                .last_key_value()
                .is_none_or(|(base, state)| { *base < base_lsn && state.end_lsn == base_lsn }),
            "a new segment starts where the newest one ends, after its start"
        );
        self.active_base = base_lsn;
        let key_id = self.keyring.current();
        let segment = SegmentState { end_lsn: base_lsn, key_id, ..SegmentState::default() };
        self.segments.insert(base_lsn, segment);
        let header = Bytes::copy_from_slice(&segment_header_for(base_lsn, key_id));
        self.requests.push_back(StorageRequest::CreateSegment { base_lsn, header });
        // Named newest before any record in it can be synced, so that losing it is noticed.
        self.write_manifest();
        self.sealer = None;
        if let Some(key_id) = key_id {
            self.start_sealing(key_id);
        }
    }

    /// Hands the worker a manifest of the log as it is: its oldest and newest segments, and
    /// how far it is synced.
    pub fn write_manifest(&mut self) {
        let oldest = *self.segments.keys().next().expect("a log has a segment");
        // MUTANT stale-manifest-newest: the manifest names a newer segment only when the one it
        // named is deleted, and records nothing durable past that segment's start.
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::StaleManifestNewest)
            && self.manifest.sequence > 0
        {
            let newest = self.manifest.newest_base_lsn.max(oldest);
            let durable_lsn = self.manifest.durable_lsn.max(newest);
            self.manifest = self.manifest.next(oldest, newest, durable_lsn);
            let slot = Bytes::copy_from_slice(&self.manifest.encode());
            let slot_offset = self.manifest.slot_offset();
            self.requests.push_back(StorageRequest::WriteManifest { slot_offset, slot });
            return;
        }
        let durable_lsn = self.synced_lsn.max(self.manifest.durable_lsn);
        // MUTANT manifest-ahead-of-sync: what was appended counts as durable.
        #[cfg(feature = "mutants")]
        let durable_lsn = if crate::mutants::active(crate::mutants::Mutant::ManifestAheadOfSync) {
            self.end_lsn.max(durable_lsn)
        } else {
            durable_lsn
        };
        self.manifest = self.manifest.next(oldest, self.active_base, durable_lsn);
        let slot = Bytes::copy_from_slice(&self.manifest.encode());
        let slot_offset = self.manifest.slot_offset();
        self.requests.push_back(StorageRequest::WriteManifest { slot_offset, slot });
    }

    /// The last manifest handed to the worker.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Hands encoded records to the worker as one `Append`.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let bytes = self.pending.split().freeze();
        assert!(
            bytes.len() as u64 <= self.end_lsn.bytes_since(self.active_base),
            "appended records reach back before the active segment"
        );
        let request =
            StorageRequest::Append { base_lsn: self.active_base, end_lsn: self.end_lsn, bytes };
        self.requests.push_back(request);
    }

    /// Asks for a sync of everything appended, unless one is in flight (the next one will
    /// cover what this one misses: group commit). Returns whether the request was satisfied:
    /// a sync was issued, or there was nothing to sync.
    pub fn request_sync(&mut self) -> bool {
        self.flush();
        assert!(self.synced_lsn <= self.end_lsn, "synced past the end of the log");
        assert!(
            self.sync_in_flight.is_none_or(|through| self.synced_lsn < through),
            "a sync in flight for what is already synced"
        );
        if self.end_lsn == self.synced_lsn || self.sync_in_flight == Some(self.end_lsn) {
            return true;
        }
        if self.sync_in_flight.is_some() {
            return false;
        }
        self.sync_in_flight = Some(self.end_lsn);
        self.requests.push_back(StorageRequest::Sync { through: self.end_lsn });
        true
    }

    pub fn has_unsynced(&self) -> bool {
        self.end_lsn > self.synced_lsn
    }

    pub fn sync_in_flight(&self) -> bool {
        self.sync_in_flight.is_some()
    }

    /// Records where the checkpoint of the active segment ends.
    pub fn mark_checkpoint_end(&mut self, lsn: Lsn) {
        assert!(self.active_base <= lsn && lsn <= self.end_lsn, "checkpoint end {lsn}");
        self.segments.get_mut(&self.active_base).expect("active segment").checkpoint_end_lsn = lsn;
    }

    /// The oldest segment, if it may be deleted now: nothing in it is live, what replaced its
    /// live messages is synced, and so is the checkpoint of the segment after it.
    pub fn deletable_head(&self) -> Option<Lsn> {
        let mut segments = self.segments.iter();
        let (&base, head) = segments.next()?;
        let (_, next) = segments.next()?;
        let copies_synced = head.delete_after_lsn.is_none_or(|lsn| lsn <= self.synced_lsn);
        let checkpoint_synced = next.checkpoint_end_lsn <= self.synced_lsn;
        (base != self.active_base && head.live_messages == 0 && copies_synced && checkpoint_synced)
            .then_some(base)
    }

    /// The oldest segment, if its live messages should be copied forward so it can be deleted:
    /// when it is mostly dead, or when it holds less live data than the dead data stuck behind
    /// it (only the oldest segment is ever deleted, so a long-lived message there would
    /// otherwise pin every later segment, however dead).
    pub fn compaction_candidate(&self) -> Option<Lsn> {
        let (&base, head) = self.segments.iter().next()?;
        if base == self.active_base || head.live_messages == 0 || head.delete_after_lsn.is_some() {
            return None;
        }
        let size_bytes = head.end_lsn.bytes_since(base);
        debug_assert!(head.live_bytes <= size_bytes, "segment {base}: more live bytes than bytes");
        let mostly_dead =
            head.live_bytes * 100 < u64::from(self.config.compact_live_percent) * size_bytes;
        let dead_behind_bytes: u64 = self
            .segments
            .iter()
            .skip(1)
            .filter(|(b, _)| **b != self.active_base)
            .map(|(b, s)| s.end_lsn.bytes_since(*b).saturating_sub(s.live_bytes))
            .sum();
        (mostly_dead || head.live_bytes < dead_behind_bytes).then_some(base)
    }

    /// The segment's live messages were copied forward up to `lsn`.
    pub fn delete_after(&mut self, base_lsn: Lsn, lsn: Lsn) {
        assert_ne!(base_lsn, self.active_base, "compacting the active segment");
        assert!(lsn <= self.end_lsn, "copies end past the end of the log");
        self.segments.get_mut(&base_lsn).expect("segment exists").delete_after_lsn = Some(lsn);
    }

    /// Deletes the oldest segments while they may be deleted ([`Log::deletable_head`]);
    /// durable with the next sync. The manifest names the new oldest segment first, so a
    /// crash between the two leaves an extra old file, never a missing one. Returns how many.
    pub fn delete_dead_segments(&mut self) -> usize {
        let mut doomed = Vec::new();
        while let Some(base_lsn) = self.deletable_head() {
            assert_ne!(base_lsn, self.active_base, "deleting the active segment");
            let removed = self.segments.remove(&base_lsn);
            assert!(
                removed.is_some_and(|s| s.live_messages == 0),
                "deleting a segment with live messages"
            );
            doomed.push(base_lsn);
        }
        assert!(self.segments.contains_key(&self.active_base), "deleted the active segment");
        if !doomed.is_empty() {
            self.write_manifest();
        }
        for base_lsn in &doomed {
            self.requests.push_back(StorageRequest::DeleteSegment { base_lsn: *base_lsn });
        }
        doomed.len()
    }

    // ---- liveness ----

    pub fn add_live(&mut self, segment: Lsn, bytes: u64) {
        let state = self.segments.get_mut(&segment).expect("live message's segment exists");
        // Compaction copies a segment's live messages forward; nothing new may live in it.
        assert!(
            state.delete_after_lsn.is_none(),
            "a message made live in a segment on its way out"
        );
        state.live_messages += 1;
        state.live_bytes += bytes;
    }

    pub fn remove_live(&mut self, segment: Lsn, bytes: u64) {
        self.remove_live_many(segment, 1, bytes);
    }

    /// `messages` live messages of `segment`, with `bytes` of payload, are gone.
    pub fn remove_live_many(&mut self, segment: Lsn, messages: u64, bytes: u64) {
        let state = self.segments.get_mut(&segment).expect("live message's segment exists");
        assert!(state.live_messages >= messages, "segment liveness went negative");
        assert!(state.live_bytes >= bytes, "segment live bytes went negative");
        state.live_messages -= messages;
        state.live_bytes -= bytes;
    }

    // ---- worker reports ----

    pub fn handle_done(&mut self, done: StorageDone) -> Result<Progress, StorageFailure> {
        match done {
            StorageDone::Written { through } => {
                assert!(through <= self.end_lsn, "written beyond the end of the log");
                self.written_lsn = self.written_lsn.max(through);
                assert!(self.synced_lsn <= self.written_lsn);
                Ok(Progress::Written(self.written_lsn))
            }
            StorageDone::Synced { through } => {
                let asked = self.sync_in_flight.expect("sync completion without its request");
                assert!(
                    asked <= through && through <= self.end_lsn,
                    "sync through {through} answers a request through {asked}"
                );
                self.sync_in_flight = None;
                self.synced_lsn = through;
                // MUTANT sync-covers-later-writes: what was written meanwhile counts as synced.
                #[cfg(feature = "mutants")]
                if crate::mutants::active(crate::mutants::Mutant::SyncCoversLaterWrites) {
                    self.synced_lsn = self.written_lsn.max(through);
                }
                self.written_lsn = self.written_lsn.max(through);
                Ok(Progress::Synced(through))
            }
            StorageDone::Failed(failure) => Err(failure),
            StorageDone::Read { .. } => unreachable!("the broker takes read completions itself"),
        }
    }

    pub fn poll_request(&mut self) -> Option<StorageRequest> {
        self.requests.pop_front()
    }
}
