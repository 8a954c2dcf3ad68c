//! What a rule is, and the default set.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a rule watches. Every kind yields a value (or none: the condition cannot hold), and the
/// condition is `value > threshold`, so each threshold reads "above N".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A queue's ready messages.
    QueueDepth,
    /// The age of the head of a queue's ready line (its oldest ready message, but see
    /// `QueueHealth::oldest_ready_published_unix_ms`), in ms.
    OldestReadyAge,
    /// Messages a queue moved to its dead-letter queue over the last `window_ms`.
    DeadLettersGrowing,
    /// A queue's ready messages, while it has no consumer (no value while it has one).
    NoConsumer,
    /// A queue's consumers whose circuit breaker is open.
    ConsumerBreakerOpen,
    /// Publishes a queue refused (full, or rate limited) over the last `window_ms`.
    PublishRefusals,
    /// 1 while the memory alarm is raised, else 0.
    MemoryAlarm,
    /// 1 while the disk alarm is raised, else 0.
    DiskAlarm,
    /// The 99th percentile of storage sync latency over the last `window_ms`, in µs (the upper
    /// bound of the histogram bucket it falls in; no value without syncs in the window).
    StorageSyncSlow,
    /// 1 once storage has failed (the broker halted), else 0.
    StorageFailed,
}

impl RuleKind {
    /// Evaluated once per queue (labelled with it), or once for the whole broker.
    pub fn per_queue(self) -> bool {
        matches!(
            self,
            RuleKind::QueueDepth
                | RuleKind::OldestReadyAge
                | RuleKind::DeadLettersGrowing
                | RuleKind::NoConsumer
                | RuleKind::ConsumerBreakerOpen
                | RuleKind::PublishRefusals
        )
    }

    /// Whether the rule looks at an increase over `window_ms` (and keeps a history for it).
    pub fn uses_window(self) -> bool {
        matches!(
            self,
            RuleKind::DeadLettersGrowing | RuleKind::PublishRefusals | RuleKind::StorageSyncSlow
        )
    }

    /// The unit of the value and the threshold.
    pub fn unit(self) -> &'static str {
        match self {
            RuleKind::QueueDepth | RuleKind::NoConsumer => "messages",
            RuleKind::OldestReadyAge => "ms",
            RuleKind::DeadLettersGrowing => "messages",
            RuleKind::ConsumerBreakerOpen => "consumers",
            RuleKind::PublishRefusals => "publishes",
            RuleKind::MemoryAlarm | RuleKind::DiskAlarm | RuleKind::StorageFailed => "boolean",
            RuleKind::StorageSyncSlow => "µs",
        }
    }

    pub const ALL: [RuleKind; 10] = [
        RuleKind::QueueDepth,
        RuleKind::OldestReadyAge,
        RuleKind::DeadLettersGrowing,
        RuleKind::NoConsumer,
        RuleKind::ConsumerBreakerOpen,
        RuleKind::PublishRefusals,
        RuleKind::MemoryAlarm,
        RuleKind::DiskAlarm,
        RuleKind::StorageSyncSlow,
        RuleKind::StorageFailed,
    ];
}

/// How urgent an alert is: the `severity` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// One alert rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique among the rules; the `alertname` label.
    pub name: String,
    pub kind: RuleKind,
    /// The condition is `value > threshold`, in the kind's unit.
    pub threshold: u64,
    /// How long the condition must hold before the alert fires; 0 fires at once.
    pub for_ms: u64,
    /// The span rate kinds look back over; ignored by the others.
    pub window_ms: u64,
    pub severity: Severity,
    /// Added to the alert's labels.
    pub labels: BTreeMap<String, String>,
    /// `summary` and `description`, typically.
    pub annotations: BTreeMap<String, String>,
}

const MINUTE_MS: u64 = 60_000;

/// The default set, from the production checklist: every one can be changed or disabled by
/// name in the configuration. `deploy/prometheus/chute-alerts.yml` holds the same rules in
/// PromQL; change both together.
pub fn default_rules() -> Vec<Rule> {
    RuleKind::ALL.into_iter().map(default_rule).collect()
}

/// The default rule of a kind: also the template of a rule of that kind added by name.
pub(super) fn default_rule(kind: RuleKind) -> Rule {
    use RuleKind::*;
    let (name, threshold, for_ms, window_ms, severity) = match kind {
        QueueDepth => ("queue_depth_high", 10_000, 5 * MINUTE_MS, 0, Severity::Warning),
        OldestReadyAge => {
            ("queue_oldest_ready_old", 5 * MINUTE_MS, MINUTE_MS, 0, Severity::Warning)
        }
        DeadLettersGrowing => ("dead_letters_growing", 0, 0, 5 * MINUTE_MS, Severity::Warning),
        NoConsumer => ("queue_without_consumer", 0, 5 * MINUTE_MS, 0, Severity::Warning),
        ConsumerBreakerOpen => ("consumer_breaker_open", 0, MINUTE_MS, 0, Severity::Warning),
        PublishRefusals => ("publish_refusals_rising", 0, 0, 5 * MINUTE_MS, Severity::Warning),
        MemoryAlarm => ("memory_alarm_active", 0, 0, 0, Severity::Critical),
        DiskAlarm => ("disk_alarm_active", 0, 0, 0, Severity::Critical),
        StorageSyncSlow => {
            ("storage_sync_slow", 100_000, 5 * MINUTE_MS, 5 * MINUTE_MS, Severity::Warning)
        }
        StorageFailed => ("storage_failed", 0, 0, 0, Severity::Critical),
    };
    let mut rule = Rule {
        name: name.to_string(),
        kind,
        threshold,
        for_ms,
        window_ms,
        severity,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    };
    rule.annotations.insert("summary".to_string(), summary(&rule));
    rule
}

/// A one-line `summary` saying what the rule's numbers mean, so that a changed threshold or
/// duration is not contradicted by the default text.
pub(super) fn summary(rule: &Rule) -> String {
    let Rule { kind, threshold, for_ms, window_ms, .. } = *rule;
    let more_than = |what: &str| match threshold {
        0 => what.to_string(),
        n => format!("more than {} {what}", with_commas(n)),
    };
    let held = match for_ms {
        0 => String::new(),
        ms => format!(" for {}", duration(ms)),
    };
    let window = duration(window_ms);
    match kind {
        RuleKind::QueueDepth => format!("{} ready{held}", more_than("messages")),
        RuleKind::OldestReadyAge => {
            format!("the oldest ready message is older than {}", duration(threshold))
        }
        RuleKind::DeadLettersGrowing => {
            format!("{} were dead-lettered in the last {window}", more_than("messages"))
        }
        RuleKind::NoConsumer => {
            format!("{} are ready and no consumer is subscribed{held}", more_than("messages"))
        }
        RuleKind::ConsumerBreakerOpen => {
            format!("{} have an open circuit breaker{held}", more_than("consumers"))
        }
        RuleKind::PublishRefusals => format!(
            "{} were refused (queue full or rate limited) in the last {window}",
            more_than("publishes")
        ),
        RuleKind::MemoryAlarm => "the memory alarm is raised: publishers are held".to_string(),
        RuleKind::DiskAlarm => "the disk alarm is raised: publishers are held".to_string(),
        RuleKind::StorageSyncSlow => {
            let limit = match threshold.is_multiple_of(1_000) {
                true => format!("{} ms", with_commas(threshold / 1_000)),
                false => format!("{} µs", with_commas(threshold)),
            };
            format!("the 99th percentile of storage syncs took more than {limit} over {window}")
        }
        RuleKind::StorageFailed => "storage failed: the broker halted".to_string(),
    }
}

/// `10000` as `10,000`.
fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A span in the largest whole unit: `5 minutes`, `30 s`, `250 ms`.
fn duration(ms: u64) -> String {
    match ms {
        MINUTE_MS => "1 minute".to_string(),
        ms if ms > 0 && ms.is_multiple_of(MINUTE_MS) => format!("{} minutes", ms / MINUTE_MS),
        ms if ms > 0 && ms.is_multiple_of(1_000) => format!("{} s", ms / 1_000),
        ms => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One default per kind, names unique, every rate kind with a window.
    #[test]
    fn defaults_cover_every_kind_once() {
        let rules = default_rules();
        assert_eq!(rules.len(), RuleKind::ALL.len());
        let mut names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), rules.len());
        for rule in &rules {
            assert_eq!(rule.window_ms > 0, rule.kind.uses_window(), "{}", rule.name);
            assert!(rule.annotations.contains_key("summary"), "{}", rule.name);
        }
    }

    /// The summary follows the numbers.
    #[test]
    fn summaries_say_the_rules_numbers() {
        let summary_of = |kind| default_rule(kind).annotations["summary"].clone();
        assert_eq!(
            summary_of(RuleKind::QueueDepth),
            "more than 10,000 messages ready for 5 minutes"
        );
        assert_eq!(
            summary_of(RuleKind::StorageSyncSlow),
            "the 99th percentile of storage syncs took more than 100 ms over 5 minutes"
        );
        assert_eq!(
            summary_of(RuleKind::ConsumerBreakerOpen),
            "consumers have an open circuit breaker for 1 minute"
        );
        let quick = Rule { threshold: 5, for_ms: 0, ..default_rule(RuleKind::QueueDepth) };
        assert_eq!(summary(&quick), "more than 5 messages ready");
        assert_eq!(with_commas(1_234_567), "1,234,567");
        assert_eq!(
            (duration(1_500), duration(30_000)),
            ("1500 ms".to_string(), "30 s".to_string())
        );
    }
}
