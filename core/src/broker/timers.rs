//! Deadlines. Each timer is a key in an ordered set; a connection keeps at most one entry and
//! re-arms it when it fires, so receiving or sending bytes never touches the set.

use std::collections::BTreeSet;

use chute_protocol::{ErrorCode, FrameKind, Heartbeat};

use chute_protocol::{AttemptOutcome, DeadReason};

use super::connection::{ConnState, PauseReason};
use super::failure::Failure;
use super::Broker;
use crate::ids::{ConnId, QueueId};
use crate::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// Handshake timeout, heartbeat send, or idle timeout of a connection.
    Connection(ConnId),
    /// Records nobody waits for must be synced by now.
    LazySync,
    /// The earliest lease of a connection's deliveries may have run out. One entry per
    /// connection, not per delivery: a set insert and removal per message cost a tenth of the
    /// broker's time at high rates, and leases almost always end by a settle.
    Leases(ConnId),
    /// Something in a queue comes due: a delayed message, an expiry, a dedup window, a
    /// consumer's breaker or delivery rate.
    Queue(QueueId),
    /// A publisher paused by a rate limit may be read again.
    RateResume(ConnId),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    pub fn next_deadline(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let (at, _) = self.set.first()?;
        if *at > now {
            return None;
        }
        self.set.pop_first().map(|(_, key)| key)
    }

    fn insert(&mut self, at: Instant, key: TimerKey) {
        self.set.insert((at, key));
    }

    fn cancel(&mut self, at: Instant, key: TimerKey) {
        let removed = self.set.remove(&(at, key));
        debug_assert!(removed, "cancelled a timer that was not armed");
    }

    /// Moves `key`, armed at `armed` (if at all), to `at` (or disarms it), keeping `armed`
    /// in step. The one way an owner's single timer is re-armed.
    pub fn set(&mut self, armed: &mut Option<Instant>, at: Option<Instant>, key: TimerKey) {
        if *armed == at {
            return;
        }
        if let Some(previous) = std::mem::replace(armed, at) {
            self.cancel(previous, key);
        }
        if let Some(at) = at {
            self.insert(at, key);
        }
    }

    /// Makes `key`, armed at `armed` (if at all), fire no later than `deadline`.
    pub fn arm_no_later(&mut self, armed: &mut Option<Instant>, deadline: Instant, key: TimerKey) {
        if armed.is_none_or(|at| deadline < at) {
            self.set(armed, Some(deadline), key);
        }
    }
}

impl Broker {
    pub(super) fn fire_timer(&mut self, key: TimerKey) {
        match key {
            TimerKey::Connection(conn) => self.fire_connection_timer(conn),
            TimerKey::LazySync => self.fire_lazy_sync(),
            TimerKey::Leases(conn) => self.fire_leases(conn),
            TimerKey::Queue(queue) => self.fire_queue_timer(queue),
            TimerKey::RateResume(conn) => self.fire_rate_resume(conn),
        }
    }

    /// Every delivery of the connection whose lease has run out fails with `Timeout`, the
    /// earliest first, and the timer is armed for the earliest lease left. Deliveries settled
    /// since the timer was armed are simply gone from the table.
    fn fire_leases(&mut self, conn: ConnId) {
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
    }

    /// A lease ran out: the attempt failed with `Timeout`.
    fn fire_lease(&mut self, conn: ConnId, tag: u64) {
        let in_flight = self.connections.get_mut(&conn).and_then(|c| c.in_flight.remove(tag));
        let Some(in_flight) = in_flight else { return };
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

    /// (Re-)arms a queue's single timer for the earliest moment something in it changes by
    /// itself, or a blocked consumer may take deliveries again.
    pub(super) fn arm_queue_timer(&mut self, queue_id: QueueId) {
        let now = self.now;
        let Some(queue) = self.queues.get(&queue_id) else { return };
        let mut deadline = queue.next_deadline();
        if queue.has_ready() {
            let unblocked = queue
                .consumers()
                .iter()
                .filter_map(|key| {
                    self.connections.get(&key.conn)?.subscriptions.get(&key.subscription)
                })
                .filter_map(|subscription| subscription.unblocks_at(now))
                .min();
            deadline = deadline.into_iter().chain(unblocked).min();
        }
        let queue = self.queues.get_mut(&queue_id).expect("queue exists");
        self.timers.set(&mut queue.timer_at, deadline, TimerKey::Queue(queue_id));
    }

    fn fire_queue_timer(&mut self, queue_id: QueueId) {
        let now = self.now;
        let Some(queue) = self.queues.get_mut(&queue_id) else { return };
        queue.timer_at = None;
        queue.release_due(now);
        queue.dedup.expire(now);
        let expired = queue.take_expired(now);
        for message in expired {
            self.dispose(queue_id, message, DeadReason::Expired);
        }
        self.dirty_queues.insert(queue_id);
        self.arm_queue_timer(queue_id);
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

    fn fire_rate_resume(&mut self, conn: ConnId) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        connection.rate_resume_at = None;
        self.set_read_pause(conn, PauseReason::RateLimited, false);
        self.process_received(conn);
    }

    /// (Re-)arms the connection's single timer for its earliest deadline.
    pub(super) fn arm_connection_timer(&mut self, conn: ConnId) {
        let handshake_timeout_ms = u64::from(self.config.timeouts.handshake_timeout_ms);
        let frame_timeout_ms = self.config.timeouts.frame_timeout_ms;
        let connection = self.connections.get_mut(&conn).expect("connection exists");
        let frame_deadline = connection.frame_deadline(frame_timeout_ms);
        let deadline = match connection.state {
            ConnState::AwaitingHello => connection.accepted_at.plus_ms(handshake_timeout_ms),
            ConnState::Open | ConnState::Closing => {
                connection.idle_deadline().min(connection.heartbeat_deadline())
            }
        };
        let deadline = frame_deadline.map_or(deadline, |frame| frame.min(deadline));
        self.timers.set(&mut connection.timer_at, Some(deadline), TimerKey::Connection(conn));
    }

    fn fire_connection_timer(&mut self, conn: ConnId) {
        let now = self.now;
        let frame_size_max = self.config.limits.frame_size_max;
        let handshake_timeout_ms = u64::from(self.config.timeouts.handshake_timeout_ms);
        // The entry was popped from the set: forget it before re-arming.
        self.connection_mut(conn).timer_at = None;
        if self.check_frame_deadline(conn) {
            return;
        }
        let connection = self.connection_mut(conn);
        match connection.state {
            ConnState::AwaitingHello => {
                if now >= connection.accepted_at.plus_ms(handshake_timeout_ms) {
                    let message = format!("no Hello within {handshake_timeout_ms} ms");
                    return self.close_connection(conn, ErrorCode::HANDSHAKE_TIMEOUT, message);
                }
            }
            ConnState::Open | ConnState::Closing => {
                // While the broker is not reading, the client's silence is the broker's doing.
                if connection.pause_reasons().any() {
                    connection.last_received = now;
                }
                if now >= connection.idle_deadline() {
                    let message = format!(
                        "nothing received for {} ms (3 heartbeat intervals)",
                        3 * u64::from(connection.heartbeat_ms)
                    );
                    return self.close_connection(conn, ErrorCode::HEARTBEAT_TIMEOUT, message);
                }
                if now >= connection.heartbeat_deadline() && connection.state == ConnState::Open {
                    connection
                        .send(FrameKind::Heartbeat, &Heartbeat, frame_size_max)
                        .expect("a heartbeat is empty");
                    // The heartbeat counts as sent now; `take_send` will agree.
                    connection.last_sent = now;
                    self.mark_dirty(conn);
                }
            }
        }
        self.arm_connection_timer(conn);
    }
}
