//! Requests a session has not seen answered: kept with what is needed to send them again, so
//! a lost connection does not lose them. Those that change state (delete, purge, redrive) are
//! not sent twice: if the connection is lost under one, its outcome is unknown and reported
//! so. Every other request (declare, bind, list, stats, ...) is harmless to repeat.

use std::collections::{BTreeMap, VecDeque};

use chute_protocol::{QueueOptions, NAME_LEN_MAX, REDRIVE_IDS_MAX};

use super::config::Timeouts;
use super::events::{RequestError, SessionEvent, SessionOutput};
use super::restore::Subscriptions;
use crate::client::commands::check_len;
use crate::client::{Client, CommandError, Response};
use crate::time::Instant;

/// A request, with everything needed to send it on any connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestSpec {
    Declare {
        name: String,
        options: QueueOptions,
        passive: bool,
    },
    Delete {
        name: String,
        if_empty: bool,
        if_unused: bool,
    },
    Purge {
        name: String,
    },
    Bind {
        queue: String,
        pattern: String,
    },
    Unbind {
        queue: String,
        pattern: String,
    },
    List {
        after: Option<String>,
        limit: u32,
    },
    Stats {
        name: String,
    },
    DlqList {
        queue: String,
        after: Option<u64>,
        limit: u32,
    },
    DlqInspect {
        queue: String,
        dead_id: u64,
    },
    DlqRedrive {
        queue: String,
        dead_ids: Vec<u64>,
    },
    /// The session's subscription of that id, with its queue and options.
    Subscribe {
        subscription: u32,
    },
    /// The subscription's id on the current connection.
    Unsubscribe {
        wire_subscription: u32,
    },
}

impl RequestSpec {
    /// The checks the connection would make, made while there may be no connection.
    pub fn check(&self) -> Result<(), CommandError> {
        match self {
            RequestSpec::Declare { name, .. }
            | RequestSpec::Delete { name, .. }
            | RequestSpec::Purge { name }
            | RequestSpec::Stats { name } => check_len("queue name", name, NAME_LEN_MAX),
            RequestSpec::Bind { queue, pattern } | RequestSpec::Unbind { queue, pattern } => {
                check_len("queue name", queue, NAME_LEN_MAX)?;
                check_len("pattern", pattern, NAME_LEN_MAX)
            }
            RequestSpec::DlqList { queue, .. } | RequestSpec::DlqInspect { queue, .. } => {
                check_len("queue name", queue, NAME_LEN_MAX)
            }
            RequestSpec::DlqRedrive { queue, dead_ids } => {
                check_len("queue name", queue, NAME_LEN_MAX)?;
                if dead_ids.len() > REDRIVE_IDS_MAX {
                    let (len, max) = (dead_ids.len(), REDRIVE_IDS_MAX);
                    return Err(CommandError::TooLong { what: "dead_ids", len, max });
                }
                Ok(())
            }
            RequestSpec::List { .. }
            | RequestSpec::Subscribe { .. }
            | RequestSpec::Unsubscribe { .. } => Ok(()),
        }
    }

    /// Whether sending it twice may do something twice.
    fn changes_state(&self) -> bool {
        matches!(
            self,
            RequestSpec::Delete { .. } | RequestSpec::Purge { .. } | RequestSpec::DlqRedrive { .. }
        )
    }

    fn timeout_ms(&self, timeouts: &Timeouts) -> u64 {
        match self {
            RequestSpec::Declare { .. } => timeouts.declare_ms,
            _ => timeouts.request_ms,
        }
    }

    /// Sends it on `client`; returns the request id there.
    fn send(
        &self,
        client: &mut Client,
        subscriptions: &mut Subscriptions,
    ) -> Result<u32, CommandError> {
        match self.clone() {
            RequestSpec::Declare { name, options, passive } => {
                client.declare_queue(&name, options, passive)
            }
            RequestSpec::Delete { name, if_empty, if_unused } => {
                client.delete_queue(&name, if_empty, if_unused)
            }
            RequestSpec::Purge { name } => client.purge_queue(&name),
            RequestSpec::Bind { queue, pattern } => client.bind(&queue, &pattern),
            RequestSpec::Unbind { queue, pattern } => client.unbind(&queue, &pattern),
            RequestSpec::List { after, limit } => client.list_queues(after, limit),
            RequestSpec::Stats { name } => client.queue_stats(&name),
            RequestSpec::DlqList { queue, after, limit } => client.dlq_list(&queue, after, limit),
            RequestSpec::DlqInspect { queue, dead_id } => client.dlq_inspect(&queue, dead_id),
            RequestSpec::DlqRedrive { queue, dead_ids } => client.dlq_redrive(&queue, dead_ids),
            RequestSpec::Subscribe { subscription } => subscriptions.send(subscription, client),
            RequestSpec::Unsubscribe { wire_subscription } => client.unsubscribe(wire_subscription),
        }
    }
}

/// Who asked: the application, the session putting its state back after a reconnect, or the
/// session finding out whether a queue has a dedup window (a passive declaration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    App,
    Restore,
    Probe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RequestState {
    Unsent,
    RetryAt(Instant),
    NextConnection,
    /// Sent on the current connection with this request id.
    OnWire(u32),
}

#[derive(Debug)]
pub struct PendingRequest {
    pub spec: RequestSpec,
    pub origin: Origin,
    deadline: Instant,
    timeout_ms: u64,
    state: RequestState,
    /// Retriable refusals so far.
    pub refusals: u32,
}

impl PendingRequest {
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

#[derive(Debug, Default)]
pub struct Requests {
    pending: BTreeMap<u32, PendingRequest>,
    /// Request id on the current connection → the session's.
    by_wire: BTreeMap<u32, u32>,
    last_id: u32,
}

impl Requests {
    /// Takes a request; it waits for `send` or `send_waiting`. Returns its id.
    pub fn add(
        &mut self,
        spec: RequestSpec,
        origin: Origin,
        now: Instant,
        timeouts: &Timeouts,
    ) -> u32 {
        let timeout_ms = spec.timeout_ms(timeouts);
        loop {
            // 0 is not a request id; skip ids still waiting after a wrap.
            self.last_id = self.last_id.checked_add(1).unwrap_or(1);
            if !self.pending.contains_key(&self.last_id) {
                break;
            }
        }
        let deadline = now.plus_ms(timeout_ms);
        let state = RequestState::Unsent;
        let request = PendingRequest { spec, origin, deadline, timeout_ms, state, refusals: 0 };
        self.pending.insert(self.last_id, request);
        self.last_id
    }

    /// Sends request `id` on `client`. A refusal by the connection itself (it is closing)
    /// leaves it waiting for the next one.
    pub fn send(&mut self, id: u32, client: &mut Client, subscriptions: &mut Subscriptions) {
        let Some(request) = self.pending.get_mut(&id) else { return };
        if let Ok(wire) = request.spec.send(client, subscriptions) {
            request.state = RequestState::OnWire(wire);
            self.by_wire.insert(wire, id);
        }
    }

    /// Sends, in id order, every request waiting for a connection or for its retry.
    pub fn send_waiting(
        &mut self,
        now: Instant,
        client: &mut Client,
        subscriptions: &mut Subscriptions,
    ) {
        let due: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, request)| match request.state {
                RequestState::Unsent => true,
                RequestState::RetryAt(at) => at <= now,
                RequestState::NextConnection | RequestState::OnWire(_) => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.send(id, client, subscriptions);
        }
    }

    /// The request a connection's answer is for, taken out.
    pub fn answered(&mut self, wire: u32) -> Option<(u32, PendingRequest)> {
        let id = self.by_wire.remove(&wire)?;
        let request = self.pending.remove(&id)?;
        Some((id, request))
    }

    /// Forgets a request answered without the server.
    pub fn remove(&mut self, id: u32) {
        self.pending.remove(&id);
    }

    /// Puts a refused request back, to be sent at `at` (on this connection) or on the next.
    pub fn retry(&mut self, id: u32, mut request: PendingRequest, at: Option<Instant>) {
        request.state = at.map_or(RequestState::NextConnection, RequestState::RetryAt);
        self.pending.insert(id, request);
    }

    /// Whether the application's own subscribe for this subscription is waiting: then the
    /// restore after a reconnect leaves it to that request.
    pub fn app_subscribe_waiting(&self, subscription: u32) -> bool {
        self.pending.values().any(|request| {
            request.origin == Origin::App && request.spec == RequestSpec::Subscribe { subscription }
        })
    }

    /// Requests sent on the current connection and unanswered.
    pub fn on_wire(&self) -> usize {
        self.by_wire.len()
    }

    /// The connection is gone. The session's own requests are dropped (the next restore, or
    /// publish, makes them again); the application's wait for the next connection, except those that change
    /// state, whose outcome is now unknown, and an unsubscribe, done by the loss itself.
    pub fn connection_lost(&mut self, outputs: &mut VecDeque<SessionOutput>) {
        self.by_wire.clear();
        let mut ended = Vec::new();
        for (id, request) in &mut self.pending {
            let sent = matches!(request.state, RequestState::OnWire(_));
            match (&request.origin, &request.spec) {
                (Origin::Restore | Origin::Probe, _) => ended.push((*id, None)),
                (Origin::App, RequestSpec::Unsubscribe { .. }) => {
                    let done = Response::Done { count: 0 };
                    ended.push((
                        *id,
                        Some(SessionEvent::Response { request_id: *id, response: done }),
                    ));
                }
                (Origin::App, spec) if sent && spec.changes_state() => {
                    let error = RequestError::UnknownOutcome;
                    ended.push((*id, Some(SessionEvent::RequestFailed { request_id: *id, error })));
                }
                (Origin::App, _) => {
                    if !matches!(request.state, RequestState::RetryAt(_)) {
                        request.state = RequestState::Unsent;
                    }
                }
            }
        }
        for (id, event) in ended {
            self.pending.remove(&id);
            if let Some(event) = event {
                outputs.push_back(SessionOutput::Event(event));
            }
        }
    }

    /// Fails the requests whose deadline passed; the session's own are dropped.
    pub fn expire(&mut self, now: Instant, outputs: &mut VecDeque<SessionOutput>) {
        let late: Vec<u32> =
            self.pending.iter().filter(|(_, r)| r.deadline <= now).map(|(id, _)| *id).collect();
        for id in late {
            let request = self.pending.remove(&id).expect("just found");
            if let RequestState::OnWire(wire) = request.state {
                self.by_wire.remove(&wire);
            }
            if request.origin == Origin::App {
                let error = RequestError::TimedOut { after_ms: request.timeout_ms };
                outputs.push_back(SessionOutput::Event(SessionEvent::RequestFailed {
                    request_id: id,
                    error,
                }));
            }
        }
    }

    /// The earliest deadline or due retry.
    pub fn next_timer(&self) -> Option<Instant> {
        self.pending
            .values()
            .map(|request| match request.state {
                RequestState::RetryAt(at) => at.min(request.deadline),
                _ => request.deadline,
            })
            .min()
    }

    /// Forgets everything (the session ended; the caller fails the waiters).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.by_wire.clear();
    }
}
