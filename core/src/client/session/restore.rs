//! What a session puts back on every new connection: the queues it declared, the bindings it
//! made, and its subscriptions (with the credit they had).

use std::collections::{BTreeMap, BTreeSet};

use chute_protocol::QueueOptions;

use super::requests::RequestSpec;
use crate::client::{Client, CommandError, Response, SubscriptionOptions};

/// Queues and bindings the application declared and the server accepted.
#[derive(Debug, Default)]
pub struct Topology {
    queues: BTreeMap<String, QueueOptions>,
    bindings: BTreeSet<(String, String)>,
}

impl Topology {
    /// Records what an answered request changed.
    pub fn answered(&mut self, spec: &RequestSpec, response: &Response) {
        if matches!(response, Response::Failed(_)) {
            return;
        }
        match spec {
            RequestSpec::Declare { name, options, passive: false } => {
                self.queues.insert(name.clone(), options.clone());
            }
            RequestSpec::Delete { name, .. } => {
                self.queues.remove(name);
                self.bindings.retain(|(queue, _)| queue != name);
            }
            RequestSpec::Bind { queue, pattern } => {
                self.bindings.insert((queue.clone(), pattern.clone()));
            }
            RequestSpec::Unbind { queue, pattern } => {
                self.bindings.remove(&(queue.clone(), pattern.clone()));
            }
            _ => {}
        }
    }

    /// A queue or binding the server no longer takes is not declared again.
    pub fn forget(&mut self, spec: &RequestSpec) {
        match spec {
            RequestSpec::Declare { name, .. } => {
                self.queues.remove(name);
            }
            RequestSpec::Bind { queue, pattern } => {
                self.bindings.remove(&(queue.clone(), pattern.clone()));
            }
            _ => {}
        }
    }

    /// The declarations (same options: idempotent) and then the bindings, to send again.
    pub fn restore_specs(&self) -> Vec<RequestSpec> {
        let queues = self.queues.iter().map(|(name, options)| RequestSpec::Declare {
            name: name.clone(),
            options: options.clone(),
            passive: false,
        });
        let bindings = self.bindings.iter().map(|(queue, pattern)| RequestSpec::Bind {
            queue: queue.clone(),
            pattern: pattern.clone(),
        });
        queues.chain(bindings).collect()
    }
}

#[derive(Debug)]
struct Subscription {
    queue: String,
    options: SubscriptionOptions,
    /// Its id on the current connection, once subscribed there.
    wire: Option<u32>,
    /// Without automatic credit: deliveries the server may still send (credit granted, less
    /// deliveries made), which a new connection grants again.
    credit_unused: u64,
}

/// The session's subscriptions, by the session's ids (stable over reconnects; each connection
/// numbers its own).
#[derive(Debug, Default)]
pub struct Subscriptions {
    specs: BTreeMap<u32, Subscription>,
    by_wire: BTreeMap<u32, u32>,
    last_id: u32,
}

impl Subscriptions {
    pub fn add(&mut self, queue: &str, options: SubscriptionOptions) -> u32 {
        self.last_id += 1;
        let credit_unused = u64::from(options.credit);
        let subscription =
            Subscription { queue: queue.to_string(), options, wire: None, credit_unused };
        self.specs.insert(self.last_id, subscription);
        self.last_id
    }

    pub fn ids(&self) -> Vec<u32> {
        self.specs.keys().copied().collect()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.specs.contains_key(&id)
    }

    /// Subscribes on `client` with the credit the subscription has: all of it with automatic
    /// credit (nothing is unsettled on a new connection), else what was unused.
    pub fn send(&mut self, id: u32, client: &mut Client) -> Result<u32, CommandError> {
        let spec = self.specs.get_mut(&id).ok_or(CommandError::UnknownSubscription(id))?;
        let credit = if spec.options.auto_credit {
            spec.options.credit
        } else {
            u32::try_from(spec.credit_unused).unwrap_or(u32::MAX)
        };
        let options = SubscriptionOptions { credit, ..spec.options };
        let (request, wire) = client.subscribe_with(&spec.queue, options)?;
        if let Some(old) = spec.wire.replace(wire) {
            self.by_wire.remove(&old);
        }
        self.by_wire.insert(wire, id);
        Ok(request)
    }

    pub fn remove(&mut self, id: u32) -> bool {
        let Some(spec) = self.specs.remove(&id) else { return false };
        if let Some(wire) = spec.wire {
            self.by_wire.remove(&wire);
        }
        true
    }

    /// The subscription's id on the current connection.
    pub fn wire(&self, id: u32) -> Option<u32> {
        self.specs.get(&id)?.wire
    }

    /// The session's id of a subscription of the current connection.
    pub fn by_wire(&self, wire: u32) -> Option<u32> {
        self.by_wire.get(&wire).copied()
    }

    pub fn delivered(&mut self, id: u32, count: usize) {
        if let Some(spec) = self.specs.get_mut(&id) {
            spec.credit_unused = spec.credit_unused.saturating_sub(count as u64);
        }
    }

    pub fn granted(&mut self, id: u32, credit: u32) {
        if let Some(spec) = self.specs.get_mut(&id) {
            spec.credit_unused += u64::from(credit);
        }
    }

    /// The connection is gone: nothing is subscribed any more, and the deliveries it left
    /// unsettled (`unsettled`, by the connection's subscription ids) will come again, so
    /// their credit is owed again.
    pub fn connection_lost(&mut self, unsettled: &BTreeMap<u32, u32>) {
        for (wire, count) in unsettled {
            if let Some(id) = self.by_wire.get(wire).copied() {
                self.granted(id, *count);
            }
        }
        self.by_wire.clear();
        for spec in self.specs.values_mut() {
            spec.wire = None;
        }
    }

    pub fn clear(&mut self) {
        self.specs.clear();
        self.by_wire.clear();
    }
}
