//! `chute`: publish, consume and administer queues from the command line.
//!
//! Exit status: 0 on success; 1 with a one-line reason on stderr otherwise.

mod bench;
mod consume;
mod dlq;
mod publish;
mod queue;
mod queue_options;
mod render;
mod stats;

use std::process::ExitCode;

use chute_client::Connection;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chute", version, about = "Command-line client for the chute message broker")]
struct Cli {
    /// Server address.
    #[arg(long, global = true, env = "CHUTE_URL", default_value = "chute://127.0.0.1:4770")]
    url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Declare, list, inspect, purge and delete queues.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Publish messages and wait until every one is confirmed.
    Publish(publish::PublishArgs),
    /// Receive messages, print them, and ack (or nack, or reject) each once printed.
    Consume(consume::ConsumeArgs),
    /// List, inspect and redrive dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Measure throughput and latency with the standard workloads (W1–W4) or a custom run.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // The bench runs its own threads and executors, and opens its own connections.
        Command::Bench(args) => bench::run(&cli.url, args),
        command => futures::executor::block_on(run(&cli.url, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chute: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, command: Command) -> Result<(), String> {
    let connection = Connection::connect(url).await.map_err(|e| e.to_string())?;
    let result = match command {
        Command::Queue(command) => queue::run(&connection, command).await,
        Command::Publish(args) => publish::run(&connection, args).await,
        Command::Consume(args) => consume::run(&connection, args).await,
        Command::Dlq(command) => dlq::run(&connection, command).await,
        Command::Bench(_) => unreachable!("main runs the bench itself"),
    };
    connection.close().await;
    result
}
