//! Audit events from the broker: built only when the audit log is on, so that serving
//! without one costs nothing.

use chute_protocol::ErrorCode;

use super::Broker;
use crate::auth::{AuditEvent, AuditKind, AuditOutcome};
use crate::ids::ConnId;
use crate::io::Output;

impl Broker {
    /// Emits an audit event about `conn` (its peer is filled in) if the audit log is on.
    pub(super) fn audit(
        &mut self,
        kind: AuditKind,
        conn: Option<ConnId>,
        user: Option<String>,
        resource: Option<String>,
        outcome: AuditOutcome,
        detail: String,
    ) {
        if !self.config.audit {
            return;
        }
        let peer = conn.and_then(|conn| self.connections.get(&conn)?.peer.addr);
        let event = AuditEvent { kind, conn, user, peer, resource, outcome, detail };
        self.outputs.push_back(Output::Audit(event));
    }

    /// A connection ends: who it was, and why.
    pub(super) fn audit_closed(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        if self.config.audit {
            let user = self.user_name(conn);
            let detail = format!("{}: {message}", code.label().unwrap_or("unknown"));
            self.audit(
                AuditKind::ConnectionClosed,
                Some(conn),
                user,
                None,
                AuditOutcome::Ok,
                detail,
            );
        }
    }

    /// The name of the user on `conn`, for its audit events.
    pub(super) fn user_name(&self, conn: ConnId) -> Option<String> {
        Some(self.connections.get(&conn)?.user.as_ref()?.name.clone())
    }

    /// Audits an operation a client carried out on `resource`.
    pub(super) fn audit_done(&mut self, kind: AuditKind, conn: ConnId, resource: String) {
        if self.config.audit {
            let user = self.user_name(conn);
            self.audit(kind, Some(conn), user, Some(resource), AuditOutcome::Ok, String::new());
        }
    }
}
