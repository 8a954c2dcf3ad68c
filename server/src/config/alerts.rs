//! `[alerts]`: how often the built-in alert rules are evaluated, changes to the rules, and the
//! webhook receivers notified of their transitions (docs/ADMIN.md, "Alerts").

use chute_core::alerts::{resolve_rules, Rule, RuleSetting};
use chute_protocol::{BackoffPolicy, BreakerPolicy};
use serde::{Deserialize, Serialize};

/// `[alerts]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsSettings {
    /// How often the rules are evaluated.
    pub evaluation_interval_ms: u32,
    /// Changes to the default rules, and rules added by name.
    pub rules: Vec<RuleSetting>,
    pub receivers: Vec<ReceiverSettings>,
}

impl Default for AlertsSettings {
    fn default() -> Self {
        AlertsSettings { evaluation_interval_ms: 5_000, rules: Vec::new(), receivers: Vec::new() }
    }
}

impl AlertsSettings {
    /// The rules in force; `check_values` has made sure they resolve.
    pub fn rules(&self) -> Vec<Rule> {
        resolve_rules(&self.rules).unwrap_or_else(|error| panic!("checked rules refused: {error}"))
    }
}

/// One `[[alerts.receivers]]`: a webhook that is POSTed every transition to firing or
/// resolved, in Alertmanager's webhook format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverSettings {
    /// Names the receiver in logs, metrics and the payload's `receiver`.
    pub name: String,
    /// `http://HOST[:PORT]/PATH`.
    pub url: String,
    /// One attempt's limit: connecting, sending and reading the answer.
    pub timeout_ms: u32,
    /// Notifications waiting for the receiver; when full, the oldest is dropped and counted.
    pub queue_max: u32,
    /// Attempts per notification before it is given up (and counted as failed).
    pub attempts_max: u32,
    /// The delay between attempts of one notification.
    pub backoff: BackoffPolicy,
    /// After `failures_max` failed attempts in a row, nothing is sent for `open_ms`; then one
    /// trial.
    pub breaker: BreakerPolicy,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        ReceiverSettings {
            name: String::new(),
            url: String::new(),
            timeout_ms: 5_000,
            queue_max: 1_024,
            attempts_max: 10,
            backoff: BackoffPolicy {
                base_ms: 500,
                factor_percent: 200,
                max_ms: 60_000,
                jitter: true,
            },
            breaker: BreakerPolicy { failures_max: 5, open_ms: 30_000 },
        }
    }
}

/// Where a webhook is: parsed from `url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    pub host: String,
    pub port: u16,
    /// Path and query, as sent in the request line.
    pub path: String,
    /// The `Host` header.
    pub authority: String,
}

impl ReceiverSettings {
    /// The webhook's address. Only `http://`: see docs/ADMIN.md for why not `https://` yet.
    pub fn target(&self) -> Result<WebhookTarget, String> {
        let uri: hyper::Uri = self.url.parse().map_err(|error| format!("not a URL ({error})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err("https:// is not supported: use http:// (for instance to a local relay that speaks TLS)".into())
            }
            _ => return Err("must start with http://".into()),
        }
        let authority = uri.authority().ok_or("names no host")?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        Ok(WebhookTarget {
            host: authority.host().trim_start_matches('[').trim_end_matches(']').to_string(),
            port: authority.port_u16().unwrap_or(80),
            path,
            authority: authority.as_str().to_string(),
        })
    }
}

/// Every problem with `[alerts]`: `(key, message)` each.
pub fn check_values(alerts: &AlertsSettings) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let interval = alerts.evaluation_interval_ms;
    if !(10..=3_600_000).contains(&interval) {
        found.push((
            "alerts.evaluation_interval_ms".to_string(),
            format!("alerts.evaluation_interval_ms = {interval} is out of range: must be in 10..=3600000"),
        ));
    }
    if let Err(error) = resolve_rules(&alerts.rules) {
        found.extend(error.0.into_iter().map(|problem| ("alerts.rules".to_string(), problem)));
    }
    for (index, receiver) in alerts.receivers.iter().enumerate() {
        let at = format!("alerts.receivers[{index}] (name = {:?})", receiver.name);
        let mut problem = |message: String| {
            found.push(("alerts.receivers".to_string(), format!("{at}: {message}")))
        };
        if receiver.name.is_empty() || receiver.name.len() > 128 {
            problem("name must be 1..=128 bytes".into());
        }
        if alerts.receivers[..index].iter().any(|other| other.name == receiver.name) {
            problem("another receiver has this name".into());
        }
        if let Err(error) = receiver.target() {
            problem(format!("url = {:?}: {error}", receiver.url));
        }
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("timeout_ms", receiver.timeout_ms.into(), 1, 600_000),
            ("queue_max", receiver.queue_max.into(), 1, 1 << 20),
            ("attempts_max", receiver.attempts_max.into(), 1, 1_000),
            ("breaker.failures_max", receiver.breaker.failures_max.into(), 1, 1_000),
            ("backoff.factor_percent", receiver.backoff.factor_percent.into(), 100, 1_000),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                problem(format!("{key} = {value} is out of range: must be in {min}..={max}"));
            }
        }
        if receiver.backoff.base_ms > receiver.backoff.max_ms {
            problem(format!(
                "backoff.base_ms = {} is above backoff.max_ms = {}",
                receiver.backoff.base_ms, receiver.backoff.max_ms
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(url: &str) -> ReceiverSettings {
        ReceiverSettings { name: "ops".into(), url: url.into(), ..ReceiverSettings::default() }
    }

    #[test]
    fn urls_are_read_into_targets() {
        let target = receiver("http://127.0.0.1:9093/hook?x=1").target().unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.path.as_str()),
            ("127.0.0.1", 9093, "/hook?x=1")
        );
        assert_eq!(target.authority, "127.0.0.1:9093");
        let bare = receiver("http://alerts.example").target().unwrap();
        assert_eq!((bare.port, bare.path.as_str()), (80, "/"));
        assert_eq!(receiver("http://[::1]:80/").target().unwrap().host, "::1");
    }

    /// `--print-config` prints rules and receivers so that they read back the same.
    #[test]
    fn rules_and_receivers_print_and_read_back() {
        let mut config = crate::config::ConfigFile::default();
        config.alerts.rules.push(RuleSetting {
            name: "queue_depth_high".into(),
            threshold: Some(5),
            ..RuleSetting::default()
        });
        config.alerts.receivers.push(receiver("http://127.0.0.1:9/"));
        let text = crate::config::print::render(&config);
        let read: crate::config::ConfigFile = toml::from_str(&text).unwrap();
        assert_eq!(read, config, "{text}");
    }

    /// Each bad setting is refused, naming the receiver or rule and what is wrong.
    #[test]
    fn bad_settings_are_refused_specifically() {
        let cases = [
            (receiver("https://x/"), "https:// is not supported"),
            (receiver("ftp://x/"), "must start with http://"),
            (receiver("not a url"), "not a URL"),
            (
                ReceiverSettings { timeout_ms: 0, ..receiver("http://x/") },
                "timeout_ms = 0 is out of range",
            ),
            (
                ReceiverSettings { queue_max: 0, ..receiver("http://x/") },
                "queue_max = 0 is out of range",
            ),
            (ReceiverSettings { name: String::new(), ..receiver("http://x/") }, "name must be"),
        ];
        for (bad, expected) in cases {
            let settings =
                AlertsSettings { receivers: vec![bad.clone()], ..AlertsSettings::default() };
            let problems = check_values(&settings);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].0, "alerts.receivers");
            assert!(problems[0].1.contains(expected), "{bad:?}: {problems:?}");
        }
        let twice = AlertsSettings {
            receivers: vec![receiver("http://x/"), receiver("http://y/")],
            ..AlertsSettings::default()
        };
        assert!(check_values(&twice)[0].1.contains("another receiver has this name"));
        let slow = AlertsSettings { evaluation_interval_ms: 5, ..AlertsSettings::default() };
        assert!(check_values(&slow)[0].1.contains("out of range"));
        let rule = RuleSetting { name: "nope".into(), ..RuleSetting::default() };
        let unknown = AlertsSettings { rules: vec![rule], ..AlertsSettings::default() };
        assert_eq!(check_values(&unknown)[0].0, "alerts.rules");
    }
}
