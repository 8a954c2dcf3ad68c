//! The flags of `chute queue declare` and `chute queue alter`: one per queue option, each
//! defaulting to `QueueOptions::default()` (to the queue's current value for an alter); and
//! the options described for `chute queue stats`, from their
//! JSON form, so an option the protocol gains is shown without code here.

use chute_client::{
    BackoffPolicy, BreakerPolicy, Durability, ExpiryPolicy, OverflowPolicy, QueueOptions,
    RateLimit, RateLimitPolicy,
};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value};

use crate::render::to_json;

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

/// Every queue option as a flag. Unset flags keep the default (or, altering, the current
/// value).
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
        self.apply_to(&QueueOptions::default())
    }

    /// `base` with the options these flags give; the others keep `base`'s values. A flag that
    /// completes another (`--publish-burst`, `--breaker-open-ms`, `--sync-interval-ms`) takes
    /// `base`'s value when not given, else the default.
    pub fn apply_to(&self, base: &QueueOptions) -> Result<QueueOptions, String> {
        let publish_rate = self.publish_rate.map(|per_second| RateLimit {
            per_second,
            burst: self.publish_burst.or(base.publish_rate.map(|r| r.burst)).unwrap_or(per_second),
            policy: match self.publish_rate_policy {
                None => base.publish_rate.map_or(RateLimitPolicy::Pause, |r| r.policy),
                Some(RatePolicyArg::Pause) => RateLimitPolicy::Pause,
                Some(RatePolicyArg::Reject) => RateLimitPolicy::Reject,
            },
        });
        let breaker = self.breaker_failures.map(|failures_max| BreakerPolicy {
            failures_max,
            open_ms: self
                .breaker_open_ms
                .or(base.breaker.map(|b| b.open_ms))
                .unwrap_or(BREAKER_OPEN_MS_DEFAULT),
        });
        let backoff = BackoffPolicy {
            base_ms: self.backoff_base_ms.unwrap_or(base.backoff.base_ms),
            factor_percent: self.backoff_factor_percent.unwrap_or(base.backoff.factor_percent),
            max_ms: self.backoff_max_ms.unwrap_or(base.backoff.max_ms),
            jitter: !self.no_jitter && base.backoff.jitter,
        };
        Ok(QueueOptions {
            durability: self.durability(base.durability)?,
            messages_max: self.max_messages.or(base.messages_max),
            bytes_max: self.max_bytes.or(base.bytes_max),
            overflow: match self.overflow {
                None => base.overflow,
                Some(OverflowArg::RejectPublish) => OverflowPolicy::RejectPublish,
                Some(OverflowArg::DropHead) => OverflowPolicy::DropHead,
            },
            ttl_ms: self.ttl_ms.or(base.ttl_ms),
            expiry: match self.expiry {
                None => base.expiry,
                Some(ExpiryArg::DeadLetter) => ExpiryPolicy::DeadLetter,
                Some(ExpiryArg::Drop) => ExpiryPolicy::Drop,
            },
            dead_letter: self.dead_letter.clone().or(base.dead_letter.clone()),
            attempts_max: self.max_attempts.or(base.attempts_max),
            backoff,
            lease_ms: self.lease_ms.unwrap_or(base.lease_ms),
            dedup_window_ms: self.dedup_window_ms.or(base.dedup_window_ms),
            publish_rate: publish_rate.or(base.publish_rate),
            breaker: breaker.or(base.breaker),
        })
    }

    /// `--durability` and `--sync-interval-ms` on top of `base`'s durability: the interval
    /// alone changes the interval of a queue that has one.
    fn durability(&self, base: Durability) -> Result<Durability, String> {
        let base_is_interval = matches!(base, Durability::Interval { .. });
        match (self.durability, self.sync_interval_ms) {
            (None, None) => Ok(base),
            (Some(DurabilityArg::Always), None) => Ok(Durability::Always),
            (Some(DurabilityArg::None), None) => Ok(Durability::None),
            (Some(DurabilityArg::Interval), Some(sync_interval_ms)) => {
                Ok(Durability::Interval { sync_interval_ms })
            }
            (None, Some(sync_interval_ms)) if base_is_interval => {
                Ok(Durability::Interval { sync_interval_ms })
            }
            (Some(DurabilityArg::Interval), None) if base_is_interval => Ok(base),
            (Some(DurabilityArg::Interval), None) => {
                Err("--durability interval needs --sync-interval-ms".into())
            }
            (_, Some(_)) => Err("--sync-interval-ms needs --durability interval".into()),
        }
    }
}

/// The options as JSON, as `chute queue stats --json` has always shown them: serde's form,
/// except that an enum variant with fields (`"durability": {"interval": {"sync_interval_ms":
/// 25}}`) is written as its name beside its fields (`"durability": "interval",
/// "sync_interval_ms": 25`).
pub fn options_json(options: &QueueOptions) -> Value {
    let Value::Object(fields) = to_json(options) else { return to_json(options) };
    let mut flat = Map::new();
    for (name, value) in fields {
        match variant_with_fields(&value) {
            Some((variant, variant_fields)) => {
                flat.insert(name, Value::String(variant.clone()));
                flat.extend(variant_fields.clone());
            }
            None => {
                flat.insert(name, value);
            }
        }
    }
    Value::Object(flat)
}

/// An enum variant with fields as serde writes it: `{"interval": {...}}`. (A struct whose one
/// field is a struct would look the same; queue options have none.)
fn variant_with_fields(value: &Value) -> Option<(&String, &Map<String, Value>)> {
    let Value::Object(outer) = value else { return None };
    match outer.iter().next() {
        Some((variant, Value::Object(fields))) if outer.len() == 1 => Some((variant, fields)),
        _ => None,
    }
}

/// The options as `(name, value)` lines, in the protocol's field order: `lease_ms: 30000`
/// becomes `("lease", "30000 ms")`, a missing value `none`, a nested struct its fields in one
/// line, an enum variant with fields its name and then them in parentheses.
pub fn describe_options(options: &QueueOptions) -> Vec<(String, String)> {
    let json = to_json(options);
    let field = |name: &&str| Some((humanize(name), describe(name, json.get(name)?)));
    QueueOptions::FIELDS.iter().filter_map(field).collect()
}

/// `sync_interval_ms` → `sync interval`: the unit goes with the value.
fn humanize(name: &str) -> String {
    let name = name.strip_suffix("_ms").or(name.strip_suffix("_percent")).unwrap_or(name);
    name.replace('_', " ")
}

fn describe(name: &str, value: &Value) -> String {
    if let Some((variant, fields)) = variant_with_fields(value) {
        return format!("{variant} ({})", describe_fields(fields));
    }
    match value {
        Value::Null => "none".into(),
        Value::Bool(yes) => (if *yes { "yes" } else { "no" }).into(),
        Value::Number(n) if name.ends_with("_ms") => format!("{n} ms"),
        Value::Number(n) if name.ends_with("_percent") => format!("{n}%"),
        Value::String(text) => text.clone(),
        Value::Object(fields) => describe_fields(fields),
        other => other.to_string(),
    }
}

/// `base 1000 ms, factor 200%`
fn describe_fields(fields: &Map<String, Value>) -> String {
    let fields =
        fields.iter().map(|(name, value)| format!("{} {}", humanize(name), describe(name, value)));
    fields.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::render::label;

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

    /// Every flag, each with a value other than its default.
    const EVERY_FLAG: &str = "--durability interval --sync-interval-ms 50 --max-messages 10 \
        --max-bytes 2048 --overflow drop-head --ttl-ms 60000 --expiry drop \
        --dead-letter jobs.dead --max-attempts 3 --backoff-base-ms 5 --backoff-max-ms 500 \
        --backoff-factor-percent 300 --no-jitter --lease-ms 900 --dedup-window-ms 7000 \
        --publish-rate 100 --publish-burst 20 --publish-rate-policy reject \
        --breaker-failures 4 --breaker-open-ms 250";

    /// Every flag lands in its own field.
    #[test]
    fn every_flag_sets_its_option() {
        let options = parse(EVERY_FLAG).unwrap();
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

    /// `base` with the flags applied: what the flags name changes, the rest stays.
    fn alter(base: &QueueOptions, flags: &str) -> Result<QueueOptions, String> {
        let args = std::iter::once("alter").chain(flags.split_whitespace());
        let alter = Declare::try_parse_from(args).map_err(|e| e.to_string())?;
        alter.options.apply_to(base)
    }

    /// Altering keeps every option no flag names, nested ones included.
    #[test]
    fn applied_flags_change_only_what_they_name() {
        let base = parse(EVERY_FLAG).unwrap();
        assert_eq!(alter(&base, ""), Ok(base.clone()), "no flags, no change");
        let altered = alter(&base, "--max-messages 99 --backoff-max-ms 7000").unwrap();
        let expected = QueueOptions {
            messages_max: Some(99),
            backoff: BackoffPolicy { max_ms: 7000, ..base.backoff },
            ..base.clone()
        };
        assert_eq!(altered, expected);
        let rate = alter(&base, "--publish-rate 50").unwrap().publish_rate.unwrap();
        assert_eq!(
            rate,
            RateLimit { per_second: 50, ..base.publish_rate.unwrap() },
            "burst, policy kept"
        );
        let breaker = alter(&base, "--breaker-failures 9").unwrap().breaker.unwrap();
        assert_eq!(breaker, BreakerPolicy { failures_max: 9, open_ms: 250 });
    }

    /// The interval alone changes the interval of an interval queue; a durability flag
    /// replaces the durability (which the server then refuses to change).
    #[test]
    fn applied_durability_flags() {
        let interval = QueueOptions {
            durability: Durability::Interval { sync_interval_ms: 50 },
            ..QueueOptions::default()
        };
        let durability = |base: &QueueOptions, flags| alter(base, flags).map(|o| o.durability);
        assert_eq!(
            durability(&interval, "--sync-interval-ms 9"),
            Ok(Durability::Interval { sync_interval_ms: 9 })
        );
        assert_eq!(durability(&interval, "--durability interval"), Ok(interval.durability));
        assert_eq!(durability(&interval, "--durability always"), Ok(Durability::Always));
        let always = QueueOptions::default();
        assert_eq!(durability(&always, "--durability none"), Ok(Durability::None));
        assert!(durability(&always, "--sync-interval-ms 9")
            .unwrap_err()
            .contains("--durability interval"));
        assert!(durability(&always, "--durability interval")
            .unwrap_err()
            .contains("--sync-interval-ms"));
        assert!(durability(&interval, "--durability none --sync-interval-ms 9").is_err());
    }

    /// Every flag's values, as `--help` lists them.
    fn flag_values<T: ValueEnum>() -> Vec<String> {
        let names = T::value_variants().iter().map(|v| v.to_possible_value().unwrap());
        names.map(|value| value.get_name().to_string()).collect()
    }

    /// The values a flag takes are the protocol's own names for them, which JSON shows.
    #[test]
    fn flag_values_are_the_json_labels() {
        let durabilities =
            [Durability::Always, Durability::Interval { sync_interval_ms: 1 }, Durability::None];
        assert_eq!(flag_values::<DurabilityArg>(), durabilities.map(|d| label(&d)));
        let overflows = [OverflowPolicy::RejectPublish, OverflowPolicy::DropHead];
        assert_eq!(flag_values::<OverflowArg>(), overflows.map(|o| label(&o)));
        let expiries = [ExpiryPolicy::DeadLetter, ExpiryPolicy::Drop];
        assert_eq!(flag_values::<ExpiryArg>(), expiries.map(|e| label(&e)));
        let policies = [RateLimitPolicy::Pause, RateLimitPolicy::Reject];
        assert_eq!(flag_values::<RatePolicyArg>(), policies.map(|p| label(&p)));
    }

    /// Every option, down to each field of a nested one, is set by some flag: with every flag
    /// given a value other than the default, no JSON leaf keeps its default. Fails when the
    /// protocol gains an option that `chute queue declare` has no flag for.
    #[test]
    fn every_option_has_a_flag() {
        let options = parse(EVERY_FLAG).unwrap();
        let mut unchanged = Vec::new();
        same_leaves("", &to_json(&options), &to_json(&QueueOptions::default()), &mut unchanged);
        assert_eq!(unchanged, Vec::<String>::new(), "options no flag changed");
    }

    /// The paths of `value`'s leaves that are equal in `default`.
    fn same_leaves(path: &str, value: &Value, default: &Value, same: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                for (name, field) in fields {
                    let default = default.get(name).unwrap_or(&Value::Null);
                    same_leaves(&format!("{path}.{name}"), field, default, same);
                }
            }
            leaf if leaf == default => same.push(path.to_string()),
            _ => {}
        }
    }

    /// The JSON of `chute queue stats` shows the options by their protocol names, a variant
    /// with fields (durability interval) beside its fields.
    #[test]
    fn options_json_uses_the_protocol_names() {
        let options = parse(
            "--max-attempts 3 --dead-letter d --publish-rate 9 --durability interval \
             --sync-interval-ms 20",
        )
        .unwrap();
        let expected = serde_json::json!({
            "durability": "interval",
            "sync_interval_ms": 20,
            "messages_max": null,
            "bytes_max": null,
            "overflow": "reject-publish",
            "ttl_ms": null,
            "expiry": "dead-letter",
            "dead_letter": "d",
            "attempts_max": 3,
            "backoff": {"base_ms": 1000, "factor_percent": 200, "max_ms": 60000, "jitter": true},
            "lease_ms": 30000,
            "dedup_window_ms": null,
            "publish_rate": {"per_second": 9, "burst": 9, "policy": "pause"},
            "breaker": null,
        });
        assert_eq!(options_json(&options), expected);
        assert_eq!(options_json(&QueueOptions::default())["durability"], "always");
    }

    /// One line per option, in the protocol's order, units with the values.
    #[test]
    fn options_described_for_people() {
        let options =
            parse("--durability interval --sync-interval-ms 20 --breaker-failures 4 --no-jitter")
                .unwrap();
        let lines: Vec<String> = describe_options(&options)
            .into_iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        assert_eq!(
            lines,
            [
                "durability: interval (sync interval 20 ms)",
                "messages max: none",
                "bytes max: none",
                "overflow: reject-publish",
                "ttl: none",
                "expiry: dead-letter",
                "dead letter: none",
                "attempts max: none",
                "backoff: base 1000 ms, factor 200%, jitter no, max 60000 ms",
                "lease: 30000 ms",
                "dedup window: none",
                "publish rate: none",
                "breaker: failures max 4, open 10000 ms",
            ]
        );
    }
}
