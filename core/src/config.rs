//! The broker's configuration model and its validation. The server parses TOML, environment
//! and flags into this model; the core checks it, so every driver gets the same rules.

use serde::{Deserialize, Serialize};

use chute_protocol::{
    RateLimit, FRAME_HEADER_LEN, FRAME_SIZE_CEILING, FRAME_SIZE_MAX_DEFAULT, PUBLISH_BATCH_MAX,
};

use crate::auth::AuthConfig;
use crate::policy::alarm::AlarmConfig;
use crate::storage::log::StorageConfig;
use crate::storage::seal::Keyring;
use crate::time::WallClock;

/// Every resource limit the broker enforces. Each is named, has a default, and is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerLimits {
    /// Largest frame body accepted from a client, and announced to it.
    pub frame_size_max: u32,
    /// Largest message payload.
    pub payload_size_max: u32,
    /// Most messages in one `Publish` frame.
    pub publish_batch_max: u32,
    /// Publishes held unconfirmed for one connection before the broker stops reading from it.
    pub unconfirmed_max: u32,
    /// Most credit one subscription may hold.
    pub credit_max: u32,
    /// Subscriptions on one connection.
    pub subscriptions_per_connection_max: u32,
    /// Open connections; further connections are refused with `resource-limit`.
    pub connections_max: u32,
    /// Queues on the broker.
    pub queues_max: u32,
    /// Messages held by one queue when its own `messages_max` is unset.
    pub queue_messages_max: u64,
    /// Bytes queued for one connection but not yet written to its socket. Above this the
    /// broker queues no more deliveries for it, and at this plus `frame_size_max` it stops
    /// reading from it (so a client that does not read its answers cannot make it queue more).
    pub connection_outbound_bytes_max: u64,
    /// Topic bindings on the broker; routing a topic publish is linear in them.
    pub bindings_max: u32,
    /// Ids one queue's dedup window remembers; past this the oldest are forgotten early.
    pub dedup_entries_max: u32,
    /// Bytes of partly received frames the broker holds for all connections together. Past
    /// it, connections in the middle of a large frame are not read until it falls, so slow
    /// senders cannot make the broker hold `connections_max × frame_size_max`.
    pub partial_frames_bytes_max: u64,
    /// Broker-wide publish rate limit (messages per second across every connection).
    pub publish_rate: Option<RateLimit>,
    /// Publish rate limit each connection gets.
    pub connection_publish_rate: Option<RateLimit>,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            frame_size_max: FRAME_SIZE_MAX_DEFAULT,
            payload_size_max: 1024 * 1024,
            publish_batch_max: 1024,
            unconfirmed_max: 16 * 1024,
            credit_max: 65_536,
            subscriptions_per_connection_max: 1024,
            connections_max: 10_000,
            queues_max: 10_000,
            queue_messages_max: 10_000_000,
            connection_outbound_bytes_max: 8 * 1024 * 1024,
            bindings_max: 10_000,
            dedup_entries_max: 1_000_000,
            partial_frames_bytes_max: 256 * 1024 * 1024,
            publish_rate: None,
            connection_publish_rate: None,
        }
    }
}

/// Connection timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// Heartbeat interval offered to clients that do not ask for one.
    pub heartbeat_ms: u32,
    /// The range a client's requested interval is clamped to.
    pub heartbeat_ms_min: u32,
    pub heartbeat_ms_max: u32,
    /// A connection that has not completed `Hello` by then is closed.
    pub handshake_timeout_ms: u32,
    /// A frame whose first bytes arrived must be complete within this long, or the connection
    /// is closed with `slow-frame` (time the broker itself was not reading does not count).
    pub frame_timeout_ms: u32,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            heartbeat_ms: 5_000,
            heartbeat_ms_min: 100,
            heartbeat_ms_max: 300_000,
            handshake_timeout_ms: 10_000,
            frame_timeout_ms: 30_000,
        }
    }
}

/// Everything the broker core needs to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Shown to clients in `HelloOk`.
    pub server_name: String,
    /// Seeds the jitter PRNG; same seed and inputs, same outputs.
    pub seed: u64,
    /// Unix time in ms at the core's `Instant::ZERO`; the driver sets it at startup.
    pub epoch_unix_ms: u64,
    pub limits: BrokerLimits,
    pub timeouts: TimeoutConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    /// Memory and disk alarms, which stop reading publishes.
    pub alarms: AlarmConfig,
    /// Emit `Output::Audit` events (the driver writes the audit log).
    pub audit: bool,
    /// Keys for encryption at rest, read by the driver from `storage.encryption`: the current
    /// one seals new segments, all of them open old ones. Fixed for the broker's life (a reload
    /// keeps it), and never serialized.
    #[serde(skip)]
    pub keyring: Keyring,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            server_name: "chute".to_string(),
            seed: 0,
            epoch_unix_ms: 0,
            limits: BrokerLimits::default(),
            timeouts: TimeoutConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            alarms: AlarmConfig::default(),
            audit: false,
            keyring: Keyring::default(),
        }
    }
}

/// A configuration value that cannot work. Names the key as written in the TOML file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{key} = {value} is out of range: {rule}")]
    OutOfRange { key: &'static str, value: u64, rule: String },
    #[error("{key} is not valid: {rule}")]
    BadValue { key: &'static str, rule: String },
}

impl ConfigError {
    /// The key as written in the file.
    pub fn key(&self) -> &'static str {
        match self {
            ConfigError::OutOfRange { key, .. } | ConfigError::BadValue { key, .. } => key,
        }
    }
}

impl BrokerConfig {
    pub fn wall_clock(&self) -> WallClock {
        WallClock { epoch_unix_ms: self.epoch_unix_ms }
    }

    /// Checks every value and every relation between values; the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_all().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem with the values and the relations between them, in a fixed order, so an
    /// operator can fix a whole file at once (`chuted --check-config`).
    pub fn validate_all(&self) -> Vec<ConfigError> {
        let l = &self.limits;
        let t = &self.timeouts;
        let s = &self.storage;
        // A single message must fit in a frame with room for its envelope.
        let payload_ceiling =
            u64::from(l.frame_size_max).saturating_sub(1024 + FRAME_HEADER_LEN as u64);
        let mut checks = vec![
            in_range(
                "limits.frame_size_max",
                l.frame_size_max.into(),
                4096,
                FRAME_SIZE_CEILING.into(),
            ),
            in_range("limits.payload_size_max", l.payload_size_max.into(), 1, payload_ceiling),
            in_range(
                "limits.publish_batch_max",
                l.publish_batch_max.into(),
                1,
                PUBLISH_BATCH_MAX as u64,
            ),
            in_range("limits.unconfirmed_max", l.unconfirmed_max.into(), 1, 1 << 24),
            in_range("limits.credit_max", l.credit_max.into(), 1, 1 << 24),
            in_range(
                "limits.subscriptions_per_connection_max",
                l.subscriptions_per_connection_max.into(),
                1,
                1 << 16,
            ),
            in_range("limits.connections_max", l.connections_max.into(), 1, 1 << 20),
            in_range("limits.queues_max", l.queues_max.into(), 1, 1 << 20),
            in_range("limits.queue_messages_max", l.queue_messages_max, 1, 1 << 40),
            in_range(
                "limits.connection_outbound_bytes_max",
                l.connection_outbound_bytes_max,
                u64::from(l.frame_size_max),
                1 << 34,
            ),
            in_range(
                "timeouts.heartbeat_ms_min",
                t.heartbeat_ms_min.into(),
                10,
                t.heartbeat_ms_max.into(),
            ),
            in_range(
                "timeouts.heartbeat_ms",
                t.heartbeat_ms.into(),
                t.heartbeat_ms_min.into(),
                t.heartbeat_ms_max.into(),
            ),
            in_range(
                "timeouts.heartbeat_ms_max",
                t.heartbeat_ms_max.into(),
                t.heartbeat_ms_min.into(),
                3_600_000,
            ),
            in_range("timeouts.handshake_timeout_ms", t.handshake_timeout_ms.into(), 10, 600_000),
            in_range("timeouts.frame_timeout_ms", t.frame_timeout_ms.into(), 10, 3_600_000),
            in_range(
                "limits.partial_frames_bytes_max",
                l.partial_frames_bytes_max,
                u64::from(l.frame_size_max),
                1 << 40,
            ),
            in_range("limits.bindings_max", l.bindings_max.into(), 1, 1 << 20),
            in_range("limits.dedup_entries_max", l.dedup_entries_max.into(), 1, 1 << 26),
        ];
        for (key, rate) in [
            ("limits.publish_rate", l.publish_rate),
            ("limits.connection_publish_rate", l.connection_publish_rate),
        ] {
            if let Some(rate) = rate {
                checks.push(in_range(key, rate.per_second.into(), 1, u32::MAX.into()));
                checks.push(in_range(key, rate.burst.into(), 1, u32::MAX.into()));
            }
        }
        // A segment may overrun this by one record, so any size works; tiny ones only waste.
        checks.push(in_range("storage.segment_bytes_max", s.segment_bytes_max, 64 * 1024, 1 << 40));
        checks.push(in_range(
            "storage.compact_live_percent",
            s.compact_live_percent.into(),
            0,
            100,
        ));
        checks.push(in_range(
            "storage.manifest_interval_ms",
            s.manifest_interval_ms.into(),
            0,
            3_600_000,
        ));
        checks.push(in_range("storage.payload_cache_bytes", s.payload_cache_bytes, 0, 1 << 50));
        checks.extend(auth_checks(&self.auth));
        if let Some(rule) = s.encryption.problem() {
            checks.push(Err(ConfigError::BadValue { key: "storage.encryption", rule }));
        }
        checks.extend(alarm_checks(&self.alarms));
        checks.into_iter().filter_map(Result::err).collect()
    }
}

fn auth_checks(a: &AuthConfig) -> Vec<Result<(), ConfigError>> {
    // A failure costs `refill_ms` tokens of a bucket holding `burst × refill_ms` (u32).
    let burst_ms = u64::from(a.failed_logins_burst) * u64::from(a.failed_login_refill_ms);
    let anonymous_user_ok = crate::auth::users::check_user_name(&a.anonymous_user);
    vec![
        in_range("auth.failure_delay_ms", a.failure_delay_ms.into(), 0, 60_000),
        in_range("auth.failed_logins_burst", a.failed_logins_burst.into(), 1, 1_000_000),
        in_range("auth.failed_login_refill_ms", a.failed_login_refill_ms.into(), 1, 86_400_000),
        in_range(
            "auth.failed_logins_burst × auth.failed_login_refill_ms",
            burst_ms,
            1,
            u32::MAX.into(),
        ),
        in_range("auth.failure_sources_max", a.failure_sources_max.into(), 1, 1 << 24),
        if anonymous_user_ok {
            Ok(())
        } else {
            Err(ConfigError::BadValue {
                key: "auth.anonymous_user",
                rule: "a user name: 1 to 255 printable ASCII characters, no spaces".into(),
            })
        },
    ]
}

fn alarm_checks(alarms: &AlarmConfig) -> Vec<Result<(), ConfigError>> {
    let fraction = alarms.memory_high_fraction.0;
    let fraction_check = if fraction > 0.0 && fraction <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::BadValue {
            key: "alarms.memory_high_fraction",
            rule: format!("{fraction} is not a fraction of memory: must be above 0 and at most 1"),
        })
    };
    vec![
        fraction_check,
        in_range("alarms.check_interval_ms", alarms.check_interval_ms.into(), 10, 600_000),
    ]
}

fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            key,
            value,
            rule: format!("must be in {min}..={max}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        BrokerConfig::default().validate().unwrap();
    }

    #[test]
    fn a_memory_fraction_outside_zero_to_one_is_refused() {
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let mut config = BrokerConfig::default();
            config.alarms.memory_high_fraction = crate::policy::alarm::Fraction(bad);
            let err = config.validate().unwrap_err();
            assert_eq!(err.key(), "alarms.memory_high_fraction", "{bad}: {err}");
        }
        let mut config = BrokerConfig::default();
        config.alarms.memory_high_fraction = crate::policy::alarm::Fraction(1.0);
        config.validate().unwrap();
    }

    /// The error names the key so an operator can find it in the file.
    #[test]
    fn out_of_range_names_the_key() {
        let mut config = BrokerConfig::default();
        config.limits.payload_size_max = config.limits.frame_size_max;
        let err = config.validate().unwrap_err();
        assert!(err.to_string().starts_with("limits.payload_size_max = "), "{err}");

        let mut config = BrokerConfig::default();
        config.timeouts.heartbeat_ms = 5;
        assert!(config.validate().unwrap_err().to_string().contains("timeouts.heartbeat_ms"));
    }

    /// `validate_all` reports every value out of range, not only the first, each naming its
    /// key; `validate` still stops at the first.
    #[test]
    fn validate_all_reports_every_problem() {
        let mut config = BrokerConfig::default();
        config.limits.connections_max = 0;
        config.timeouts.handshake_timeout_ms = 1;
        config.storage.compact_live_percent = 101;
        let keys: Vec<&str> = config.validate_all().into_iter().map(|error| error.key()).collect();
        assert_eq!(
            keys,
            [
                "limits.connections_max",
                "timeouts.handshake_timeout_ms",
                "storage.compact_live_percent"
            ]
        );
        let first = config.validate().unwrap_err().to_string();
        assert!(first.starts_with("limits.connections_max = 0 "), "{first}");
    }

    /// A frame limit too small for any payload is reported, with the payload limit it makes
    /// impossible, without an arithmetic overflow.
    #[test]
    fn a_tiny_frame_limit_is_reported_with_its_consequences() {
        let mut config = BrokerConfig::default();
        config.limits.frame_size_max = 16;
        let errors = config.validate_all();
        assert!(errors[0].to_string().starts_with("limits.frame_size_max = 16 "), "{errors:?}");
        assert!(errors[1].to_string().contains("must be in 1..=0"), "{errors:?}");
    }

    /// Unknown keys are errors, not silently ignored.
    #[test]
    fn unknown_fields_are_refused() {
        use serde::de::value::{Error, MapDeserializer};
        let pairs = vec![("frame_size_max", 8192u64), ("frame_size_mux", 1)];
        let result = BrokerLimits::deserialize(MapDeserializer::<_, Error>::new(pairs.into_iter()));
        assert!(result.unwrap_err().to_string().contains("frame_size_mux"));
    }
}
