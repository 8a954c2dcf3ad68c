//! Small renderings shared by the commands: payloads, headers and wall-clock times.

use std::time::{Duration, UNIX_EPOCH};

use chute_client::Header;
use serde::Serialize;
use serde_json::{Map, Value};

/// Sets `payload` (valid UTF-8) or `payload_hex` (anything else) on a JSON object.
pub fn set_payload(value: &mut Value, payload: &[u8]) {
    match std::str::from_utf8(payload) {
        Ok(text) => value["payload"] = text.into(),
        Err(_) => value["payload_hex"] = hex(payload).into(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Headers as a JSON object, values as (lossy) UTF-8. A repeated name keeps its last value.
pub fn headers_json(headers: &[Header]) -> Value {
    let map: Map<String, Value> = headers
        .iter()
        .map(|h| (h.name.clone(), String::from_utf8_lossy(&h.value).into_owned().into()))
        .collect();
    Value::Object(map)
}

/// A protocol value as JSON, by its serde names (`reject-publish`, `max-attempts`).
pub fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("protocol types have no maps with non-string keys")
}

/// The serde name of an enum's variant: a unit variant is its name, a variant with fields an
/// object keyed by it (`{"open": {"until_unix_ms": 5}}` is `open`).
pub fn label<T: Serialize>(value: &T) -> String {
    match to_json(value) {
        Value::String(name) => name,
        Value::Object(variant) if variant.len() == 1 => variant.into_iter().next().unwrap().0,
        other => other.to_string(),
    }
}

/// `2024-05-01T12:34:56.789Z` for a time in milliseconds since the Unix epoch. RFC 3339 has
/// four-digit years, so a later time (a client may send any u64) is shown as the number.
pub fn utc(unix_ms: u64) -> String {
    if unix_ms >= RFC3339_END_UNIX_MS {
        return format!("{unix_ms} ms after the Unix epoch (past year 9999)");
    }
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// 10000-01-01T00:00:00Z, from which on humantime refuses to format.
const RFC3339_END_UNIX_MS: u64 = 253_402_300_800_000;

/// `1 message`, `2 messages`.
pub fn messages(count: u64) -> String {
    match count {
        1 => "1 message".to_string(),
        n => format!("{n} messages"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn utc_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
        assert_eq!(utc(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    /// A time RFC 3339 cannot write (after year 9999) is shown as its number, not a panic.
    #[test]
    fn utc_past_year_9999() {
        assert_eq!(
            utc(253_402_300_800_000),
            "253402300800000 ms after the Unix epoch (past year 9999)"
        );
        assert!(utc(u64::MAX).starts_with(&u64::MAX.to_string()));
    }

    /// Unit variants and variants with fields are named alike.
    #[test]
    fn labels_of_variants() {
        use chute_client::{BreakerState, DeadReason, Durability};
        assert_eq!(label(&DeadReason::MaxAttempts), "max-attempts");
        assert_eq!(label(&BreakerState::Open { until_unix_ms: 5 }), "open");
        assert_eq!(label(&Durability::Interval { sync_interval_ms: 5 }), "interval");
    }

    #[test]
    fn payload_is_text_or_hex() {
        let mut value = json!({});
        set_payload(&mut value, b"hi");
        assert_eq!(value["payload"], "hi");
        let mut value = json!({});
        set_payload(&mut value, &[0xff, 0x00]);
        assert_eq!(value["payload_hex"], "ff00");
    }
}
