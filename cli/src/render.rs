//! Small renderings shared by the commands: payloads, headers and wall-clock times.

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

/// `2024-05-01T12:34:56.789Z` for a time in milliseconds since the Unix epoch.
pub fn utc(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let millis = unix_ms % 1000;
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`,
/// for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
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
