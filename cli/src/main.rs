//! `chute`: publish, consume and administer queues from the command line.
//!
//! Exit status: 0 on success; 1 with a one-line reason on stderr when the operation fails; 2
//! with a one-line reason when the command line is wrong. `--help` and `--version` print to
//! stdout and exit 0.

mod admin;
mod admin_http;
mod admin_users;
mod bench;
mod connect;
mod consume;
mod dlq;
mod publish;
mod publish_account;
mod queue;
mod queue_alter;
mod queue_options;
mod render;
mod stats;

use std::process::ExitCode;

use chute_client::{ConnectOptions, Connection};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chute", version, about = "Command-line client for the chute message broker")]
struct Cli {
    #[command(flatten)]
    server: connect::ServerArgs,
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
    /// Operate the server over its admin endpoint: overview, connections, close, reload,
    /// drain.
    Admin(admin::AdminArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let args: Vec<String> =
                std::env::args_os().map(|a| a.to_string_lossy().into()).collect();
            return usage_error(&error, &args);
        }
    };
    let result = match cli.command {
        // The bench runs its own threads and executors, and opens its own connections.
        Command::Bench(args) => bench::run(&cli.server, args),
        // These speak HTTP to the admin endpoint, not the protocol.
        Command::Admin(args) => admin::run(args),
        Command::Queue(queue::QueueCommand::Alter(args)) => queue_alter::run(args),
        // async-io's own executor: the thread that runs the command also waits for the socket.
        command => async_io::block_on(run(&cli.server, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chute: {message}");
            ExitCode::FAILURE
        }
    }
}

/// clap's verdict on the command line: help and version on stdout (exit 0), or the error's
/// first paragraph as one line on stderr (exit 2) instead of clap's several lines of usage.
fn usage_error(error: &clap::Error, args: &[String]) -> ExitCode {
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let command = command_path(args);
    let reason = match error.kind() {
        // clap's text for these is the command's whole help.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            format!("error: '{command}' needs a subcommand")
        }
        _ => one_line(&error.render().to_string()),
    };
    eprintln!("chute: {reason} (see '{command} --help')");
    ExitCode::from(2)
}

/// The command the arguments name (`chute queue declare`), found by following them down
/// clap's tree of subcommands (clap's errors do not all say which command refused them).
fn command_path(args: &[String]) -> String {
    let mut command = Cli::command();
    command.build();
    let mut path = vec![command.get_name().to_string()];
    let mut args = args.iter().skip(1);
    while command.has_subcommands() {
        let Some(arg) = args.next() else { break };
        if let Some(long) = arg.strip_prefix("--") {
            let takes_value =
                |a: &clap::Arg| a.get_long() == Some(long) && a.get_action().takes_values();
            if command.get_arguments().any(takes_value) {
                args.next();
            }
            continue;
        }
        let Some(subcommand) = command.find_subcommand(arg).cloned() else { break };
        path.push(subcommand.get_name().to_string());
        command = subcommand;
    }
    path.join(" ")
}

/// The first paragraph of clap's message (the error itself; tips and usage follow a blank
/// line), its lines joined.
fn one_line(message: &str) -> String {
    let lines = message.lines().take_while(|line| !line.trim().is_empty());
    lines.map(str::trim).collect::<Vec<_>>().join(" ")
}

/// Runs a command on a connection whose I/O this thread drives (`connect_driven`, as `chute
/// bench` does): no hand-off to a connection thread per batch of messages.
async fn run(server: &connect::ServerArgs, command: Command) -> Result<(), String> {
    let options = connect_options(server.options()?);
    let (connection, mut driver) =
        Connection::connect_driven(&server.url, options).await.map_err(|e| e.to_string())?;
    let work = async {
        let result = match command {
            Command::Queue(command) => queue::run(&connection, command).await,
            Command::Publish(args) => publish::run(&connection, args).await,
            Command::Consume(args) => consume::run(&connection, args).await,
            Command::Dlq(command) => dlq::run(&connection, command).await,
            Command::Bench(_) | Command::Admin(_) => unreachable!("main runs these itself"),
        };
        connection.clone().close().await;
        result
    };
    driver.run_until(work).await
}

/// The client's defaults, but a command gives up on a server that stays away for a few
/// seconds instead of waiting for it forever. A restart within that time is ridden out: a
/// long `chute publish` sends what was unconfirmed again, with the ids it gave the messages.
fn connect_options(mut options: ConnectOptions) -> ConnectOptions {
    options.reconnect.attempts_max = Some(5);
    options
}
