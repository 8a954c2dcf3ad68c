//! `chute consume QUEUE`

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use chute_client::{Connection, Delivery, Error, SubscribeOptions, Subscription};
use clap::Args;
use futures::future::{self, Either};
use futures::StreamExt;

use crate::render::{headers_json, set_payload};

#[derive(Args)]
pub struct ConsumeArgs {
    pub queue: String,
    /// Stop after this many messages (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long with what has arrived (exit 0 even if fewer than --count).
    #[arg(long)]
    pub wait_ms: Option<u64>,
    /// One JSON object per message, one per line.
    #[arg(long)]
    pub json: bool,
    /// Print nothing: receive and settle only (with --count, to drain a queue or time how fast
    /// it drains, without a write per message).
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// Deliveries held unsettled at once.
    #[arg(long, default_value_t = 100)]
    pub prefetch: u32,
    /// Lease of each delivery, overriding the queue's.
    #[arg(long)]
    pub lease_ms: Option<u32>,
    /// Nack each message instead of acking it: a failed attempt, retried after the backoff.
    #[arg(long, conflicts_with = "reject")]
    pub nack: bool,
    /// Reject each message instead of acking it: dead-lettered now. Needs --reason.
    #[arg(long, requires = "reason")]
    pub reject: bool,
    /// The failure text kept in the message's attempt history (with --nack or --reject).
    #[arg(long)]
    pub reason: Option<String>,
    /// With --nack: retry after this long instead of the queue's backoff.
    #[arg(long, requires = "nack")]
    pub delay_ms: Option<u64>,
}

/// What to do with each delivery once printed.
enum Settle {
    Ack,
    Nack { delay_ms: Option<u64>, reason: Option<String> },
    Reject { reason: String },
}

impl Settle {
    fn from_args(args: &ConsumeArgs) -> Result<Settle, String> {
        match (args.nack, args.reject, &args.reason) {
            (true, _, reason) => {
                Ok(Settle::Nack { delay_ms: args.delay_ms, reason: reason.clone() })
            }
            (false, true, Some(reason)) => Ok(Settle::Reject { reason: reason.clone() }),
            (false, true, None) => Err("--reject needs --reason".into()),
            (false, false, Some(_)) => Err("--reason goes with --nack or --reject".into()),
            (false, false, None) => Ok(Settle::Ack),
        }
    }

    /// Settles the delivery; `false` if its connection was lost meanwhile (the server will
    /// deliver it again: at least once).
    fn apply(&self, delivery: &Delivery) -> Result<bool, String> {
        let result = match self {
            Settle::Ack => delivery.ack(),
            Settle::Nack { delay_ms, reason } => delivery.nack(*delay_ms, reason.clone()),
            Settle::Reject { reason } => delivery.reject(reason.clone()),
        };
        match result {
            Ok(()) => Ok(true),
            Err(Error::DeliveryVoid { .. }) => Ok(false),
            Err(error) => Err(error.to_string()),
        }
    }
}

pub async fn run(connection: &Connection, args: ConsumeArgs) -> Result<(), String> {
    let settle = Settle::from_args(&args)?;
    let wanted = args.count.unwrap_or(u64::MAX);
    if wanted == 0 {
        return Ok(());
    }
    // Grant exactly `wanted` credit in total, so no message beyond it is delivered (and then
    // requeued with an attempt counted when we leave).
    let mut granted = wanted.min(u64::from(args.prefetch.max(1)));
    let options = SubscribeOptions {
        prefetch: granted as u32,
        auto_credit: false,
        lease_ms: args.lease_ms,
        rate: None,
    };
    let mut deliveries =
        connection.subscribe_with(&args.queue, options).await.map_err(|e| e.to_string())?;
    let mut deadline = args.wait_ms.map(|ms| {
        let at = Instant::now() + Duration::from_millis(ms);
        (at, Box::pin(async_io::Timer::at(at)))
    });
    let mut hint = WaitingHint::new();
    let mut received = 0u64;
    while received < wanted {
        let next = match deadline.as_mut() {
            None => hint.next(&mut deliveries).await,
            // Checked before taking a delivery: a consumer that always has one waiting must
            // still stop on time.
            Some((at, _)) if Instant::now() >= *at => {
                return give_up(&mut deliveries, &settle, &args, wanted - received).await;
            }
            Some((_, timer)) => match future::select(deliveries.next(), timer.as_mut()).await {
                Either::Left((next, _)) => next,
                Either::Right(_) => continue,
            },
        };
        let Some(delivery) = next else {
            let reason = connection.closed_reason().map(|e| e.to_string());
            return Err(reason.unwrap_or_else(|| format!("subscription to {} ended", args.queue)));
        };
        print_delivery(&delivery, &args);
        if !settle.apply(&delivery)? {
            // Its connection was lost: it comes again, and counts then.
            continue;
        }
        received += 1;
        if granted < wanted {
            deliveries.grant_credit(1).map_err(|e| e.to_string())?;
            granted += 1;
        }
    }
    Ok(())
}

/// Time is up: stop the subscription, then handle what the server had already sent, so that
/// nothing is left unsettled to come back with a failed attempt counted.
async fn give_up(
    deliveries: &mut Subscription,
    settle: &Settle,
    args: &ConsumeArgs,
    room: u64,
) -> Result<(), String> {
    deliveries.unsubscribe().await.map_err(|e| e.to_string())?;
    let mut handled = 0u64;
    while let Some(delivery) = deliveries.next().await {
        // The server sends no more than the credit granted, which never exceeds --count; should
        // it, the extra stays unsettled rather than break the promise of --count.
        if handled == room {
            break;
        }
        print_delivery(&delivery, args);
        settle.apply(&delivery)?;
        handled += 1;
    }
    Ok(())
}

/// How long a consumer waits in silence before saying that it is waiting.
const HINT_AFTER: Duration = Duration::from_secs(1);

/// Says once, on a terminal, that the command is waiting for messages, if none comes for
/// [`HINT_AFTER`]: an empty queue must not look like a hang.
struct WaitingHint {
    pending: bool,
}

impl WaitingHint {
    fn new() -> WaitingHint {
        WaitingHint { pending: std::io::stderr().is_terminal() }
    }

    async fn next(&mut self, deliveries: &mut Subscription) -> Option<Delivery> {
        if !self.pending {
            return deliveries.next().await;
        }
        let timer = async_io::Timer::after(HINT_AFTER);
        match future::select(deliveries.next(), timer).await {
            Either::Left((next, _)) => next,
            Either::Right((_, next)) => {
                self.pending = false;
                eprintln!("waiting for messages (Ctrl-C to stop)");
                next.await
            }
        }
    }
}

fn print_delivery(delivery: &Delivery, args: &ConsumeArgs) {
    if args.quiet {
        return;
    }
    let payload = delivery.payload();
    if !args.json {
        println!("{}", String::from_utf8_lossy(payload));
        return;
    }
    let mut value = serde_json::json!({
        "tag": delivery.tag(),
        "attempt": delivery.attempt(),
        "redelivered": delivery.redelivered(),
        "id": delivery.message_id(),
        "published_unix_ms": delivery.published_unix_ms(),
        "priority": delivery.priority(),
        "group": delivery.group(),
        "topic": delivery.as_wire().topic,
        "headers": headers_json(delivery.headers()),
    });
    set_payload(&mut value, payload);
    println!("{value}");
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Consume {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn settle(args: &str) -> Result<Settle, String> {
        let args = std::iter::once("consume").chain(args.split_whitespace());
        let consume = Consume::try_parse_from(args).map_err(|e| e.to_string())?;
        Settle::from_args(&consume.args)
    }

    #[test]
    fn settle_flags() {
        assert!(matches!(settle("q"), Ok(Settle::Ack)));
        assert!(matches!(
            settle("q --nack --reason r --delay-ms 5"),
            Ok(Settle::Nack { delay_ms: Some(5), reason: Some(r) }) if r == "r"
        ));
        assert!(matches!(settle("q --nack"), Ok(Settle::Nack { delay_ms: None, reason: None })));
        assert!(
            matches!(settle("q --reject --reason r"), Ok(Settle::Reject { reason }) if reason == "r")
        );
        assert!(settle("q --reject").is_err(), "a reject needs its reason");
        assert!(settle("q --nack --reject --reason r").is_err());
        assert!(settle("q --reason r").is_err(), "a reason with nothing to give it to");
        assert!(settle("q --delay-ms 5").is_err(), "a delay only goes with --nack");
    }

    /// `--quiet` (or `-q`) prints nothing and still settles each delivery; it has nothing to
    /// print as JSON.
    #[test]
    fn quiet_flag() {
        let parse = |args: &str| {
            let args = std::iter::once("consume").chain(args.split_whitespace());
            Consume::try_parse_from(args).map(|c| c.args)
        };
        assert!(parse("q --count 5 --quiet").unwrap().quiet);
        assert!(parse("q -q").unwrap().quiet);
        assert!(!parse("q").unwrap().quiet);
        assert!(parse("q --quiet --json").is_err(), "nothing to print as JSON");
        assert!(matches!(settle("q --quiet"), Ok(Settle::Ack)));
    }
}
