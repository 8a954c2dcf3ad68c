//! Queue administration: declare, delete, purge, list, stats.

use chute_protocol::{
    push_to_ranges, ConsumerInfo, Done, ErrorCode, FrameKind, QueueDeclare, QueueDeclareOk,
    QueueDelete, QueueList, QueueListOk, QueueOptions, QueuePurge, QueueStats, QueueStatsOk,
    QueueStatsRequest, QueueSummary, SubscriptionCancelled, LIST_PAGE_MAX,
};

use super::errors::{DeclareError, OptionsError, QueueAdminError};
use super::outbound::Gate;
use super::storage::{SyncNeed, SEQ_RANGES_PER_RECORD_MAX};
use super::Broker;
use crate::auth::AuditKind;
use crate::ids::{ConnId, QueueId};
use crate::io::{Event, Output};
use crate::names::check_name;
use crate::policy::token_bucket::TokenBucket;
use crate::queue::{ColdRun, Queue};
use crate::storage::records::{QueueDeclared, QueueRef, Record, Seqs};

impl Broker {
    pub(super) fn handle_declare(&mut self, conn: ConnId, declare: QueueDeclare) {
        let request_id = declare.request_id;
        match self.declare_queue(&declare.name, declare.options, declare.passive) {
            Ok((created, options)) => {
                if created {
                    self.audit_done(AuditKind::QueueDeclared, conn, declare.name);
                }
                let ok = QueueDeclareOk { request_id, created, options };
                self.reply_durable(conn, FrameKind::QueueDeclareOk, &ok);
            }
            Err(error) => self.reply_error(conn, request_id, error.code(), error.to_string()),
        }
    }

    /// Creates the queue, or checks an existing one has the same options. Returns whether it
    /// was created and the options in force.
    pub fn declare_queue(
        &mut self,
        name: &str,
        options: QueueOptions,
        passive: bool,
    ) -> Result<(bool, QueueOptions), DeclareError> {
        check_name("queue name", name)?;
        if let Some(id) = self.queue_ids.get(name) {
            let existing = &self.queues[id].options;
            if passive || *existing == options {
                return Ok((false, existing.clone()));
            }
            let difference = describe_difference(existing, &options);
            return Err(DeclareError::OptionsMismatch { name: name.to_string(), difference });
        }
        if passive {
            return Err(DeclareError::NoSuchQueue(name.to_string()));
        }
        validate_options(name, &options)?;
        // Room for the queue, and for its dead-letter queue if that must be created too.
        let creating = 1 + usize::from(
            options.dead_letter.as_ref().is_some_and(|d| !self.queue_ids.contains_key(d)),
        );
        if self.queues.len() + creating > self.config.limits.queues_max as usize {
            return Err(DeclareError::QueuesMax { max: self.config.limits.queues_max });
        }
        // A dead-letter queue that does not exist yet is created with default options, so that
        // declaring a queue with a dead-letter target is enough to have both.
        if let Some(target) = options.dead_letter.clone() {
            if !self.queue_ids.contains_key(&target) {
                self.create_queue(&target, QueueOptions::default());
            }
        }
        self.create_queue(name, options.clone());
        assert!(self.queues.len() <= self.config.limits.queues_max as usize, "queues_max exceeded");
        Ok((true, options))
    }

    /// Changes an existing queue's options from now on; see [`Broker::alter_queue`]. The new
    /// options are logged as the queue's declaration, which recovery applies over the old one.
    pub(super) fn alter_queue_options(
        &mut self,
        name: &str,
        options: QueueOptions,
    ) -> Result<QueueOptions, QueueAdminError> {
        let id = self.queue_id(name)?;
        let existing = self.queues[&id].options.clone();
        if existing.durability != options.durability {
            let existing = format!("{:?}", existing.durability);
            let name = name.to_string();
            return Err(QueueAdminError::Immutable { name, option: "durability", existing });
        }
        validate_options(name, &options)?;
        if options == existing {
            return Ok(existing);
        }
        if let Some(target) = options.dead_letter.clone() {
            if !self.queue_ids.contains_key(&target) {
                let max = self.config.limits.queues_max;
                if self.queues.len() >= max as usize {
                    return Err(QueueAdminError::QueuesMax { max });
                }
                self.create_queue(&target, QueueOptions::default());
            }
        }
        let declared = QueueDeclared { queue: id.0, name: name.into(), options: options.clone() };
        self.append_record(&Record::<&[u8]>::QueueDeclared(declared), SyncNeed::Now);
        let now = self.now;
        let queue = self.queues.get_mut(&id).expect("queue exists");
        if existing.publish_rate != options.publish_rate {
            queue.publish_rate = options.publish_rate.map(|rate| TokenBucket::new(rate, now));
        }
        queue.options = options.clone();
        self.dirty_queues.insert(id);
        self.arm_queue_timer(id);
        Ok(options)
    }

    fn create_queue(&mut self, name: &str, options: QueueOptions) -> QueueId {
        assert!(!self.queue_ids.contains_key(name), "queue {name:?} created twice");
        let id = QueueId(self.next_queue_id);
        self.next_queue_id += 1;
        let declared =
            QueueDeclared { queue: id.0, name: name.to_string(), options: options.clone() };
        self.append_record(&Record::<&[u8]>::QueueDeclared(declared), SyncNeed::Now);
        self.install_queue(id, name.to_string(), options);
        self.outputs.push_back(Output::Event(Event::QueueCreated { name: name.to_string() }));
        id
    }

    /// Adds a queue to the broker's maps (new, or recovered).
    pub(super) fn install_queue(&mut self, id: QueueId, name: String, options: QueueOptions) {
        let mut queue = Queue::new(id, name.clone(), options);
        queue.publish_rate =
            queue.options.publish_rate.map(|rate| TokenBucket::new(rate, self.now));
        // Ids come from a counter that recovery keeps past every id the log ever used.
        assert!(id.0 < self.next_queue_id, "queue id {id:?} not handed out by the counter");
        let previous = self.queues.insert(id, queue);
        assert!(previous.is_none(), "queue id {id:?} installed twice");
        self.queue_ids.insert(name, id);
    }

    pub(super) fn handle_delete(&mut self, conn: ConnId, delete: QueueDelete) {
        let request_id = delete.request_id;
        match self.delete_queue_checked(&delete.name, delete.if_empty, delete.if_unused) {
            Ok(count) => {
                self.audit_done(AuditKind::QueueDeleted, conn, delete.name);
                self.reply_durable(conn, FrameKind::Done, &Done { request_id, count })
            }
            Err(error) => self.reply_error(conn, request_id, error.code(), error.to_string()),
        }
    }

    /// Deletes the named queue unless `if_empty` or `if_unused` forbids it; returns how many
    /// messages it held.
    pub(super) fn delete_queue_checked(
        &mut self,
        name: &str,
        if_empty: bool,
        if_unused: bool,
    ) -> Result<u64, QueueAdminError> {
        let id = self.queue_id(name)?;
        let queue = &self.queues[&id];
        if if_empty && queue.messages_len() > 0 {
            let messages = queue.messages_len();
            return Err(QueueAdminError::NotEmpty { name: name.to_string(), messages });
        }
        if if_unused && !queue.consumers().is_empty() {
            let consumers = queue.consumers().len();
            return Err(QueueAdminError::InUse { name: name.to_string(), consumers });
        }
        Ok(self.delete_queue(id))
    }

    /// The id of the named queue.
    pub(super) fn queue_id(&self, name: &str) -> Result<QueueId, QueueAdminError> {
        self.queue_ids.get(name).copied().ok_or_else(|| QueueAdminError::NoSuchQueue(name.into()))
    }

    /// Removes a queue, ending its subscriptions and its deliveries still in flight (settling
    /// them is then settling unknown tags). Returns how many messages it held.
    fn delete_queue(&mut self, id: QueueId) -> u64 {
        let mut queue = self.queues.remove(&id).expect("queue exists");
        let messages_before = queue.messages_len();
        self.queue_ids.remove(&queue.name);
        self.pending_queues.remove(&id);
        self.dirty_queues.remove(&id);
        self.bindings.remove_queue(id);
        self.timers.set(&mut queue.timer_at, None, super::timers::TimerKey::Queue(id));
        self.append_record(&Record::<&[u8]>::QueueDeleted(QueueRef { queue: id.0 }), SyncNeed::Now);
        for consumer in queue.consumers() {
            let connection = self.connection_mut(consumer.conn);
            connection.subscriptions.remove(&consumer.subscription);
            let cancelled = SubscriptionCancelled {
                subscription: consumer.subscription,
                code: ErrorCode::NO_SUCH_QUEUE,
                message: format!("queue {:?} was deleted", queue.name),
            };
            connection
                .send(FrameKind::SubscriptionCancelled, &cancelled)
                .expect("a cancellation naming a queue fits any frame");
            self.mark_dirty(consumer.conn);
        }
        let (mut gone, cold) = queue.purge();
        let cold_messages: u64 = cold.iter().map(ColdRun::message_count).sum();
        for connection in self.connections.values_mut() {
            let tags: Vec<u64> = connection
                .in_flight
                .iter()
                .filter(|(_, f)| f.queue == id)
                .map(|(tag, _)| tag)
                .collect();
            for tag in tags {
                // The connection's lease timer may now fire early and find nothing; it re-arms.
                gone.push(connection.in_flight.remove(tag).expect("tag listed").message);
            }
        }
        // Each message it held is either held by it or in flight on exactly one connection.
        assert_eq!(
            gone.len() as u64 + cold_messages,
            messages_before,
            "queue {:?} lost track of a message",
            queue.name
        );
        for message in &gone {
            self.release_message(message);
        }
        for run in &cold {
            self.release_cold_run(run);
        }
        self.outputs.push_back(Output::Event(Event::QueueDeleted { name: queue.name.clone() }));
        messages_before
    }

    pub(super) fn handle_purge(&mut self, conn: ConnId, purge: QueuePurge) {
        let request_id = purge.request_id;
        match self.purge_queue(&purge.name) {
            Ok(count) => {
                self.audit_done(AuditKind::QueuePurged, conn, purge.name);
                self.reply_durable(conn, FrameKind::Done, &Done { request_id, count })
            }
            Err(error) => self.reply_error(conn, request_id, error.code(), error.to_string()),
        }
    }

    /// Removes every ready and delayed message of the named queue (in-flight deliveries are
    /// left to settle); returns how many.
    pub(super) fn purge_queue(&mut self, name: &str) -> Result<u64, QueueAdminError> {
        let id = self.queue_id(name)?;
        let queue = self.queues.get_mut(&id).expect("queue exists");
        let (purged, cold) = queue.purge();
        // Purging leaves exactly the deliveries in flight.
        assert_eq!(queue.messages_len(), queue.in_flight);
        self.pending_queues.remove(&id);
        let mut seqs: Vec<u64> =
            purged.iter().filter(|m| m.segment.is_some()).map(|m| m.seq.0).collect();
        seqs.extend(cold.iter().flat_map(ColdRun::seqs));
        seqs.sort_unstable();
        let mut ranges = Vec::new();
        for seq in seqs {
            push_to_ranges(&mut ranges, seq);
        }
        for chunk in ranges.chunks(SEQ_RANGES_PER_RECORD_MAX) {
            let record = Seqs { queue: id.0, seqs: chunk.to_vec() };
            self.append_record(&Record::<&[u8]>::Purged(record), SyncNeed::Now);
        }
        for message in &purged {
            self.release_message(message);
        }
        for run in &cold {
            self.release_cold_run(run);
        }
        Ok(purged.len() as u64 + cold.iter().map(ColdRun::message_count).sum::<u64>())
    }

    pub(super) fn handle_list(&mut self, conn: ConnId, list: QueueList) {
        let limit = page_size(list.limit);
        let after = list.after.unwrap_or_default();
        // A user sees the queues it has some permission on, and no others.
        let mut names = self
            .queue_ids
            .range::<str, _>((
                std::ops::Bound::Excluded(after.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .filter(|(name, _)| self.permits_any(conn, name));
        let queues: Vec<QueueSummary> = names
            .by_ref()
            .take(limit)
            .map(|(_, id)| {
                let queue = &self.queues[id];
                QueueSummary {
                    name: queue.name.clone(),
                    ready: queue.ready_len(),
                    in_flight: queue.in_flight,
                    consumers: queue.consumers().len() as u32,
                }
            })
            .collect();
        let more = names.next().is_some();
        let ok = QueueListOk { request_id: list.request_id, queues, more };
        self.reply(conn, FrameKind::QueueListOk, &ok);
    }

    pub(super) fn handle_stats(&mut self, conn: ConnId, request: QueueStatsRequest) {
        let request_id = request.request_id;
        let Some(id) = self.lookup_queue(conn, request_id, &request.name) else {
            return;
        };
        let stats = self.queue_stats(id);
        self.reply(conn, FrameKind::QueueStatsOk, &QueueStatsOk { request_id, stats });
    }

    pub(super) fn queue_stats(&self, id: QueueId) -> QueueStats {
        let queue = &self.queues[&id];
        let clock = self.config.wall_clock();
        let consumers = queue
            .consumers()
            .iter()
            .take(LIST_PAGE_MAX)
            .map(|key| {
                let connection = &self.connections[&key.conn];
                let subscription = &connection.subscriptions[&key.subscription];
                let in_flight = connection
                    .in_flight
                    .values()
                    .filter(|f| f.subscription == key.subscription)
                    .count();
                ConsumerInfo {
                    connection_id: key.conn.0,
                    subscription: key.subscription,
                    credit: subscription.credit,
                    in_flight: in_flight as u32,
                    breaker: subscription.breaker.state(self.now).to_wire(clock),
                }
            })
            .collect();
        let mut bindings = self.bindings.for_queue(id);
        bindings.truncate(LIST_PAGE_MAX);
        QueueStats {
            name: queue.name.clone(),
            options: queue.options.clone(),
            ready: queue.ready_len(),
            delayed: queue.delayed_len(),
            in_flight: queue.in_flight,
            group_blocked: queue.group_blocked_len(),
            bytes: queue.bytes,
            dead_letters: queue.held().filter(|m| m.dead().is_some()).count() as u64,
            counters: queue.counters.clone(),
            consumers,
            bindings,
        }
    }

    /// The id of the named queue, or an error reply and `None`.
    pub(super) fn lookup_queue(
        &mut self,
        conn: ConnId,
        request_id: u32,
        name: &str,
    ) -> Option<QueueId> {
        let id = self.queue_ids.get(name).copied();
        if id.is_none() {
            let message = format!("queue {name:?} does not exist");
            self.reply_error(conn, request_id, ErrorCode::NO_SUCH_QUEUE, message);
        }
        id
    }

    /// Sends an answer. One the broker cannot fit in a frame is its own bug, and the client
    /// could never match the request to anything else: the connection closes with `internal`.
    pub(super) fn reply<T: serde::Serialize>(&mut self, conn: ConnId, kind: FrameKind, body: &T) {
        if let Err(err) = self.connection_mut(conn).send(kind, body) {
            let message = format!("an answer could not be encoded: {err}");
            return self.close_connection(conn, ErrorCode::INTERNAL, message);
        }
        self.mark_dirty(conn);
    }

    /// Replies once everything logged so far is synced: the request's own records included.
    pub(super) fn reply_durable<T: serde::Serialize>(
        &mut self,
        conn: ConnId,
        kind: FrameKind,
        body: &T,
    ) {
        let gate = Gate::synced(self.log.end_lsn());
        if self.log.has_unsynced() {
            // Whatever is unsynced (perhaps only lazily wanted) now has someone waiting.
            self.want_sync(SyncNeed::Now);
        }
        self.connection_mut(conn).outbound.raise_gate(gate);
        self.reply(conn, kind, body);
    }

    /// Answers a request with an error. A request with `request_id` 0 asked for no answer, and
    /// an `Error` with 0 would mean the connection is over (PROTOCOL.md §5.6): so it is, with
    /// this error as the reason.
    pub(super) fn reply_error(
        &mut self,
        conn: ConnId,
        request_id: u32,
        code: ErrorCode,
        message: String,
    ) {
        if request_id == 0 {
            return self.close_connection(conn, code, message);
        }
        self.connection_mut(conn).send_error(request_id, code, message);
        self.mark_dirty(conn);
    }
}

/// Entries a list answer holds: `limit` 0 asks for the server's default page, the largest.
pub(super) fn page_size(limit: u32) -> usize {
    match limit {
        0 => LIST_PAGE_MAX,
        limit => (limit as usize).min(LIST_PAGE_MAX),
    }
}

fn validate_options(name: &str, options: &QueueOptions) -> Result<(), OptionsError> {
    if options.dead_letter.as_deref() == Some(name) {
        return Err(OptionsError::OwnDeadLetter(name.to_string()));
    }
    if let Some(target) = &options.dead_letter {
        check_name("dead-letter queue name", target).map_err(OptionsError::BadDeadLetterName)?;
    }
    if options.lease_ms == 0 {
        return Err(OptionsError::LeaseZero);
    }
    if options.backoff.factor_percent < 100 {
        return Err(OptionsError::BackoffShrinks);
    }
    if options.backoff.base_ms > options.backoff.max_ms {
        return Err(OptionsError::BackoffBaseAboveMax);
    }
    if options.attempts_max == Some(0) {
        return Err(OptionsError::AttemptsZero);
    }
    if options.publish_rate.is_some_and(|rate| rate.per_second == 0 || rate.burst == 0) {
        return Err(OptionsError::PublishRateZero);
    }
    if options.breaker.is_some_and(|b| b.failures_max == 0 || b.open_ms == 0) {
        return Err(OptionsError::BreakerZero);
    }
    if let chute_protocol::Durability::Interval { sync_interval_ms: 0 } = options.durability {
        return Err(OptionsError::SyncIntervalZero);
    }
    Ok(())
}

/// Names the first option that differs, for the mismatch error.
fn describe_difference(existing: &QueueOptions, requested: &QueueOptions) -> String {
    match existing.first_difference(requested) {
        Some(difference) => {
            format!("{} is {}, requested {}", difference.field, difference.this, difference.other)
        }
        None => "no difference".into(),
    }
}
