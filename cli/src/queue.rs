//! `chute queue ...`

use chute_client::{Connection, QueueOptions, QueueStats};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Create a queue (or check that it exists with the same options).
    Declare { name: String },
    /// List every queue with its depth.
    List {
        /// One JSON object per queue, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a queue's options, depth and counters.
    Stats {
        name: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove every ready message.
    Purge { name: String },
    /// Delete a queue and its messages.
    Delete {
        name: String,
        /// Refuse if the queue holds messages.
        #[arg(long)]
        if_empty: bool,
        /// Refuse if the queue has consumers.
        #[arg(long)]
        if_unused: bool,
    },
}

pub async fn run(connection: &Connection, command: QueueCommand) -> Result<(), String> {
    match command {
        QueueCommand::Declare { name } => {
            let ok = connection
                .declare_queue(&name, QueueOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            println!("{} {name}", if ok.created { "created" } else { "exists" });
        }
        QueueCommand::List { json } => {
            let queues = connection.list_queues().await.map_err(|e| e.to_string())?;
            if !json {
                println!("{:<32} {:>12} {:>12} {:>10}", "NAME", "READY", "IN-FLIGHT", "CONSUMERS");
            }
            for queue in queues {
                if json {
                    let value = serde_json::json!({
                        "name": queue.name,
                        "ready": queue.ready,
                        "in_flight": queue.in_flight,
                        "consumers": queue.consumers,
                    });
                    println!("{value}");
                } else {
                    println!(
                        "{:<32} {:>12} {:>12} {:>10}",
                        queue.name, queue.ready, queue.in_flight, queue.consumers
                    );
                }
            }
        }
        QueueCommand::Stats { name, json } => {
            let stats = connection.queue_stats(&name).await.map_err(|e| e.to_string())?;
            if json {
                println!("{}", stats_json(&stats));
            } else {
                print_stats(&stats);
            }
        }
        QueueCommand::Purge { name } => {
            let count = connection.purge_queue(&name).await.map_err(|e| e.to_string())?;
            println!("purged {count} messages from {name}");
        }
        QueueCommand::Delete { name, if_empty, if_unused } => {
            let count = connection
                .delete_queue(&name, if_empty, if_unused)
                .await
                .map_err(|e| e.to_string())?;
            println!("deleted {name} ({count} messages)");
        }
    }
    Ok(())
}

fn stats_json(stats: &QueueStats) -> serde_json::Value {
    let c = &stats.counters;
    serde_json::json!({
        "name": stats.name,
        "ready": stats.ready,
        "delayed": stats.delayed,
        "in_flight": stats.in_flight,
        "group_blocked": stats.group_blocked,
        "bytes": stats.bytes,
        "dead_letters": stats.dead_letters,
        "consumers": stats.consumers.len(),
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

fn print_stats(stats: &QueueStats) {
    let c = &stats.counters;
    println!("queue       {}", stats.name);
    println!("ready       {}", stats.ready);
    println!("delayed     {}", stats.delayed);
    println!("in flight   {}", stats.in_flight);
    println!("bytes       {}", stats.bytes);
    println!("consumers   {}", stats.consumers.len());
    println!(
        "counters    published {} delivered {} acked {} nacked {} redelivered {}",
        c.published, c.delivered, c.acked, c.nacked, c.redelivered
    );
}
