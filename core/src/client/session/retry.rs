//! Which refusals a session retries, and when: the server's rule (PROTOCOL.md §9.2) with the
//! session's backoff and the operation's deadline.

use chute_protocol::ErrorCode;

use super::config::RetryPolicy;
use crate::policy::backoff::retry_delay_ms;
use crate::rng::Rng;
use crate::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Send it again on this connection at this instant.
    At(Instant),
    /// Send it again on the next connection: this server is stopping or cannot store.
    NextConnection,
    /// Report the refusal.
    No,
}

/// What to do with an operation refused with `code`, its `refusals`-th refusal (1-based).
/// "Later" codes wait for `retry_after_ms` or the backoff, whichever is longer, if that is
/// still before `deadline`; "elsewhere" codes wait for the next connection when there will be
/// one.
pub fn decide(
    code: ErrorCode,
    retry_after_ms: u64,
    refusals: u32,
    policy: &RetryPolicy,
    reconnects: bool,
    rng: &mut Rng,
    (now, deadline): (Instant, Option<Instant>),
) -> Retry {
    let later = code == ErrorCode::RATE_LIMITED
        || code == ErrorCode::RESOURCE_LIMIT
        || (code == ErrorCode::QUEUE_FULL && policy.queue_full);
    let elsewhere = code == ErrorCode::SHUTTING_DOWN || code == ErrorCode::STORAGE_FAILED;
    if elsewhere && reconnects {
        return Retry::NextConnection;
    }
    if !later {
        return Retry::No;
    }
    let delay_ms = retry_delay_ms(&policy.backoff, refusals, rng).max(retry_after_ms);
    let at = now.plus_ms(delay_ms);
    match deadline {
        Some(deadline) if at >= deadline => Retry::No,
        _ => Retry::At(at),
    }
}

#[cfg(test)]
mod tests {
    use chute_protocol::BackoffPolicy;

    use super::*;

    fn policy(queue_full: bool) -> RetryPolicy {
        let backoff =
            BackoffPolicy { base_ms: 100, factor_percent: 200, max_ms: 1_000, jitter: false };
        RetryPolicy { backoff, queue_full }
    }

    fn decided(code: ErrorCode, retry_after_ms: u64, refusals: u32, deadline_ms: u64) -> Retry {
        let window = (Instant::from_millis(1_000), Some(Instant::from_millis(deadline_ms)));
        decide(code, retry_after_ms, refusals, &policy(false), true, &mut Rng::new(1), window)
    }

    /// The server's hint wins when it is longer than the backoff, and the backoff grows.
    #[test]
    fn later_waits_for_the_hint_or_the_backoff() {
        let at = |ms| Retry::At(Instant::from_millis(ms));
        assert_eq!(decided(ErrorCode::RATE_LIMITED, 700, 1, 60_000), at(1_700));
        assert_eq!(decided(ErrorCode::RATE_LIMITED, 0, 3, 60_000), at(1_400));
        assert_eq!(decided(ErrorCode::RESOURCE_LIMIT, 0, 1, 60_000), at(1_100));
    }

    /// A retry that would land after the deadline is not made.
    #[test]
    fn no_retry_past_the_deadline() {
        assert_eq!(decided(ErrorCode::RATE_LIMITED, 5_000, 1, 2_000), Retry::No);
    }

    #[test]
    fn queue_full_only_when_asked() {
        assert_eq!(decided(ErrorCode::QUEUE_FULL, 0, 1, 60_000), Retry::No);
        let window = (Instant::from_millis(0), None);
        let retry =
            decide(ErrorCode::QUEUE_FULL, 0, 1, &policy(true), true, &mut Rng::new(1), window);
        assert_eq!(retry, Retry::At(Instant::from_millis(100)));
    }

    /// A stopping server's refusal is for the next connection, if there will be one; a
    /// refusal that would be the same anywhere is final.
    #[test]
    fn elsewhere_and_final_codes() {
        assert_eq!(decided(ErrorCode::SHUTTING_DOWN, 0, 1, 60_000), Retry::NextConnection);
        assert_eq!(decided(ErrorCode::STORAGE_FAILED, 0, 1, 60_000), Retry::NextConnection);
        let window = (Instant::from_millis(0), None);
        let alone =
            decide(ErrorCode::SHUTTING_DOWN, 0, 1, &policy(false), false, &mut Rng::new(1), window);
        assert_eq!(alone, Retry::No);
        assert_eq!(decided(ErrorCode::NO_SUCH_QUEUE, 0, 1, 60_000), Retry::No);
        assert_eq!(decided(ErrorCode::UNROUTABLE, 0, 1, 60_000), Retry::No);
    }
}
