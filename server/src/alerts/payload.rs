//! The body POSTed to a webhook: Alertmanager's webhook payload (version 4), one alert per
//! notification, so receivers written for Alertmanager read it unchanged.

use std::time::{Duration, UNIX_EPOCH};

use chute_core::alerts::{AlertState, AlertView};
use serde_json::{json, Value};

/// Alertmanager's `endsAt` of an alert still firing: Go's zero time.
const NOT_ENDED: &str = "0001-01-01T00:00:00Z";

/// The JSON body notifying `receiver` of `alert`, which just became firing or resolved.
pub fn body(receiver: &str, alert: &AlertView) -> Value {
    let status = match alert.state {
        AlertState::Resolved => "resolved",
        _ => "firing",
    };
    let starts_at = alert.fired_unix_ms.map_or_else(|| rfc3339(alert.since_unix_ms), rfc3339);
    let ends_at = match alert.state {
        AlertState::Resolved => rfc3339(alert.since_unix_ms),
        _ => NOT_ENDED.to_string(),
    };
    let group_labels = json!({ "alertname": alert.rule });
    let group_key = format!("{{}}:{{alertname=\"{}\"}}", alert.rule);
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": alert.labels,
        "commonAnnotations": alert.annotations,
        "externalURL": "",
        "alerts": [{
            "status": status,
            "labels": alert.labels,
            "annotations": alert.annotations,
            "startsAt": starts_at,
            "endsAt": ends_at,
            "generatorURL": "",
            "fingerprint": fingerprint(alert),
        }],
    })
}

/// Unix ms as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// 16 hex digits that identify the alert by its labels (FNV-1a over the sorted pairs), as
/// Alertmanager's fingerprint does: the same alert firing and resolving has the same one.
fn fingerprint(alert: &AlertView) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in &alert.labels {
        for byte in name.bytes().chain([0xff]).chain(value.bytes()).chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chute_core::alerts::{RuleKind, Severity};

    use super::*;

    fn alert(state: AlertState) -> AlertView {
        AlertView {
            rule: "queue_depth_high".into(),
            kind: RuleKind::QueueDepth,
            queue: Some("jobs".into()),
            state,
            since_unix_ms: 1_700_000_060_000,
            fired_unix_ms: Some(1_700_000_000_000),
            value: Some(12),
            threshold: 10,
            severity: Severity::Warning,
            labels: BTreeMap::from([
                ("alertname".into(), "queue_depth_high".into()),
                ("queue".into(), "jobs".into()),
                ("severity".into(), "warning".into()),
            ]),
            annotations: BTreeMap::from([("summary".into(), "deep".into())]),
        }
    }

    /// The fields Alertmanager receivers read, for firing and resolved.
    #[test]
    fn firing_and_resolved_bodies() {
        let firing = body("ops", &alert(AlertState::Firing));
        assert_eq!(firing["version"], "4");
        assert_eq!(firing["status"], "firing");
        assert_eq!(firing["receiver"], "ops");
        assert_eq!(firing["groupKey"], "{}:{alertname=\"queue_depth_high\"}");
        assert_eq!(firing["commonLabels"]["queue"], "jobs");
        let one = &firing["alerts"][0];
        assert_eq!(one["labels"]["severity"], "warning");
        assert_eq!(one["annotations"]["summary"], "deep");
        assert_eq!(one["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(one["endsAt"], NOT_ENDED);
        let resolved = body("ops", &alert(AlertState::Resolved));
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(resolved["alerts"][0]["fingerprint"], one["fingerprint"]);
        assert_eq!(one["fingerprint"].as_str().unwrap().len(), 16);
    }
}
