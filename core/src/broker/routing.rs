//! Topics and bindings: a publish to a topic is copied to every queue bound with a pattern
//! that matches it.

use chute_protocol::{Binding, Done, ErrorCode, FrameKind};

use super::storage::SyncNeed;
use super::Broker;
use crate::ids::{ConnId, QueueId};
use crate::policy::topic::{check_pattern, matches};
use crate::storage::records::{BindingRecord, Record};

/// Every binding, kept sorted by (pattern, queue) so that routing and listing are
/// deterministic. Matching is linear in the number of bindings, which `bindings_max` bounds.
#[derive(Debug, Default)]
pub(crate) struct Bindings {
    list: Vec<(String, QueueId)>,
}

impl Bindings {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Adds a binding; false if it existed.
    pub fn add(&mut self, pattern: &str, queue: QueueId) -> bool {
        let key = (pattern.to_string(), queue);
        match self.list.binary_search(&key) {
            Ok(_) => false,
            Err(at) => {
                self.list.insert(at, key);
                debug_assert!(self.list.is_sorted(), "bindings out of order");
                true
            }
        }
    }

    /// Removes a binding; false if it did not exist.
    pub fn remove(&mut self, pattern: &str, queue: QueueId) -> bool {
        match self.list.binary_search(&(pattern.to_string(), queue)) {
            Ok(at) => {
                self.list.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn remove_queue(&mut self, queue: QueueId) {
        self.list.retain(|(_, q)| *q != queue);
    }

    /// The queues a topic routes to, each once, in id order.
    pub fn route(&self, topic: &str) -> Vec<QueueId> {
        let mut queues: Vec<QueueId> = self
            .list
            .iter()
            .filter(|(pattern, _)| matches(pattern, topic))
            .map(|(_, q)| *q)
            .collect();
        queues.sort_unstable();
        queues.dedup();
        debug_assert!(queues.windows(2).all(|pair| pair[0] < pair[1]), "a queue routed twice");
        queues
    }

    /// The patterns bound to a queue.
    pub fn for_queue(&self, queue: QueueId) -> Vec<String> {
        self.list.iter().filter(|(_, q)| *q == queue).map(|(p, _)| p.clone()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, QueueId)> {
        self.list.iter().map(|(p, q)| (p.as_str(), *q))
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
        if self.bindings.add(&binding.pattern, queue) {
            // An existing binding may be bound again at the limit; a new one may not.
            assert!(self.bindings.len() <= bindings_max, "bindings_max ({bindings_max}) exceeded");
            let record = BindingRecord { queue: queue.0, pattern: binding.pattern };
            self.append_record(&Record::<&[u8]>::Bound(record), SyncNeed::Now);
        }
        self.reply_durable(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }

    /// Unbinding what is not bound succeeds and changes nothing.
    pub(super) fn handle_unbind(&mut self, conn: ConnId, binding: Binding) {
        let request_id = binding.request_id;
        let Some(queue) = self.lookup_queue(conn, request_id, &binding.queue) else { return };
        if self.bindings.remove(&binding.pattern, queue) {
            let record = BindingRecord { queue: queue.0, pattern: binding.pattern };
            self.append_record(&Record::<&[u8]>::Unbound(record), SyncNeed::Now);
        }
        self.reply_durable(conn, FrameKind::Done, &Done { request_id, count: 0 });
    }
}
