//! Topics and bindings: a publish to a topic is copied to every queue bound with a pattern
//! that matches it.

use chute_protocol::{Binding, Done, ErrorCode, FrameKind};

use super::storage::SyncNeed;
use super::Broker;
use crate::auth::{Access, AuditKind};
use crate::ids::{ConnId, QueueId};
use crate::policy::topic::{check_pattern, matches};
use crate::storage::records::{BindingRecord, OwnedBinding, Record};

/// Every binding, kept sorted by (pattern, queue) so that routing and listing are
/// deterministic. Matching is linear in the number of bindings, which `bindings_max` bounds.
#[derive(Debug, Default)]
pub(crate) struct Bindings {
    list: Vec<BoundQueue>,
}

#[derive(Debug)]
pub(crate) struct BoundQueue {
    pub pattern: String,
    pub queue: QueueId,
    /// Who bound it (`None`: made without authentication, or before it was on).
    pub owner: Option<String>,
    /// Routed to: its owner may still configure the queue. A topic publish reaches only
    /// queues whose binding owner could have bound them now, so a user who loses a
    /// permission cannot keep receiving through a binding made before.
    pub active: bool,
}

impl Bindings {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    fn find(&self, pattern: &str, queue: QueueId) -> Result<usize, usize> {
        self.list.binary_search_by(|b| (b.pattern.as_str(), b.queue).cmp(&(pattern, queue)))
    }

    /// Adds a binding; false if it existed (its owner stays the first binder).
    pub fn add(&mut self, pattern: &str, queue: QueueId, owner: Option<String>) -> bool {
        match self.find(pattern, queue) {
            Ok(_) => false,
            Err(at) => {
                let binding =
                    BoundQueue { pattern: pattern.to_string(), queue, owner, active: true };
                self.list.insert(at, binding);
                debug_assert!(
                    self.list.is_sorted_by(|a, b| (&a.pattern, a.queue) <= (&b.pattern, b.queue)),
                    "bindings out of order"
                );
                true
            }
        }
    }

    /// Removes a binding; false if it did not exist.
    pub fn remove(&mut self, pattern: &str, queue: QueueId) -> bool {
        match self.find(pattern, queue) {
            Ok(at) => {
                self.list.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn remove_queue(&mut self, queue: QueueId) {
        self.list.retain(|b| b.queue != queue);
    }

    /// The queues a topic routes to, each once, in id order.
    pub fn route(&self, topic: &str) -> Vec<QueueId> {
        let mut queues: Vec<QueueId> = self
            .list
            .iter()
            .filter(|b| b.active && matches(&b.pattern, topic))
            .map(|b| b.queue)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        debug_assert!(queues.windows(2).all(|pair| pair[0] < pair[1]), "a queue routed twice");
        queues
    }

    /// The patterns bound to a queue.
    pub fn for_queue(&self, queue: QueueId) -> Vec<String> {
        self.list.iter().filter(|b| b.queue == queue).map(|b| b.pattern.clone()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &BoundQueue> {
        self.list.iter()
    }

    /// Decides again which bindings are routed to: `may_configure(owner, queue)`.
    pub fn refresh(&mut self, mut may_configure: impl FnMut(&str, QueueId) -> bool) {
        for binding in &mut self.list {
            binding.active =
                binding.owner.as_deref().is_none_or(|o| may_configure(o, binding.queue));
        }
    }
}

impl Broker {
    /// Binds are idempotent: binding twice is one binding.
    pub(super) fn handle_bind(&mut self, conn: ConnId, binding: Binding) {
        let request_id = binding.request_id;
        let Some(queue) = self.lookup_queue(conn, request_id, &binding.queue) else { return };
        if let Err(error) = check_pattern(&binding.pattern) {
            return self.reply_error(
                conn,
                request_id,
                ErrorCode::INVALID_ARGUMENT,
                error.to_string(),
            );
        }
        let bindings_max = self.config.limits.bindings_max as usize;
        if self.bindings.len() >= bindings_max
            && !self.bindings.for_queue(queue).contains(&binding.pattern)
        {
            let message = format!("bindings_max ({bindings_max}) reached");
            return self.reply_error(conn, request_id, ErrorCode::RESOURCE_LIMIT, message);
        }
        let owner = self.user_name(conn);
        if self.bindings.add(&binding.pattern, queue, owner.clone()) {
            // An existing binding may be bound again at the limit; a new one may not.
            assert!(self.bindings.len() <= bindings_max, "bindings_max ({bindings_max}) exceeded");
            let resource = format!("{} -> {}", binding.pattern, binding.queue);
            self.audit_done(AuditKind::Bound, conn, resource);
            self.append_record(&bound_record(queue, binding.pattern, owner), SyncNeed::Now);
        }
        self.reply_durable(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }

    /// Unbinding what is not bound succeeds and changes nothing.
    pub(super) fn handle_unbind(&mut self, conn: ConnId, binding: Binding) {
        let request_id = binding.request_id;
        let Some(queue) = self.lookup_queue(conn, request_id, &binding.queue) else { return };
        if self.bindings.remove(&binding.pattern, queue) {
            let resource = format!("{} -> {}", binding.pattern, binding.queue);
            self.audit_done(AuditKind::Unbound, conn, resource);
            let record = BindingRecord { queue: queue.0, pattern: binding.pattern };
            self.append_record(&Record::<&[u8]>::Unbound(record), SyncNeed::Now);
        }
        self.reply_durable(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }
}

/// The record of a new binding: with its owner when there is one, so that recovery can still
/// tell whose it is (logs written before owners existed hold only `Bound`).
pub(super) fn bound_record(
    queue: QueueId,
    pattern: String,
    owner: Option<String>,
) -> Record<&'static [u8]> {
    match owner {
        Some(owner) => Record::BoundBy(OwnedBinding { queue: queue.0, pattern, owner }),
        None => Record::Bound(BindingRecord { queue: queue.0, pattern }),
    }
}

impl Broker {
    /// After the users changed: each binding is routed to only if its owner may still
    /// configure its queue (every binding, without users).
    pub(super) fn refresh_binding_owners(&mut self) {
        let users = self.auth.users().cloned();
        let queues = &self.queues;
        self.bindings.refresh(|owner, queue| {
            let Some(users) = &users else { return true };
            let name = &queues[&queue].name;
            users.get(owner).is_some_and(|user| user.permissions.allows(Access::Configure, name))
        });
    }
}
