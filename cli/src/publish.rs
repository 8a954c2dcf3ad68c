//! `chute publish QUEUE [MESSAGE]` and `chute publish --topic TOPIC [MESSAGE]`

use std::io::{BufRead, IsTerminal};

use bytes::Bytes;
use chute_client::{
    CommandError, Confirmation, Connection, ConnectionEvent, ConnectionEvents, Destination, Header,
    PublishError, PublishMessage, Schedule,
};
use clap::Args;
use futures::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::publish_account::Account;

#[derive(Args)]
pub struct PublishArgs {
    /// The queue to publish to. With --topic there is no QUEUE: the first argument is the
    /// message.
    #[arg(value_name = "QUEUE")]
    pub queue: Option<String>,
    /// The message; without it (and without --count), each line of stdin is one message.
    pub message: Option<String>,
    /// Publish to this topic instead of a queue: a copy goes to every queue bound to it.
    #[arg(long)]
    pub topic: Option<String>,
    /// With --topic: fail if no binding matches, instead of confirming and counting a drop.
    #[arg(long, requires = "topic")]
    pub mandatory: bool,
    /// Publish this many generated messages instead.
    #[arg(long, conflicts_with = "message")]
    pub count: Option<u64>,
    /// Size of each generated message, in bytes.
    #[arg(long, default_value_t = 256, requires = "count")]
    pub size: usize,
    /// No progress bar (drawn for --count when stderr is a terminal).
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub attributes: MessageAttributes,
}

/// Attributes given to every message this command publishes.
#[derive(Args)]
pub struct MessageAttributes {
    /// Message id (the deduplication key on queues with a dedup window).
    #[arg(long)]
    pub id: Option<String>,
    /// Deliver no earlier than this long after the broker accepts the message.
    #[arg(long, conflicts_with = "deliver_at_unix_ms")]
    pub delay_ms: Option<u64>,
    /// Deliver no earlier than this wall-clock time (ms since the Unix epoch).
    #[arg(long)]
    pub deliver_at_unix_ms: Option<u64>,
    /// Time to live, overriding the queue's.
    #[arg(long)]
    pub ttl_ms: Option<u64>,
    /// 0 (lowest, the default) to 9; higher is delivered first.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub priority: u8,
    /// Group key: messages of one group are delivered one at a time, in order.
    #[arg(long)]
    pub group: Option<String>,
    /// An application header; repeat for more.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
}

impl MessageAttributes {
    fn message(&self, payload: Bytes) -> PublishMessage {
        let schedule = match (self.delay_ms, self.deliver_at_unix_ms) {
            (Some(delay_ms), _) => Some(Schedule::DelayMs(delay_ms)),
            (None, Some(at_unix_ms)) => Some(Schedule::AtUnixMs(at_unix_ms)),
            (None, None) => None,
        };
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| Header { name: name.clone(), value: Bytes::from(value.clone()) })
            .collect();
        PublishMessage {
            id: self.id.clone(),
            headers,
            payload,
            schedule,
            ttl_ms: self.ttl_ms,
            priority: self.priority,
            group: self.group.clone(),
        }
    }
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// Where to publish, and the message given on the command line if any.
fn destination(args: &PublishArgs) -> Result<(Destination, Option<String>), String> {
    let Some(topic) = &args.topic else {
        let queue = args.queue.clone().ok_or("give a QUEUE, or --topic TOPIC")?;
        return Ok((Destination::Queue(queue), args.message.clone()));
    };
    // Positionals fill in order, so with --topic the message arrives as the first one.
    let message = match (&args.queue, &args.message) {
        (Some(_), Some(_)) => {
            return Err("with --topic, give only the MESSAGE (there is no QUEUE)".into())
        }
        (Some(_), None) if args.count.is_some() => {
            return Err("--count generates the messages; give no MESSAGE".into())
        }
        (first, second) => first.clone().or(second.clone()),
    };
    Ok((Destination::Topic(topic.clone()), message))
}

/// Confirms awaited at once at most: a long stdin or `--count` keeps memory flat.
const CONFIRMS_PENDING_MAX: usize = 4096;

/// Publishes every message, even after one is refused, and accounts for each: the messages of
/// a partial failure are named, so a retry can resend just those. Says on stderr when the
/// server's resource alarm blocks the publishes, and when it lets them through again.
pub async fn run(connection: &Connection, args: PublishArgs) -> Result<(), String> {
    let mut events = connection.events();
    let result = {
        let blocked_lines = print_blocked_lines(&mut events);
        let publishing = publish_all(connection, args);
        futures::pin_mut!(blocked_lines, publishing);
        match futures::future::select(publishing, blocked_lines).await {
            futures::future::Either::Left((result, _)) => result,
            futures::future::Either::Right(((), publishing)) => publishing.await,
        }
    };
    // `Unblocked` arrives just before the confirms it let through: say so even when those
    // were the last ones awaited.
    while let Some(Some(event)) = events.next().now_or_never() {
        print_blocked_line(event);
    }
    eprintln!("{}", result?);
    Ok(())
}

/// Prints a line for each `Blocked` and `Unblocked` until the events end.
async fn print_blocked_lines(events: &mut ConnectionEvents) {
    while let Some(event) = events.next().await {
        print_blocked_line(event);
    }
}

fn print_blocked_line(event: ConnectionEvent) {
    match event {
        ConnectionEvent::Blocked { reason } => eprintln!(
            "blocked: the server's {reason} alarm is raised; publishes wait (none are lost)"
        ),
        ConnectionEvent::Unblocked => eprintln!("unblocked: publishing again"),
        _ => {}
    }
}

/// Publishes and settles everything; the account's closing line, or the failure.
async fn publish_all(connection: &Connection, args: PublishArgs) -> Result<String, String> {
    let (destination, message) = destination(&args)?;
    let size = args.size;
    let (unit, payloads): (_, Box<dyn Iterator<Item = Result<Bytes, String>>>) =
        match (message, args.count) {
            (Some(message), _) => ("message", Box::new(std::iter::once(Ok(Bytes::from(message))))),
            (None, Some(count)) => {
                ("message", Box::new((0..count).map(move |i| Ok(generated(i, size)))))
            }
            (None, None) => ("line", Box::new(stdin_lines())),
        };
    let target = match &destination {
        Destination::Queue(queue) => queue.clone(),
        Destination::Topic(topic) => format!("topic {topic}"),
    };
    // A topic publish always goes out mandatory, so that one matching no binding comes back
    // `unroutable` instead of confirmed: without --mandatory that is no error, but the account
    // says it was routed to no queue rather than that it was stored.
    let topic = matches!(destination, Destination::Topic(_));
    let mut account = Account::new(unit, target, args.mandatory || !topic);
    account.progress = progress_bar(args.count, args.quiet);
    let mut pending = Vec::new();
    for (number, payload) in (1..).zip(payloads) {
        let message = args.attributes.message(payload?);
        match connection.publish_to(&destination, args.mandatory || topic, message).await {
            Ok(confirmation) => pending.push((number, Ok(confirmation))),
            // Entered in the account with the confirms before it, to keep the account in order.
            Err(error) if refuses_only_this(&error) => pending.push((number, Err(error))),
            Err(error) => return report(account.stopped(number, &error)),
        }
        if pending.len() >= CONFIRMS_PENDING_MAX {
            settle(&mut pending, &mut account).await?;
        }
    }
    settle(&mut pending, &mut account).await?;
    match account.outcome() {
        Ok(line) => Ok(line),
        Err(lines) => report(lines),
    }
}

/// The bar for `--count` on a terminal: messages answered of the count, the rate, the time.
fn progress_bar(count: Option<u64>, quiet: bool) -> Option<ProgressBar> {
    let count = count?;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(count), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("publishing [{bar:30}] {pos}/{len}, {per_sec}, {elapsed}")
            .expect("a valid template")
            .progress_chars("#>.");
    bar.set_style(style);
    Some(bar)
}

fn stdin_lines() -> impl Iterator<Item = Result<Bytes, String>> {
    let lines = std::io::stdin().lock().lines();
    lines.map(|line| line.map(Bytes::from).map_err(|e| format!("reading stdin: {e}")))
}

/// A published message's confirm to come, or the client's refusal to send it.
type Pending = (u64, Result<Confirmation, PublishError>);

/// Awaits the pending confirms in publish order and enters each outcome in the account; fails
/// with the account so far if the connection ends.
async fn settle(pending: &mut Vec<Pending>, account: &mut Account) -> Result<(), String> {
    for (number, outcome) in pending.drain(..) {
        let outcome = match outcome {
            Ok(confirmation) => confirmation.await,
            Err(refused) => Err(refused),
        };
        match outcome {
            Ok(()) => account.confirm(),
            Err(error) if refuses_only_this(&error) => account.refuse(number, &error),
            Err(error) => return report(account.stopped(number, &error)),
        }
    }
    Ok(())
}

/// Whether the error concerns one message (refused by the server, or by the client before
/// sending), not the connection: the next message may still go through.
fn refuses_only_this(error: &PublishError) -> bool {
    match error {
        PublishError::Refused { .. } => true,
        PublishError::Command(CommandError::Closed) => false,
        PublishError::Command(_) => true,
        _ => false,
    }
}

/// Prints an account's lines but the last on stderr; the last is the command's error.
fn report<T>(mut lines: Vec<String>) -> Result<T, String> {
    let summary = lines.pop().unwrap_or_default();
    for line in lines {
        eprintln!("chute: {line}");
    }
    Err(summary)
}

/// A payload of `size` bytes that starts with its sequence number, so consumers can check.
fn generated(index: u64, size: usize) -> Bytes {
    let mut payload = format!("{index:>12} ").into_bytes();
    payload.resize(size, b'.');
    payload.truncate(size);
    Bytes::from(payload)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Publish {
        #[command(flatten)]
        args: PublishArgs,
    }

    fn parse(args: &str) -> Result<PublishArgs, String> {
        let args = std::iter::once("publish").chain(args.split_whitespace());
        Publish::try_parse_from(args).map(|p| p.args).map_err(|e| e.to_string())
    }

    fn target(args: &str) -> Result<(Destination, Option<String>), String> {
        destination(&parse(args)?)
    }

    /// QUEUE [MESSAGE] as before; with --topic the first positional is the message.
    #[test]
    fn queue_or_topic() {
        let queue = |name: &str| Destination::Queue(name.into());
        let topic = |name: &str| Destination::Topic(name.into());
        assert_eq!(target("jobs hi").unwrap(), (queue("jobs"), Some("hi".into())));
        assert_eq!(target("jobs").unwrap(), (queue("jobs"), None));
        assert_eq!(target("--topic a.b hi").unwrap(), (topic("a.b"), Some("hi".into())));
        assert_eq!(target("--topic a.b").unwrap(), (topic("a.b"), None));
        assert_eq!(target("--topic a.b --count 3").unwrap(), (topic("a.b"), None));
        assert!(target("--topic a.b jobs hi").unwrap_err().contains("no QUEUE"));
        assert!(target("--topic a.b hi --count 3").unwrap_err().contains("--count"));
        assert!(target("").unwrap_err().contains("QUEUE"));
        assert!(parse("jobs --mandatory").is_err(), "--mandatory needs --topic");
    }

    /// Every attribute flag lands in the message.
    #[test]
    fn attributes() {
        let args = parse(
            "jobs --id m-1 --delay-ms 1500 --ttl-ms 9000 --priority 7 --group g \
             --header a=1 --header b=x=y",
        )
        .unwrap();
        let message = args.attributes.message(Bytes::from_static(b"p"));
        assert_eq!(message.id.as_deref(), Some("m-1"));
        assert_eq!(message.schedule, Some(Schedule::DelayMs(1500)));
        assert_eq!((message.ttl_ms, message.priority), (Some(9000), 7));
        assert_eq!(message.group.as_deref(), Some("g"));
        let headers: Vec<(&str, &[u8])> =
            message.headers.iter().map(|h| (h.name.as_str(), &h.value[..])).collect();
        assert_eq!(headers, [("a", &b"1"[..]), ("b", &b"x=y"[..])]);
        let at = parse("jobs --deliver-at-unix-ms 42").unwrap().attributes;
        assert_eq!(at.message(Bytes::new()).schedule, Some(Schedule::AtUnixMs(42)));
        assert!(parse("jobs --priority 10").is_err());
        assert!(parse("jobs --header novalue").is_err());
        assert!(parse("jobs --delay-ms 1 --deliver-at-unix-ms 2").is_err());
    }
}
