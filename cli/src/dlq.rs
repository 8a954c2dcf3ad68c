//! `chute dlq list|show|redrive QUEUE`: dead letters, seen without consuming them.
//!
//! QUEUE may name the dead-letter queue itself, or a queue that sends to one (it has a
//! `dead_letter` option); then only the dead letters that came from it are listed and
//! redriven.

use chute_client::{Connection, DeadLetter, DeadLetterSummary};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::render::{headers_json, label, messages, set_payload, to_json, utc};

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first, with their reason and attempt history.
    List {
        queue: String,
        /// One JSON object per dead letter, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter with its headers, history and payload.
    Show {
        queue: String,
        /// The dead letter's id (DEAD-ID in `chute dlq list`: the message's number on the
        /// server, not its place in the list).
        #[arg(value_name = "DEAD-ID")]
        id: u64,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to their source queues, attempts reset.
    Redrive {
        queue: String,
        /// Only these dead letters (DEAD-ID in `chute dlq list`; default: all).
        #[arg(value_name = "DEAD-ID")]
        ids: Vec<u64>,
        /// The same as a DEAD-ID argument; repeat for more.
        #[arg(long = "id", value_name = "DEAD-ID")]
        more_ids: Vec<u64>,
    },
}

/// The dead-letter queue a command works on, and the source queue to keep to, if any.
struct Target {
    dlq: String,
    source: Option<String>,
}

impl Target {
    async fn resolve(connection: &Connection, queue: &str) -> Result<Target, String> {
        let stats = connection.queue_stats(queue).await.map_err(|e| e.to_string())?;
        Ok(match stats.options.dead_letter {
            Some(dlq) => Target { dlq, source: Some(queue.to_string()) },
            None => Target { dlq: queue.to_string(), source: None },
        })
    }

    async fn list(&self, connection: &Connection) -> Result<Vec<DeadLetterSummary>, String> {
        let mut entries = connection.dlq_list(&self.dlq).await.map_err(|e| e.to_string())?;
        if let Some(source) = &self.source {
            entries.retain(|entry| &entry.source_queue == source);
        }
        Ok(entries)
    }

    /// Redrives the named dead letters, or every one this target covers when `ids` is empty.
    async fn redrive(&self, connection: &Connection, ids: Vec<u64>) -> Result<u64, String> {
        let ids = match &self.source {
            // Just this source's entries: name them, since no ids at all means the whole DLQ.
            Some(_) if ids.is_empty() => {
                let entries = self.list(connection).await?;
                if entries.is_empty() {
                    return Ok(0);
                }
                entries.iter().map(|entry| entry.dead_id).collect()
            }
            _ => ids,
        };
        connection.dlq_redrive(&self.dlq, ids).await.map_err(|e| e.to_string())
    }
}

pub async fn run(connection: &Connection, command: DlqCommand) -> Result<(), String> {
    match command {
        DlqCommand::List { queue, json } => {
            let target = Target::resolve(connection, &queue).await?;
            let entries = target.list(connection).await?;
            if json {
                for entry in &entries {
                    println!("{}", summary_json(entry));
                }
            } else {
                print_table(&entries);
            }
        }
        DlqCommand::Show { queue, id, json } => {
            let target = Target::resolve(connection, &queue).await?;
            let entry = connection.dlq_inspect(&target.dlq, id).await.map_err(|e| e.to_string())?;
            if json {
                println!("{}", dead_letter_json(&entry));
            } else {
                print_dead_letter(&entry);
            }
        }
        DlqCommand::Redrive { queue, mut ids, more_ids } => {
            ids.extend(more_ids);
            let target = Target::resolve(connection, &queue).await?;
            let moved = target.redrive(connection, ids).await?;
            println!("redriven {} from {}", messages(moved), target.dlq);
        }
    }
    Ok(())
}

fn summary_json(entry: &DeadLetterSummary) -> Value {
    json!({
        "dead_id": entry.dead_id,
        "message_id": entry.message_id,
        "source_queue": entry.source_queue,
        "reason": label(&entry.reason),
        "dead_unix_ms": entry.dead_unix_ms,
        "published_unix_ms": entry.published_unix_ms,
        "payload_len": entry.payload_len,
        "history": to_json(&entry.history),
    })
}

fn dead_letter_json(entry: &DeadLetter) -> Value {
    let mut value = summary_json(&entry.summary);
    value["headers"] = headers_json(&entry.headers);
    set_payload(&mut value, &entry.payload);
    value
}

fn print_table(entries: &[DeadLetterSummary]) {
    println!(
        "{:>10}  {:<12}  {:>8}  {:<24}  {:<20}  {:>8}  LAST ERROR",
        "DEAD-ID", "REASON", "ATTEMPTS", "DEAD AT", "SOURCE", "BYTES"
    );
    for entry in entries {
        let last_error = entry.history.last().and_then(|a| a.reason.as_deref()).unwrap_or("-");
        println!(
            "{:>10}  {:<12}  {:>8}  {:<24}  {:<20}  {:>8}  {}",
            entry.dead_id,
            label(&entry.reason),
            entry.history.len(),
            utc(entry.dead_unix_ms),
            entry.source_queue,
            entry.payload_len,
            last_error
        );
    }
}

fn print_dead_letter(entry: &DeadLetter) {
    let summary = &entry.summary;
    println!("dead id      {}", summary.dead_id);
    println!("message id   {}", summary.message_id.as_deref().unwrap_or("-"));
    println!("source       {}", summary.source_queue);
    println!("reason       {}", label(&summary.reason));
    println!("published    {}", utc(summary.published_unix_ms));
    println!("dead at      {}", utc(summary.dead_unix_ms));
    println!("headers      {}", entry.headers.len());
    for header in &entry.headers {
        println!("  {}: {}", header.name, String::from_utf8_lossy(&header.value));
    }
    println!("attempts     {}", summary.history.len());
    for (number, attempt) in summary.history.iter().enumerate() {
        println!(
            "  {:>3}  {}  {:<10}  {}",
            number + 1,
            utc(attempt.at_unix_ms),
            label(&attempt.outcome),
            attempt.reason.as_deref().unwrap_or("-")
        );
    }
    println!("payload      {} bytes", summary.payload_len);
    match std::str::from_utf8(&entry.payload) {
        Ok(text) => println!("{text}"),
        Err(_) => println!("{}", crate::render::hex(&entry.payload)),
    }
}
