//! Deadlines. Each timer is a key in an ordered set; every owner (a connection, a queue, the
//! lazy sync) keeps at most one entry and re-arms it through [`Timers::set`] when it fires, so
//! receiving or sending bytes never touches the set. What each key means, and what firing it
//! does, lives with its owner (`liveness.rs`, `leases.rs`, `queue_timer.rs`, `rate_limits.rs`,
//! `storage.rs`).

use std::collections::BTreeSet;

use crate::ids::{ConnId, QueueId};
use crate::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// Handshake timeout, heartbeat send, or idle timeout of a connection.
    Connection(ConnId),
    /// Records nobody waits for must be synced by now.
    LazySync,
    /// A lame-duck drain's window is over: stop.
    DrainEnd,
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
        let (at, key) = self.set.pop_first().expect("the first entry was just seen");
        assert!(at <= now, "a timer popped before it was due");
        Some(key)
    }

    fn insert(&mut self, at: Instant, key: TimerKey) {
        let inserted = self.set.insert((at, key));
        debug_assert!(inserted, "{key:?} armed twice at {at:?}");
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
        debug_assert!(armed.is_none_or(|at| self.set.contains(&(at, key))), "{key:?} out of step");
    }

    /// Makes `key`, armed at `armed` (if at all), fire no later than `deadline`.
    pub fn arm_no_later(&mut self, armed: &mut Option<Instant>, deadline: Instant, key: TimerKey) {
        if armed.is_none_or(|at| deadline < at) {
            self.set(armed, Some(deadline), key);
        }
        assert!(armed.is_some_and(|at| at <= deadline), "{key:?} fires after its deadline");
    }
}
