//! The server's configuration: the schema ([`file`]), where settings come from and how they
//! layer ([`layers`]: defaults < file < `CHUTE_*` environment < flags), every problem with them
//! ([`check`]), `--print-config` ([`print`]), renamed keys ([`renamed`]) and reloads
//! ([`reload`]). docs/CONFIG.md documents every key.

pub mod alerts;
pub mod check;
pub mod file;
pub mod layers;
pub mod print;
pub mod reload;
pub mod renamed;
pub mod tls;

pub use check::{load, Loaded, Problem, Sources};
pub use file::{
    AdminListen, ConfigFile, Listen, LogFormat, LogSettings, ServerSettings, SCHEMA_VERSION,
};
pub use layers::FlagSetting;
pub use reload::{request_reload, ReloadCounters, ReloadError, ReloadOutcome, Reloader};
pub use tls::{ClientAuth, ClientIdentity, TlsSettings};
