//! Publish rate limits: token buckets for the broker, each connection and each queue, one
//! token per message. A bucket with the `reject` policy refuses a message it has no token for
//! (`rate-limited`, saying when to retry). With the `pause` policy a message without a token
//! waits: it and the rest of its batch are held by the connection, which is not read, until
//! every bucket it needs has a token again. So a rate holds whatever the batch size, and across
//! every connection that publishes to the same queue.

use std::collections::VecDeque;

use chute_protocol::{Destination, PublishMessage, RateLimitPolicy};

use super::connection::PauseReason;
use super::errors::PublishError;
use super::timers::TimerKey;
use super::Broker;
use crate::ids::{ConnId, QueueId};
use crate::policy::token_bucket::{Refill, TokenBucket};
use crate::time::Instant;

/// The rest of a batch that waits for a `pause` rate limit, with the sequence number of its
/// first message. The connection is not read while it holds one, so it is at most one frame.
#[derive(Debug)]
pub(crate) struct WaitingPublishes {
    pub destination: Destination,
    pub mandatory: bool,
    pub next_seq: u64,
    pub messages: VecDeque<PublishMessage>,
}

impl Broker {
    /// The buckets of `policy` that a publish from `conn` to `queues` draws on.
    fn publish_buckets(
        &mut self,
        conn: ConnId,
        queues: &[QueueId],
        policy: RateLimitPolicy,
    ) -> Vec<&mut TokenBucket> {
        let connection = self.connections.get_mut(&conn).and_then(|c| c.publish_rate.as_mut());
        let mut buckets: Vec<&mut TokenBucket> =
            self.publish_rate.as_mut().into_iter().chain(connection).collect();
        for queue in self.queues.iter_mut().filter(|(id, _)| queues.contains(id)) {
            buckets.extend(queue.1.publish_rate.as_mut());
        }
        buckets.retain(|bucket| bucket.policy() == policy);
        buckets
    }

    /// Rate limits with the `reject` policy: one token from each, or a retriable refusal
    /// saying when to retry (and none taken).
    pub(super) fn take_rejecting_rate_limits(
        &mut self,
        conn: ConnId,
        queues: &[QueueId],
    ) -> Result<(), PublishError> {
        let now = self.now;
        let mut buckets = self.publish_buckets(conn, queues, RateLimitPolicy::Reject);
        let blocked = buckets.iter().filter_map(|b| b.refill_time(now, 1)).max();
        if let Some(refill) = blocked {
            let retry_after_ms = match refill {
                Refill::At(at) => at.saturating_since(now).as_millis().max(1) as u64,
                Refill::Never => 0,
            };
            return Err(PublishError::RateLimited { retry_after_ms });
        }
        for bucket in buckets.iter_mut() {
            bucket.try_take(now, 1).expect("every bucket had a token");
        }
        Ok(())
    }

    /// Rate limits with the `pause` policy: one token from each, or (taking none) the instant
    /// at which every one of them will have a token.
    pub(super) fn take_pausing_rate_limits(
        &mut self,
        conn: ConnId,
        queues: &[QueueId],
    ) -> Result<(), Instant> {
        let now = self.now;
        let mut buckets = self.publish_buckets(conn, queues, RateLimitPolicy::Pause);
        let ready_at = buckets
            .iter()
            .filter_map(|b| b.refill_time(now, 1))
            .map(|refill| match refill {
                Refill::At(at) => at,
                Refill::Never => Instant::NEVER,
            })
            .max();
        if let Some(at) = ready_at {
            assert!(at > now, "a bucket short of a token refills in the future");
            return Err(at);
        }
        for bucket in buckets.iter_mut() {
            bucket.try_take(now, 1).expect("every bucket had a token");
        }
        Ok(())
    }

    /// Holds the rest of a batch until `until`, when its first message's buckets will have
    /// tokens, and stops reading the connection meanwhile.
    pub(super) fn wait_for_rate_limit(
        &mut self,
        conn: ConnId,
        waiting: WaitingPublishes,
        until: Instant,
    ) {
        assert!(!waiting.messages.is_empty(), "nothing to wait with");
        let connection = self.connections.get_mut(&conn).expect("connection exists");
        assert!(connection.waiting_publishes.is_none(), "{conn} already waits for a rate");
        connection.waiting_publishes = Some(waiting);
        self.timers.set(&mut connection.rate_resume_at, Some(until), TimerKey::RateResume(conn));
        self.set_read_pause(conn, PauseReason::RateLimited, true);
    }

    /// Tokens may be there: publish what waited (it may wait again), then read on.
    pub(super) fn fire_rate_resume(&mut self, conn: ConnId) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.rate_resume_at = None;
        if let Some(waiting) = connection.waiting_publishes.take() {
            self.publish_waiting(conn, waiting);
        }
        let Some(connection) = self.connections.get(&conn) else { return };
        if connection.waiting_publishes.is_none() {
            self.set_read_pause(conn, PauseReason::RateLimited, false);
        }
        // Reads on if nothing waits any more; either way sends the confirms just earned.
        self.process_received(conn);
    }
}
