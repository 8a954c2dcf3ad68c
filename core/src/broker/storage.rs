//! The broker's side of durability: writing records, group commit, releasing what the log
//! made durable, compaction, and halting when storage fails.

use chute_protocol::{ErrorCode, Header};

use super::connection::PauseReason;
use super::outbound::Gate;
use super::timers::TimerKey;
use super::Broker;
use crate::ids::{ConnId, Lsn, QueueId};
use crate::queue::{ColdRun, Message, RecordAt, SegmentRef};
use crate::storage::failure::StorageFailure;
use crate::storage::io::StorageDone;
use crate::storage::log::Progress;
use crate::storage::records::{
    Counters, DedupEntry, Published, QueueDeclared, Record, StoredDead, StoredMessage,
};
use crate::time::{Instant, WallClock};

/// How soon a record must be synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SyncNeed {
    /// Someone waits for it (a confirm, a reply, a delivery): sync as soon as possible.
    Now,
    /// Nobody waits; sync within this many milliseconds (acks without replies, `Interval`
    /// queues).
    Within(u64),
}

/// The most sequence ranges one `Purged` or `Redriven` record names; a purge or redrive of more
/// writes several. A range takes at most 15 bytes, so a record stays under 1 MiB, far below
/// `RECORD_LEN_MAX` (32 MiB), which one record naming the millions of messages a queue can
/// hold, each its own range when other queues' publishes came between, would pass: encoding
/// it would panic.
pub(crate) const SEQ_RANGES_PER_RECORD_MAX: usize = 65_536;

/// Acks nobody waits for are synced within this long, which bounds the redeliveries a crash
/// can cause without spending an fsync on each.
pub(super) const LAZY_SYNC_MS: u64 = 20;

impl Broker {
    /// Appends a record (starting a new segment first if the active one is full); returns the
    /// log position just past it.
    pub(super) fn append_record<P: AsRef<[u8]>>(
        &mut self,
        record: &Record<P>,
        need: SyncNeed,
    ) -> Lsn {
        if self.log.active_is_full() {
            self.log.rotate();
            self.write_checkpoint();
            self.compact();
        }
        let end = self.log.append(record);
        assert!(self.log.active_base() < end, "the record lies in the active segment");
        self.want_sync(need);
        end
    }

    pub(super) fn want_sync(&mut self, need: SyncNeed) {
        match need {
            SyncNeed::Now => self.sync_wanted = true,
            SyncNeed::Within(ms) => {
                let at = self.now.plus_ms(ms);
                self.timers.arm_no_later(&mut self.lazy_sync_at, at, TimerKey::LazySync);
                assert!(self.lazy_sync_at.is_some_and(|armed| armed <= at));
            }
        }
    }

    pub(super) fn fire_lazy_sync(&mut self) {
        self.lazy_sync_at = None;
        self.sync_wanted = true;
    }

    /// Every segment starts with what older segments would otherwise be needed for: the id
    /// counters, every queue's declaration, every binding, every dedup window. Older segments
    /// can then be deleted once nothing in them is live.
    pub(super) fn write_checkpoint(&mut self) {
        let counters =
            Counters { next_queue_id: self.next_queue_id, next_message_seq: self.next_message_seq };
        let mut records: Vec<Record<&[u8]>> = vec![Record::Counters(counters)];
        let clock = self.config.wall_clock();
        for queue in self.queues.values() {
            let declared = QueueDeclared {
                queue: queue.id.0,
                name: queue.name.clone(),
                options: queue.options.clone(),
            };
            records.push(Record::QueueDeclared(declared));
            for (id, expires) in queue.dedup.entries() {
                let entry = DedupEntry {
                    queue: queue.id.0,
                    id: id.to_string(),
                    expires_unix_ms: clock.unix_ms(expires),
                };
                records.push(Record::DedupEntry(entry));
            }
        }
        for binding in self.bindings.iter() {
            let (pattern, owner) = (binding.pattern.clone(), binding.owner.clone());
            records.push(super::routing::bound_record(binding.queue, pattern, owner));
        }
        let start = self.log.end_lsn();
        for record in &records {
            self.log.append(record);
        }
        let end = self.log.end_lsn();
        assert!(start < end, "a checkpoint holds at least the id counters");
        self.log.mark_checkpoint_end(end);
        self.want_sync(SyncNeed::Now);
    }

    /// Called at the end of every input: hands appended records to the worker and starts a
    /// sync if one is wanted and none is in flight.
    pub(super) fn after_input(&mut self) {
        if self.halted.is_some() {
            return;
        }
        if self.sync_wanted && self.log.request_sync() {
            self.sync_wanted = false;
        }
        // A wanted sync is never dropped: it waits only for the one in flight.
        assert!(!self.sync_wanted || self.log.sync_in_flight(), "a wanted sync was not asked for");
        self.log.flush();
        if self.shutting_down && !self.log.has_unsynced() {
            // The manifest says exactly where the log ends: any cut is noticed at the next
            // start. The driver lets the worker finish before it exits.
            if self.log.manifest().durable_lsn < self.log.synced_lsn() {
                self.log.write_manifest();
            }
            let conns: Vec<ConnId> = self.connections.keys().copied().collect();
            for conn in conns {
                self.close_connection(
                    conn,
                    ErrorCode::SHUTTING_DOWN,
                    "server shutting down".into(),
                );
            }
            // Closing a consumer puts what it held back in its queue and marks the queue for a
            // dispatch; with every connection closed that finds nobody, and leaves no queue
            // marked after the input.
            self.dispatch_dirty_queues();
        } else if self.shutting_down && !self.log.sync_in_flight() {
            self.log.request_sync();
        }
    }

    pub(super) fn handle_storage(&mut self, done: StorageDone) {
        if self.halted.is_some() {
            return;
        }
        if let StorageDone::Read { id, result } = done {
            return self.handle_read(id, result);
        }
        match self.log.handle_done(done) {
            Ok(Progress::Written(_)) => self.release_durable(),
            Ok(Progress::Synced(_)) => {
                self.release_durable();
                self.evict_payloads();
                // Oldest segments go while nothing in them is live and a later segment's
                // checkpoint is on disk (so no declaration is lost with them).
                self.log.delete_dead_segments();
                self.update_manifest_if_due();
            }
            Err(failure) => self.halt(failure),
        }
    }

    /// Brings the manifest's durable end up to date, at most every `manifest_interval_ms`.
    fn update_manifest_if_due(&mut self) {
        let interval_ms = self.config.storage.manifest_interval_ms;
        let behind = self.log.manifest().durable_lsn < self.log.synced_lsn();
        if interval_ms == 0 || !behind || self.manifest_due_at.is_some_and(|at| self.now < at) {
            return;
        }
        self.log.write_manifest();
        self.manifest_due_at = Some(self.now.plus_ms(interval_ms.into()));
    }

    /// The log moved on: published messages become deliverable, held frames may leave, and
    /// connections that hit their unconfirmed window may read again.
    fn release_durable(&mut self) {
        let (written, synced) = (self.log.written_lsn(), self.log.synced_lsn());
        assert!(synced <= written && written <= self.log.end_lsn(), "synced <= written <= end");
        let queues: Vec<QueueId> = self.pending_queues.iter().copied().collect();
        for id in queues {
            let queue = self.queues.get_mut(&id).expect("pending queue exists");
            if queue.release_pending(|gate: Gate| gate.is_open(written, synced)) > 0 {
                self.dirty_queues.insert(id);
                self.arm_queue_timer(id);
            }
            let queue = self.queues.get_mut(&id).expect("pending queue exists");
            if !queue.has_pending() {
                self.pending_queues.remove(&id);
            }
        }
        let conns: Vec<ConnId> =
            std::mem::take(&mut self.waiting_connections).into_iter().collect();
        for conn in conns {
            let Some(connection) = self.connections.get_mut(&conn) else { continue };
            connection.outbound.release(written, synced);
            if connection.outbound.is_waiting() {
                self.waiting_connections.insert(conn);
            }
            let resume = connection.pause_reasons().contains(PauseReason::Unconfirmed)
                && connection.outbound.unconfirmed < u64::from(connection.limits.unconfirmed_max);
            self.mark_dirty(conn);
            if resume {
                self.set_read_pause(conn, PauseReason::Unconfirmed, false);
                self.process_received(conn);
            }
        }
    }

    /// Fail-stop: after a failed write or fsync nothing the broker holds in memory can be
    /// trusted to match the disk. Every client is told, nothing more is confirmed, and the
    /// driver exits so that recovery starts from what is really on disk.
    pub(super) fn halt(&mut self, failure: StorageFailure) {
        assert!(self.halted.is_none(), "halted twice");
        let message = failure.halt_message();
        let conns: Vec<ConnId> = self.connections.keys().copied().collect();
        for conn in conns {
            self.close_connection(conn, failure.code(), message.clone());
        }
        assert!(self.connections.is_empty(), "a halted broker keeps no connection");
        self.halted = Some(failure.clone());
        self.outputs.push_back(crate::io::Output::Event(crate::io::Event::Halted { failure }));
    }

    // ---- liveness and compaction ----

    /// A message leaves the broker for good (acked, purged, deleted): its segment has one live
    /// message less.
    pub(super) fn release_message(&mut self, message: &Message) {
        if let Some(segment) = message.segment.get() {
            debug_assert!(segment <= self.log.active_base(), "a message in a future segment");
            self.log.remove_live(segment, message.payload_len());
        }
    }

    /// A cold run's messages leave the broker for good (purged, deleted with their queue).
    pub(super) fn release_cold_run(&mut self, run: &ColdRun) {
        let segment = run.segment.get().expect("a cold run's records are logged");
        self.log.remove_live_many(segment, run.message_count(), run.payload_bytes);
    }

    /// When the oldest segment is mostly dead, copies its live messages to the active segment
    /// so it can be deleted once the copies are synced: disk use follows live data.
    ///
    /// A segment holding a message whose payload is on disk waits: copying it would need the
    /// payload read back first. Such messages are ready ones far from the head, which FIFO
    /// delivery reaches in log order, so the segment empties as its queue drains.
    pub(super) fn compact(&mut self) {
        let Some(head) = self.log.compaction_candidate() else { return };
        let head_ref = SegmentRef::new(head);
        let on_disk = |m: &Message| m.segment == head_ref && !m.payload.is_held();
        let cold = |q: &crate::queue::Queue| q.cold_runs().any(|(_, run)| run.segment == head_ref);
        if self.queues.values().any(|q| q.held().any(on_disk) || cold(q)) {
            return;
        }
        let active = self.log.active_base();
        let clock = self.config.wall_clock();
        let log = &mut self.log;
        let mut move_forward = |queue: QueueId, message: &mut Message| {
            if message.segment != SegmentRef::new(head) {
                return;
            }
            message.segment = SegmentRef::new(active);
            let bytes = message.payload_len();
            log.remove_live(head, bytes);
            let end = log.append(&Record::Published(Published {
                queue: queue.0,
                message: stored(message, &clock),
            }));
            message.record = RecordAt::new(active, log.last_append_lsn(), end);
            message.matches_record = true;
            log.add_live(active, bytes);
        };
        for queue in self.queues.values_mut() {
            let id = queue.id;
            queue.for_each_message_mut(|message| move_forward(id, message));
        }
        for connection in self.connections.values_mut() {
            for in_flight in connection.in_flight.values_mut() {
                move_forward(in_flight.queue, &mut in_flight.message);
            }
        }
        let end = self.log.end_lsn();
        self.log.delete_after(head, end);
        self.want_sync(SyncNeed::Now);
    }
}

/// The record form of a message, with its current state (attempts, history, dead-letter
/// details, due time).
///
/// It borrows the payload and header values, for appending at once: a clone of a `Bytes`
/// would allocate its reference count (the first clone does), which then stays with the
/// queued message, 32 bytes each.
pub(super) fn stored<'a>(message: &'a Message, clock: &WallClock) -> StoredMessage<&'a [u8]> {
    let extras = message.extras.as_deref();
    StoredMessage {
        seq: message.seq.0,
        published_unix_ms: message.published_unix_ms,
        attempts: message.attempts,
        priority: message.priority,
        expires_unix_ms: (message.expires_at != Instant::NEVER)
            .then(|| clock.unix_ms(message.expires_at)),
        not_before_unix_ms: extras.and_then(|e| e.not_before_unix_ms),
        id: extras.and_then(|e| e.id.clone()),
        headers: extras.map(|e| borrowed_headers(&e.headers)).unwrap_or_default(),
        group: extras.and_then(|e| e.group.clone()),
        topic: extras.and_then(|e| e.topic.clone()),
        history: extras.map(|e| e.history.clone()).unwrap_or_default(),
        dead: extras.and_then(|e| e.dead.as_ref()).map(|d| StoredDead {
            source: d.source.0,
            reason: d.reason,
            dead_unix_ms: d.dead_unix_ms,
        }),
        payload: &message.payload.bytes()[..],
    }
}

fn borrowed_headers(headers: &[Header]) -> Vec<Header<&[u8]>> {
    headers.iter().map(|h| Header { name: h.name.clone(), value: &h.value[..] }).collect()
}
