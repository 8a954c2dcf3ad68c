//! `chute queue stats`: every field of a queue's stats, as text or as one JSON object.

use chute_client::{BreakerState, ConsumerInfo, Durability, QueueOptions, QueueStats};
use serde_json::{json, Value};

use crate::queue_options::{expiry_label, options_json, overflow_label, rate_policy_label};
use crate::render::utc;

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

fn breaker_parts(state: BreakerState) -> (&'static str, Option<u64>) {
    match state {
        BreakerState::Closed => ("closed", None),
        BreakerState::Open { until_unix_ms } => ("open", Some(until_unix_ms)),
        BreakerState::HalfOpen => ("half-open", None),
    }
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
            (label, None) => label.to_string(),
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

/// The options as (name, value) lines, in the order of `chute queue declare`'s flags.
fn describe_options(options: &QueueOptions) -> Vec<(&'static str, String)> {
    let or = |value: Option<String>, absent: &str| value.unwrap_or_else(|| absent.to_string());
    let durability = match options.durability {
        Durability::Always => "always".to_string(),
        Durability::Interval { sync_interval_ms } => format!("interval ({sync_interval_ms} ms)"),
        Durability::None => "none".to_string(),
    };
    let backoff = &options.backoff;
    vec![
        ("durability", durability),
        ("max messages", or(options.messages_max.map(|n| n.to_string()), "unbounded")),
        ("max bytes", or(options.bytes_max.map(|n| n.to_string()), "unbounded")),
        ("overflow", overflow_label(options.overflow).into()),
        ("ttl", or(options.ttl_ms.map(|ms| format!("{ms} ms")), "none")),
        ("expiry", expiry_label(options.expiry).into()),
        ("dead letter", or(options.dead_letter.clone(), "none")),
        ("max attempts", or(options.attempts_max.map(|n| n.to_string()), "unlimited")),
        (
            "backoff",
            format!(
                "{} ms x{}% up to {} ms{}",
                backoff.base_ms,
                backoff.factor_percent,
                backoff.max_ms,
                if backoff.jitter { ", full jitter" } else { "" }
            ),
        ),
        ("lease", format!("{} ms", options.lease_ms)),
        ("dedup window", or(options.dedup_window_ms.map(|ms| format!("{ms} ms")), "none")),
        (
            "publish rate",
            or(
                options.publish_rate.map(|rate| {
                    format!(
                        "{}/s burst {} ({})",
                        rate.per_second,
                        rate.burst,
                        rate_policy_label(rate.policy)
                    )
                }),
                "unlimited",
            ),
        ),
        (
            "breaker",
            or(
                options.breaker.map(|breaker| {
                    format!("after {} failures, open {} ms", breaker.failures_max, breaker.open_ms)
                }),
                "none",
            ),
        ),
    ]
}
