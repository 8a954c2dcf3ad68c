//! The configuration file's schema (`chuted --config FILE`, docs/CONFIG.md): the server's own
//! settings beside the core's limits, timeouts and storage settings, which are the core's serde
//! structs themselves so that a key means the same everywhere.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use chute_core::auth::AuthConfig;
use chute_core::policy::alarm::AlarmConfig;
use chute_core::storage::log::StorageConfig;
use chute_core::{BrokerConfig, BrokerLimits, TimeoutConfig};
use serde::{Deserialize, Serialize};

pub use super::alerts::AlertsSettings;
pub use super::tls::TlsSettings;

/// The schema version this server reads. A file without `version` is read as this one.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole configuration: what the file holds, and what the layers above it add.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub version: u32,
    pub server: ServerSettings,
    pub log: LogSettings,
    pub limits: BrokerLimits,
    pub timeouts: TimeoutConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub audit: AuditSettings,
    pub tls: TlsSettings,
    pub alarms: AlarmConfig,
    pub alerts: AlertsSettings,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            version: SCHEMA_VERSION,
            server: ServerSettings::default(),
            log: LogSettings::default(),
            limits: BrokerLimits::default(),
            timeouts: TimeoutConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            audit: AuditSettings::default(),
            tls: TlsSettings::default(),
            alarms: AlarmConfig::default(),
            alerts: AlertsSettings::default(),
        }
    }
}

impl ConfigFile {
    /// What the broker core is given. `seed` and `epoch_unix_ms` are the driver's to set.
    pub fn broker_config(&self) -> BrokerConfig {
        BrokerConfig {
            server_name: self.server.server_name.clone(),
            limits: self.limits.clone(),
            timeouts: self.timeouts.clone(),
            storage: self.storage.clone(),
            auth: self.auth.clone(),
            alarms: self.alarms.clone(),
            audit: self.audit.file.is_some(),
            ..BrokerConfig::default()
        }
    }
}

/// `[server]`: where the server listens and keeps its data, and how it stops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address for the client protocol, or `off` (a TLS-only server: `tls.listen`).
    pub listen: Listen,
    /// Address for the admin HTTP endpoint, or `off`.
    pub admin_listen: AdminListen,
    /// Directory for the message log and its lock file.
    pub data_dir: PathBuf,
    /// How long a graceful stop waits for clients to receive what was sent to them.
    pub shutdown_timeout_ms: u64,
    /// Lame duck (SIGUSR2): how long clients are given to move away before the stop.
    pub drain_window_ms: u32,
    /// The least time between two returns of free heap memory to the system, which happen
    /// after many connections closed (docs/BENCHMARKS.md, "Connection churn soak"); 0: never.
    pub memory_trim_interval_ms: u32,
    /// Shown to clients in `HelloOk`.
    pub server_name: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: Listen::At(SocketAddr::from(([127, 0, 0, 1], 4770))),
            admin_listen: Listen::At(SocketAddr::from(([127, 0, 0, 1], 4771))),
            data_dir: PathBuf::from("./chute-data"),
            shutdown_timeout_ms: 10_000,
            drain_window_ms: 30_000,
            memory_trim_interval_ms: 10_000,
            server_name: BrokerConfig::default().server_name,
        }
    }
}

/// `[audit]`: the audit log (docs/SECURITY.md lists its events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// JSON-lines file the audit events are appended to; unset: no audit log.
    pub file: Option<PathBuf>,
    /// Events waiting for the writer; past this, `when_full` decides.
    pub queue_max: u32,
    pub when_full: WhenFull,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { file: None, queue_max: 65_536, when_full: WhenFull::Block }
    }
}

/// What happens to an audit event that finds the writer's queue full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    /// Stop reading client requests until the writer catches up: nothing goes unrecorded.
    #[default]
    Block,
    /// Drop the event and count it (`chute_audit_dropped_total`): serving never waits.
    DropAndCount,
}

/// `[log]`: what is logged, and how it is written (to stderr).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter: a level (`info`) or directives (`info,chute_server=debug`).
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".to_string(), format: LogFormat::Text }
    }
}

/// How each log line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where a listener listens (`server.listen`, `server.admin_listen`, `tls.listen`): an
/// address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Listen {
    Off,
    At(SocketAddr),
}

/// The value of `server.admin_listen` (`--admin-listen`), by its older name.
pub type AdminListen = Listen;

impl FromStr for Listen {
    type Err = String;

    fn from_str(value: &str) -> Result<Listen, String> {
        if value == "off" {
            return Ok(Listen::Off);
        }
        value.parse().map(Listen::At).map_err(|err| format!("{err} (expected ADDR:PORT or off)"))
    }
}

impl TryFrom<String> for Listen {
    type Error = String;

    fn try_from(value: String) -> Result<Listen, String> {
        value.parse()
    }
}

impl From<Listen> for String {
    fn from(listen: Listen) -> String {
        listen.to_string()
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::At(addr) => addr.fmt(f),
        }
    }
}

impl From<Listen> for Option<SocketAddr> {
    fn from(listen: Listen) -> Option<SocketAddr> {
        match listen {
            Listen::Off => None,
            Listen::At(addr) => Some(addr),
        }
    }
}

/// A setting that must never be shown: it reads like `T`, and prints (`--print-config`, the
/// reload log) as `"<redacted>"`. No setting is secret yet (TLS keys are read from files whose
/// paths are not secret); passwords will be.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(pub T);

/// What a [`Secret`] prints as.
pub const REDACTED: &str = "<redacted>";

impl<T> Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults are today's: the README's `cargo run --bin chuted` serves as it did.
    #[test]
    fn defaults_match_the_documented_ones() {
        let config = ConfigFile::default();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:4770");
        assert_eq!(config.server.admin_listen.to_string(), "127.0.0.1:4771");
        assert_eq!(config.server.data_dir, PathBuf::from("./chute-data"));
        assert_eq!(config.server.shutdown_timeout_ms, 10_000);
        assert_eq!(config.server.drain_window_ms, 30_000);
        assert_eq!(config.log.level, "info");
        let broker = config.broker_config();
        assert_eq!(broker, BrokerConfig::default());
    }

    #[test]
    fn listen_reads_and_prints_off_and_addresses() {
        for text in ["off", "127.0.0.1:0", "[::1]:4771"] {
            assert_eq!(text.parse::<Listen>().unwrap().to_string(), text);
        }
        let error = "nowhere".parse::<Listen>().unwrap_err();
        assert!(error.contains("expected ADDR:PORT or off"), "{error}");
    }

    /// A secret is read like its value and never printed, whichever way it is shown.
    #[test]
    fn a_secret_prints_redacted() {
        #[derive(Debug, Serialize, Deserialize)]
        struct WithSecret {
            user: String,
            password: Secret<String>,
        }
        let read: WithSecret = toml::from_str("user = 'ops'\npassword = 'hunter2'").unwrap();
        assert_eq!(read.password.0, "hunter2");
        let printed = toml::to_string(&read).unwrap();
        assert_eq!(printed, "user = \"ops\"\npassword = \"<redacted>\"\n");
        assert!(!format!("{read:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&read).unwrap().contains("hunter2"));
    }
}
