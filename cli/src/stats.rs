//! `chute queue stats`: every field of a queue's stats, as text or as one JSON object.

use chute_client::{BreakerState, ConsumerInfo, QueueStats};
use serde_json::{json, Value};

use crate::queue_options::{describe_options, options_json};
use crate::render::{label, utc};

pub fn stats_json(stats: &QueueStats) -> Value {
    let c = &stats.counters;
    json!({
        "name": stats.name,
        "options": options_json(&stats.options),
        "ready": stats.ready,
        "delayed": stats.delayed,
        "in_flight": stats.in_flight,
        "group_blocked": stats.group_blocked,
        "bytes": stats.bytes,
        "dead_letters": stats.dead_letters,
        "consumers": stats.consumers.iter().map(consumer_json).collect::<Vec<_>>(),
        "counters": {
            "published": c.published,
            "delivered": c.delivered,
            "acked": c.acked,
            "nacked": c.nacked,
            "rejected": c.rejected,
            "redelivered": c.redelivered,
            "timed_out": c.timed_out,
            "expired": c.expired,
            "dead_lettered": c.dead_lettered,
            "deduplicated": c.deduplicated,
            "dropped": c.dropped,
        },
        "bindings": stats.bindings,
    })
}

fn consumer_json(consumer: &ConsumerInfo) -> Value {
    let (breaker, open_until_unix_ms) = breaker_parts(consumer.breaker);
    json!({
        "connection_id": consumer.connection_id,
        "subscription": consumer.subscription,
        "credit": consumer.credit,
        "in_flight": consumer.in_flight,
        "breaker": breaker,
        "breaker_open_until_unix_ms": open_until_unix_ms,
    })
}

/// The breaker's state by name, and until when it is open.
fn breaker_parts(state: BreakerState) -> (String, Option<u64>) {
    let until = match state {
        BreakerState::Open { until_unix_ms } => Some(until_unix_ms),
        BreakerState::Closed | BreakerState::HalfOpen => None,
    };
    (label(&state), until)
}

pub fn print_stats(stats: &QueueStats) {
    let c = &stats.counters;
    println!("queue          {}", stats.name);
    println!("ready          {}", stats.ready);
    println!("delayed        {}", stats.delayed);
    println!("in flight      {}", stats.in_flight);
    println!("group blocked  {}", stats.group_blocked);
    println!("bytes          {}", stats.bytes);
    println!("dead letters   {}", stats.dead_letters);
    println!("bindings       {}", list_or_none(&stats.bindings));
    println!("consumers      {}", stats.consumers.len());
    for consumer in &stats.consumers {
        let breaker = match breaker_parts(consumer.breaker) {
            (label, Some(until)) => format!("{label} until {}", utc(until)),
            (label, None) => label,
        };
        println!(
            "  connection {} subscription {}: credit {} in flight {} breaker {breaker}",
            consumer.connection_id, consumer.subscription, consumer.credit, consumer.in_flight
        );
    }
    println!("counters");
    let counters = [
        ("published", c.published),
        ("delivered", c.delivered),
        ("acked", c.acked),
        ("nacked", c.nacked),
        ("rejected", c.rejected),
        ("redelivered", c.redelivered),
        ("timed out", c.timed_out),
        ("expired", c.expired),
        ("dead-lettered", c.dead_lettered),
        ("deduplicated", c.deduplicated),
        ("dropped", c.dropped),
    ];
    for (name, value) in counters {
        println!("  {name:<15}{value}");
    }
    println!("options");
    for (name, value) in describe_options(&stats.options) {
        println!("  {name:<15}{value}");
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}
