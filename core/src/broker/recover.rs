//! Starting a broker from what the log holds.

use chute_protocol::{AttemptOutcome, AttemptRecord, DeadReason};

use super::Broker;
use crate::config::BrokerConfig;
use crate::ids::{MessageSeq, QueueId};
use crate::queue::{DeadInfo, Message, MessageExtras, SegmentRef};
use crate::storage::gate::Gate;
use crate::storage::log::Log;
use crate::storage::recovery::{
    LogImage, LogReplay, ManifestCheck, RecoveredLog, RecoveredMessage, RecoveredQueue,
    RecoveryError, SegmentFile, Truncation,
};
use crate::time::{Instant, WallClock};

/// What recovery found, for the driver's log line and for the torn tail it must cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub queues: u64,
    pub messages: u64,
    pub segments: u64,
    pub records: u64,
    /// Cut the newest segment here before appending anything (before handing the broker's
    /// first storage request to the worker).
    pub truncation: Option<Truncation>,
    /// What the manifest said: absent, in agreement, or a loss the operator accepted.
    pub manifest: ManifestCheck,
}

/// A broker being rebuilt from a data directory's log, one segment file at a time, so that
/// the driver holds one segment's bytes at once, never the whole log:
///
/// ```text
/// let mut recovery = Recovery::new(config, now);
/// for each segment file, oldest first:
///     recovery.handle_segment(SegmentFile { name, bytes }, is_the_last_file)?;
///     // the bytes are dropped here: nothing recovery keeps refers to them
/// let (broker, report) = recovery.finish(manifest_bytes, accept_data_loss)?;
/// // cut report.truncation, if any, before handing the broker's first request to the worker
/// ```
///
/// Every check and refusal is the one [`Broker::recover`] makes on a whole log (it is a loop
/// over this). After an error, recovery is over: drop it.
#[derive(Debug)]
pub struct Recovery {
    config: BrokerConfig,
    now: Instant,
    replay: LogReplay,
}

impl Recovery {
    pub fn new(config: BrokerConfig, now: Instant) -> Recovery {
        let replay = LogReplay::with_payload_cache(config.storage.payload_cache_bytes);
        Recovery { config, now, replay }
    }

    /// Scans, checks and applies the next segment file, oldest first; `newest` says it is the
    /// last file of the data directory (the only one that may end in a torn tail). The file is
    /// consumed: what stays live is copied out of it, and its buffer is freed on return unless
    /// the caller kept another reference.
    ///
    /// # Panics
    ///
    /// If a segment is handed over after the one said to be the newest.
    pub fn handle_segment(&mut self, file: SegmentFile, newest: bool) -> Result<(), RecoveryError> {
        self.replay.handle_segment(file, newest, &self.config.keyring)
    }

    /// The broker the segments rebuilt, once the log is checked against the manifest (its
    /// bytes, if the data directory has one). Refuses a log the manifest says was cut short,
    /// unless `accept_data_loss` (the operator's `--accept-data-loss` for this start).
    pub fn finish(
        self,
        manifest: Option<&[u8]>,
        accept_data_loss: bool,
    ) -> Result<(Broker, RecoveryReport), RecoveryError> {
        let recovered = self.replay.finish(manifest, accept_data_loss)?;
        Ok(Broker::recovered(self.config, self.now, recovered))
    }
}

impl Broker {
    /// A broker rebuilt from a data directory's log (no segments: a new broker). Every
    /// message that was not acked is back where it was: ready, delayed until its due time, or
    /// dead-lettered; a message that was in flight at the crash is ready again with that
    /// attempt counted (and dead-lettered if it was its last). Refuses a log the manifest says
    /// was cut short, unless the image says the operator accepts the loss.
    ///
    /// A loop over [`Recovery`] for a log held whole in memory, as tests and tools have it; a
    /// server hands segments over one at a time instead.
    pub fn recover(
        config: BrokerConfig,
        now: Instant,
        image: &LogImage,
    ) -> Result<(Broker, RecoveryReport), RecoveryError> {
        let mut recovery = Recovery::new(config, now);
        let count = image.segments.len();
        for (index, file) in image.segments.iter().enumerate() {
            recovery.handle_segment(file.clone(), index + 1 == count)?;
        }
        recovery.finish(image.manifest.as_deref(), image.accept_data_loss)
    }

    /// The broker a replayed log rebuilt.
    fn recovered(
        config: BrokerConfig,
        now: Instant,
        recovered: RecoveredLog,
    ) -> (Broker, RecoveryReport) {
        let Some(last_segment) = recovered.last_segment else {
            let report = RecoveryReport {
                queues: 0,
                messages: 0,
                segments: 0,
                records: 0,
                truncation: recovered.truncation,
                manifest: recovered.manifest_check,
            };
            let log = Log::create(
                config.storage.clone(),
                config.keyring.clone(),
                recovered.end_lsn,
                recovered.manifest,
            );
            return (Broker::new_with_log(config, now, log), report);
        };
        let mut log = Log::resume(
            config.storage.clone(),
            config.keyring.clone(),
            recovered.segments.clone(),
            last_segment,
            recovered.end_lsn,
            recovered.manifest,
        );
        log.prepare_appends();
        let mut broker = Broker::with_log(config, now, log);
        assert!(broker.log.end_lsn() >= recovered.end_lsn, "appends resume past the recovered log");
        broker.next_queue_id = recovered.counters.next_queue_id;
        broker.next_message_seq = recovered.counters.next_message_seq;
        let mut messages = 0;
        for (id, queue) in recovered.queues {
            messages += broker.restore_queue(QueueId(id), queue);
        }
        for ((pattern, queue), owner) in recovered.bindings {
            broker.bindings.add(&pattern, QueueId(queue), owner);
        }
        // The segment we resume may lack a checkpoint (a crash right after it was created):
        // write one so older segments can always be deleted safely.
        broker.write_checkpoint();
        // Says where this log now ends, so that the next start can tell whether it was cut.
        broker.log.write_manifest();
        broker.dead_letter_exhausted();
        // Hand the checkpoint to the worker now: the driver syncs it before serving anyone.
        broker.after_input();
        // Everything recovered counts as synced; the new checkpoint after it is not yet.
        assert_eq!(broker.log.synced_lsn(), recovered.end_lsn);
        assert!(broker.log.sync_in_flight(), "the startup checkpoint's sync was not asked for");
        let report = RecoveryReport {
            queues: broker.queues.len() as u64,
            messages,
            segments: broker.log.segments().len() as u64,
            records: recovered.records,
            truncation: recovered.truncation,
            manifest: recovered.manifest_check,
        };
        (broker, report)
    }

    /// A new broker on a new log (its first segment and manifest are to be written).
    pub(super) fn new_with_log(config: BrokerConfig, now: Instant, log: Log) -> Broker {
        let mut broker = Broker::with_log(config, now, log);
        broker.write_checkpoint();
        broker.after_input();
        assert!(broker.log.sync_in_flight(), "a new log's checkpoint is synced before serving");
        broker
    }

    fn restore_queue(&mut self, id: QueueId, recovered: RecoveredQueue) -> u64 {
        let clock = self.config.wall_clock();
        let now_unix_ms = clock.unix_ms(self.now);
        self.install_queue(id, recovered.name, recovered.options);
        let entries_max = self.config.limits.dedup_entries_max as usize;
        let queue = self.queues.get_mut(&id).expect("just installed");
        for (message_id, expires_unix_ms) in recovered.dedup {
            if expires_unix_ms > now_unix_ms {
                queue.dedup.insert(&message_id, clock.instant_at(expires_unix_ms), entries_max);
            }
        }
        let count = recovered.messages.len() as u64;
        assert_eq!(queue.messages_len(), 0, "queue {id:?} restored twice");
        for recovered in recovered.messages.into_values() {
            let not_before = recovered.rare.as_ref().and_then(|r| r.not_before_unix_ms);
            let due = not_before.filter(|at| *at > now_unix_ms).map(|at| clock.instant_at(at));
            queue.admit(message_from(recovered, clock), Gate::default(), due);
        }
        debug_assert_eq!(self.queues[&id].messages_len(), count);
        self.dirty_queues.insert(id);
        self.arm_queue_timer(id);
        count
    }

    /// Messages whose last allowed attempt was in flight at the crash: that attempt failed
    /// (the consumer never settled it), so they go to their dead-letter queue now rather than
    /// being delivered once more than allowed.
    fn dead_letter_exhausted(&mut self) {
        let at_unix_ms = self.config.wall_clock().unix_ms(self.now);
        let queue_ids: Vec<QueueId> = self.queues.keys().copied().collect();
        for id in queue_ids {
            let queue = self.queues.get_mut(&id).expect("queue exists");
            let Some(max) = queue.options.attempts_max else { continue };
            let exhausted = queue.extract(|m| m.attempts >= max);
            debug_assert!(exhausted.iter().all(|m| m.segment.is_some()), "recovered, so logged");
            for mut message in exhausted {
                let reason = Some("the broker restarted during this attempt".to_string());
                message.record_attempt(AttemptRecord {
                    at_unix_ms,
                    outcome: AttemptOutcome::Disconnect,
                    reason,
                });
                self.dispose(id, message, DeadReason::MaxAttempts);
            }
        }
    }
}

pub(super) fn message_from(recovered: RecoveredMessage, clock: WallClock) -> Message {
    let extras = recovered.rare.map(|rare| MessageExtras {
        id: rare.id,
        headers: rare.headers,
        group: rare.group,
        topic: rare.topic,
        history: rare.history,
        dead: rare.dead.map(|d| DeadInfo {
            source: QueueId(d.source),
            reason: d.reason,
            dead_unix_ms: d.dead_unix_ms,
        }),
        not_before_unix_ms: rare.not_before_unix_ms,
    });
    Message {
        seq: MessageSeq(recovered.seq),
        // Recovery copied it out of its segment (into its arena), or left it there.
        payload: recovered.payload,
        published_unix_ms: recovered.published_unix_ms,
        attempts: recovered.attempts,
        priority: recovered.priority,
        expires_at: recovered.expires_unix_ms.map_or(Instant::NEVER, |at| clock.instant_at(at)),
        segment: SegmentRef::new(recovered.segment),
        record: recovered.record,
        extras: extras.and_then(MessageExtras::boxed_if_any),
        matches_record: recovered.matches_record,
    }
}
