//! What a connection may do: each request is checked against its user's permissions before
//! anything else (so a refusal says nothing about whether the queue exists), and refused with
//! `not-authorized`; the connection stays open. Without users, everything is allowed.

use chute_protocol::{ErrorCode, Frame};

use super::errors::Denied;
use super::Broker;
use crate::auth::{Access, AuditKind, AuditOutcome, Permissions};
use crate::ids::ConnId;

impl Broker {
    /// Whether the connection may have `access` to `name`.
    pub(super) fn permits(&self, conn: ConnId, access: Access, name: &str) -> bool {
        self.user_permits(conn, |permissions| permissions.allows(access, name))
    }

    /// Whether the connection has any access to `name` (what a queue listing shows).
    pub(super) fn permits_any(&self, conn: ConnId, name: &str) -> bool {
        self.user_permits(conn, |permissions| permissions.allows_any(name))
    }

    /// `check` on the connection's user's permissions; without users, everything is allowed,
    /// and a connection with no user (not logged in) is allowed nothing.
    fn user_permits(&self, conn: ConnId, check: impl FnOnce(&Permissions) -> bool) -> bool {
        if self.auth.users().is_none() {
            return true;
        }
        let connection = self.connections.get(&conn).expect("connection exists");
        connection.user.as_ref().is_some_and(|user| check(&user.permissions))
    }

    /// [`permits`](Self::permits), refusals audited.
    pub(super) fn check_access(
        &mut self,
        conn: ConnId,
        access: Access,
        what: &'static str,
        name: &str,
    ) -> Result<(), Denied> {
        if self.permits(conn, access, name) {
            return Ok(());
        }
        self.auth.counters.denied += 1;
        let user = self.user_name(conn).unwrap_or_default();
        let denied = Denied { user: user.clone(), access, what, name: name.to_string() };
        let detail = format!("{} {what}", access.label());
        let resource = Some(name.to_string());
        self.audit(
            AuditKind::PermissionDenied,
            Some(conn),
            Some(user),
            resource,
            AuditOutcome::Denied,
            detail,
        );
        Err(denied)
    }

    /// Refuses a request the user may not make with `not-authorized`; true if it was refused.
    /// Publishes are checked where their sequence numbers are assigned, and listings filter.
    pub(super) fn refuse_unauthorized(&mut self, conn: ConnId, frame: &Frame) -> bool {
        let Some((request_id, checks)) = required_access(frame) else { return false };
        for (access, name) in checks {
            if let Err(denied) = self.check_access(conn, access, "queue", name) {
                self.reply_error(conn, request_id, ErrorCode::NOT_AUTHORIZED, denied.to_string());
                return true;
            }
        }
        false
    }
}

/// The permissions a request needs, with its `request_id`.
fn required_access(frame: &Frame) -> Option<(u32, Vec<(Access, &str)>)> {
    use Access::{Configure, Read};
    Some(match frame {
        Frame::QueueDeclare(declare) => {
            let mut checks = vec![(Configure, declare.name.as_str())];
            // Declaring names a dead-letter queue that is created if missing.
            if let Some(dead_letter) = &declare.options.dead_letter {
                checks.push((Configure, dead_letter.as_str()));
            }
            (declare.request_id, checks)
        }
        Frame::QueueDelete(delete) => (delete.request_id, vec![(Configure, &delete.name)]),
        Frame::QueuePurge(purge) => (purge.request_id, vec![(Configure, &purge.name)]),
        Frame::Bind(binding) | Frame::Unbind(binding) => {
            (binding.request_id, vec![(Configure, &binding.queue)])
        }
        Frame::DlqRedrive(redrive) => (redrive.request_id, vec![(Configure, &redrive.queue)]),
        Frame::QueueStats(request) => (request.request_id, vec![(Read, &request.name)]),
        Frame::Subscribe(subscribe) => (subscribe.request_id, vec![(Read, &subscribe.queue)]),
        Frame::DlqList(list) => (list.request_id, vec![(Read, &list.queue)]),
        Frame::DlqInspect(inspect) => (inspect.request_id, vec![(Read, &inspect.queue)]),
        _ => return None,
    })
}
