//! The client-side circuit breaker around publishing, on the core's breaker policy (the one
//! the broker applies to consumers): consecutive failures open it, publishes then fail at
//! once, and after the open period one publish goes through as the trial.
//!
//! Failures are what says the server cannot take publishes: a connection attempt that fails,
//! a connection lost, a publish unanswered past its timeout or refused because the server is
//! stopping or its storage failed. A confirm is a success. Backpressure refusals
//! (`rate-limited`, `queue-full`) are neither: the server is working.

use std::collections::VecDeque;

use chute_protocol::BreakerPolicy;

use super::events::{SessionEvent, SessionOutput, SessionStats};
use crate::client::CommandError;
use crate::policy::breaker::{Breaker, BreakerView};
use crate::time::Instant;

#[derive(Debug)]
pub struct PublishBreaker {
    policy: Option<BreakerPolicy>,
    breaker: Breaker,
}

impl PublishBreaker {
    pub fn new(policy: Option<BreakerPolicy>) -> PublishBreaker {
        PublishBreaker { policy, breaker: Breaker::new() }
    }

    /// `None` without a policy.
    pub fn state(&self, now: Instant) -> Option<BreakerView> {
        self.policy.map(|_| self.breaker.state(now))
    }

    /// Lets a publish through, as the trial if half-open, or refuses it.
    pub fn admit(&mut self, now: Instant, stats: &mut SessionStats) -> Result<(), CommandError> {
        if self.policy.is_none() {
            return Ok(());
        }
        if !self.breaker.allows_delivery(now) {
            stats.breaker_rejections += 1;
            let retry_in_ms = match self.breaker.state(now) {
                BreakerView::Open { until } => {
                    until.saturating_since(now).as_nanos().div_ceil(1_000_000) as u64
                }
                BreakerView::HalfOpen | BreakerView::Closed => 0,
            };
            return Err(CommandError::CircuitOpen { retry_in_ms });
        }
        self.breaker.on_delivery(now);
        Ok(())
    }

    pub fn success(&mut self, now: Instant, outputs: &mut VecDeque<SessionOutput>) {
        if self.policy.is_none() || self.breaker.state(now) == BreakerView::Closed {
            return;
        }
        self.breaker.on_success();
        outputs.push_back(SessionOutput::Event(SessionEvent::BreakerClosed));
    }

    pub fn failure(
        &mut self,
        now: Instant,
        outputs: &mut VecDeque<SessionOutput>,
        stats: &mut SessionStats,
    ) {
        let Some(policy) = self.policy else { return };
        let was_open = matches!(self.breaker.state(now), BreakerView::Open { .. });
        self.breaker.on_failure(now, &policy);
        if let (false, BreakerView::Open { until }) = (was_open, self.breaker.state(now)) {
            stats.breaker_opens += 1;
            outputs.push_back(SessionOutput::Event(SessionEvent::BreakerOpened { until }));
        }
    }
}
