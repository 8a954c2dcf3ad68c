//! Subscriptions, credit, and settling deliveries.

use chute_protocol::{
    push_to_ranges, Ack, Credit, Done, ErrorCode, Frame, FrameKind, Nack, Range, Subscribe,
    Unsubscribe,
};

use std::collections::BTreeMap;

use super::connection::{InFlight, Subscription};
use super::outbound::Gate;
use super::storage::{SyncNeed, LAZY_SYNC_MS};
use super::Broker;
use crate::ids::ConnId;
use crate::ids::QueueId;
use crate::queue::ConsumerKey;
use crate::storage::records::Record;

impl Broker {
    pub(super) fn handle_subscribe(&mut self, conn: ConnId, subscribe: Subscribe) {
        let request_id = subscribe.request_id;
        let limits = &self.config.limits;
        let (credit_max, subscriptions_max) =
            (limits.credit_max, limits.subscriptions_per_connection_max);
        let Some(queue) = self.lookup_queue(conn, request_id, &subscribe.queue) else {
            return;
        };
        let connection = self.connection_mut(conn);
        let refusal = if connection.subscriptions.contains_key(&subscribe.subscription) {
            Some((
                ErrorCode::SUBSCRIPTION_EXISTS,
                format!("subscription {} is active", subscribe.subscription),
            ))
        } else if connection.subscriptions.len() >= subscriptions_max as usize {
            Some((
                ErrorCode::RESOURCE_LIMIT,
                format!("subscriptions_max ({subscriptions_max}) reached"),
            ))
        } else if subscribe.credit > credit_max {
            Some((
                ErrorCode::CREDIT_OVERFLOW,
                format!("credit {} exceeds credit_max ({credit_max})", subscribe.credit),
            ))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            return self.reply_error(conn, request_id, code, message);
        }
        let subscription = Subscription { queue, credit: subscribe.credit };
        connection.subscriptions.insert(subscribe.subscription, subscription);
        let key = ConsumerKey { conn, subscription: subscribe.subscription };
        self.queues.get_mut(&queue).expect("queue resolved").add_consumer(key);
        self.dirty_queues.insert(queue);
        self.reply(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }

    /// Credit for a subscription that is no longer active is ignored: it may have crossed an
    /// `Unsubscribe` or a `SubscriptionCancelled` on the wire. Credit beyond `credit_max` is a
    /// client bug (it can always bound the server's count), so it closes the connection.
    pub(super) fn handle_credit(&mut self, conn: ConnId, credit: Credit) {
        let credit_max = self.config.limits.credit_max;
        let connection = self.connection_mut(conn);
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
            queue.remove_consumer(ConsumerKey { conn, subscription: unsubscribe.subscription });
        }
        self.reply(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }

    /// Acked messages are gone; on logged queues an `Acked` record says so. An ack that asked
    /// for an answer gets it once that record is synced; others are synced lazily.
    pub(super) fn handle_ack(&mut self, conn: ConnId, ack: Ack) {
        let (settled, failed) = self.take_in_flight(conn, ack.request_id, &ack.ranges);
        let mut logged: BTreeMap<QueueId, Vec<Range>> = BTreeMap::new();
        for in_flight in &settled {
            let Some(queue) = self.queues.get_mut(&in_flight.queue) else { continue };
            queue.settle_acked(&in_flight.message);
            if in_flight.message.segment.is_some() {
                push_to_ranges(logged.entry(in_flight.queue).or_default(), in_flight.message.seq.0);
            }
        }
        for in_flight in &settled {
            if self.queues.contains_key(&in_flight.queue) {
                self.release_message(&in_flight.message);
            }
        }
        let need = if ack.request_id == 0 { SyncNeed::Within(LAZY_SYNC_MS) } else { SyncNeed::Now };
        let mut end = 0;
        for (queue, seqs) in logged {
            end = self.append_record(&Record::<&[u8]>::Acked { queue: queue.0, seqs }, need);
        }
        self.reply_settled(conn, ack.request_id, failed, Gate::synced(end));
    }

    /// Nacked messages return to the front of their queue, in the order they were delivered.
    pub(super) fn handle_nack(&mut self, conn: ConnId, nack: Nack) {
        let (settled, failed) = self.take_in_flight(conn, nack.request_id, &nack.ranges);
        for in_flight in settled.into_iter().rev() {
            if let Some(queue) = self.queues.get_mut(&in_flight.queue) {
                queue.counters.nacked += 1;
                queue.requeue_front(in_flight.message);
                self.dirty_queues.insert(in_flight.queue);
            }
        }
        self.reply_settled(conn, nack.request_id, failed, Gate::default());
    }

    /// Answers a settlement that asked for an answer and did not already fail, once `gate`
    /// (the durability of its records) is reached.
    fn reply_settled(&mut self, conn: ConnId, request_id: u32, failed: bool, gate: Gate) {
        if request_id != 0 && !failed && self.connections.contains_key(&conn) {
            self.connection_mut(conn).outbound.raise_gate(gate);
            self.reply(conn, FrameKind::Done, &Done { request_id, count: 0 });
        }
    }

    /// Removes the named deliveries from the connection, in tag order. With a `request_id`,
    /// tags that are not outstanding earn one `unknown-delivery-tag` error for the whole frame
    /// (a range of count 0, `invalid-argument`); the outstanding ones are settled all the same.
    /// Without one (0), nothing is reported: a late ack after a lease expiry is harmless.
    /// Returns the settled deliveries and whether an error already answered the request.
    fn take_in_flight(
        &mut self,
        conn: ConnId,
        request_id: u32,
        ranges: &[Range],
    ) -> (Vec<InFlight>, bool) {
        let connection = self.connection_mut(conn);
        let mut settled = Vec::new();
        let mut unknown = 0u64;
        let mut empty_range = false;
        for range in ranges {
            let Some(last) = range.last() else {
                empty_range = true;
                continue;
            };
            let tags: Vec<u64> =
                connection.in_flight.range(range.first..=last).map(|(tag, _)| *tag).collect();
            unknown += u64::from(range.count) - tags.len() as u64;
            settled.extend(tags.into_iter().filter_map(|tag| connection.in_flight.remove(&tag)));
        }
        if request_id == 0 {
            return (settled, false);
        }
        if empty_range {
            let message = "a range of count 0 names no delivery".to_string();
            self.reply_error(conn, request_id, ErrorCode::INVALID_ARGUMENT, message);
        } else if unknown > 0 {
            let message = format!("{unknown} delivery tags are not outstanding on this connection");
            self.reply_error(conn, request_id, ErrorCode::UNKNOWN_DELIVERY_TAG, message);
        }
        (settled, empty_range || unknown > 0)
    }

    /// Frames of the protocol whose behaviour the broker does not serve in this build.
    pub(super) fn handle_not_yet_served(&mut self, conn: ConnId, frame: Frame) {
        let request_id = match &frame {
            Frame::Bind(b) | Frame::Unbind(b) => b.request_id,
            Frame::Reject(r) => r.request_id,
            Frame::Touch(t) => t.request_id,
            Frame::DlqList(l) => l.request_id,
            Frame::DlqInspect(i) => i.request_id,
            Frame::DlqRedrive(r) => r.request_id,
            _ => 0,
        };
        let message = format!("{:?} is not supported by this server yet", frame.kind());
        self.reply_error(conn, request_id, ErrorCode::UNEXPECTED_FRAME, message);
    }
}
