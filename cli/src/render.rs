//! Small renderings shared by the commands: payloads, headers and wall-clock times.

use std::time::{Duration, UNIX_EPOCH};

use chute_client::{AttemptOutcome, AttemptRecord, Header};
use serde_json::{json, Map, Value};

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

pub fn outcome_label(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Nack => "nack",
        AttemptOutcome::Timeout => "timeout",
        AttemptOutcome::Disconnect => "disconnect",
        AttemptOutcome::Reject => "reject",
    }
}

pub fn history_json(history: &[AttemptRecord]) -> Value {
    history
        .iter()
        .map(|attempt| {
            json!({
                "at_unix_ms": attempt.at_unix_ms,
                "outcome": outcome_label(attempt.outcome),
                "reason": attempt.reason,
            })
        })
        .collect()
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

#[cfg(test)]
mod tests {
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
