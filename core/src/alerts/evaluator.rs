//! Every alert of every rule: fed a snapshot and `now`, returns what changed.

use std::collections::BTreeMap;

use serde::Serialize;

use super::history::{CounterHistory, HistogramHistory};
use super::rules::{Rule, RuleKind, Severity};
use super::snapshot::{QueueSnapshot, Snapshot};
use super::state::{Alert, AlertState};
use crate::time::Instant;

/// The alerts of a set of rules.
///
/// How to drive it: call [`evaluate`](Self::evaluate) every evaluation interval with a fresh
/// snapshot and a non-decreasing `now`, and act on the transitions it returns; read
/// [`alerts`](Self::alerts) for what stands now; call [`set_rules`](Self::set_rules) when the
/// configuration changes.
///
/// Memory is bounded by rules × queues: a queue missing from a snapshot (deleted) has its
/// alerts resolved and its state dropped at once.
#[derive(Debug, Default)]
pub struct Evaluator {
    rules: Vec<Rule>,
    /// The whole broker's alerts: one slot per rule (per-queue rules leave theirs unused).
    global: Vec<Slot>,
    /// Each queue's alerts, in name order: one slot per rule (global rules leave theirs
    /// unused).
    queues: Vec<(String, Vec<Slot>)>,
}

/// One (rule, scope)'s alert and the history its rule needs.
#[derive(Clone, Debug, Default)]
struct Slot {
    alert: Alert,
    counter: CounterHistory,
    histogram: HistogramHistory,
}

/// An alert as operators and receivers see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertView {
    pub rule: String,
    pub kind: RuleKind,
    /// The queue, for per-queue rules.
    pub queue: Option<String>,
    pub state: AlertState,
    /// When the state was entered (Unix ms).
    pub since_unix_ms: u64,
    /// When it last started firing (Unix ms), if it ever fired.
    pub fired_unix_ms: Option<u64>,
    /// The rule's value at the last evaluation, in the kind's unit.
    pub value: Option<u64>,
    pub threshold: u64,
    pub severity: Severity,
    /// `alertname`, `severity`, `queue` (per-queue rules) and the rule's own labels.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// An alert that changed state: `from` what, and the alert as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: AlertState,
    pub alert: AlertView,
}

impl Evaluator {
    pub fn new(rules: Vec<Rule>) -> Evaluator {
        Evaluator { global: vec![Slot::default(); rules.len()], rules, queues: Vec::new() }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Judges every rule against `snapshot`, taken at `now`; returns the alerts that changed
    /// state, per-queue ones in queue order, then the broker's.
    pub fn evaluate(&mut self, now: Instant, snapshot: &Snapshot) -> Vec<Transition> {
        let mut transitions = Vec::new();
        // Both lists are in name order: one merge pass pairs each queue with its alerts, ends
        // those of deleted queues and starts those of new ones, without a lookup per queue.
        let mut tracked = std::mem::take(&mut self.queues).into_iter().peekable();
        let mut queues = Vec::with_capacity(snapshot.queues.len());
        for queue in &snapshot.queues {
            while let Some(gone) = tracked.next_if(|(name, _)| *name < queue.name) {
                self.end_queue(gone, snapshot.unix_ms, &mut transitions);
            }
            let (name, mut slots) = match tracked.next_if(|(name, _)| *name == queue.name) {
                Some(known) => known,
                None => (queue.name.clone(), vec![Slot::default(); self.rules.len()]),
            };
            let rules = self.rules.iter().zip(slots.iter_mut());
            for (rule, slot) in rules.filter(|(rule, _)| rule.kind.per_queue()) {
                let value = queue_value(rule, queue, &mut slot.counter, now);
                if let Some(from) = judge(rule, slot, value, now, snapshot.unix_ms) {
                    let alert = view(rule, Some(&queue.name), &slot.alert);
                    transitions.push(Transition { from, alert });
                }
            }
            queues.push((name, slots));
        }
        for gone in tracked {
            self.end_queue(gone, snapshot.unix_ms, &mut transitions);
        }
        self.queues = queues;
        let rules = self.rules.iter().zip(self.global.iter_mut());
        for (rule, slot) in rules.filter(|(rule, _)| !rule.kind.per_queue()) {
            let value = broker_value(rule, snapshot, &mut slot.histogram, now);
            if let Some(from) = judge(rule, slot, value, now, snapshot.unix_ms) {
                transitions.push(Transition { from, alert: view(rule, None, &slot.alert) });
            }
        }
        transitions
    }

    /// Every alert that is not inactive, per-queue ones first in queue order.
    pub fn alerts(&self) -> Vec<AlertView> {
        let per_queue = self.queues.iter().flat_map(|(queue, slots)| {
            self.rules
                .iter()
                .zip(slots)
                .filter(|(rule, _)| rule.kind.per_queue())
                .map(move |(rule, slot)| (rule, Some(queue.as_str()), slot))
        });
        let global = self
            .rules
            .iter()
            .zip(&self.global)
            .filter(|(rule, _)| !rule.kind.per_queue())
            .map(|(rule, slot)| (rule, None, slot));
        per_queue
            .chain(global)
            .filter(|(_, _, slot)| slot.alert.state != AlertState::Inactive)
            .map(|(rule, queue, slot)| view(rule, queue, &slot.alert))
            .collect()
    }

    /// Replaces the rules. A rule whose name and definition did not change keeps its alerts
    /// (and their histories); the alerts of a rule that changed or went are ended (a firing
    /// one resolves: receivers hear of it) and dropped. A changed rule starts afresh.
    pub fn set_rules(&mut self, rules: Vec<Rule>, now_unix_ms: u64) -> Vec<Transition> {
        let kept: Vec<Option<usize>> =
            rules.iter().map(|new| self.rules.iter().position(|old| old == new)).collect();
        let mut transitions = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if kept.contains(&Some(index)) {
                continue;
            }
            let scopes = self
                .queues
                .iter_mut()
                .map(|(queue, slots)| (Some(queue.as_str()), &mut slots[index]));
            for (queue, slot) in scopes.chain(std::iter::once((None, &mut self.global[index]))) {
                if rule.kind.per_queue() != queue.is_some() {
                    continue;
                }
                if let Some(from) = slot.alert.end(now_unix_ms) {
                    transitions.push(Transition { from, alert: view(rule, queue, &slot.alert) });
                }
            }
        }
        let rearrange = |slots: &mut Vec<Slot>| {
            let mut old = std::mem::take(slots);
            *slots = kept
                .iter()
                .map(|k| k.map(|i| std::mem::take(&mut old[i])).unwrap_or_default())
                .collect();
        };
        rearrange(&mut self.global);
        self.queues.iter_mut().for_each(|(_, slots)| rearrange(slots));
        self.rules = rules;
        transitions
    }

    /// Ends the alerts of a queue that is gone (its slots are dropped after).
    fn end_queue(
        &self,
        slots: (String, Vec<Slot>),
        now_unix_ms: u64,
        transitions: &mut Vec<Transition>,
    ) {
        let (name, slots) = slots;
        for (rule, mut slot) in self.rules.iter().zip(slots).filter(|(r, _)| r.kind.per_queue()) {
            if let Some(from) = slot.alert.end(now_unix_ms) {
                transitions.push(Transition { from, alert: view(rule, Some(&name), &slot.alert) });
            }
        }
    }

    /// The queues the evaluator holds state for (for tests and the bounded-memory promise).
    pub fn queues_tracked(&self) -> usize {
        self.queues.len()
    }
}

/// Steps a slot's alert with the rule's condition; the state left, if it changed.
fn judge(
    rule: &Rule,
    slot: &mut Slot,
    value: Option<u64>,
    now: Instant,
    now_unix_ms: u64,
) -> Option<AlertState> {
    slot.alert.value = value;
    let holds = value.is_some_and(|value| value > rule.threshold);
    slot.alert.step(now, now_unix_ms, holds, rule.for_ms)
}

fn queue_value(
    rule: &Rule,
    queue: &QueueSnapshot,
    counter: &mut CounterHistory,
    now: Instant,
) -> Option<u64> {
    match rule.kind {
        RuleKind::QueueDepth => Some(queue.ready),
        RuleKind::OldestReadyAge => queue.oldest_ready_age_ms,
        RuleKind::DeadLettersGrowing => {
            counter.increase(now, queue.dead_lettered_total, rule.window_ms)
        }
        RuleKind::NoConsumer => (queue.consumers == 0).then_some(queue.ready),
        RuleKind::ConsumerBreakerOpen => Some(queue.breakers_open),
        RuleKind::PublishRefusals => counter.increase(now, queue.refused_total, rule.window_ms),
        RuleKind::MemoryAlarm
        | RuleKind::DiskAlarm
        | RuleKind::StorageSyncSlow
        | RuleKind::StorageFailed => {
            unreachable!("{:?} is not a per-queue rule", rule.kind)
        }
    }
}

fn broker_value(
    rule: &Rule,
    snapshot: &Snapshot,
    histogram: &mut HistogramHistory,
    now: Instant,
) -> Option<u64> {
    match rule.kind {
        RuleKind::MemoryAlarm => Some(snapshot.alarm_memory.into()),
        RuleKind::DiskAlarm => Some(snapshot.alarm_disk.into()),
        RuleKind::StorageFailed => Some(snapshot.storage_failed.into()),
        RuleKind::StorageSyncSlow => {
            let latency = &snapshot.sync_latency;
            histogram.p99(now, &latency.bounds_us, &latency.counts, rule.window_ms)
        }
        kind => unreachable!("{kind:?} is a per-queue rule"),
    }
}

fn view(rule: &Rule, queue: Option<&str>, alert: &Alert) -> AlertView {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".to_string(), rule.name.clone());
    labels.insert("severity".to_string(), rule.severity.to_string());
    if let Some(queue) = queue {
        labels.insert("queue".to_string(), queue.to_string());
    }
    AlertView {
        rule: rule.name.clone(),
        kind: rule.kind,
        queue: queue.map(str::to_string),
        state: alert.state,
        since_unix_ms: alert.since_unix_ms,
        fired_unix_ms: alert.fired_unix_ms,
        value: alert.value,
        threshold: rule.threshold,
        severity: rule.severity,
        labels,
        annotations: rule.annotations.clone(),
    }
}
