//! Leases: how long a consumer may hold a delivery before the attempt counts as failed
//! (`timeout`). A delivery's lease starts when it is chosen, a `Touch` moves it, and one timer
//! per connection, armed no later than its earliest lease, fails the deliveries whose leases
//! ran out. One entry per connection rather than per delivery: a set insert and removal per
//! message cost a tenth of the broker's time at high rates, and leases almost always end by a
//! settle.

use chute_protocol::{AttemptOutcome, QueueOptions};

use std::collections::BTreeMap;

use super::failure::Failure;
use super::timers::TimerKey;
use super::Broker;
use crate::ids::{ConnId, QueueId};
use crate::queue::Queue;
use crate::time::Instant;

/// How long a delivery's lease runs: what a `Touch` asked for, else the subscription's
/// override, else the queue's option.
pub(super) fn lease_ms(
    requested_ms: Option<u32>,
    subscription_ms: Option<u32>,
    queue_ms: u32,
) -> u32 {
    let lease_ms = requested_ms.or(subscription_ms).unwrap_or(queue_ms);
    debug_assert!(lease_ms > 0, "a lease of 0 passed validation");
    lease_ms
}

/// The lease option of a queue (its default if the queue is gone, as it may be for a delivery
/// still held after a delete).
pub(super) fn queue_lease_ms(queues: &BTreeMap<QueueId, Queue>, queue: QueueId) -> u32 {
    queues.get(&queue).map_or(QueueOptions::default().lease_ms, |q| q.options.lease_ms)
}

impl Broker {
    /// Makes the connection's lease timer fire no later than `deadline`.
    pub(super) fn arm_lease_timer(&mut self, conn: ConnId, deadline: Instant) {
        assert!(deadline >= self.now, "a lease that ran out before it started");
        let connection = self.connections.get_mut(&conn).expect("lease holder is open");
        self.timers.arm_no_later(&mut connection.lease_timer_at, deadline, TimerKey::Leases(conn));
        assert!(connection.lease_timer_at.is_some_and(|at| at <= deadline));
    }

    /// Every delivery of the connection whose lease has run out fails with `Timeout`, the
    /// earliest first, and the timer is armed for the earliest lease left. Deliveries settled
    /// since the timer was armed are simply gone from the table.
    pub(super) fn fire_leases(&mut self, conn: ConnId) {
        let now = self.now;
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.lease_timer_at = None;
        let mut expired: Vec<(Instant, u64)> = connection
            .in_flight
            .iter()
            .filter(|(_, f)| f.lease_deadline <= now)
            .map(|(tag, f)| (f.lease_deadline, tag))
            .collect();
        let next =
            connection.in_flight.values().map(|f| f.lease_deadline).filter(|at| *at > now).min();
        if let Some(next) = next {
            self.timers.arm_no_later(&mut connection.lease_timer_at, next, TimerKey::Leases(conn));
        }
        expired.sort_unstable();
        for (_, tag) in expired {
            self.fire_lease(conn, tag);
        }
        // Failing an attempt delivers nothing at once (dispatch runs after the input), so what
        // the connection still holds has time left.
        debug_assert!(
            self.connections
                .get(&conn)
                .is_none_or(|c| c.in_flight.values().all(|f| f.lease_deadline > now)),
            "{conn}: a lease ran out and was not failed"
        );
    }

    /// A lease ran out: the attempt failed with `Timeout`.
    fn fire_lease(&mut self, conn: ConnId, tag: u64) {
        let in_flight = self.connections.get_mut(&conn).and_then(|c| c.in_flight.remove(tag));
        let Some(in_flight) = in_flight else { return };
        assert!(in_flight.lease_deadline <= self.now, "a lease failed before it ran out");
        // MUTANT skip-attempt-on-lease-expiry: the timed-out attempt is not counted.
        #[cfg(feature = "mutants")]
        let in_flight = {
            let mut in_flight = in_flight;
            if crate::mutants::active(crate::mutants::Mutant::SkipAttemptOnLeaseExpiry) {
                in_flight.message.attempts -= 1;
            }
            in_flight
        };
        let queue = in_flight.queue;
        if let Some(policy) = self.queues.get(&queue).and_then(|q| q.options.breaker) {
            let now = self.now;
            if let Some(subscription) = self
                .connections
                .get_mut(&conn)
                .and_then(|c| c.subscriptions.get_mut(&in_flight.subscription))
            {
                subscription.breaker.on_failure(now, &policy);
            }
        }
        let failure = Failure { outcome: AttemptOutcome::Timeout, reason: None, delay_ms: None };
        self.fail_attempt(in_flight, failure);
    }
}
