//! Who a client is, and what it may do, decided without I/O so that every server, the
//! simulator and the property tests share one implementation.
//!
//! - [`users`]: the users table (SCRAM keys, hashed tokens, permissions) a driver builds from
//!   its users file and hands to [`Broker::set_users`](crate::Broker::set_users).
//! - [`scram`]: SCRAM-SHA-256, both sides.
//! - [`permissions`] and [`pattern`]: RabbitMQ's configure/write/read on name globs.
//! - [`failed_logins`]: the per-source budget of failed logins.
//! - [`audit`]: the events of the audit log.
//!
//! How a connection authenticates (PROTOCOL.md §5.3, §5.8), once the broker has users:
//!
//! | `Hello` credentials | the connection                       | result                                    |
//! |---------------------|--------------------------------------|-------------------------------------------|
//! | `Password`          | TLS                                  | the user, if the password is theirs        |
//! | `Password`          | not TLS                              | refused: a password is never sent in clear |
//! | `Token`             | TLS                                  | the token's user                           |
//! | `Token`             | not TLS                              | refused, as a password                     |
//! | `Anonymous`         | a client certificate mapped to a user | that user (EXTERNAL)                       |
//! | `Anonymous`         | version 2                            | `AuthRequired`: SCRAM-SHA-256, and ANONYMOUS (the user `anonymous_user`) with `allow_anonymous` |
//! | `Anonymous`         | version 1, `allow_anonymous`         | the user `anonymous_user` (no rights unless the file gives it some) |
//! | `Anonymous`         | version 1                            | refused                                   |
//!
//! In version 2, a password or token checked in `Hello` is confirmed by `AuthOk` (empty data)
//! before `HelloOk`, so that a client holding a secret can tell it was checked.
//!
//! Without users (`set_users(None)`: no users file), nothing is checked and every client may
//! do everything: the server allows that only on a loopback listener or with
//! `allow_anonymous` set explicitly.

pub mod audit;
pub mod failed_logins;
pub mod pattern;
pub mod permissions;
pub mod scram;
pub mod users;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use audit::{AuditEvent, AuditKind, AuditOutcome};
pub use permissions::{Access, PermissionRules, Permissions};
pub use users::{TokenHash, User, Users, UsersError};

/// The mechanism a client certificate stands for.
pub const EXTERNAL: &str = "EXTERNAL";

/// The mechanism of a client without credentials (RFC 4505), offered in `AuthRequired` when
/// anonymous clients are allowed.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// `[auth]`: how clients prove who they are, and what failed attempts cost them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The users file (TOML): users, credentials, permissions. Read by the driver, which
    /// hands the table to the broker; unset means no authentication.
    pub users_file: Option<PathBuf>,
    /// Let clients without credentials in, as `anonymous_user`. Required to serve without a
    /// users file on a listener that is not loopback.
    pub allow_anonymous: bool,
    /// The user anonymous clients are, for their permissions (none unless the users file
    /// defines this user).
    pub anonymous_user: String,
    /// A failed login is answered this long after it failed, whatever failed, so that a
    /// client learns nothing from the timing and guessing is slow.
    pub failure_delay_ms: u32,
    /// Failed logins one source address (an IPv6 /64) may make at once ...
    pub failed_logins_burst: u32,
    /// ... and then one more each this often. Past that, its connections are refused before
    /// their credentials are read.
    pub failed_login_refill_ms: u32,
    /// Sources whose failures are remembered; the least suspicious is forgotten first.
    pub failure_sources_max: u32,
    /// Who may read the admin endpoint's `/healthz`, `/readyz` and `/metrics` without
    /// credentials, once there are users (the API always needs an admin).
    pub open_probes: OpenProbes,
}

/// Who the admin endpoint's probes are open to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpenProbes {
    /// Anyone (an orchestrator's probes come from the node, not from loopback).
    Everyone,
    /// Requests from this host only.
    #[default]
    Loopback,
    /// Nobody: probes need an admin's credentials too.
    Nobody,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users_file: None,
            allow_anonymous: false,
            anonymous_user: "anonymous".to_string(),
            failure_delay_ms: 1_000,
            failed_logins_burst: 10,
            failed_login_refill_ms: 6_000,
            failure_sources_max: 10_000,
            open_probes: OpenProbes::Loopback,
        }
    }
}
