//! What the audit log records: who did what to which resource, from where, and whether it
//! was allowed. The broker emits these as `Output::Audit` when `BrokerConfig::audit` is on;
//! the driver adds the time and writes them (chute-server: one JSON object per line).
//! Never a payload, password, token or key.

use std::net::SocketAddr;

use crate::ids::ConnId;

/// Every kind of audited event; the label is the `event` field of the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    ConnectionAccepted,
    ConnectionClosed,
    AuthenticationSucceeded,
    AuthenticationFailed,
    PermissionDenied,
    QueueDeclared,
    QueueAltered,
    QueueDeleted,
    QueuePurged,
    Bound,
    Unbound,
    Redriven,
    ConfigReloaded,
    UserAdded,
    UserChanged,
    UserRemoved,
    AdminRequest,
}

impl AuditKind {
    pub fn label(self) -> &'static str {
        match self {
            AuditKind::ConnectionAccepted => "connection-accepted",
            AuditKind::ConnectionClosed => "connection-closed",
            AuditKind::AuthenticationSucceeded => "authentication-succeeded",
            AuditKind::AuthenticationFailed => "authentication-failed",
            AuditKind::PermissionDenied => "permission-denied",
            AuditKind::QueueDeclared => "queue-declared",
            AuditKind::QueueAltered => "queue-altered",
            AuditKind::QueueDeleted => "queue-deleted",
            AuditKind::QueuePurged => "queue-purged",
            AuditKind::Bound => "bound",
            AuditKind::Unbound => "unbound",
            AuditKind::Redriven => "redriven",
            AuditKind::ConfigReloaded => "config-reloaded",
            AuditKind::UserAdded => "user-added",
            AuditKind::UserChanged => "user-changed",
            AuditKind::UserRemoved => "user-removed",
            AuditKind::AdminRequest => "admin-request",
        }
    }

    pub const ALL: [AuditKind; 17] = [
        AuditKind::ConnectionAccepted,
        AuditKind::ConnectionClosed,
        AuditKind::AuthenticationSucceeded,
        AuditKind::AuthenticationFailed,
        AuditKind::PermissionDenied,
        AuditKind::QueueDeclared,
        AuditKind::QueueAltered,
        AuditKind::QueueDeleted,
        AuditKind::QueuePurged,
        AuditKind::Bound,
        AuditKind::Unbound,
        AuditKind::Redriven,
        AuditKind::ConfigReloaded,
        AuditKind::UserAdded,
        AuditKind::UserChanged,
        AuditKind::UserRemoved,
        AuditKind::AdminRequest,
    ];
}

/// One audited event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub kind: AuditKind,
    /// The client connection it happened on, if any (operator actions have none).
    pub conn: Option<ConnId>,
    /// Who: the authenticated user, the name a failed login claimed, or none.
    pub user: Option<String>,
    pub peer: Option<SocketAddr>,
    /// What: a queue, `pattern -> queue` for bindings, a user, a config key, an API path.
    pub resource: Option<String>,
    /// `ok`, `denied` or `failed`.
    pub outcome: AuditOutcome,
    /// How or why, for people: a mechanism, the access refused, a close reason. Never a secret.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    Ok,
    Denied,
    Failed,
}

impl AuditOutcome {
    pub fn label(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
}
