//! The alert evaluator (chute_core::alerts): each default rule's condition, each transition,
//! deleted queues, rule changes, a property over random snapshot sequences, and the cost of
//! an evaluation over 1,000 queues.

use std::collections::BTreeMap;

use chute_core::alerts::{
    default_rules, AlertState, Evaluator, QueueSnapshot, Rule, RuleKind, Snapshot,
    SyncLatencyBuckets, Transition,
};
use chute_core::Instant;
use proptest::prelude::*;

const EPOCH_UNIX_MS: u64 = 1_700_000_000_000;

/// The default rule of `kind`, with its `for_ms` and threshold replaced.
fn rule(kind: RuleKind, threshold: u64, for_ms: u64) -> Rule {
    let default = default_rules().into_iter().find(|r| r.kind == kind).unwrap();
    Rule { threshold, for_ms, ..default }
}

fn queue(name: &str) -> QueueSnapshot {
    QueueSnapshot { name: name.to_string(), consumers: 1, ..QueueSnapshot::default() }
}

fn snapshot_at(ms: u64, queues: Vec<QueueSnapshot>) -> Snapshot {
    Snapshot { unix_ms: EPOCH_UNIX_MS + ms, queues, ..Snapshot::default() }
}

/// Evaluates at `ms` and returns `(rule, queue, from, to)` of each transition.
fn step(
    evaluator: &mut Evaluator,
    ms: u64,
    snapshot: Snapshot,
) -> Vec<(String, Option<String>, AlertState, AlertState)> {
    let snapshot = Snapshot { unix_ms: EPOCH_UNIX_MS + ms, ..snapshot };
    evaluator.evaluate(Instant::from_millis(ms), &snapshot).into_iter().map(summary).collect()
}

fn summary(t: Transition) -> (String, Option<String>, AlertState, AlertState) {
    (t.alert.rule, t.alert.queue, t.from, t.alert.state)
}

fn moved(
    rule: &str,
    queue: Option<&str>,
    from: AlertState,
    to: AlertState,
) -> (String, Option<String>, AlertState, AlertState) {
    (rule.to_string(), queue.map(str::to_string), from, to)
}

use AlertState::{Firing, Inactive, Pending, Resolved};

/// Runs one per-queue rule through a queue whose snapshot `set` changes: pending when the
/// condition starts, firing after `for_ms`, resolved when it stops.
fn check_queue_rule(kind: RuleKind, threshold: u64, set: impl Fn(&mut QueueSnapshot, bool, u64)) {
    check_rule(kind, threshold, Some("jobs"), |s, bad, ms| set(&mut s.queues[0], bad, ms));
}

/// Runs one broker-wide rule the same way.
fn check_broker_rule(kind: RuleKind, threshold: u64, set: impl Fn(&mut Snapshot, bool, u64)) {
    check_rule(kind, threshold, None, set);
}

/// Runs a rule (for 10 s, a window of 5 s) over a broker with one queue, `jobs`, whose
/// snapshot `set` makes bad from 10 s to 20 s: pending at 10 s, firing at 20 s, resolved at
/// 25 s; the alert is labelled with `queue`.
fn check_rule(
    kind: RuleKind,
    threshold: u64,
    queue_label: Option<&str>,
    set: impl Fn(&mut Snapshot, bool, u64),
) {
    let mut rule = rule(kind, threshold, 10_000);
    if kind.uses_window() {
        rule.window_ms = 5_000;
    }
    let name = rule.name.clone();
    let mut evaluator = Evaluator::new(vec![rule]);
    let at = |ms: u64, bad: bool| {
        let mut snapshot = snapshot_at(ms, vec![queue("jobs")]);
        set(&mut snapshot, bad, ms);
        snapshot
    };
    let expect =
        |evaluator: &mut Evaluator, ms: u64, bad: bool, moves: &[(AlertState, AlertState)]| {
            let expected: Vec<_> =
                moves.iter().map(|(from, to)| moved(&name, queue_label, *from, *to)).collect();
            assert_eq!(step(evaluator, ms, at(ms, bad)), expected, "{kind:?} at {ms} ms");
        };
    expect(&mut evaluator, 0, false, &[]);
    expect(&mut evaluator, 5_000, false, &[]);
    expect(&mut evaluator, 10_000, true, &[(Inactive, Pending)]);
    expect(&mut evaluator, 15_000, true, &[]);
    expect(&mut evaluator, 20_000, true, &[(Pending, Firing)]);
    let firing = evaluator.alerts();
    assert_eq!(
        (firing.len(), firing[0].state, firing[0].fired_unix_ms),
        (1, Firing, Some(EPOCH_UNIX_MS + 20_000))
    );
    assert_eq!(firing[0].labels.get("queue").map(String::as_str), queue_label);
    assert_eq!(firing[0].labels["alertname"], name);
    expect(&mut evaluator, 25_000, false, &[(Firing, Resolved)]);
}

#[test]
fn queue_depth_rule() {
    check_queue_rule(RuleKind::QueueDepth, 100, |q, bad, _| q.ready = if bad { 101 } else { 100 });
}

#[test]
fn oldest_ready_age_rule() {
    check_queue_rule(RuleKind::OldestReadyAge, 60_000, |q, bad, _| {
        q.ready = 1;
        q.oldest_ready_age_ms = Some(if bad { 60_001 } else { 60_000 });
    });
}

/// Dead letters that keep coming hold the rule; a window without any resolves it.
#[test]
fn dead_letters_growing_rule() {
    check_queue_rule(RuleKind::DeadLettersGrowing, 0, |q, bad, ms| {
        // Growing while bad, standing still from 25 s on (the window is 5 s).
        q.dead_lettered_total = if bad {
            ms / 5_000
        } else if ms >= 25_000 {
            4
        } else {
            0
        };
    });
}

#[test]
fn no_consumer_rule() {
    check_queue_rule(RuleKind::NoConsumer, 0, |q, bad, _| {
        q.ready = 3;
        q.consumers = if bad { 0 } else { 1 };
    });
}

#[test]
fn consumer_breaker_open_rule() {
    check_queue_rule(RuleKind::ConsumerBreakerOpen, 0, |q, bad, _| q.breakers_open = bad.into());
}

#[test]
fn publish_refusals_rule() {
    check_queue_rule(RuleKind::PublishRefusals, 0, |q, bad, ms| {
        q.refused_total = if bad {
            ms
        } else if ms >= 25_000 {
            20_000
        } else {
            0
        };
    });
}

#[test]
fn memory_and_disk_alarm_rules() {
    check_broker_rule(RuleKind::MemoryAlarm, 0, |s, bad, _| s.alarm_memory = bad);
    check_broker_rule(RuleKind::DiskAlarm, 0, |s, bad, _| s.alarm_disk = bad);
}

#[test]
fn storage_failed_rule() {
    check_broker_rule(RuleKind::StorageFailed, 0, |s, bad, _| s.storage_failed = bad);
}

/// The 99th percentile of the syncs of the window: slow syncs from 10 s on, fast ones at 25 s.
#[test]
fn storage_sync_slow_rule() {
    check_broker_rule(RuleKind::StorageSyncSlow, 100_000, |s, bad, ms| {
        // 1,000 syncs of up to 1 s in each bad step (10, 15, 20 s), 10 fast ones in every
        // step, and 100,000 fast ones at 25 s.
        let slow = if bad || ms >= 25_000 { (ms / 5_000 - 1).min(3) * 1_000 } else { 0 };
        let fast = 10 * (ms / 5_000) + if ms >= 25_000 { 100_000 } else { 0 };
        s.sync_latency = SyncLatencyBuckets {
            bounds_us: vec![1_000, 100_000, 1_000_000],
            counts: vec![fast, 0, slow, 0],
        };
    });
}

/// The dead-letter and refusal rules above resolve only once the window holds no growth.
#[test]
fn rate_rules_resolve_when_the_window_is_quiet() {
    let mut growing = rule(RuleKind::DeadLettersGrowing, 0, 0);
    growing.window_ms = 10_000;
    let mut evaluator = Evaluator::new(vec![growing]);
    let with = |total: u64| {
        let mut q = queue("jobs");
        q.dead_lettered_total = total;
        vec![q]
    };
    assert_eq!(step(&mut evaluator, 0, snapshot_at(0, with(0))), []);
    assert_eq!(
        step(&mut evaluator, 5_000, snapshot_at(0, with(1))).len(),
        1,
        "fires at once (for 0)"
    );
    assert_eq!(step(&mut evaluator, 10_000, snapshot_at(0, with(1))), [], "still in the window");
    assert_eq!(
        step(&mut evaluator, 15_000, snapshot_at(0, with(1))),
        [moved("dead_letters_growing", Some("jobs"), Firing, Resolved)]
    );
}

/// A deleted queue's alerts resolve (a firing one) or vanish (a pending one), and its state
/// is dropped.
#[test]
fn a_deleted_queue_resolves_and_is_forgotten() {
    let mut evaluator = Evaluator::new(vec![
        rule(RuleKind::QueueDepth, 0, 0),
        rule(RuleKind::NoConsumer, 0, 60_000),
    ]);
    let mut deep = queue("deep");
    deep.ready = 5;
    deep.consumers = 0;
    let transitions = step(&mut evaluator, 0, snapshot_at(0, vec![deep, queue("other")]));
    assert_eq!(
        transitions,
        [
            moved("queue_depth_high", Some("deep"), Inactive, Firing),
            moved("queue_without_consumer", Some("deep"), Inactive, Pending)
        ]
    );
    assert_eq!(evaluator.queues_tracked(), 2);
    let transitions = step(&mut evaluator, 5_000, snapshot_at(0, vec![queue("other")]));
    assert_eq!(
        transitions,
        [
            moved("queue_depth_high", Some("deep"), Firing, Resolved),
            moved("queue_without_consumer", Some("deep"), Pending, Inactive)
        ]
    );
    assert_eq!(evaluator.queues_tracked(), 1);
    assert!(evaluator.alerts().is_empty());
}

/// A reload keeps the alerts of unchanged rules, resolves those of changed or removed ones,
/// and the changed rule judges afresh.
#[test]
fn set_rules_keeps_unchanged_rules_state() {
    let depth = rule(RuleKind::QueueDepth, 0, 0);
    let consumerless = rule(RuleKind::NoConsumer, 0, 0);
    let mut evaluator = Evaluator::new(vec![depth.clone(), consumerless.clone()]);
    let mut jobs = queue("jobs");
    jobs.ready = 5;
    jobs.consumers = 0;
    assert_eq!(step(&mut evaluator, 0, snapshot_at(0, vec![jobs.clone()])).len(), 2);
    let raised = Rule { threshold: 10, ..depth };
    let transitions: Vec<_> = evaluator
        .set_rules(vec![consumerless, raised], EPOCH_UNIX_MS + 1)
        .into_iter()
        .map(summary)
        .collect();
    assert_eq!(transitions, [moved("queue_depth_high", Some("jobs"), Firing, Resolved)]);
    let alerts = evaluator.alerts();
    let kept = alerts.iter().find(|a| a.rule == "queue_without_consumer").unwrap();
    assert_eq!((kept.state, kept.fired_unix_ms), (Firing, Some(EPOCH_UNIX_MS)), "kept its state");
    assert_eq!(step(&mut evaluator, 5_000, snapshot_at(0, vec![jobs])), [], "5 is not above 10");
}

/// Labels: the rule's own, then alertname, severity and queue; annotations as configured.
#[test]
fn labels_and_annotations() {
    let mut depth = rule(RuleKind::QueueDepth, 0, 0);
    depth.labels = BTreeMap::from([("team".to_string(), "ops".to_string())]);
    let mut evaluator = Evaluator::new(vec![depth]);
    let mut jobs = queue("jobs");
    jobs.ready = 1;
    let transitions = evaluator.evaluate(Instant::ZERO, &snapshot_at(0, vec![jobs]));
    let labels: Vec<(&str, &str)> =
        transitions[0].alert.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        labels,
        [
            ("alertname", "queue_depth_high"),
            ("queue", "jobs"),
            ("severity", "warning"),
            ("team", "ops")
        ]
    );
    assert!(transitions[0].alert.annotations["summary"].contains("10,000"));
    assert_eq!(transitions[0].alert.value, Some(1));
}

// ---- property ----

/// One step of a random run: which of four queues exist and how deep each is.
fn steps() -> impl Strategy<Value = Vec<(u64, [Option<u64>; 4])>> {
    prop::collection::vec((1..20_000u64, prop::array::uniform4(prop::option::of(0..4u64))), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over random snapshot sequences: an alert fires only once its condition has held
    /// `for_ms` without a break, resolves only after firing, and no state is kept for a queue
    /// that no longer exists.
    #[test]
    fn transitions_follow_the_conditions(for_ms in 0..30_000u64, run in steps()) {
        let mut evaluator = Evaluator::new(vec![rule(RuleKind::QueueDepth, 1, for_ms)]);
        let names = ["a", "b", "c", "d"];
        // Per queue: since when the condition has held, and whether the alert is firing.
        let mut holding_since: BTreeMap<&str, u64> = BTreeMap::new();
        let mut firing: BTreeMap<&str, bool> = BTreeMap::new();
        let mut now_ms = 0;
        for (advance_ms, depths) in run {
            now_ms += advance_ms;
            let queues: Vec<QueueSnapshot> = names.iter().zip(depths).filter_map(|(name, depth)| {
                Some(QueueSnapshot { ready: depth?, ..queue(name) })
            }).collect();
            for (name, depth) in names.iter().zip(depths) {
                if depth.is_some_and(|d| d > 1) {
                    holding_since.entry(name).or_insert(now_ms);
                } else {
                    holding_since.remove(name);
                }
            }
            let transitions = evaluator.evaluate(Instant::from_millis(now_ms), &snapshot_at(now_ms, queues.clone()));
            for t in transitions {
                let queue = t.alert.queue.clone().unwrap();
                let name = names.iter().find(|n| **n == queue).unwrap();
                match t.alert.state {
                    Firing => {
                        let since = holding_since.get(name).copied();
                        prop_assert!(since.is_some_and(|s| now_ms - s >= for_ms), "{queue} fired at {now_ms}, holding since {since:?}");
                        firing.insert(name, true);
                    }
                    Resolved => {
                        prop_assert_eq!(t.from, Firing);
                        prop_assert!(firing.insert(name, false).unwrap_or(false), "{} resolved without firing", queue);
                    }
                    Pending => prop_assert!(holding_since.contains_key(name)),
                    Inactive => prop_assert_eq!(t.from, Pending),
                }
            }
            // A queue that held long enough is firing now.
            for (name, since) in &holding_since {
                if now_ms - since >= for_ms {
                    prop_assert!(firing.get(name).copied().unwrap_or(false), "{name} should fire");
                }
            }
            prop_assert_eq!(evaluator.queues_tracked(), queues.len());
            prop_assert!(evaluator.alerts().iter().all(|a| queues.iter().any(|q| Some(&q.name) == a.queue.as_ref())));
        }
    }
}

// ---- cost ----

/// The evaluation runs every few seconds on the broker task: over 1,000 queues and every
/// default rule it must stay well under a millisecond. Prints the figure (run with
/// `--nocapture`); the bound asserted is loose so a loaded machine or a debug build passes.
#[test]
// The clock measures the test itself; the evaluator is still given its time.
#[allow(clippy::disallowed_methods)]
fn evaluation_over_1000_queues_is_cheap() {
    let mut evaluator = Evaluator::new(default_rules());
    let queues: Vec<QueueSnapshot> = (0..1_000)
        .map(|i| QueueSnapshot {
            ready: i,
            oldest_ready_age_ms: Some(i),
            dead_lettered_total: i,
            ..queue(&format!("queue-{i:04}"))
        })
        .collect();
    let mut snapshot = snapshot_at(0, queues);
    snapshot.sync_latency = SyncLatencyBuckets {
        bounds_us: vec![
            50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
            500_000, 1_000_000,
        ],
        counts: vec![0; 15],
    };
    let rounds = 200u64;
    let started = std::time::Instant::now();
    for round in 0..rounds {
        snapshot.unix_ms = EPOCH_UNIX_MS + round * 5_000;
        let transitions = evaluator.evaluate(Instant::from_millis(round * 5_000), &snapshot);
        std::hint::black_box(transitions);
    }
    let per_evaluation = started.elapsed() / rounds as u32;
    let with_stats = evaluation_with_broker_stats(1_000, 200);
    println!("alerts: snapshot of a broker with 1,000 queues and evaluation: {with_stats:?}");
    println!(
        "alerts: one evaluation over 1,000 queues and {} rules: {per_evaluation:?}",
        default_rules().len()
    );
    assert!(per_evaluation < std::time::Duration::from_millis(20), "{per_evaluation:?}");
}

/// What an evaluation costs the broker task in all: `Broker::alert_snapshot` and the
/// evaluation, over `queues` empty queues, averaged over `rounds`.
#[allow(clippy::disallowed_methods)]
fn evaluation_with_broker_stats(queues: usize, rounds: u32) -> std::time::Duration {
    let mut broker = chute_core::Broker::new(chute_core::BrokerConfig::default(), Instant::ZERO);
    for i in 0..queues {
        let name = format!("queue-{i:04}");
        broker.declare_queue(&name, chute_protocol::QueueOptions::default(), false).unwrap();
    }
    while broker.poll_output().is_some() {}
    let mut evaluator = Evaluator::new(default_rules());
    let started = std::time::Instant::now();
    for round in 0..rounds {
        let now_ms = u64::from(round) * 5_000;
        let now = Instant::from_millis(now_ms);
        let snapshot = broker.alert_snapshot(now, Default::default());
        std::hint::black_box(evaluator.evaluate(now, &snapshot));
    }
    started.elapsed() / rounds
}
