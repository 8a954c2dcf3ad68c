//! The options a queue is declared with. Every field has a default, so `QueueOptions::default()`
//! is a usable durable queue; the broker validates combinations (see `chute-core`).
//!
//! postcard encodes enums by variant index and structs by field order, so the serde attributes
//! here (the names JSON and the CLI show: `reject-publish`, `dead-letter`) leave the wire and
//! log formats alone; the order of variants and fields is the format.

use serde::{Deserialize, Serialize};

/// What a publish confirm promises on this queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Confirmed only after an fsync covers the message (group commit).
    #[default]
    Always,
    /// Confirmed after the write; fsync at most `sync_interval_ms` later. A machine crash may
    /// lose up to that window; a process crash loses nothing.
    Interval { sync_interval_ms: u32 },
    /// In memory only: confirmed on enqueue, lost on restart.
    None,
}

/// What happens when a publish would take a queue past `messages_max` or `bytes_max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// The publish fails with `queue-full`; nothing is stored.
    #[default]
    RejectPublish,
    /// The oldest ready message is dead-lettered with reason `overflow` to make room.
    DropHead,
}

/// What happens to a message whose TTL runs out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiryPolicy {
    /// Moved to the dead-letter queue with reason `expired` (dropped if the queue has none).
    #[default]
    DeadLetter,
    /// Dropped and counted.
    Drop,
}

/// Retry delay after a failed attempt: `min(max_ms, base_ms * factor^(attempt-1))`, then, with
/// `jitter`, a uniform draw from `[0, that]` ("full jitter").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffPolicy {
    pub base_ms: u32,
    /// Growth per attempt, in percent: 200 doubles the delay each attempt.
    pub factor_percent: u32,
    pub max_ms: u32,
    pub jitter: bool,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy { base_ms: 1_000, factor_percent: 200, max_ms: 60_000, jitter: true }
    }
}

/// What a token bucket does when it is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateLimitPolicy {
    /// Stop reading from the publisher until a token is available (backpressure).
    #[default]
    Pause,
    /// Fail the publish with `rate-limited` and the instant a token will be available.
    Reject,
}

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
    pub policy: RateLimitPolicy,
}

/// Per-consumer circuit breaker: after `failures_max` consecutive failed attempts by one
/// consumer, stop delivering to it for `open_ms`, then let one message through (half-open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerPolicy {
    pub failures_max: u32,
    pub open_ms: u32,
}

/// Defines `QueueOptions` and, from the same list of fields, what must name every one of them,
/// so that a new field cannot be left out.
macro_rules! queue_options {
    ($($(#[$doc:meta])* $field:ident: $type:ty,)*) => {
        /// A queue's options; see each field, and `Default` for a durable queue.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub struct QueueOptions {
            $($(#[$doc])* pub $field: $type,)*
        }

        impl QueueOptions {
            /// The fields' names, in declaration order (the wire order).
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The first field, in declaration order, whose value differs from `other`'s.
            pub fn first_difference(&self, other: &QueueOptions) -> Option<OptionDifference> {
                $(if self.$field != other.$field {
                    return Some(OptionDifference {
                        field: stringify!($field),
                        this: format!("{:?}", self.$field),
                        other: format!("{:?}", other.$field),
                    });
                })*
                None
            }
        }
    };
}

queue_options! {
    durability: Durability,
    /// Ready plus delayed plus in-flight messages; `None` is unbounded (up to server limits).
    messages_max: Option<u64>,
    /// Payload bytes of those messages.
    bytes_max: Option<u64>,
    overflow: OverflowPolicy,
    /// Default time to live of each message, from its publish.
    ttl_ms: Option<u64>,
    expiry: ExpiryPolicy,
    /// Queue that receives dead letters; `None` drops them (counted).
    dead_letter: Option<String>,
    /// Attempts before a message is dead-lettered with reason `max-attempts`; `None` retries
    /// forever.
    attempts_max: Option<u32>,
    backoff: BackoffPolicy,
    /// How long a consumer holds a delivery before it counts as a failed attempt (`timeout`).
    lease_ms: u32,
    /// A publish whose message id was seen within this window is confirmed, not stored again.
    dedup_window_ms: Option<u64>,
    publish_rate: Option<RateLimit>,
    breaker: Option<BreakerPolicy>,
}

/// One field that differs between two [`QueueOptions`], its values shown as `Debug` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionDifference {
    pub field: &'static str,
    pub this: String,
    pub other: String,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            durability: Durability::Always,
            messages_max: None,
            bytes_max: None,
            overflow: OverflowPolicy::RejectPublish,
            ttl_ms: None,
            expiry: ExpiryPolicy::DeadLetter,
            dead_letter: None,
            attempts_max: None,
            backoff: BackoffPolicy::default(),
            lease_ms: 30_000,
            dedup_window_ms: None,
            publish_rate: None,
            breaker: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal options have no difference; otherwise the first differing field in declaration
    /// order is named, with both values.
    #[test]
    fn first_difference_names_the_first_differing_field() {
        let default = QueueOptions::default();
        assert_eq!(default.first_difference(&default.clone()), None);
        let changed = QueueOptions {
            lease_ms: 5,
            breaker: Some(BreakerPolicy { failures_max: 1, open_ms: 2 }),
            ..QueueOptions::default()
        };
        let difference = changed.first_difference(&default).unwrap();
        assert_eq!(
            difference,
            OptionDifference { field: "lease_ms", this: "5".into(), other: "30000".into() }
        );
    }

    /// Every field is listed, in declaration order.
    #[test]
    fn fields_in_declaration_order() {
        assert_eq!(QueueOptions::FIELDS.first(), Some(&"durability"));
        assert_eq!(QueueOptions::FIELDS.last(), Some(&"breaker"));
        assert_eq!(QueueOptions::FIELDS.len(), 13);
    }
}
