//! What happens to a message that was not acked: a failed attempt (nack, lease timeout,
//! disconnect) retried after the queue's backoff, or the end of the line: dead-lettered with
//! its history and a reason, or dropped.

use chute_protocol::{AttemptOutcome, AttemptRecord, DeadReason, Durability, ExpiryPolicy};

use super::connection::InFlight;
use super::storage::SyncNeed;
use super::Broker;
use crate::ids::QueueId;
use crate::policy::backoff::retry_delay_ms;
use crate::queue::{DeadInfo, Message, SegmentRef};
use crate::storage::gate::Gate;
use crate::storage::records::{DeadLettered, Failed, Record};
use crate::time::Instant;

/// How a failed attempt was reported.
pub(super) struct Failure {
    pub outcome: AttemptOutcome,
    pub reason: Option<String>,
    /// The consumer asked for this retry delay instead of the backoff.
    pub delay_ms: Option<u64>,
}

impl Broker {
    /// An in-flight message's attempt failed. It is dead-lettered if that was its last allowed
    /// attempt (or a reject, or it expired meanwhile), else retried after the backoff.
    pub(super) fn fail_attempt(&mut self, in_flight: InFlight, failure: Failure) {
        let InFlight { queue: queue_id, mut message, .. } = in_flight;
        let Some(queue) = self.queues.get_mut(&queue_id) else { return };
        assert!(queue.in_flight > 0, "queue {:?}: a failed attempt it did not count", queue.name);
        let at_unix_ms = self.config.wall_clock().unix_ms(self.now);
        let record =
            AttemptRecord { at_unix_ms, outcome: failure.outcome, reason: failure.reason.clone() };
        message.record_attempt(record);
        match failure.outcome {
            AttemptOutcome::Nack => queue.counters.nacked += 1,
            AttemptOutcome::Timeout => queue.counters.timed_out += 1,
            AttemptOutcome::Reject => queue.counters.rejected += 1,
            AttemptOutcome::Disconnect => {}
        }
        let final_reason = if failure.outcome == AttemptOutcome::Reject {
            Some(DeadReason::Rejected)
        } else if queue.options.attempts_max.is_some_and(|max| message.attempts >= max) {
            Some(DeadReason::MaxAttempts)
        } else if message.is_expired(self.now) {
            Some(DeadReason::Expired)
        } else {
            None
        };
        if let Some(reason) = final_reason {
            queue.in_flight -= 1;
            self.log_failed(queue_id, &message, &failure, None);
            return self.dispose(queue_id, message, reason);
        }
        let delay_ms = match failure.delay_ms {
            Some(ms) => ms,
            None => retry_delay_ms(&queue.options.backoff, message.attempts, &mut self.rng),
        };
        let due = (delay_ms > 0).then(|| self.now.plus_ms(delay_ms));
        assert!(due.is_none_or(|due| due > self.now), "a retry due before it failed");
        let retry_at_unix_ms = due.map(|d| self.config.wall_clock().unix_ms(d));
        message.edit_extras(|e| e.not_before_unix_ms = retry_at_unix_ms);
        self.log_failed(queue_id, &message, &failure, retry_at_unix_ms);
        self.queues.get_mut(&queue_id).expect("queue exists").retry(message, due);
        self.dirty_queues.insert(queue_id);
        self.arm_queue_timer(queue_id);
    }

    fn log_failed(
        &mut self,
        queue: QueueId,
        message: &Message,
        failure: &Failure,
        retry_at_unix_ms: Option<u64>,
    ) {
        if message.segment.is_none() {
            return;
        }
        let record = Record::<&[u8]>::Failed(Failed {
            queue: queue.0,
            seq: message.seq.0,
            outcome: failure.outcome,
            reason: failure.reason.clone(),
            at_unix_ms: self.config.wall_clock().unix_ms(self.now),
            retry_at_unix_ms,
        });
        self.append_record(&record, SyncNeed::Within(super::storage::LAZY_SYNC_MS));
    }

    /// A message leaves its queue for good without an ack (it was already taken out of the
    /// queue's places or out of flight): into the queue's dead-letter queue with `reason`, or
    /// dropped when there is none (or, for expiry, when the queue's policy says drop).
    pub(super) fn dispose(&mut self, queue_id: QueueId, mut message: Message, reason: DeadReason) {
        let queue = self.queues.get_mut(&queue_id).expect("queue exists");
        queue.forget(&message);
        // Forgetting it may have released its group's next message.
        self.dirty_queues.insert(queue_id);
        if reason == DeadReason::Expired {
            queue.counters.expired += 1;
        }
        let drop_expired =
            reason == DeadReason::Expired && queue.options.expiry == ExpiryPolicy::Drop;
        let target = queue
            .options
            .dead_letter
            .as_ref()
            .and_then(|name| self.queue_ids.get(name).copied())
            .filter(|target| *target != queue_id && !drop_expired);
        let dead_unix_ms = self.config.wall_clock().unix_ms(self.now);
        if message.segment.is_some() {
            let record = DeadLettered {
                queue: queue_id.0,
                seq: message.seq.0,
                target: target.map(|t| t.0),
                reason,
                at_unix_ms: dead_unix_ms,
            };
            self.append_record(
                &Record::<&[u8]>::DeadLettered(record),
                SyncNeed::Within(super::storage::LAZY_SYNC_MS),
            );
        }
        let queue = self.queues.get_mut(&queue_id).expect("queue exists");
        let Some(target) = target else {
            queue.counters.dropped += 1;
            self.release_message(&message);
            return;
        };
        queue.counters.dead_lettered += 1;
        message.attempts = 0;
        message.matches_record = false;
        // The message starts a new life in the dead-letter queue, under that queue's TTL.
        let ttl_ms = self.queues[&target].options.ttl_ms;
        message.expires_at = ttl_ms.map_or(Instant::NEVER, |ms| self.now.plus_ms(ms));
        message.edit_extras(|e| {
            e.dead = Some(DeadInfo { source: queue_id, reason, dead_unix_ms });
            e.not_before_unix_ms = None;
        });
        self.move_into(target, message);
    }

    /// A message that left another queue (dead-lettered, redriven) joins `target` and is from
    /// then on as durable as `target` promises: a message of an in-memory queue is logged when
    /// it moves into a logged one, and delivered only once that record is as durable as the
    /// queue's publishes are; a logged message moving into an in-memory queue stops being
    /// live in the log (recovery drops it there too: in-memory queues come back empty).
    pub(super) fn move_into(&mut self, target: QueueId, mut message: Message) {
        let logged_target = self.queues[&target].options.durability != Durability::None;
        let mut gate = Gate::default();
        if logged_target && message.segment.is_none() {
            gate = self.log_published(target, &mut message);
            if self.log.has_unsynced() {
                self.want_sync(SyncNeed::Now);
            }
        } else if !logged_target && message.segment.is_some() && message.payload.is_held() {
            self.release_message(&message);
            message.segment = SegmentRef::NONE;
        }
        // A payload on disk keeps its record live (and its segment) until the message is
        // settled, in-memory queue or not: it is read back from there.
        assert!(
            message.segment.is_some() == logged_target || !message.payload.is_held(),
            "as durable as its new queue"
        );
        let queue = self.queues.get_mut(&target).expect("target queue exists");
        let messages_before = queue.messages_len();
        queue.admit(message, gate, None);
        assert_eq!(
            queue.messages_len(),
            messages_before + 1,
            "a moved message is in its queue once"
        );
        if queue.has_pending() {
            self.pending_queues.insert(target);
        }
        self.dirty_queues.insert(target);
        self.arm_queue_timer(target);
    }
}
