//! Publish rate limits: token buckets for the broker, each connection and each queue. A bucket
//! with the `reject` policy refuses a message it has no token for (`rate-limited`, saying when
//! to retry); one with the `pause` policy charges the whole batch, may go into debt by one
//! batch, and stops reading the publisher until the debt is paid.

use chute_protocol::RateLimitPolicy;

use super::connection::PauseReason;
use super::errors::PublishError;
use super::timers::TimerKey;
use super::Broker;
use crate::ids::{ConnId, QueueId};
use crate::policy::token_bucket::{Refill, TokenBucket};
use crate::time::Instant;

impl Broker {
    /// Rate limits with the `reject` policy: one token per message, or a retriable refusal
    /// saying when to retry.
    pub(super) fn take_rejecting_rate_limits(
        &mut self,
        conn: ConnId,
        queues: &[QueueId],
    ) -> Result<(), PublishError> {
        let now = self.now;
        let mut buckets: Vec<&mut TokenBucket> = Vec::new();
        if let Some(bucket) =
            self.publish_rate.as_mut().filter(|b| b.policy() == RateLimitPolicy::Reject)
        {
            buckets.push(bucket);
        }
        if let Some(bucket) = self.connections.get_mut(&conn).and_then(|c| c.publish_rate.as_mut())
        {
            if bucket.policy() == RateLimitPolicy::Reject {
                buckets.push(bucket);
            }
        }
        for queue in self.queues.values_mut().filter(|q| queues.contains(&q.id)) {
            if let Some(bucket) =
                queue.publish_rate.as_mut().filter(|b| b.policy() == RateLimitPolicy::Reject)
            {
                buckets.push(bucket);
            }
        }
        let blocked = buckets.iter().filter_map(|b| b.refill_time(now, 1)).max();
        if let Some(refill) = blocked {
            let retry_after_ms = match refill {
                Refill::At(at) => at.saturating_since(now).as_millis().max(1) as u64,
                Refill::Never => 0,
            };
            return Err(PublishError::RateLimited { retry_after_ms });
        }
        for bucket in buckets {
            bucket.try_take(now, 1).expect("every bucket had a token");
        }
        Ok(())
    }

    /// Rate limits with the `pause` policy: the batch is charged whole (the bucket may go into
    /// debt by one batch), and the connection stops being read until the debt is paid.
    pub(super) fn charge_pausing_rate_limits(
        &mut self,
        conn: ConnId,
        queues: &[QueueId],
        count: u32,
    ) {
        let now = self.now;
        let mut resume_at: Option<Instant> = None;
        let mut charge = |bucket: &mut TokenBucket| {
            if bucket.policy() == RateLimitPolicy::Pause {
                if let Some(at) = bucket.take_with_debt(now, count) {
                    resume_at = Some(resume_at.map_or(at, |r| r.max(at)));
                }
            }
        };
        if let Some(bucket) = self.publish_rate.as_mut() {
            charge(bucket);
        }
        if let Some(bucket) = self.connections.get_mut(&conn).and_then(|c| c.publish_rate.as_mut())
        {
            charge(bucket);
        }
        for queue in self.queues.values_mut().filter(|q| queues.contains(&q.id)) {
            if let Some(bucket) = queue.publish_rate.as_mut() {
                charge(bucket);
            }
        }
        if let Some(at) = resume_at {
            self.pause_for_rate_limit(conn, at);
        }
    }

    /// Stops reading from a publisher until a rate limit's debt is paid at `until`.
    pub(super) fn pause_for_rate_limit(&mut self, conn: ConnId, until: Instant) {
        let connection = self.connections.get_mut(&conn).expect("connection exists");
        if connection.rate_resume_at.is_some_and(|previous| previous >= until) {
            return;
        }
        self.timers.set(&mut connection.rate_resume_at, Some(until), TimerKey::RateResume(conn));
        self.set_read_pause(conn, PauseReason::RateLimited, true);
    }

    pub(super) fn fire_rate_resume(&mut self, conn: ConnId) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.rate_resume_at = None;
        self.set_read_pause(conn, PauseReason::RateLimited, false);
        self.process_received(conn);
    }
}
