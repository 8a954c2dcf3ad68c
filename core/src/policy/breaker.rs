//! The per-consumer circuit breaker: a consumer that keeps failing stops getting messages for
//! a while, then gets a single trial message before it is trusted again.
//!
//! Without it, a consumer whose database is down nacks everything it is given as fast as it
//! can, burning every message's attempts (and sending them to the dead-letter queue) while
//! healthy consumers would have processed them.

use std::time::Duration;

use chute_protocol::{BreakerPolicy, BreakerState};

use crate::time::{Instant, WallClock};

/// One consumer's breaker.
///
/// How to drive it: ask [`allows_delivery`](Self::allows_delivery) before delivering, call
/// [`on_delivery`](Self::on_delivery) for each delivery made, and report each outcome with
/// [`on_success`](Self::on_success) or [`on_failure`](Self::on_failure) (a nack, a reject
/// or a lease timeout). While open, arm a timer at [`reopens_at`](Self::reopens_at) to resume
/// delivering when the breaker goes half-open.
///
/// Outcomes are not matched to deliveries: any success closes the breaker, and any failure
/// while half-open reopens it, including late outcomes of deliveries made before it opened.
/// A consumer that acks anything is working; one that still fails after the pause is not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Breaker {
    state: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures_consecutive: u32,
    },
    /// Becomes half-open, without a trial outstanding, at `until`. The transition is lazy:
    /// whoever looks at an expired `Open` treats it as `HalfOpen`, so no timer input is needed
    /// to make it happen.
    Open {
        until: Instant,
    },
    HalfOpen {
        trial_outstanding: bool,
    },
}

impl Default for State {
    fn default() -> Self {
        State::Closed { failures_consecutive: 0 }
    }
}

/// What a breaker looks like at some instant, for stats and the consumer list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerView {
    Closed,
    /// Not delivering until `until`.
    Open {
        until: Instant,
    },
    /// Delivering one trial message, or ready to.
    HalfOpen,
}

impl BreakerView {
    /// The view in wire terms. `until` is rounded up to the next whole millisecond, so a
    /// client that waits until `until_unix_ms` finds the breaker no longer open.
    pub fn to_wire(self, clock: WallClock) -> BreakerState {
        match self {
            BreakerView::Closed => BreakerState::Closed,
            BreakerView::HalfOpen => BreakerState::HalfOpen,
            BreakerView::Open { until } => {
                let until_ceil = until + Duration::from_nanos(999_999);
                BreakerState::Open { until_unix_ms: clock.unix_ms(until_ceil) }
            }
        }
    }
}

impl Breaker {
    /// A closed breaker with no failures counted.
    pub fn new() -> Breaker {
        Breaker::default()
    }

    /// Whether one more message may be delivered to this consumer now: always when closed,
    /// never while open, and while half-open only if the trial is not yet outstanding.
    pub fn allows_delivery(&self, now: Instant) -> bool {
        match self.effective(now) {
            State::Closed { .. } => true,
            State::Open { .. } => false,
            State::HalfOpen { trial_outstanding } => !trial_outstanding,
        }
    }

    /// Records a delivery to this consumer. In half-open (including an open breaker whose
    /// period is over) this is the trial; no other delivery is allowed until it settles.
    pub fn on_delivery(&mut self, now: Instant) {
        assert!(self.allows_delivery(now), "delivered to a consumer whose breaker refuses");
        if let State::HalfOpen { .. } = self.effective(now) {
            self.state = State::HalfOpen { trial_outstanding: true };
        }
    }

    /// A delivery to this consumer succeeded: close, forgetting earlier failures.
    pub fn on_success(&mut self) {
        self.state = State::Closed { failures_consecutive: 0 };
    }

    /// A delivery to this consumer failed (nack, reject or lease timeout).
    ///
    /// Closed: counts consecutive failures and opens for `open_ms` at the `failures_max`th
    /// (a `failures_max` of 0, refused by validation, opens at the first). Half-open: the
    /// consumer is still failing after its pause, so it gets another full period. Open: the
    /// failure is a late outcome of a delivery made before the breaker opened; the period
    /// already accounts for the burst it belongs to, so it is not extended.
    pub fn on_failure(&mut self, now: Instant, policy: &BreakerPolicy) {
        let reopened = State::Open { until: now.plus_ms(u64::from(policy.open_ms)) };
        self.state = match self.effective(now) {
            State::Closed { failures_consecutive } => {
                let failures_consecutive = failures_consecutive.saturating_add(1);
                if failures_consecutive >= policy.failures_max {
                    reopened
                } else {
                    State::Closed { failures_consecutive }
                }
            }
            State::HalfOpen { .. } => reopened,
            open @ State::Open { .. } => open,
        };
    }

    /// The breaker as seen at `now`.
    pub fn state(&self, now: Instant) -> BreakerView {
        match self.effective(now) {
            State::Closed { .. } => BreakerView::Closed,
            State::Open { until } => BreakerView::Open { until },
            State::HalfOpen { .. } => BreakerView::HalfOpen,
        }
    }

    /// When an open breaker goes half-open, for the caller's timer; `None` unless open. Stays
    /// `Some` after that instant passes until the next delivery or outcome, so a late timer
    /// still finds it.
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            State::Closed { .. } | State::HalfOpen { .. } => None,
        }
    }

    /// The state with an expired open period read as half-open.
    fn effective(&self, now: Instant) -> State {
        match self.state {
            State::Open { until } if now >= until => State::HalfOpen { trial_outstanding: false },
            state => state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy = BreakerPolicy { failures_max: 3, open_ms: 1_000 };

    fn at_ms(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn fail_times(breaker: &mut Breaker, now: Instant, times: u32) {
        for _ in 0..times {
            breaker.on_failure(now, &POLICY);
        }
    }

    #[test]
    fn a_new_breaker_is_closed_and_delivers() {
        let breaker = Breaker::new();
        assert_eq!(breaker.state(at_ms(0)), BreakerView::Closed);
        assert!(breaker.allows_delivery(at_ms(0)));
        assert_eq!(breaker.reopens_at(), None);
    }

    /// `failures_max` consecutive failures open the breaker; one fewer does not.
    #[test]
    fn opens_after_exactly_failures_max_failures() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(5), 2);
        assert_eq!(breaker.state(at_ms(5)), BreakerView::Closed);
        assert!(breaker.allows_delivery(at_ms(5)));

        breaker.on_failure(at_ms(5), &POLICY);
        assert_eq!(breaker.state(at_ms(5)), BreakerView::Open { until: at_ms(1_005) });
        assert_eq!(breaker.reopens_at(), Some(at_ms(1_005)));
        assert!(!breaker.allows_delivery(at_ms(5)));
    }

    /// Only consecutive failures count: a success in between starts the count again.
    #[test]
    fn a_success_resets_the_failure_count() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(0), 2);
        breaker.on_success();
        fail_times(&mut breaker, at_ms(0), 2);
        assert_eq!(breaker.state(at_ms(0)), BreakerView::Closed);
        breaker.on_failure(at_ms(0), &POLICY);
        assert!(matches!(breaker.state(at_ms(0)), BreakerView::Open { .. }));
    }

    /// While open nothing is delivered; from `until` on, exactly one trial is.
    #[test]
    fn open_period_blocks_until_its_end_then_admits_one_trial() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(0), 3);
        let until = at_ms(1_000);
        let just_before = Instant::from_nanos(until.as_nanos() - 1);
        assert!(!breaker.allows_delivery(just_before));
        assert_eq!(breaker.state(just_before), BreakerView::Open { until });

        assert!(breaker.allows_delivery(until));
        assert_eq!(breaker.state(until), BreakerView::HalfOpen);
        breaker.on_delivery(until);
        assert!(!breaker.allows_delivery(until));
        assert!(!breaker.allows_delivery(at_ms(60_000)));
        assert_eq!(breaker.state(at_ms(60_000)), BreakerView::HalfOpen);
        assert_eq!(breaker.reopens_at(), None);
    }

    #[test]
    fn trial_success_closes() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(0), 3);
        breaker.on_delivery(at_ms(1_500));
        breaker.on_success();
        assert_eq!(breaker.state(at_ms(1_500)), BreakerView::Closed);
        assert!(breaker.allows_delivery(at_ms(1_500)));
        // And the count starts from zero again.
        fail_times(&mut breaker, at_ms(1_500), 2);
        assert_eq!(breaker.state(at_ms(1_500)), BreakerView::Closed);
    }

    /// A failed trial costs a full period from the failure, not from the first opening.
    #[test]
    fn trial_failure_reopens_for_a_full_period() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(0), 3);
        breaker.on_delivery(at_ms(1_500));
        breaker.on_failure(at_ms(2_000), &POLICY);
        assert_eq!(breaker.state(at_ms(2_000)), BreakerView::Open { until: at_ms(3_000) });
        assert_eq!(breaker.reopens_at(), Some(at_ms(3_000)));
        assert!(!breaker.allows_delivery(at_ms(2_999)));
        assert!(breaker.allows_delivery(at_ms(3_000)));
    }

    /// Late failures of deliveries made before the breaker opened do not extend the period.
    #[test]
    fn failures_while_open_do_not_extend_it() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(0), 3);
        fail_times(&mut breaker, at_ms(500), 5);
        assert_eq!(breaker.state(at_ms(500)), BreakerView::Open { until: at_ms(1_000) });
    }

    /// An open breaker whose period ran out, and which saw no delivery yet, is half-open: a
    /// failure there reopens it.
    #[test]
    fn failure_after_the_period_without_a_trial_reopens() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(0), 3);
        breaker.on_failure(at_ms(1_200), &POLICY);
        assert_eq!(breaker.state(at_ms(1_200)), BreakerView::Open { until: at_ms(2_200) });
    }

    #[test]
    fn failures_max_zero_opens_at_the_first_failure() {
        let mut breaker = Breaker::new();
        breaker.on_failure(at_ms(0), &BreakerPolicy { failures_max: 0, open_ms: 10 });
        assert_eq!(breaker.state(at_ms(0)), BreakerView::Open { until: at_ms(10) });
    }

    #[test]
    #[should_panic(expected = "breaker refuses")]
    fn delivering_while_open_is_a_bug() {
        let mut breaker = Breaker::new();
        fail_times(&mut breaker, at_ms(0), 3);
        breaker.on_delivery(at_ms(1));
    }

    /// Wall-clock `until` rounds up, so waiting until it never finds the breaker still open.
    #[test]
    fn wire_view_rounds_until_up_to_the_millisecond() {
        let clock = WallClock { epoch_unix_ms: 1_700_000_000_000 };
        let until = Instant::from_nanos(2_000_000_001);
        assert_eq!(
            BreakerView::Open { until }.to_wire(clock),
            BreakerState::Open { until_unix_ms: 1_700_000_002_001 }
        );
        let whole = BreakerView::Open { until: at_ms(2_000) }.to_wire(clock);
        assert_eq!(whole, BreakerState::Open { until_unix_ms: 1_700_000_002_000 });
        assert_eq!(BreakerView::Closed.to_wire(clock), BreakerState::Closed);
        assert_eq!(BreakerView::HalfOpen.to_wire(clock), BreakerState::HalfOpen);
    }
}
