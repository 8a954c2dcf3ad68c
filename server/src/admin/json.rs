//! The admin API's JSON: what the endpoints answer, built from the broker's snapshots, and
//! the queue options a request body carries. Protocol types appear by their serde names
//! (`reject-publish`, `{"interval": {"sync_interval_ms": 25}}`), as `chute queue stats --json`
//! and the protocol documentation show them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use chute_core::storage::failure::StorageFailure;
use chute_core::{BrokerStats, ConnectionInfo};
use chute_protocol::{QueueCounters, QueueOptions};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::rates::Rate;
use crate::storage_worker::StorageMetrics;

/// A protocol value as JSON.
pub fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("protocol types have no maps with non-string keys")
}

/// `/api/queues`: the queues in name order, with what they hold and their counters.
pub fn queues_json(stats: &BrokerStats) -> Value {
    let queues = stats.queues.iter().map(|queue| {
        json!({
            "name": queue.name,
            "ready": queue.ready,
            "delayed": queue.delayed,
            "in_flight": queue.in_flight,
            "group_blocked": queue.group_blocked,
            "bytes": queue.bytes,
            "dead_letters": queue.dead_letters,
            "consumers": queue.consumers.len(),
            "counters": queue.counters,
        })
    });
    Value::Array(queues.collect())
}

/// The queues' counters by name (`published`, `acked`, ...), as the rate sampler takes them.
pub fn counter_totals(counters: &QueueCounters) -> BTreeMap<String, u64> {
    let Value::Object(fields) = to_json(counters) else { unreachable!("a struct is an object") };
    fields.into_iter().filter_map(|(name, value)| Some((name, value.as_u64()?))).collect()
}

/// What `/api/overview` is made of.
pub struct Overview<'a> {
    pub node: &'a str,
    pub uptime_ms: u64,
    pub stats: &'a BrokerStats,
    pub storage: &'a StorageMetrics,
    /// The rate of each of `stats.totals`, by counter name.
    pub rates: &'a BTreeMap<String, Rate>,
}

/// `/api/overview`.
pub fn overview_json(overview: &Overview) -> Value {
    let stats = overview.stats;
    let sum = |field: fn(&chute_protocol::QueueStats) -> u64| -> u64 {
        stats.queues.iter().map(field).sum()
    };
    let mut rates = Map::new();
    if let Some(rate) = overview.rates.values().next() {
        rates.insert("interval_ms".into(), rate.interval_ms.into());
    }
    rates.extend(overview.rates.iter().map(|(name, rate)| (name.clone(), rate.per_second.into())));
    let storage = overview.storage;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node": overview.node,
        "uptime_ms": overview.uptime_ms,
        "state": state_label(stats),
        "draining": stats.draining,
        "halted": stats.halted.as_ref().map(StorageFailure::halt_message),
        "connections": stats.connections,
        "queues": stats.queues.len(),
        "messages": {
            "ready": sum(|q| q.ready),
            "delayed": sum(|q| q.delayed),
            "in_flight": sum(|q| q.in_flight),
            "bytes": sum(|q| q.bytes),
        },
        "totals": stats.totals,
        "rates": rates,
        "storage": {
            "segments": stats.log_segments,
            "segments_by_key": segments_by_key(stats),
            "bytes": stats.log_bytes,
            "syncs": storage.syncs.load(Ordering::Relaxed),
            "appends": storage.appends.load(Ordering::Relaxed),
            "bytes_written": storage.bytes_written.load(Ordering::Relaxed),
        },
        "partial_frames_bytes": stats.partial_frames_bytes,
        "alarms": { "memory": stats.alarm_memory, "disk": stats.alarm_disk },
        "connections_blocked": stats.connections_blocked,
    })
}

/// `{"none": 3, "2": 1}`: how many segments are in clear and sealed under each key id.
fn segments_by_key(stats: &BrokerStats) -> serde_json::Map<String, serde_json::Value> {
    stats
        .log_segments_by_key
        .iter()
        .map(|(key, count)| (key_label(*key), (*count).into()))
        .collect()
}

/// A key id as the admin API and the metrics name it: its number, or `none` for segments in
/// clear.
pub(super) fn key_label(key: Option<u32>) -> String {
    key.map_or_else(|| "none".to_string(), |id| id.to_string())
}

/// `halted`, `shutting-down`, `draining` or `serving`.
fn state_label(stats: &BrokerStats) -> &'static str {
    if stats.halted.is_some() {
        "halted"
    } else if stats.shutting_down {
        "shutting-down"
    } else if stats.draining {
        "draining"
    } else {
        "serving"
    }
}

/// The keys of a connection's totals in the rate sampler.
pub const PUBLISHED: &str = "published";
pub const DELIVERED: &str = "delivered";

/// The per-connection totals the rate sampler takes, keyed by connection id and counter.
pub fn connection_totals(infos: &[ConnectionInfo]) -> BTreeMap<(u64, &'static str), u64> {
    let totals = infos.iter().flat_map(|info| {
        let id = info.id.0;
        [((id, PUBLISHED), info.published_total), ((id, DELIVERED), info.delivered_total)]
    });
    totals.collect()
}

/// `/api/connections`: one object per connection, by id.
pub fn connections_json(
    infos: &[ConnectionInfo],
    rates: &BTreeMap<(u64, &'static str), Rate>,
) -> Value {
    let connections = infos.iter().map(|info| {
        let rate = |counter| rates.get(&(info.id.0, counter)).copied();
        let published = rate(PUBLISHED);
        json!({
            "id": info.id.0,
            "peer": info.peer.addr.map(|addr| addr.to_string()),
            "tls": info.peer.tls,
            // The user the client's verified certificate names (tls.client_identity).
            "certificate_user": info.peer.certificate_user,
            "client_name": info.client_name,
            "user": info.user,
            "state": info.state.label(),
            "age_ms": info.age_ms,
            "published_total": info.published_total,
            "delivered_total": info.delivered_total,
            "rates": {
                "interval_ms": published.map(|rate| rate.interval_ms),
                "published": published.map(|rate| rate.per_second),
                "delivered": rate(DELIVERED).map(|rate| rate.per_second),
            },
            "unconfirmed": info.unconfirmed,
            "in_flight": info.in_flight,
            "subscriptions": info.subscriptions,
            "read_paused": info.read_paused,
            "blocked": info.blocked,
        })
    });
    Value::Array(connections.collect())
}

/// Queue options given as JSON by their serde names, for `PUT /api/queues/{name}`: the fields
/// given replace those of a base (the defaults for a declare, the queue's current options for
/// an alter), and the rest keep the base's values.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionsPatch {
    fields: Map<String, Value>,
}

impl OptionsPatch {
    /// A request body: a JSON object, or nothing (no field changes).
    pub fn parse(body: &[u8]) -> Result<OptionsPatch, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionsPatch { fields: Map::new() });
        }
        match serde_json::from_slice(body) {
            Ok(Value::Object(fields)) => Ok(OptionsPatch { fields }),
            Ok(other) => Err(format!("queue options must be a JSON object, not {other}")),
            Err(error) => Err(format!("the body is not JSON: {error}")),
        }
    }

    /// `base` with the patch's fields in place. An object given for a field whose value is an
    /// object is merged into it field by field (`{"backoff": {"max_ms": 500}}` keeps the
    /// backoff's other fields); anything else replaces the value (`null` unsets an optional
    /// field). A field the options do not have is refused, by its path.
    pub fn apply(&self, base: &QueueOptions) -> Result<QueueOptions, String> {
        let mut merged = to_json(base);
        merge(&mut merged, &self.fields);
        let options: QueueOptions = match serde_json::from_value(merged.clone()) {
            Ok(options) => options,
            Err(error) => return Err(self.explain(base, error)),
        };
        if let Some(path) = first_unknown_field("", &merged, &to_json(&options)) {
            return Err(format!("queue options have no field {path}"));
        }
        Ok(options)
    }

    /// serde's error does not say which field it is about: find the first field that fails
    /// on its own, and name it.
    fn explain(&self, base: &QueueOptions, error: serde_json::Error) -> String {
        let culprit = self.fields.iter().find(|(name, value)| {
            let mut alone = to_json(base);
            let field = Map::from_iter([((*name).clone(), (*value).clone())]);
            merge(&mut alone, &field);
            serde_json::from_value::<QueueOptions>(alone).is_err()
        });
        match culprit {
            Some((name, _)) => format!("queue option {name}: {error}"),
            None => format!("queue options: {error}"),
        }
    }
}

/// Puts `fields` into the object `target`, merging objects into objects.
fn merge(target: &mut Value, fields: &Map<String, Value>) {
    let Value::Object(target) = target else { return };
    for (name, value) in fields {
        match (target.get_mut(name), value) {
            (Some(existing @ Value::Object(_)), Value::Object(inner)) => merge(existing, inner),
            _ => {
                target.insert(name.clone(), value.clone());
            }
        }
    }
}

/// The path (`.backoff.max`) of the first field in `given` that `parsed` (the same options,
/// read back) lacks: serde skips fields it does not know.
fn first_unknown_field(path: &str, given: &Value, parsed: &Value) -> Option<String> {
    let Value::Object(given) = given else { return None };
    given.iter().find_map(|(name, value)| {
        let path = format!("{path}.{name}");
        match parsed.get(name) {
            None => Some(path.trim_start_matches('.').to_string()),
            Some(parsed) => first_unknown_field(&path, value, parsed),
        }
    })
}

/// A snapshot of a broker with one empty queue, `jobs`.
#[cfg(test)]
pub fn test_stats() -> BrokerStats {
    use chute_core::{Broker, BrokerConfig, Instant};
    let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
    broker.declare_queue("jobs", QueueOptions::default(), false).unwrap();
    broker.stats()
}

#[cfg(test)]
mod tests {
    use chute_core::{Broker, BrokerConfig, Input, Instant, PeerInfo};
    use chute_protocol::{BackoffPolicy, Durability, RateLimit, RateLimitPolicy};

    use super::test_stats as stats;
    use super::*;

    fn patch(body: &str) -> OptionsPatch {
        OptionsPatch::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn queues_are_listed_as_json_objects() {
        let json = queues_json(&stats());
        assert_eq!(json[0]["name"], "jobs");
        assert_eq!(json[0]["ready"], 0);
        assert_eq!(json[0]["counters"]["published"], 0);
    }

    /// The overview sums what the queues hold and shows the totals with their rates.
    #[test]
    fn overview_shows_totals_rates_and_storage() {
        let mut stats = stats();
        stats.queues[0].ready = 3;
        stats.totals.published = 7;
        let storage = StorageMetrics::default();
        storage.syncs.store(4, Ordering::Relaxed);
        let rates = BTreeMap::from([(
            "published".to_string(),
            Rate { per_second: 3.5, interval_ms: 2000 },
        )]);
        let overview =
            Overview { node: "n1", uptime_ms: 9, stats: &stats, storage: &storage, rates: &rates };
        let json = overview_json(&overview);
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!((json["node"].as_str(), json["uptime_ms"].as_u64()), (Some("n1"), Some(9)));
        assert_eq!((json["state"].as_str(), json["queues"].as_u64()), (Some("serving"), Some(1)));
        assert_eq!(json["messages"]["ready"], 3);
        assert_eq!(json["totals"]["published"], 7);
        assert_eq!(json["rates"], json!({"interval_ms": 2000, "published": 3.5}));
        assert_eq!(json["storage"]["syncs"], 4);
        assert_eq!(json["storage"]["segments"], stats.log_segments);
        assert_eq!(json["storage"]["segments_by_key"], json!({"none": 1}));
    }

    #[test]
    fn the_state_says_the_worst_first() {
        let mut stats = stats();
        stats.draining = true;
        assert_eq!(state_label(&stats), "draining");
        stats.shutting_down = true;
        assert_eq!(state_label(&stats), "shutting-down");
        stats.halted = Some(crate::operator::test_failure());
        assert_eq!(state_label(&stats), "halted");
    }

    #[test]
    fn counter_totals_name_every_counter() {
        let totals = counter_totals(&QueueCounters { acked: 2, ..QueueCounters::default() });
        assert_eq!(totals["acked"], 2);
        assert_eq!(totals.len(), to_json(&QueueCounters::default()).as_object().unwrap().len());
    }

    /// A connection shows its peer, its totals, and its rates from the sampler.
    #[test]
    fn connections_show_peer_totals_and_rates() {
        let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
        let peer =
            PeerInfo { addr: Some("127.0.0.1:5000".parse().unwrap()), ..PeerInfo::default() };
        broker.handle_input(Instant::ZERO, Input::Accepted { conn: chute_core::ConnId(7), peer });
        let views = broker.connections();
        let rate = Rate { per_second: 1.5, interval_ms: 1000 };
        let rates = BTreeMap::from([((7, PUBLISHED), rate), ((7, DELIVERED), rate)]);
        let json = connections_json(&views, &rates);
        assert_eq!(json[0]["id"], 7);
        assert_eq!(json[0]["peer"], "127.0.0.1:5000");
        assert_eq!(json[0]["state"], "handshake");
        assert_eq!(json[0]["user"], Value::Null);
        assert_eq!(
            json[0]["rates"],
            json!({"interval_ms": 1000, "published": 1.5, "delivered": 1.5})
        );
        assert_eq!(connection_totals(&views).len(), 2);
    }

    /// No body, or an empty object, declares with the defaults.
    #[test]
    fn an_empty_patch_changes_nothing() {
        let base = QueueOptions { lease_ms: 5, ..QueueOptions::default() };
        assert_eq!(patch("").apply(&base), Ok(base.clone()));
        assert_eq!(patch(" {} ").apply(&base), Ok(base));
    }

    /// Fields given replace the base's; nested objects merge; null unsets.
    #[test]
    fn fields_given_replace_the_base() {
        let base = QueueOptions {
            messages_max: Some(10),
            publish_rate: Some(RateLimit {
                per_second: 5,
                burst: 5,
                policy: RateLimitPolicy::Pause,
            }),
            ..QueueOptions::default()
        };
        let options = patch(
            r#"{"messages_max": null, "ttl_ms": 60000, "backoff": {"max_ms": 500},
                "publish_rate": {"burst": 9}, "durability": {"interval": {"sync_interval_ms": 25}},
                "overflow": "drop-head"}"#,
        )
        .apply(&base)
        .unwrap();
        assert_eq!(options.messages_max, None);
        assert_eq!(options.ttl_ms, Some(60_000));
        assert_eq!(options.backoff, BackoffPolicy { max_ms: 500, ..BackoffPolicy::default() });
        assert_eq!(options.publish_rate.unwrap().burst, 9);
        assert_eq!(options.publish_rate.unwrap().per_second, 5);
        assert_eq!(options.durability, Durability::Interval { sync_interval_ms: 25 });
        assert_eq!(options.overflow, chute_protocol::OverflowPolicy::DropHead);
    }

    /// A wrong value names its field; an unknown field is named by its path.
    #[test]
    fn bad_fields_are_named() {
        let base = QueueOptions::default();
        let wrong = patch(r#"{"lease_ms": 5, "overflow": "sideways"}"#).apply(&base).unwrap_err();
        assert!(wrong.starts_with("queue option overflow: unknown variant `sideways`"), "{wrong}");
        let typo = patch(r#"{"mesages_max": 5}"#).apply(&base).unwrap_err();
        assert_eq!(typo, "queue options have no field mesages_max");
        let nested = patch(r#"{"backoff": {"maxms": 5}}"#).apply(&base).unwrap_err();
        assert_eq!(nested, "queue options have no field backoff.maxms");
        let new_object = patch(r#"{"breaker": {"failures_max": 1, "open_ms": 2, "x": 3}}"#);
        assert_eq!(new_object.apply(&base).unwrap_err(), "queue options have no field breaker.x");
        let partial = patch(r#"{"breaker": {"failures_max": 1}}"#).apply(&base).unwrap_err();
        assert!(partial.contains("breaker") && partial.contains("open_ms"), "{partial}");
    }

    #[test]
    fn a_body_that_is_no_object_is_refused() {
        assert!(OptionsPatch::parse(b"[1]").unwrap_err().contains("JSON object"));
        assert!(OptionsPatch::parse(b"{").unwrap_err().contains("not JSON"));
    }
}
