//! Publishing: validating each message, routing it to its queues, deduplicating, rate
//! limiting, storing, confirming.

use chute_protocol::{
    DeadReason, Destination, Durability, FrameKind, OverflowPolicy, Publish, PublishFailure,
    PublishMessage, PublishRejected, Schedule, GROUP_KEY_LEN_MAX, MESSAGE_ID_LEN_MAX, NAME_LEN_MAX,
    PRIORITY_MAX,
};

use super::errors::{PublishError, QueueLimit};
use super::outbound::Gate;
use super::rate_limits::WaitingPublishes;
use super::storage::{stored, SyncNeed};
use super::Broker;
use crate::auth::Access;
use crate::ids::{ConnId, Lsn, MessageSeq, QueueId};
use crate::queue::{own_payloads, Message, MessageExtras, Payload, RecordAt, SegmentRef};
use crate::storage::records::{Published, Record};
use crate::time::Instant;

/// Where a publish goes: the queues it is copied to, and how it was addressed.
struct Route {
    queues: Vec<QueueId>,
    topic: Option<String>,
    mandatory: bool,
}

impl Broker {
    pub(super) fn handle_publish(&mut self, conn: ConnId, publish: Publish) {
        let batch_max = self.connection_mut(conn).limits.publish_batch_max as usize;
        let count = publish.messages.len();
        let connection = self.connection_mut(conn);
        let first_seq = connection.next_publish_seq;
        connection.next_publish_seq += count as u64;
        if count > batch_max {
            let max = batch_max as u32;
            return self.refuse_all(
                conn,
                first_seq,
                count,
                &PublishError::BatchTooLarge { count, max },
            );
        }
        let (what, name) = match &publish.destination {
            Destination::Queue(name) => ("queue", name),
            Destination::Topic(topic) => ("topic", topic),
        };
        // MUTANT skip-topic-write-check: topic publishes skip the write check.
        #[cfg(feature = "mutants")]
        let skip_check =
            what == "topic" && crate::mutants::active(crate::mutants::Mutant::SkipTopicWriteCheck);
        #[cfg(not(feature = "mutants"))]
        let skip_check = false;
        if !skip_check {
            if let Err(denied) = self.check_access(conn, Access::Write, what, name) {
                return self.refuse_all(conn, first_seq, count, &denied.into());
            }
        }
        let mut messages = publish.messages;
        own_payloads(&mut messages);
        let waiting = WaitingPublishes {
            destination: publish.destination,
            mandatory: publish.mandatory,
            next_seq: first_seq,
            messages: messages.into(),
        };
        self.publish_waiting(conn, waiting);
    }

    /// Publishes a batch's messages in order, each once every `pause` rate limit it draws on
    /// has a token; the rest wait with the connection (see `rate_limits.rs`). The route is
    /// worked out when the messages are taken, so a batch that waited follows the bindings of
    /// the moment it is published.
    pub(super) fn publish_waiting(&mut self, conn: ConnId, mut waiting: WaitingPublishes) {
        let count = waiting.messages.len();
        let route = match self.route(&waiting.destination, waiting.mandatory) {
            Ok(route) => route,
            Err(error) => return self.refuse_all(conn, waiting.next_seq, count, &error),
        };
        let mut failures = Vec::new();
        while let Some(message) = waiting.messages.pop_front() {
            if let Err(until) = self.take_pausing_rate_limits(conn, &route.queues) {
                waiting.messages.push_front(message);
                self.wait_for_rate_limit(conn, waiting, until);
                break;
            }
            let seq = waiting.next_seq;
            waiting.next_seq += 1;
            match self.accept_message(conn, &route, message) {
                Ok(gate) => self.connection_mut(conn).confirm(seq, gate),
                Err(error) => failures.push(error.to_failure(seq)),
            }
        }
        self.dirty_queues.extend(route.queues.iter().copied());
        self.reply_rejected(conn, failures);
    }

    /// The queues a destination names: one queue, or every queue bound to a matching pattern.
    fn route(&self, destination: &Destination, mandatory: bool) -> Result<Route, PublishError> {
        let (Destination::Queue(name) | Destination::Topic(name)) = destination;
        if name.len() > NAME_LEN_MAX {
            return Err(PublishError::DestinationTooLong { len: name.len() });
        }
        match destination {
            Destination::Queue(name) => match self.queue_ids.get(name) {
                Some(id) => Ok(Route { queues: vec![*id], topic: None, mandatory }),
                None => Err(PublishError::NoSuchQueue(name.clone())),
            },
            Destination::Topic(topic) => {
                crate::policy::topic::check_topic(topic)?;
                Ok(Route {
                    queues: self.bindings.route(topic),
                    topic: Some(topic.clone()),
                    mandatory,
                })
            }
        }
    }

    /// Stores one message in every queue of its route, or in none: returns what its confirm
    /// must wait for.
    fn accept_message(
        &mut self,
        conn: ConnId,
        route: &Route,
        message: PublishMessage,
    ) -> Result<Gate, PublishError> {
        self.check_message(conn, &message)?;
        if route.queues.is_empty() {
            if route.mandatory {
                let topic = route.topic.clone().unwrap_or_default();
                return Err(PublishError::Unroutable(topic));
            }
            self.unroutable_dropped += 1;
            return Ok(Gate::default());
        }
        if let Err(refusal) = self.take_rejecting_rate_limits(conn, &route.queues) {
            for queue in &route.queues {
                self.queues.get_mut(queue).expect("routed queue").refusals.rate_limited += 1;
            }
            return Err(refusal);
        }
        let copies: Vec<QueueId> = route
            .queues
            .iter()
            .copied()
            .filter(|q| !self.is_duplicate(*q, message.id.as_deref()))
            .collect();
        for &queue in &copies {
            if let Err(refusal) = self.make_room(queue, message.payload.len() as u64) {
                self.queues.get_mut(&queue).expect("routed queue").refusals.queue_full += 1;
                return Err(refusal);
            }
        }
        let mut gate = Gate::default();
        for &queue in route.queues.iter().filter(|q| !copies.contains(q)) {
            self.queues.get_mut(&queue).expect("routed queue").counters.deduplicated += 1;
            // The first copy may not be durable yet: the duplicate's confirm must not overtake it,
            // and now someone waits for whatever is unsynced.
            gate = gate.max(self.queue_gate(queue, self.log.end_lsn()));
            if self.log.has_unsynced() {
                self.want_sync(SyncNeed::Now);
            }
        }
        for queue in copies {
            gate = gate.max(self.store_copy(queue, &message, route.topic.clone()));
        }
        // A confirm may only wait for a position the log will reach.
        let end = self.log.end_lsn();
        assert!(gate.written_lsn <= end && gate.synced_lsn <= end, "confirm gated past the log");
        Ok(gate)
    }

    /// Builds the queue's own copy of a message, logs and enqueues it.
    fn store_copy(
        &mut self,
        queue_id: QueueId,
        message: &PublishMessage,
        topic: Option<String>,
    ) -> Gate {
        let now = self.now;
        let clock = self.config.wall_clock();
        let (messages_before, bytes_before) = {
            let queue = &self.queues[&queue_id];
            (queue.messages_len(), queue.bytes)
        };
        let seq = MessageSeq(self.next_message_seq);
        self.next_message_seq += 1;
        let options = &self.queues[&queue_id].options;
        let ttl_ms = message.ttl_ms.or(options.ttl_ms);
        let dedup_window_ms = options.dedup_window_ms;
        let due = match message.schedule {
            Some(Schedule::DelayMs(ms)) if ms > 0 => Some(now.plus_ms(ms)),
            Some(Schedule::AtUnixMs(at)) if at > clock.unix_ms(now) => Some(clock.instant_at(at)),
            _ => None,
        };
        let extras = MessageExtras {
            id: message.id.clone(),
            headers: message.headers.clone(),
            group: message.group.clone(),
            topic,
            not_before_unix_ms: due.map(|d| clock.unix_ms(d)),
            ..MessageExtras::default()
        };
        let mut stored_message = Message {
            seq,
            // A slice of the batch's own buffer (`own_payloads`): a reference count, no copy.
            payload: Payload::Held(message.payload.clone()),
            published_unix_ms: clock.unix_ms(now),
            attempts: 0,
            priority: message.priority,
            expires_at: ttl_ms.map_or(Instant::NEVER, |ms| now.plus_ms(ms)),
            segment: SegmentRef::NONE,
            record: RecordAt::UNKNOWN,
            extras: extras.boxed_if_any(),
            matches_record: false,
        };
        // Log first, remember the id second: appending may start a new segment, whose
        // checkpoint must not carry the id ahead of the record (a crash could keep the
        // checkpoint and lose the record, and the dedup window would then swallow the retry).
        let gate = self.log_published(queue_id, &mut stored_message);
        if let (Some(id), Some(window_ms)) = (message.id.as_deref(), dedup_window_ms) {
            let entries_max = self.config.limits.dedup_entries_max as usize;
            self.queues.get_mut(&queue_id).expect("routed queue").dedup.insert(
                id,
                now.plus_ms(window_ms),
                entries_max,
            );
        }
        let queue = self.queues.get_mut(&queue_id).expect("routed queue");
        queue.enqueue(stored_message, gate, due);
        assert_eq!(queue.messages_len(), messages_before + 1, "the copy is in its queue once");
        assert_eq!(queue.bytes, bytes_before + message.payload.len() as u64);
        if queue.has_pending() {
            self.pending_queues.insert(queue_id);
        }
        self.arm_queue_timer(queue_id);
        gate
    }

    /// What a confirm of a record at `end` must wait for on this queue.
    fn queue_gate(&self, queue: QueueId, end: Lsn) -> Gate {
        debug_assert!(end <= self.log.end_lsn(), "a gate past the end of the log");
        match self.queues[&queue].options.durability {
            Durability::None => Gate::default(),
            // MUTANT confirm-before-sync: the confirm and first delivery leave on append.
            #[cfg(feature = "mutants")]
            Durability::Always
                if crate::mutants::active(crate::mutants::Mutant::ConfirmBeforeSync) =>
            {
                Gate::default()
            }
            Durability::Always => Gate::synced(end),
            Durability::Interval { .. } => Gate::written(end),
        }
    }

    /// Writes the `Published` record of a message to a logged queue; returns what the message
    /// (its confirm and its first delivery) must wait for.
    pub(super) fn log_published(&mut self, queue: QueueId, message: &mut Message) -> Gate {
        let need = match self.queues[&queue].options.durability {
            Durability::None => return Gate::default(),
            Durability::Always => SyncNeed::Now,
            Durability::Interval { sync_interval_ms } => SyncNeed::Within(sync_interval_ms.into()),
        };
        // Logged once per queue: a second record would count it live twice.
        assert!(message.segment.is_none(), "message {:?} is already logged", message.seq);
        let record = Record::Published(Published {
            queue: queue.0,
            message: stored(message, &self.config.wall_clock()),
        });
        let end = self.append_record(&record, need);
        let segment = self.log.active_base();
        assert!(segment < end, "the record lies in the segment it is counted live in");
        message.segment = SegmentRef::new(segment);
        message.record = RecordAt::new(segment, self.log.last_append_lsn(), end);
        message.matches_record = true;
        self.log.add_live(segment, message.payload_len());
        self.queue_gate(queue, end)
    }

    fn is_duplicate(&self, queue: QueueId, id: Option<&str>) -> bool {
        let queue = &self.queues[&queue];
        match (id, queue.options.dedup_window_ms) {
            (Some(id), Some(_)) => queue.dedup.contains(id, self.now),
            _ => false,
        }
    }

    /// Makes room for a message of `payload_len` bytes, dropping the oldest messages if the
    /// queue's overflow policy says so; refuses it otherwise.
    fn make_room(&mut self, queue_id: QueueId, payload_len: u64) -> Result<(), PublishError> {
        let queue_messages_max = self.config.limits.queue_messages_max;
        loop {
            let queue = &self.queues[&queue_id];
            let messages_max =
                queue.options.messages_max.unwrap_or(queue_messages_max).min(queue_messages_max);
            let bytes_max = queue.options.bytes_max.unwrap_or(u64::MAX);
            let full_by_count = queue.messages_len() >= messages_max;
            let full_by_bytes = queue.bytes.saturating_add(payload_len) > bytes_max;
            if !full_by_count && !full_by_bytes {
                return Ok(());
            }
            let limit = if full_by_count {
                QueueLimit::Messages(messages_max)
            } else {
                QueueLimit::Bytes(bytes_max)
            };
            let refusal = PublishError::QueueFull { queue: queue.name.clone(), limit };
            if queue.options.overflow == OverflowPolicy::RejectPublish || payload_len > bytes_max {
                return Err(refusal);
            }
            let messages_before = queue.messages_len();
            let Some(oldest) = self.queues.get_mut(&queue_id).expect("queue exists").take_oldest()
            else {
                return Err(refusal);
            };
            self.dispose(queue_id, oldest, DeadReason::Overflow);
            // Each round drops one message, so the loop ends.
            assert_eq!(self.queues[&queue_id].messages_len(), messages_before - 1);
        }
    }

    /// Rules every message must follow, whatever its queue.
    fn check_message(&self, conn: ConnId, message: &PublishMessage) -> Result<(), PublishError> {
        let max = self.connections[&conn].limits.payload_size_max;
        let len = message.payload.len();
        if len > max as usize {
            return Err(PublishError::MessageTooLarge { len, max });
        }
        if message.priority > PRIORITY_MAX {
            return Err(PublishError::PriorityTooHigh(message.priority));
        }
        if let Some(len) = message.id.as_ref().map(String::len).filter(|l| *l > MESSAGE_ID_LEN_MAX)
        {
            return Err(PublishError::IdTooLong { len });
        }
        if let Some(len) =
            message.group.as_ref().map(String::len).filter(|l| *l > GROUP_KEY_LEN_MAX)
        {
            return Err(PublishError::GroupTooLong { len });
        }
        if let Some(len) = message.headers.iter().map(|h| h.name.len()).find(|l| *l > NAME_LEN_MAX)
        {
            return Err(PublishError::HeaderNameTooLong { len });
        }
        Ok(())
    }

    fn refuse_all(&mut self, conn: ConnId, first_seq: u64, count: usize, error: &PublishError) {
        if count == 0 {
            return;
        }
        let failures =
            (first_seq..first_seq + count as u64).map(|seq| error.to_failure(seq)).collect();
        self.reply_rejected(conn, failures);
    }

    /// Sends refusals in as many `PublishRejected` frames as they need: a batch of a thousand
    /// refusals with their texts does not fit the smallest frame limit.
    fn reply_rejected(&mut self, conn: ConnId, failures: Vec<PublishFailure>) {
        // A failure's fixed fields take at most 26 bytes, its text's length 2 more.
        let frame_bytes_max = self.connection_mut(conn).limits.frame_size_max as usize - 8;
        let (mut batch, mut batch_bytes) = (Vec::new(), 0);
        for failure in failures {
            let bytes = failure.message.len() + 28;
            if batch_bytes + bytes > frame_bytes_max && !batch.is_empty() {
                let failures = std::mem::take(&mut batch);
                self.reply(conn, FrameKind::PublishRejected, &PublishRejected { failures });
                batch_bytes = 0;
            }
            batch_bytes += bytes;
            batch.push(failure);
        }
        if !batch.is_empty() {
            self.reply(conn, FrameKind::PublishRejected, &PublishRejected { failures: batch });
        }
    }
}
