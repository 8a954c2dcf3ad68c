//! The queues, dead-letter queues, bindings and topics every run declares, chosen so that each
//! queue exercises a different part of the semantics:
//!
//! | queue | durability | what it exercises |
//! | --- | --- | --- |
//! | `work` | always | groups, priorities, `attempts_max` 4, fast backoff |
//! | `events` | interval (20 ms) | confirms after write; machine crashes may lose the window |
//! | `delayed` | always | delayed delivery, per-message TTLs, `attempts_max` 6 |
//! | `ttl` | always | a queue TTL of 400 ms with expiry to the dead-letter queue |
//! | `t.eu`, `t.all`, `t.new` | always | topics: `orders.eu.*`, `orders.#`, `*.*.new` |
//!
//! Every queue has a dedup window longer than any run (publishers republish unconfirmed
//! messages with the same id after reconnecting) and its own dead-letter queue `<name>.dlq`,
//! so every message that leaves a queue without an ack can be found and accounted for.

use std::collections::BTreeMap;

use chute_protocol::{BackoffPolicy, Durability, ExpiryPolicy, QueueOptions};

/// Index of a queue in [`Topology::queues`].
pub type QIdx = u16;

#[derive(Clone, Debug)]
pub struct QueueSpec {
    pub name: String,
    pub options: QueueOptions,
    /// The dead-letter queue of a source queue.
    pub dlq: Option<QIdx>,
    /// The source queue of a dead-letter queue.
    pub source: Option<QIdx>,
}

impl QueueSpec {
    pub fn is_dlq(&self) -> bool {
        self.source.is_some()
    }

    /// Attempts are counted exactly (never under) only where the broker waits for the
    /// `Delivered` record's sync before delivering: `Always` queues with `attempts_max`.
    pub fn attempts_exact(&self) -> Option<u32> {
        match self.options.durability {
            Durability::Always => self.options.attempts_max,
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Topology {
    /// Dead-letter queues come before their sources (declaration order).
    pub queues: Vec<QueueSpec>,
    pub by_name: BTreeMap<String, QIdx>,
    /// (pattern, queue)
    pub bindings: Vec<(String, QIdx)>,
    pub topics: Vec<String>,
}

/// The dedup window of every source queue: longer than any run.
pub const DEDUP_WINDOW_MS: u64 = 24 * 3_600_000;

impl Topology {
    pub fn standard() -> Topology {
        let base = QueueOptions {
            dedup_window_ms: Some(DEDUP_WINDOW_MS),
            backoff: BackoffPolicy { base_ms: 10, factor_percent: 200, max_ms: 200, jitter: true },
            lease_ms: 300,
            ..QueueOptions::default()
        };
        let sources: Vec<(&str, QueueOptions)> = vec![
            (
                "work",
                QueueOptions {
                    attempts_max: Some(4),
                    lease_ms: 250,
                    backoff: BackoffPolicy {
                        base_ms: 5,
                        factor_percent: 200,
                        max_ms: 100,
                        jitter: true,
                    },
                    ..base.clone()
                },
            ),
            (
                "events",
                QueueOptions {
                    durability: Durability::Interval { sync_interval_ms: 20 },
                    ..base.clone()
                },
            ),
            ("delayed", QueueOptions { attempts_max: Some(6), ..base.clone() }),
            (
                "ttl",
                QueueOptions {
                    ttl_ms: Some(400),
                    expiry: ExpiryPolicy::DeadLetter,
                    lease_ms: 200,
                    ..base.clone()
                },
            ),
            ("t.eu", base.clone()),
            ("t.all", QueueOptions { attempts_max: Some(5), ..base.clone() }),
            ("t.new", base.clone()),
        ];
        let dlq_options = QueueOptions { lease_ms: 300, ..QueueOptions::default() };
        let mut topology = Topology {
            queues: Vec::new(),
            by_name: BTreeMap::new(),
            bindings: Vec::new(),
            topics: [
                "orders.eu.new",
                "orders.eu.paid",
                "orders.us.new",
                "orders.us.paid",
                "orders.eu",
            ]
            .iter()
            .map(|t| t.to_string())
            .collect(),
        };
        for (name, mut options) in sources {
            let dlq_name = format!("{name}.dlq");
            let dlq = topology.push(QueueSpec {
                name: dlq_name.clone(),
                options: dlq_options.clone(),
                dlq: None,
                source: None,
            });
            options.dead_letter = Some(dlq_name);
            let source = topology.push(QueueSpec {
                name: name.to_string(),
                options,
                dlq: Some(dlq),
                source: None,
            });
            topology.queues[usize::from(dlq)].source = Some(source);
        }
        for (pattern, queue) in
            [("orders.eu.*", "t.eu"), ("orders.#", "t.all"), ("*.*.new", "t.new")]
        {
            let q = topology.by_name[queue];
            topology.bindings.push((pattern.to_string(), q));
        }
        topology
    }

    fn push(&mut self, spec: QueueSpec) -> QIdx {
        let idx = self.queues.len() as QIdx;
        self.by_name.insert(spec.name.clone(), idx);
        self.queues.push(spec);
        idx
    }

    pub fn queue(&self, idx: QIdx) -> &QueueSpec {
        &self.queues[usize::from(idx)]
    }

    pub fn idx(&self, name: &str) -> QIdx {
        self.by_name[name]
    }

    /// Source queues (those that take publishes), in index order.
    pub fn sources(&self) -> Vec<QIdx> {
        (0..self.queues.len() as QIdx).filter(|q| !self.queue(*q).is_dlq()).collect()
    }

    /// The queues a publish to `topic` is copied to, by the simulator's own matcher.
    pub fn route(&self, topic: &str) -> Vec<QIdx> {
        let mut queues: Vec<QIdx> = self
            .bindings
            .iter()
            .filter(|(pattern, _)| topic_matches(pattern, topic))
            .map(|(_, q)| *q)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }
}

/// `*` matches exactly one word, `#` zero or more (words are separated by `.`). An oracle
/// written independently of the core's matcher.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let topic: Vec<&str> = topic.split('.').collect();
    matches_from(&pattern, &topic)
}

fn matches_from(pattern: &[&str], topic: &[&str]) -> bool {
    match pattern.split_first() {
        None => topic.is_empty(),
        Some((&"#", rest)) => (0..=topic.len()).any(|skip| matches_from(rest, &topic[skip..])),
        Some((word, rest)) => match topic.split_first() {
            Some((first, topic_rest)) => {
                (*word == "*" || word == first) && matches_from(rest, topic_rest)
            }
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(topic_matches("orders.*.new", "orders.eu.new"));
        assert!(!topic_matches("orders.*.new", "orders.eu.x.new"));
        assert!(topic_matches("orders.#", "orders"));
        assert!(topic_matches("orders.#", "orders.eu.new"));
        assert!(topic_matches("#", "a.b"));
        assert!(!topic_matches("*.*.new", "orders.eu"));
    }

    #[test]
    fn every_topic_routes_somewhere() {
        let topology = Topology::standard();
        for topic in &topology.topics {
            assert!(!topology.route(topic).is_empty(), "{topic}");
        }
        assert_eq!(topology.route("orders.eu.new").len(), 3);
    }
}
