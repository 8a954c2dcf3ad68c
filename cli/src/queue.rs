//! `chute queue ...`

use chute_client::Connection;
use clap::Subcommand;

use crate::queue_alter::QueueAlterArgs;
use crate::queue_options::QueueOptionArgs;
use crate::stats::{print_stats, stats_json};

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Create a queue (or check that it exists with the same options).
    Declare {
        name: String,
        #[command(flatten)]
        options: QueueOptionArgs,
    },
    /// Change options of an existing queue live, over the admin endpoint: only the options
    /// the flags name change, and the change survives restarts. Durability cannot change.
    Alter(QueueAlterArgs),
    /// List every queue with its depth.
    List {
        /// One JSON object per queue, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a queue's options, depth, consumers, bindings and counters.
    Stats {
        name: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Route topics matching PATTERN to QUEUE (`*` one word, `#` zero or more; words split on
    /// `.`).
    Bind { queue: String, pattern: String },
    /// Remove a binding.
    Unbind { queue: String, pattern: String },
    /// Remove every ready and delayed message.
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
        QueueCommand::Declare { name, options } => {
            let options = options.to_options()?;
            let ok = connection.declare_queue(&name, options).await.map_err(|e| e.to_string())?;
            println!("{} {name}", if ok.created { "created" } else { "exists" });
        }
        QueueCommand::Alter(_) => unreachable!("main alters over the admin endpoint"),
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
        QueueCommand::Bind { queue, pattern } => {
            connection.bind(&queue, &pattern).await.map_err(|e| e.to_string())?;
            println!("bound {queue} to {pattern}");
        }
        QueueCommand::Unbind { queue, pattern } => {
            connection.unbind(&queue, &pattern).await.map_err(|e| e.to_string())?;
            println!("unbound {queue} from {pattern}");
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
