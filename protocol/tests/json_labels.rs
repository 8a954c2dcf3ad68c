//! The names JSON gives the protocol's enums are the ones the CLI documents and prints
//! (`chute queue declare --help`, `chute dlq list`, `chute queue stats --json`): kebab-case,
//! and a variant with fields is an object keyed by its name. They are not the wire format
//! (postcard encodes a variant by its index; see vectors.rs).

use chute_protocol::{
    AttemptOutcome, BreakerState, DeadReason, Durability, ExpiryPolicy, OverflowPolicy,
    RateLimitPolicy,
};
use serde::Serialize;
use serde_json::{json, Value};

fn json_of<T: Serialize>(values: &[T]) -> Vec<Value> {
    values.iter().map(|value| serde_json::to_value(value).unwrap()).collect()
}

#[test]
fn queue_option_enums() {
    let durabilities =
        [Durability::Always, Durability::Interval { sync_interval_ms: 5 }, Durability::None];
    assert_eq!(
        json_of(&durabilities),
        [json!("always"), json!({"interval": {"sync_interval_ms": 5}}), json!("none")]
    );
    let overflows = [OverflowPolicy::RejectPublish, OverflowPolicy::DropHead];
    assert_eq!(json_of(&overflows), [json!("reject-publish"), json!("drop-head")]);
    let expiries = [ExpiryPolicy::DeadLetter, ExpiryPolicy::Drop];
    assert_eq!(json_of(&expiries), [json!("dead-letter"), json!("drop")]);
    let policies = [RateLimitPolicy::Pause, RateLimitPolicy::Reject];
    assert_eq!(json_of(&policies), [json!("pause"), json!("reject")]);
}

#[test]
fn dead_letter_and_consumer_enums() {
    let reasons =
        [DeadReason::MaxAttempts, DeadReason::Rejected, DeadReason::Expired, DeadReason::Overflow];
    assert_eq!(
        json_of(&reasons),
        [json!("max-attempts"), json!("rejected"), json!("expired"), json!("overflow")]
    );
    let outcomes = [
        AttemptOutcome::Nack,
        AttemptOutcome::Timeout,
        AttemptOutcome::Disconnect,
        AttemptOutcome::Reject,
    ];
    assert_eq!(
        json_of(&outcomes),
        [json!("nack"), json!("timeout"), json!("disconnect"), json!("reject")]
    );
    let states =
        [BreakerState::Closed, BreakerState::Open { until_unix_ms: 7 }, BreakerState::HalfOpen];
    assert_eq!(
        json_of(&states),
        [json!("closed"), json!({"open": {"until_unix_ms": 7}}), json!("half-open")]
    );
}
