//! Subscriptions, credit, and settling deliveries: ack, nack, reject, touch.

use std::collections::BTreeMap;

use chute_protocol::{
    push_to_ranges, Ack, AttemptOutcome, Credit, Done, ErrorCode, FrameKind, Nack, Range, Reject,
    Subscribe, Touch, Unsubscribe, REASON_LEN_MAX,
};

use super::connection::{InFlight, Subscription};
use super::failure::Failure;
use super::leases::{lease_ms, queue_lease_ms};
use super::outbound::Gate;
use super::storage::{SyncNeed, LAZY_SYNC_MS};
use super::Broker;
use crate::ids::{ConnId, Lsn, QueueId};
use crate::policy::breaker::Breaker;
use crate::policy::token_bucket::TokenBucket;
use crate::queue::ConsumerKey;
use crate::storage::records::{Record, Seqs};
use crate::time::Instant;

impl Broker {
    pub(super) fn handle_subscribe(&mut self, conn: ConnId, subscribe: Subscribe) {
        let request_id = subscribe.request_id;
        let Some(queue) = self.lookup_queue(conn, request_id, &subscribe.queue) else { return };
        if let Err((code, message)) = self.check_subscribe(conn, &subscribe) {
            return self.reply_error(conn, request_id, code, message);
        }
        let now = self.now;
        let subscription = Subscription {
            queue,
            credit: subscribe.credit,
            lease_ms: subscribe.lease_ms,
            breaker: Breaker::new(),
            rate: subscribe.rate.map(|rate| TokenBucket::new(rate, now)),
        };
        let previous =
            self.connection_mut(conn).subscriptions.insert(subscribe.subscription, subscription);
        assert!(previous.is_none(), "check_subscribe let an active subscription id through");
        let key = ConsumerKey { conn, subscription: subscribe.subscription };
        self.queues.get_mut(&queue).expect("queue resolved").add_consumer(key);
        self.dirty_queues.insert(queue);
        self.reply(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }

    fn check_subscribe(
        &self,
        conn: ConnId,
        subscribe: &Subscribe,
    ) -> Result<(), (ErrorCode, String)> {
        let connection = &self.connections[&conn];
        let limits = &connection.limits;
        if connection.subscriptions.contains_key(&subscribe.subscription) {
            return Err((
                ErrorCode::SUBSCRIPTION_EXISTS,
                format!("subscription {} is active", subscribe.subscription),
            ));
        }
        if connection.subscriptions.len() >= limits.subscriptions_max as usize {
            let max = limits.subscriptions_max;
            return Err((ErrorCode::RESOURCE_LIMIT, format!("subscriptions_max ({max}) reached")));
        }
        if subscribe.credit > limits.credit_max {
            let message =
                format!("credit {} exceeds credit_max ({})", subscribe.credit, limits.credit_max);
            return Err((ErrorCode::CREDIT_OVERFLOW, message));
        }
        if subscribe.lease_ms == Some(0) {
            return Err((ErrorCode::INVALID_ARGUMENT, "lease_ms must be at least 1".into()));
        }
        if subscribe.rate.is_some_and(|rate| rate.per_second == 0 || rate.burst == 0) {
            return Err((
                ErrorCode::INVALID_ARGUMENT,
                "a delivery rate needs per_second and burst of at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Credit for a subscription that is no longer active is ignored: it may have crossed an
    /// `Unsubscribe` or a `SubscriptionCancelled` on the wire. Credit beyond `credit_max` is a
    /// client bug (it can always bound the server's count), so it closes the connection.
    pub(super) fn handle_credit(&mut self, conn: ConnId, credit: Credit) {
        let connection = self.connection_mut(conn);
        let credit_max = connection.limits.credit_max;
        let Some(subscription) = connection.subscriptions.get_mut(&credit.subscription) else {
            return;
        };
        let total = u64::from(subscription.credit) + u64::from(credit.credit);
        if total > u64::from(credit_max) {
            let message = format!(
                "credit of subscription {} would reach {total}, above credit_max ({credit_max})",
                credit.subscription
            );
            return self.close_connection(conn, ErrorCode::CREDIT_OVERFLOW, message);
        }
        subscription.credit = total as u32;
        let queue = subscription.queue;
        self.dirty_queues.insert(queue);
    }

    pub(super) fn handle_unsubscribe(&mut self, conn: ConnId, unsubscribe: Unsubscribe) {
        let request_id = unsubscribe.request_id;
        let connection = self.connection_mut(conn);
        let Some(subscription) = connection.subscriptions.remove(&unsubscribe.subscription) else {
            let message = format!("subscription {} is not active", unsubscribe.subscription);
            return self.reply_error(conn, request_id, ErrorCode::NO_SUCH_SUBSCRIPTION, message);
        };
        if let Some(queue) = self.queues.get_mut(&subscription.queue) {
            let key = ConsumerKey { conn, subscription: unsubscribe.subscription };
            queue.remove_consumer(key);
            debug_assert!(!queue.consumers().contains(&key), "a consumer listed twice");
        }
        self.reply(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }

    /// Acked messages are gone; on logged queues an `Acked` record says so. An ack that asked
    /// for an answer gets it once that record is synced; others are synced lazily.
    pub(super) fn handle_ack(&mut self, conn: ConnId, ack: Ack) {
        let (settled, failed) = self.take_in_flight(conn, ack.request_id, &ack.ranges);
        let mut logged: BTreeMap<QueueId, Vec<Range>> = BTreeMap::new();
        for in_flight in &settled {
            self.breaker_result(conn, in_flight, true);
            let Some(queue) = self.queues.get_mut(&in_flight.queue) else { continue };
            let messages_before = queue.messages_len();
            queue.settle(&in_flight.message);
            assert_eq!(queue.messages_len(), messages_before - 1, "an ack settles one message");
            queue.counters.acked += 1;
            self.dirty_queues.insert(in_flight.queue);
            if in_flight.message.segment.is_some() {
                push_to_ranges(logged.entry(in_flight.queue).or_default(), in_flight.message.seq.0);
            }
            self.release_message(&in_flight.message);
        }
        let need = if ack.request_id == 0 { SyncNeed::Within(LAZY_SYNC_MS) } else { SyncNeed::Now };
        let mut end = Lsn::ZERO;
        for (queue, seqs) in logged {
            end = self.append_record(&Record::<&[u8]>::Acked(Seqs { queue: queue.0, seqs }), need);
        }
        self.reply_settled(conn, ack.request_id, failed, Gate::synced(end));
    }

    /// A failed attempt for each: retried after `delay_ms` or the queue's backoff, or
    /// dead-lettered once its attempts are used up.
    pub(super) fn handle_nack(&mut self, conn: ConnId, nack: Nack) {
        if let Err(message) = check_reason(nack.reason.as_deref()) {
            return self.reply_error(conn, nack.request_id, ErrorCode::INVALID_ARGUMENT, message);
        }
        let (settled, failed) = self.take_in_flight(conn, nack.request_id, &nack.ranges);
        // Newest first: retries that go straight back to the front keep their delivery order.
        for in_flight in settled.into_iter().rev() {
            self.breaker_result(conn, &in_flight, false);
            let failure = Failure {
                outcome: AttemptOutcome::Nack,
                reason: nack.reason.clone(),
                delay_ms: nack.delay_ms,
            };
            self.fail_attempt(in_flight, failure);
        }
        self.reply_settled(conn, nack.request_id, failed, Gate::synced(self.log.end_lsn()));
    }

    /// Dead-letters each now, with reason `rejected` and the consumer's text.
    pub(super) fn handle_reject(&mut self, conn: ConnId, reject: Reject) {
        if let Err(message) = check_reason(Some(&reject.reason)) {
            return self.reply_error(conn, reject.request_id, ErrorCode::INVALID_ARGUMENT, message);
        }
        let (settled, failed) = self.take_in_flight(conn, reject.request_id, &reject.ranges);
        for in_flight in settled {
            self.breaker_result(conn, &in_flight, false);
            let failure = Failure {
                outcome: AttemptOutcome::Reject,
                reason: Some(reject.reason.clone()),
                delay_ms: None,
            };
            self.fail_attempt(in_flight, failure);
        }
        self.reply_settled(conn, reject.request_id, failed, Gate::synced(self.log.end_lsn()));
    }

    /// Extends leases to `lease_ms` (or the subscription's lease) from now.
    pub(super) fn handle_touch(&mut self, conn: ConnId, touch: Touch) {
        if touch.lease_ms == Some(0) {
            return self.reply_error(
                conn,
                touch.request_id,
                ErrorCode::INVALID_ARGUMENT,
                "lease_ms must be at least 1".into(),
            );
        }
        let now = self.now;
        let (mut unknown, mut empty_range) = (0u64, false);
        let connection = self.connections.get_mut(&conn).expect("connection is open");
        let mut earliest = Instant::NEVER;
        for range in &touch.ranges {
            let Some(last) = range.last() else {
                empty_range = true;
                continue;
            };
            let mut found = 0u64;
            for (_, in_flight) in connection.in_flight.range_mut(range.first..=last) {
                let queue_lease_ms = queue_lease_ms(&self.queues, in_flight.queue);
                let subscription_lease_ms =
                    connection.subscriptions.get(&in_flight.subscription).and_then(|s| s.lease_ms);
                let lease_ms = lease_ms(touch.lease_ms, subscription_lease_ms, queue_lease_ms);
                let deadline = now.plus_ms(lease_ms.into());
                assert!(deadline > now, "a touch that ends the lease");
                earliest = earliest.min(deadline);
                in_flight.lease_deadline = deadline;
                found += 1;
            }
            assert!(found <= u64::from(range.count), "touched more deliveries than a range names");
            unknown += u64::from(range.count) - found;
        }
        if earliest < Instant::NEVER {
            self.arm_lease_timer(conn, earliest);
        }
        let failed = touch.request_id != 0 && (empty_range || unknown > 0);
        if failed {
            let (code, message) = if empty_range {
                (
                    ErrorCode::INVALID_ARGUMENT,
                    "a range of count 0, or one running past the largest tag, names no delivery"
                        .to_string(),
                )
            } else {
                (
                    ErrorCode::UNKNOWN_DELIVERY_TAG,
                    format!("{unknown} delivery tags are not outstanding on this connection"),
                )
            };
            self.reply_error(conn, touch.request_id, code, message);
        }
        self.reply_settled(conn, touch.request_id, failed, Gate::default());
    }

    /// Tells the consumer's breaker how its delivery ended.
    fn breaker_result(&mut self, conn: ConnId, in_flight: &InFlight, success: bool) {
        let now = self.now;
        let Some(policy) = self.queues.get(&in_flight.queue).and_then(|q| q.options.breaker) else {
            return;
        };
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        let Some(subscription) = connection.subscriptions.get_mut(&in_flight.subscription) else {
            return;
        };
        if success {
            subscription.breaker.on_success();
        } else {
            subscription.breaker.on_failure(now, &policy);
            self.dirty_queues.insert(in_flight.queue);
        }
    }

    /// Answers a settlement that asked for an answer and did not already fail, once `gate`
    /// (the durability of its records) is reached.
    fn reply_settled(&mut self, conn: ConnId, request_id: u32, failed: bool, gate: Gate) {
        if request_id != 0 && !failed && self.connections.contains_key(&conn) {
            self.connection_mut(conn).outbound.raise_gate(gate);
            self.reply(conn, FrameKind::Done, &Done { request_id, count: 0 });
        }
    }

    /// Removes the named deliveries from the connection, in tag order (their lease timer finds
    /// them gone). With a `request_id`, tags that are not outstanding earn one
    /// `unknown-delivery-tag` error for the whole frame (a range of count 0,
    /// `invalid-argument`); the outstanding ones are settled all the same. Without one (0),
    /// nothing is reported: a late ack after a lease expiry is harmless. Returns the settled
    /// deliveries and whether an error already answered the request.
    fn take_in_flight(
        &mut self,
        conn: ConnId,
        request_id: u32,
        ranges: &[Range],
    ) -> (Vec<InFlight>, bool) {
        let connection = self.connections.get_mut(&conn).expect("connection is open");
        let mut settled = Vec::new();
        let mut unknown = 0u64;
        let mut empty_range = false;
        for range in ranges {
            let Some(last) = range.last() else {
                empty_range = true;
                continue;
            };
            let before = settled.len();
            connection.in_flight.remove_range(range.first..=last, |_, f| settled.push(f));
            let found = (settled.len() - before) as u64;
            assert!(found <= u64::from(range.count), "settled more deliveries than a range names");
            unknown += u64::from(range.count) - found;
        }
        if request_id == 0 {
            return (settled, false);
        }
        if empty_range {
            let message =
                "a range of count 0, or one running past the largest tag, names no delivery"
                    .to_string();
            self.reply_error(conn, request_id, ErrorCode::INVALID_ARGUMENT, message);
        } else if unknown > 0 {
            let message = format!("{unknown} delivery tags are not outstanding on this connection");
            self.reply_error(conn, request_id, ErrorCode::UNKNOWN_DELIVERY_TAG, message);
        }
        (settled, empty_range || unknown > 0)
    }
}

fn check_reason(reason: Option<&str>) -> Result<(), String> {
    match reason {
        Some(text) if text.len() > REASON_LEN_MAX => {
            Err(format!("reason is longer than {REASON_LEN_MAX} bytes"))
        }
        _ => Ok(()),
    }
}
