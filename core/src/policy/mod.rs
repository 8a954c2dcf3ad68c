//! The pure policies the broker and client apply: resource alarms, retry backoff, the per-consumer circuit
//! breaker, token-bucket rate limits and topic matching. Each is a plain value or function:
//! the caller passes `now` and the RNG in and arms its own timers from what comes back, so
//! every policy can be tested alone, without a broker, a clock or a random source.

pub mod alarm;
pub mod backoff;
pub mod breaker;
pub mod token_bucket;
pub mod topic;
