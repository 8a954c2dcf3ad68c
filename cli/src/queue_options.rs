//! The flags of `chute queue declare`: one per queue option, each defaulting to
//! `QueueOptions::default()`, and their rendering back to JSON for `chute queue stats`.

use chute_client::{
    BackoffPolicy, BreakerPolicy, Durability, ExpiryPolicy, OverflowPolicy, QueueOptions,
    RateLimit, RateLimitPolicy,
};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

/// How long a tripped consumer breaker stays open when `--breaker-open-ms` is not given.
const BREAKER_OPEN_MS_DEFAULT: u32 = 10_000;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DurabilityArg {
    /// Confirm after an fsync covers the message.
    Always,
    /// Confirm after the write; fsync within --sync-interval-ms.
    Interval,
    /// Memory only; lost on restart.
    None,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OverflowArg {
    /// Refuse the publish with `queue-full`.
    RejectPublish,
    /// Dead-letter the oldest ready message (reason `overflow`).
    DropHead,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExpiryArg {
    /// Move expired messages to the dead-letter queue (reason `expired`).
    DeadLetter,
    /// Drop expired messages (counted).
    Drop,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RatePolicyArg {
    /// Stop reading from the publisher until a token is available.
    Pause,
    /// Refuse the publish with `rate-limited` and when to retry.
    Reject,
}

/// Every queue option as a flag. Unset flags keep the default.
#[derive(Args, Debug, Default)]
pub struct QueueOptionArgs {
    /// What a publish confirm promises [default: always].
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// With `--durability interval`: fsync at most this long after a write.
    #[arg(long)]
    pub sync_interval_ms: Option<u32>,
    /// Most messages held (ready, delayed and in flight) [default: unbounded].
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Most payload bytes held [default: unbounded].
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// What a publish past --max-messages or --max-bytes does [default: reject-publish].
    #[arg(long, value_enum)]
    pub overflow: Option<OverflowArg>,
    /// Default time to live of each message, from its publish [default: none].
    #[arg(long)]
    pub ttl_ms: Option<u64>,
    /// What happens to an expired message [default: dead-letter].
    #[arg(long, value_enum)]
    pub expiry: Option<ExpiryArg>,
    /// Queue that receives dead letters, created if needed [default: none, they are dropped].
    #[arg(long, value_name = "QUEUE")]
    pub dead_letter: Option<String>,
    /// Failed attempts before a message is dead-lettered [default: retry forever].
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Retry delay after the first failed attempt [default: 1000].
    #[arg(long)]
    pub backoff_base_ms: Option<u32>,
    /// Longest retry delay [default: 60000].
    #[arg(long)]
    pub backoff_max_ms: Option<u32>,
    /// Growth of the retry delay per attempt, in percent [default: 200].
    #[arg(long)]
    pub backoff_factor_percent: Option<u32>,
    /// Use the computed retry delay as is, instead of a uniform draw below it.
    #[arg(long)]
    pub no_jitter: bool,
    /// How long a consumer may hold a delivery before it counts as failed [default: 30000].
    #[arg(long)]
    pub lease_ms: Option<u32>,
    /// Confirm without storing a publish whose id was seen this recently [default: no dedup].
    #[arg(long)]
    pub dedup_window_ms: Option<u64>,
    /// Publishes per second the queue accepts [default: unlimited].
    #[arg(long, value_name = "PER_SECOND")]
    pub publish_rate: Option<u32>,
    /// With --publish-rate: publishes that may be saved up [default: the rate].
    #[arg(long, requires = "publish_rate")]
    pub publish_burst: Option<u32>,
    /// With --publish-rate: what a publish beyond the rate does [default: pause].
    #[arg(long, value_enum, requires = "publish_rate")]
    pub publish_rate_policy: Option<RatePolicyArg>,
    /// Stop delivering to a consumer after this many consecutive failed attempts by it
    /// [default: no breaker].
    #[arg(long)]
    pub breaker_failures: Option<u32>,
    /// With --breaker-failures: how long the breaker stays open [default: 10000].
    #[arg(long, requires = "breaker_failures")]
    pub breaker_open_ms: Option<u32>,
}

impl QueueOptionArgs {
    /// The options these flags describe. The broker validates the combination (for example a
    /// backoff base above its maximum); only flags that make no sense together fail here.
    pub fn to_options(&self) -> Result<QueueOptions, String> {
        let defaults = QueueOptions::default();
        let backoff_defaults = BackoffPolicy::default();
        let durability = match (self.durability, self.sync_interval_ms) {
            (None | Some(DurabilityArg::Always), None) => Durability::Always,
            (Some(DurabilityArg::None), None) => Durability::None,
            (Some(DurabilityArg::Interval), Some(sync_interval_ms)) => {
                Durability::Interval { sync_interval_ms }
            }
            (Some(DurabilityArg::Interval), None) => {
                return Err("--durability interval needs --sync-interval-ms".into())
            }
            (_, Some(_)) => return Err("--sync-interval-ms needs --durability interval".into()),
        };
        let publish_rate = self.publish_rate.map(|per_second| RateLimit {
            per_second,
            burst: self.publish_burst.unwrap_or(per_second),
            policy: match self.publish_rate_policy {
                None | Some(RatePolicyArg::Pause) => RateLimitPolicy::Pause,
                Some(RatePolicyArg::Reject) => RateLimitPolicy::Reject,
            },
        });
        let breaker = self.breaker_failures.map(|failures_max| BreakerPolicy {
            failures_max,
            open_ms: self.breaker_open_ms.unwrap_or(BREAKER_OPEN_MS_DEFAULT),
        });
        Ok(QueueOptions {
            durability,
            messages_max: self.max_messages,
            bytes_max: self.max_bytes,
            overflow: match self.overflow {
                None => defaults.overflow,
                Some(OverflowArg::RejectPublish) => OverflowPolicy::RejectPublish,
                Some(OverflowArg::DropHead) => OverflowPolicy::DropHead,
            },
            ttl_ms: self.ttl_ms,
            expiry: match self.expiry {
                None => defaults.expiry,
                Some(ExpiryArg::DeadLetter) => ExpiryPolicy::DeadLetter,
                Some(ExpiryArg::Drop) => ExpiryPolicy::Drop,
            },
            dead_letter: self.dead_letter.clone(),
            attempts_max: self.max_attempts,
            backoff: BackoffPolicy {
                base_ms: self.backoff_base_ms.unwrap_or(backoff_defaults.base_ms),
                factor_percent: self
                    .backoff_factor_percent
                    .unwrap_or(backoff_defaults.factor_percent),
                max_ms: self.backoff_max_ms.unwrap_or(backoff_defaults.max_ms),
                jitter: !self.no_jitter && backoff_defaults.jitter,
            },
            lease_ms: self.lease_ms.unwrap_or(defaults.lease_ms),
            dedup_window_ms: self.dedup_window_ms,
            publish_rate,
            breaker,
        })
    }
}

/// The options as JSON, with the protocol's field names and the CLI's value names.
pub fn options_json(options: &QueueOptions) -> Value {
    let (durability, sync_interval_ms) = match options.durability {
        Durability::Always => ("always", None),
        Durability::Interval { sync_interval_ms } => ("interval", Some(sync_interval_ms)),
        Durability::None => ("none", None),
    };
    json!({
        "durability": durability,
        "sync_interval_ms": sync_interval_ms,
        "messages_max": options.messages_max,
        "bytes_max": options.bytes_max,
        "overflow": overflow_label(options.overflow),
        "ttl_ms": options.ttl_ms,
        "expiry": expiry_label(options.expiry),
        "dead_letter": options.dead_letter,
        "attempts_max": options.attempts_max,
        "backoff": {
            "base_ms": options.backoff.base_ms,
            "max_ms": options.backoff.max_ms,
            "factor_percent": options.backoff.factor_percent,
            "jitter": options.backoff.jitter,
        },
        "lease_ms": options.lease_ms,
        "dedup_window_ms": options.dedup_window_ms,
        "publish_rate": options.publish_rate.map(|rate| json!({
            "per_second": rate.per_second,
            "burst": rate.burst,
            "policy": rate_policy_label(rate.policy),
        })),
        "breaker": options.breaker.map(|breaker| json!({
            "failures_max": breaker.failures_max,
            "open_ms": breaker.open_ms,
        })),
    })
}

pub fn overflow_label(overflow: OverflowPolicy) -> &'static str {
    match overflow {
        OverflowPolicy::RejectPublish => "reject-publish",
        OverflowPolicy::DropHead => "drop-head",
    }
}

pub fn expiry_label(expiry: ExpiryPolicy) -> &'static str {
    match expiry {
        ExpiryPolicy::DeadLetter => "dead-letter",
        ExpiryPolicy::Drop => "drop",
    }
}

pub fn rate_policy_label(policy: RateLimitPolicy) -> &'static str {
    match policy {
        RateLimitPolicy::Pause => "pause",
        RateLimitPolicy::Reject => "reject",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Declare {
        #[command(flatten)]
        options: QueueOptionArgs,
    }

    /// Parses whitespace-separated flags.
    fn parse(flags: &str) -> Result<QueueOptions, String> {
        let args = std::iter::once("declare").chain(flags.split_whitespace());
        let declare = Declare::try_parse_from(args).map_err(|e| e.to_string())?;
        declare.options.to_options()
    }

    /// No flags, no surprises: the library's defaults.
    #[test]
    fn no_flags_is_the_default() {
        assert_eq!(parse("").unwrap(), QueueOptions::default());
    }

    /// Every flag lands in its own field.
    #[test]
    fn every_flag_sets_its_option() {
        let options = parse(
            "--durability interval --sync-interval-ms 50 --max-messages 10 --max-bytes 2048 \
             --overflow drop-head --ttl-ms 60000 --expiry drop --dead-letter jobs.dead \
             --max-attempts 3 --backoff-base-ms 5 --backoff-max-ms 500 \
             --backoff-factor-percent 300 --no-jitter --lease-ms 900 --dedup-window-ms 7000 \
             --publish-rate 100 --publish-burst 20 --publish-rate-policy reject \
             --breaker-failures 4 --breaker-open-ms 250",
        )
        .unwrap();
        let expected = QueueOptions {
            durability: Durability::Interval { sync_interval_ms: 50 },
            messages_max: Some(10),
            bytes_max: Some(2048),
            overflow: OverflowPolicy::DropHead,
            ttl_ms: Some(60_000),
            expiry: ExpiryPolicy::Drop,
            dead_letter: Some("jobs.dead".into()),
            attempts_max: Some(3),
            backoff: BackoffPolicy { base_ms: 5, factor_percent: 300, max_ms: 500, jitter: false },
            lease_ms: 900,
            dedup_window_ms: Some(7000),
            publish_rate: Some(RateLimit {
                per_second: 100,
                burst: 20,
                policy: RateLimitPolicy::Reject,
            }),
            breaker: Some(BreakerPolicy { failures_max: 4, open_ms: 250 }),
        };
        assert_eq!(options, expected);
    }

    /// Dependent flags take sensible defaults, or refuse to stand alone.
    #[test]
    fn dependent_flags() {
        let rate = parse("--publish-rate 5").unwrap().publish_rate.unwrap();
        assert_eq!((rate.burst, rate.policy), (5, RateLimitPolicy::Pause));
        let breaker = parse("--breaker-failures 2").unwrap().breaker.unwrap();
        assert_eq!(breaker.open_ms, BREAKER_OPEN_MS_DEFAULT);
        assert_eq!(parse("--durability none").unwrap().durability, Durability::None);
        assert!(parse("--durability interval").unwrap_err().contains("--sync-interval-ms"));
        assert!(parse("--sync-interval-ms 5").unwrap_err().contains("--durability interval"));
        assert!(parse("--publish-burst 5").is_err());
        assert!(parse("--breaker-open-ms 5").is_err());
        assert!(parse("--overflow sideways").is_err());
    }

    /// The JSON form round-trips every value the flags set.
    #[test]
    fn json_names_every_option() {
        let options = parse("--max-attempts 3 --dead-letter d --publish-rate 9").unwrap();
        let value = options_json(&options);
        assert_eq!(value["attempts_max"], 3);
        assert_eq!(value["dead_letter"], "d");
        assert_eq!(value["publish_rate"]["per_second"], 9);
        assert_eq!(value["durability"], "always");
        assert_eq!(value["overflow"], "reject-publish");
        assert_eq!(value["breaker"], Value::Null);
    }
}
