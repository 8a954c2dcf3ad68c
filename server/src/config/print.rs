//! `chuted --print-config`: the effective configuration as a TOML file, every key with its
//! value (defaults included), so what an operator runs is what they can read. Secrets print as
//! `"<redacted>"` (see [`super::file::Secret`]).

use super::file::ConfigFile;
use super::layers::schema_keys;

/// The configuration as TOML that reads back as the same configuration. Settings unset by
/// default (TOML has no null: no limit, no file) are listed in a comment at the end.
pub fn render(config: &ConfigFile) -> String {
    let mut text = toml::to_string(config).expect("the configuration serializes as TOML");
    let unset: Vec<String> = unset_keys(config);
    if !unset.is_empty() {
        text.push_str(&format!("\n# Unset: {}\n", unset.join(", ")));
    }
    text
}

/// Keys whose value is `None`, as `table.key`.
fn unset_keys(config: &ConfigFile) -> Vec<String> {
    let schema = schema_keys();
    let serde_json::Value::Object(top) = serde_json::to_value(config).expect("serializes") else {
        return Vec::new();
    };
    schema
        .keys()
        .flat_map(|section| {
            let keys = top.get(section).and_then(|value| value.as_object()).cloned();
            keys.into_iter()
                .flatten()
                .filter(|(_, value)| value.is_null())
                .map(move |(key, _)| format!("{section}.{key}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chute_protocol::{RateLimit, RateLimitPolicy};

    use super::*;

    /// What is printed reads back as the same configuration, and names every table.
    #[test]
    fn the_printed_config_reads_back_the_same() {
        let mut config = ConfigFile::default();
        config.limits.connections_max = 17;
        config.limits.publish_rate =
            Some(RateLimit { per_second: 10, burst: 20, policy: RateLimitPolicy::Reject });
        let text = render(&config);
        let read: ConfigFile = toml::from_str(&text).unwrap();
        assert_eq!(read, config);
        for table in ["[server]", "[log]", "[limits]", "[timeouts]", "[storage]", "[tls]"] {
            assert!(text.contains(table), "{table} in\n{text}");
        }
        assert!(text.starts_with("version = 1\n"), "{text}");
        let unset = text.lines().find(|l| l.starts_with("# Unset: ")).expect("an unset line");
        assert!(unset.contains("limits.connection_publish_rate"), "{text}");
        assert!(!unset.contains("limits.publish_rate"), "{text}");
        assert!(unset.contains("auth.users_file") && unset.contains("audit.file"), "{text}");
        assert!(unset.contains("tls.cert_file"), "{text}");
        let defaults = render(&ConfigFile::default());
        assert!(defaults.contains("listen = \"127.0.0.1:4770\""), "{defaults}");
        assert!(
            defaults.contains("limits.connection_publish_rate, limits.publish_rate"),
            "{defaults}"
        );
    }
}
