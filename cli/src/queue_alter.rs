//! `chute queue alter NAME --flag...`: changes options of an existing queue live, over the
//! admin endpoint (the protocol has no alter). Only the options the flags name change: the
//! command reads the queue's options, applies the flags, and sends the fields that differ as
//! `PUT /api/queues/NAME?alter=true`, which the server merges into the options it holds then.
//! A durability change is sent like any other, and the server's refusal is the answer.

use chute_client::QueueOptions;
use clap::Args;
use serde_json::{Map, Value};

use crate::admin::AdminUrl;
use crate::admin_http::{segment, Request};
use crate::queue_options::{describe_options, QueueOptionArgs};
use crate::render::to_json;

#[derive(Args, Debug)]
pub struct QueueAlterArgs {
    name: String,
    #[command(flatten)]
    options: QueueOptionArgs,
    #[command(flatten)]
    url: AdminUrl,
    /// Print the server's JSON answer (the queue's options after the change).
    #[arg(long)]
    json: bool,
}

pub fn run(args: QueueAlterArgs) -> Result<(), String> {
    let endpoint = args.url.endpoint()?;
    let path = format!("/api/queues/{}", segment(&args.name));
    let current = options_of(&endpoint.call(Request::Get, &path)?, &args.name)?;
    let wanted = args.options.apply_to(&current)?;
    let changes = changed_fields(&current, &wanted);
    let answer = endpoint
        .call(Request::Put(Value::Object(changes).to_string()), &format!("{path}?alter=true"))?;
    if args.json {
        println!("{answer}");
        return Ok(());
    }
    let altered = options_of(&answer, &args.name)?;
    let lines = described_changes(&current, &altered);
    if lines.is_empty() {
        println!("{} unchanged", args.name);
    } else {
        println!("altered {}", args.name);
        for line in lines {
            println!("  {line}");
        }
    }
    Ok(())
}

/// The `options` of a queue's JSON, as the server sent them.
fn options_of(answer: &Value, name: &str) -> Result<QueueOptions, String> {
    let options = answer.get("options").cloned().unwrap_or_default();
    serde_json::from_value(options)
        .map_err(|error| format!("the server's options for queue {name:?} do not read: {error}"))
}

/// The top-level options of `wanted` that differ from `current`, by their serde names.
fn changed_fields(current: &QueueOptions, wanted: &QueueOptions) -> Map<String, Value> {
    let (Value::Object(current), Value::Object(wanted)) = (to_json(current), to_json(wanted))
    else {
        unreachable!("options are a struct")
    };
    wanted.into_iter().filter(|(name, value)| current.get(name) != Some(value)).collect()
}

/// `lease: 30000 ms -> 5000 ms` for each option that changed.
fn described_changes(before: &QueueOptions, after: &QueueOptions) -> Vec<String> {
    let before = describe_options(before);
    let after = describe_options(after);
    let pairs = before.into_iter().zip(after);
    let changed = pairs.filter(|((_, old), (_, new))| old != new);
    changed.map(|((name, old), (_, new))| format!("{name}: {old} -> {new}")).collect()
}

#[cfg(test)]
mod tests {
    use chute_client::Durability;

    use super::*;

    #[test]
    fn only_changed_fields_are_sent() {
        let current = QueueOptions::default();
        let wanted = QueueOptions { messages_max: Some(5), lease_ms: 10, ..current.clone() };
        let changes = changed_fields(&current, &wanted);
        assert_eq!(Value::Object(changes), serde_json::json!({"messages_max": 5, "lease_ms": 10}));
        assert!(changed_fields(&current, &current).is_empty());
        let durable = QueueOptions { durability: Durability::None, ..current.clone() };
        assert_eq!(changed_fields(&current, &durable).keys().collect::<Vec<_>>(), ["durability"]);
    }

    #[test]
    fn changes_are_described_before_and_after() {
        let before = QueueOptions::default();
        let after = QueueOptions { messages_max: Some(5), lease_ms: 10, ..before.clone() };
        assert_eq!(
            described_changes(&before, &after),
            ["messages max: none -> 5", "lease: 30000 ms -> 10 ms"]
        );
    }
}
