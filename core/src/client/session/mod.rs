//! A session: the client above single connections. It owns what must survive a lost
//! connection, and reconnects by itself.
//!
//! A [`Client`] is one connection: when it ends, its unanswered publishes and requests have an
//! unknown outcome (PROTOCOL.md §5.6) and its subscriptions are gone. A [`Session`] drives one
//! `Client` at a time and, when a connection ends, opens the next (exponential backoff with
//! full jitter, over a list of addresses, moving early when the server says it is going away)
//! and puts its state back: the queues and bindings it declared, its subscriptions with their
//! credit, the requests still unanswered, and every unconfirmed publish, in order, with its
//! message id. Messages published without an id to a queue with a dedup window (§7.5) get one
//! (unless `generate_ids` is off), so a message enqueued before the loss is not enqueued
//! twice: exactly-once enqueue over reconnects. (Ids go only where a window may be; see
//! `SessionConfig::generate_ids`.)
//!
//! It also times every operation (connect, declare, request, publish confirm, publish
//! deadline), retries refusals that say "later" or "elsewhere" (§9.2), and can break the
//! circuit around publishing.
//!
//! Like the `Client`, it does no I/O and reads no clock; it is driven from outside:
//! - getters: [`Session::is_connected`], [`Session::server`], [`Session::stats`], ...;
//! - [`Session::handle_input`]: the transport opened, failed or closed, bytes arrived, the
//!   timer fired;
//! - commands: [`Session::publish`], [`Session::declare_queue`], [`Session::subscribe`],
//!   [`Session::ack`], ... Each returns a typed error at once or an id whose outcome arrives
//!   later as a [`SessionEvent`];
//! - [`Session::poll_output`] and [`Session::poll_timeout`]: open a transport, send bytes,
//!   close the transport, events.
//!
//! After every input or command, drain `poll_output` to `None` and arm a timer from
//! `poll_timeout`. Time (`now`) never goes backwards.

mod breaker;
mod config;
mod dedup_windows;
mod events;
mod link;
mod message_ids;
mod publishes;
mod requests;
mod restore;
mod retry;
#[cfg(test)]
mod tests;

pub use config::{ReconnectPolicy, RetryPolicy, SessionConfig, Timeouts};
pub use events::{
    LinkError, NotConfirmed, RequestError, SessionEnd, SessionEvent, SessionInput, SessionOutput,
    SessionStats, Settled,
};

use std::collections::VecDeque;

use chute_protocol::{Destination, HelloOk, PublishMessage, QueueOptions};

use self::breaker::PublishBreaker;
use self::dedup_windows::DedupWindows;
use self::message_ids::MessageIds;
use self::publishes::Publishes;
use self::requests::{Origin, RequestSpec, Requests};
use self::restore::{Subscriptions, Topology};
use super::commands::check_message;
use super::{Client, ClientOutput, CommandError, Response, SubscriptionOptions};
use crate::policy::breaker::BreakerView;
use crate::rng::Rng;
use crate::time::Instant;

/// Where the session is with its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Waiting to connect (the backoff, or a bar after GoingAway) until `at`.
    Waiting {
        at: Instant,
    },
    /// `Connect` was asked for; waiting for `TransportUp` or `ConnectFailed`.
    Connecting,
    /// The transport is up and the handshake under way.
    Handshaking,
    Open,
    /// The server is going away: nothing new is sent, and once what was sent is answered the
    /// connection is closed and the next one opened.
    Draining,
    /// Over: closed by the application, or given up.
    Ended,
}

/// The client above single connections; see the [module documentation](self).
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    rng: Rng,
    ids: MessageIds,
    link: Link,
    /// The current connection, from `TransportUp` until it ends.
    client: Option<Client>,
    /// Numbers the connections: deliveries of an earlier one are void.
    epoch: u64,
    /// The current (or next) address, as a position in `order`.
    position: usize,
    /// Address indices in the order they are tried.
    order: Vec<usize>,
    /// Per address: not to be connected to before this (GoingAway's `reconnect_after_ms`).
    barred_until: Vec<Instant>,
    /// Connection attempts that failed in a row.
    failures: u32,
    ever_connected: bool,
    /// The current connection was told `Blocked` and not yet `Unblocked`.
    blocked: bool,
    /// When the last block ended: confirms held until then are not late.
    unblocked_at: Option<Instant>,
    /// Why the session is closing the current connection itself, for the event.
    closing_because: Option<LinkError>,
    /// How the driver said the transport was lost.
    lost_reason: Option<String>,
    /// The last server's `HelloOk`, for limits while disconnected.
    server: Option<HelloOk>,
    publishes: Publishes,
    requests: Requests,
    topology: Topology,
    subscriptions: Subscriptions,
    /// Which queues have a dedup window: generated ids go only where one may be.
    dedup_windows: DedupWindows,
    breaker: PublishBreaker,
    outputs: VecDeque<SessionOutput>,
    stats: SessionStats,
    now: Instant,
}

impl Session {
    /// A session that asks at once to connect to its first address.
    pub fn new(config: SessionConfig, now: Instant) -> Session {
        assert!(config.addresses > 0, "a session needs an address");
        let mut rng = Rng::new(config.seed);
        let ids = MessageIds::new(&mut rng);
        let mut order: Vec<usize> = (0..config.addresses).collect();
        if config.reconnect.shuffle {
            // Fisher-Yates, from the seeded generator: the same seed, the same order.
            for i in (1..order.len()).rev() {
                let j = rng.below_inclusive(i as u64) as usize;
                order.swap(i, j);
            }
        }
        let mut session = Session {
            rng,
            ids,
            link: Link::Connecting,
            client: None,
            epoch: 0,
            position: 0,
            barred_until: vec![Instant::ZERO; config.addresses],
            order,
            failures: 0,
            ever_connected: false,
            blocked: false,
            unblocked_at: None,
            closing_because: None,
            lost_reason: None,
            server: None,
            publishes: Publishes::default(),
            requests: Requests::default(),
            topology: Topology::default(),
            subscriptions: Subscriptions::default(),
            dedup_windows: DedupWindows::default(),
            breaker: PublishBreaker::new(config.breaker),
            outputs: VecDeque::new(),
            stats: SessionStats::default(),
            now,
            config,
        };
        session.connect();
        session
    }

    // ---- getters ----

    /// Whether a connection is open and taking new work.
    pub fn is_connected(&self) -> bool {
        self.link == Link::Open
    }

    /// Whether the session is over (closed, or given up).
    pub fn is_ended(&self) -> bool {
        self.link == Link::Ended
    }

    /// The `HelloOk` of the current connection, or of the last one.
    pub fn server(&self) -> Option<&HelloOk> {
        self.server.as_ref()
    }

    /// The index of the address in use (or tried next).
    pub fn address(&self) -> usize {
        self.order[self.position]
    }

    /// Whether a connection was ever open (its handshake done).
    pub fn ever_connected(&self) -> bool {
        self.ever_connected
    }

    /// The number of the current connection (1 for the first); deliveries carry it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The latest `now` the session was given. A driver may publish with it rather than read
    /// its clock per message: a publish's timeouts then count from the session's last input,
    /// at most about a heartbeat interval early on an idle connection.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Publishes without an outcome yet (sent or waiting to be).
    pub fn unconfirmed(&self) -> u64 {
        self.publishes.len() as u64
    }

    /// Whether a publish now would be refused with `WindowFull`: the session keeps no more
    /// unconfirmed publishes than a connection may carry, so a reconnect can send them all.
    pub fn window_full(&self) -> bool {
        self.unconfirmed() >= self.unconfirmed_max()
    }

    pub fn unconfirmed_max(&self) -> u64 {
        match &self.server {
            Some(server) => u64::from(server.limits.unconfirmed_max),
            None => u64::from(self.config.client.unconfirmed_max_initial),
        }
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The breaker as seen at `now`; `None` without one.
    pub fn breaker_state(&self, now: Instant) -> Option<BreakerView> {
        self.breaker.state(now)
    }

    /// A subscription's id on the current connection, for a driver that reads the wire (a
    /// simulator attributing `Deliver` frames); `None` while it is not subscribed there.
    pub fn subscription_wire_id(&self, subscription: u32) -> Option<u32> {
        self.subscriptions.wire(subscription)
    }

    /// When the server was last heard from on the current connection.
    pub fn last_received(&self) -> Option<Instant> {
        self.client.as_ref().filter(|c| c.is_open()).map(Client::last_received)
    }

    // ---- inputs ----

    pub fn handle_input(&mut self, now: Instant, input: SessionInput) {
        self.advance(now);
        match input {
            SessionInput::TransportUp => self.transport_up(),
            SessionInput::ConnectFailed { reason } => {
                if self.link == Link::Connecting {
                    self.attempt_failed(LinkError::ConnectFailed { reason });
                }
            }
            SessionInput::Received(bytes) => {
                if let Some(client) = &mut self.client {
                    client.handle_input(now, super::ClientInput::Received(bytes));
                }
            }
            SessionInput::Frames { frames, error } => {
                if let Some(client) = &mut self.client {
                    client.handle_input(now, super::ClientInput::Frames { frames, error });
                }
            }
            SessionInput::TransportClosed { reason } => {
                if let Some(client) = &mut self.client {
                    self.lost_reason = Some(reason);
                    client.handle_input(now, super::ClientInput::Closed);
                }
            }
            SessionInput::Timeout => self.check_timers(),
        }
    }

    fn advance(&mut self, now: Instant) {
        assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    // ---- outputs ----

    pub fn poll_output(&mut self) -> Option<SessionOutput> {
        loop {
            if let Some(output) = self.outputs.pop_front() {
                return Some(output);
            }
            let output = self.client.as_mut()?.poll_output();
            match output {
                Some(ClientOutput::Send(bytes)) => return Some(SessionOutput::Send(bytes)),
                Some(ClientOutput::Close) => return Some(SessionOutput::Close),
                Some(ClientOutput::Event(event)) => self.client_event(event),
                // A drain that just finished closes the connection: its last outputs follow.
                None if self.finish_drain() => {}
                None => {
                    if self.outputs.is_empty() {
                        return None;
                    }
                }
            }
        }
    }

    /// When to call `handle_input(_, SessionInput::Timeout)`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeouts = &self.config.timeouts;
        let link = match self.link {
            Link::Waiting { at } => Some(at),
            Link::Ended => return None,
            _ => None,
        };
        let client = self.client.as_ref().and_then(Client::poll_timeout);
        let confirm = self.confirm_deadline();
        let deadline = timeouts
            .publish_ms
            .and_then(|ms| Some(self.publishes.oldest_published_at()?.plus_ms(ms)));
        [link, client, confirm, deadline, self.publishes.retry_next(), self.requests.next_timer()]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- commands ----

    /// Hands a message over for publishing and returns its sequence number (the session's,
    /// from 1, whatever connection carries it); a `Confirmed` or `NotConfirmed` event for it
    /// follows. It is sent at once when connected, else when a connection opens.
    #[inline]
    pub fn publish(
        &mut self,
        now: Instant,
        destination: &Destination,
        mandatory: bool,
        mut message: PublishMessage,
    ) -> Result<u64, CommandError> {
        self.advance(now);
        if self.link == Link::Ended {
            return Err(CommandError::Closed);
        }
        if self.window_full() {
            return Err(CommandError::WindowFull { unconfirmed: self.unconfirmed() });
        }
        check_message(&message)?;
        self.breaker.admit(now, &mut self.stats)?;
        if message.id.is_none() && self.config.generate_ids {
            let decision = self.dedup_windows.decide(destination, self.link == Link::Open);
            if let Some(queue) = decision.probe {
                let spec = RequestSpec::Declare {
                    name: queue,
                    options: QueueOptions::default(),
                    passive: true,
                };
                self.send_own_request(spec, Origin::Probe);
            }
            if decision.generate {
                message.id = Some(self.ids.next_id());
            }
        }
        let client = self.client.as_mut().filter(|_| self.link == Link::Open);
        self.publishes.publish(now, client, (destination, mandatory), message)
    }

    /// Creates the queue if needed (an existing one must have the same options). Once the
    /// server accepted it, it is declared again on every new connection.
    pub fn declare_queue(
        &mut self,
        now: Instant,
        name: &str,
        options: QueueOptions,
        passive: bool,
    ) -> Result<u32, CommandError> {
        self.request(now, RequestSpec::Declare { name: name.to_string(), options, passive })
    }

    pub fn delete_queue(
        &mut self,
        now: Instant,
        name: &str,
        if_empty: bool,
        if_unused: bool,
    ) -> Result<u32, CommandError> {
        let name = name.to_string();
        self.request(now, RequestSpec::Delete { name, if_empty, if_unused })
    }

    pub fn purge_queue(&mut self, now: Instant, name: &str) -> Result<u32, CommandError> {
        self.request(now, RequestSpec::Purge { name: name.to_string() })
    }

    /// Binds `pattern` to `queue`; bound again on every new connection.
    pub fn bind(&mut self, now: Instant, queue: &str, pattern: &str) -> Result<u32, CommandError> {
        let (queue, pattern) = (queue.to_string(), pattern.to_string());
        self.request(now, RequestSpec::Bind { queue, pattern })
    }

    pub fn unbind(
        &mut self,
        now: Instant,
        queue: &str,
        pattern: &str,
    ) -> Result<u32, CommandError> {
        let (queue, pattern) = (queue.to_string(), pattern.to_string());
        self.request(now, RequestSpec::Unbind { queue, pattern })
    }

    pub fn list_queues(
        &mut self,
        now: Instant,
        after: Option<String>,
        limit: u32,
    ) -> Result<u32, CommandError> {
        self.request(now, RequestSpec::List { after, limit })
    }

    pub fn queue_stats(&mut self, now: Instant, name: &str) -> Result<u32, CommandError> {
        self.request(now, RequestSpec::Stats { name: name.to_string() })
    }

    pub fn dlq_list(
        &mut self,
        now: Instant,
        queue: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<u32, CommandError> {
        self.request(now, RequestSpec::DlqList { queue: queue.to_string(), after, limit })
    }

    pub fn dlq_inspect(
        &mut self,
        now: Instant,
        queue: &str,
        dead_id: u64,
    ) -> Result<u32, CommandError> {
        self.request(now, RequestSpec::DlqInspect { queue: queue.to_string(), dead_id })
    }

    /// Redrives the named dead letters, or all of them when `dead_ids` is empty.
    pub fn dlq_redrive(
        &mut self,
        now: Instant,
        queue: &str,
        dead_ids: Vec<u64>,
    ) -> Result<u32, CommandError> {
        self.request(now, RequestSpec::DlqRedrive { queue: queue.to_string(), dead_ids })
    }

    /// Subscribes, now and on every new connection; returns (request id, subscription id).
    /// Deliveries come as `Deliveries` events with the subscription id and the connection's
    /// epoch.
    pub fn subscribe(
        &mut self,
        now: Instant,
        queue: &str,
        options: SubscriptionOptions,
    ) -> Result<(u32, u32), CommandError> {
        RequestSpec::Stats { name: queue.to_string() }.check()?;
        if self.link == Link::Ended {
            return Err(CommandError::Closed);
        }
        let subscription = self.subscriptions.add(queue, options);
        let request = self.request(now, RequestSpec::Subscribe { subscription })?;
        Ok((request, subscription))
    }

    /// Ends a subscription: no longer subscribed again after a reconnect. Answered with
    /// `Done` once the server stopped it (at once when there is no connection).
    pub fn unsubscribe(&mut self, now: Instant, subscription: u32) -> Result<u32, CommandError> {
        self.advance(now);
        let wire = self.subscriptions.wire(subscription);
        if !self.subscriptions.remove(subscription) {
            return Err(CommandError::UnknownSubscription(subscription));
        }
        match wire.filter(|_| matches!(self.link, Link::Open | Link::Draining)) {
            Some(wire_subscription) => {
                self.request(now, RequestSpec::Unsubscribe { wire_subscription })
            }
            None => {
                let id = self.requests.add(
                    RequestSpec::Unsubscribe { wire_subscription: 0 },
                    Origin::App,
                    now,
                    &self.config.timeouts,
                );
                self.requests.remove(id);
                let done = Response::Done { count: 0 };
                self.event(SessionEvent::Response { request_id: id, response: done });
                Ok(id)
            }
        }
    }

    /// Lets the server send `credit` more deliveries on a subscription without automatic
    /// credit. Kept over reconnects: a new connection subscribes with the credit unused.
    pub fn grant_credit(&mut self, subscription: u32, credit: u32) -> Result<(), CommandError> {
        if !self.subscriptions.contains(subscription) {
            return Err(CommandError::UnknownSubscription(subscription));
        }
        self.subscriptions.granted(subscription, credit);
        let wire = self.subscriptions.wire(subscription);
        match (self.client.as_mut(), wire) {
            (Some(client), Some(wire)) if self.link == Link::Open => {
                client.grant_credit(wire, credit)
            }
            _ => Ok(()),
        }
    }

    /// Acks a delivery of connection `epoch`. A delivery of an earlier connection is void:
    /// nothing is sent, and the server delivers the message again.
    pub fn ack(&mut self, epoch: u64, tag: u64) -> Result<Settled, CommandError> {
        self.settle(epoch, |client| client.ack(tag))
    }

    pub fn nack(
        &mut self,
        epoch: u64,
        tag: u64,
        delay_ms: Option<u64>,
        reason: Option<String>,
    ) -> Result<Settled, CommandError> {
        self.settle(epoch, |client| client.nack(tag, delay_ms, reason))
    }

    pub fn reject(
        &mut self,
        epoch: u64,
        tag: u64,
        reason: String,
    ) -> Result<Settled, CommandError> {
        self.settle(epoch, |client| client.reject(tag, reason))
    }

    pub fn touch(
        &mut self,
        epoch: u64,
        tag: u64,
        lease_ms: Option<u32>,
    ) -> Result<Settled, CommandError> {
        self.settle(epoch, |client| client.touch(tag, lease_ms))
    }

    fn settle(
        &mut self,
        epoch: u64,
        command: impl FnOnce(&mut Client) -> Result<(), CommandError>,
    ) -> Result<Settled, CommandError> {
        if self.link == Link::Ended {
            return Err(CommandError::Closed);
        }
        let live = matches!(self.link, Link::Open | Link::Draining) && epoch == self.epoch;
        // MUTANT settle-across-reconnect: a delivery of an earlier connection is settled here.
        #[cfg(feature = "mutants")]
        let live = live
            || (crate::mutants::active(crate::mutants::Mutant::SettleAcrossReconnect)
                && matches!(self.link, Link::Open));
        match self.client.as_mut().filter(|_| live) {
            Some(client) => match command(client) {
                Ok(()) => Ok(Settled::Sent),
                // Closed under us: the loss is not processed yet, but the delivery is void.
                Err(CommandError::Closed) => self.void(),
                Err(error) => Err(error),
            },
            None => self.void(),
        }
    }

    fn void(&mut self) -> Result<Settled, CommandError> {
        self.stats.void_settles += 1;
        Ok(Settled::Void)
    }

    /// Closes the current connection (`Close`, after what was sent) and opens the next at
    /// once, as if the server had asked to move: the application's own way to rebalance or
    /// to drop a connection it distrusts. Unanswered publishes and requests go out again on
    /// the next connection; deliveries not yet settled become void.
    pub fn reconnect_now(&mut self) {
        if !matches!(self.link, Link::Open | Link::Draining) || self.closing_because.is_some() {
            return;
        }
        if let Some(client) = self.client.as_mut().filter(|c| !c.is_closed()) {
            self.closing_because = Some(LinkError::Requested);
            client.close();
        }
    }

    /// Closes the session: the connection gets `Close`, and every publish and request still
    /// waiting is abandoned (the caller fails its waiters on the `Closed` event).
    pub fn close(&mut self) {
        if self.link == Link::Ended {
            return;
        }
        self.link = Link::Ended;
        match self.client.as_mut() {
            // Its `Closed` event ends the session once its last bytes are out.
            Some(client) if !client.is_closed() => client.close(),
            _ => self.end(SessionEnd::Closed),
        }
    }

    // ---- internals ----

    fn event(&mut self, event: SessionEvent) {
        self.outputs.push_back(SessionOutput::Event(event));
    }

    /// Sends a request of the session's own (not the application's) on the open connection.
    fn send_own_request(&mut self, spec: RequestSpec, origin: Origin) {
        let Some(client) = self.client.as_mut().filter(|_| self.link == Link::Open) else { return };
        let id = self.requests.add(spec, origin, self.now, &self.config.timeouts);
        self.requests.send(id, client, &mut self.subscriptions);
    }

    /// Takes a request; sends it at once when connected.
    fn request(&mut self, now: Instant, spec: RequestSpec) -> Result<u32, CommandError> {
        self.advance(now);
        if self.link == Link::Ended {
            return Err(CommandError::Closed);
        }
        spec.check()?;
        let id = self.requests.add(spec, Origin::App, now, &self.config.timeouts);
        if let Some(client) = self.client.as_mut().filter(|_| self.link == Link::Open) {
            self.requests.send(id, client, &mut self.subscriptions);
        }
        Ok(id)
    }

    fn check_timers(&mut self) {
        let now = self.now;
        if let Link::Waiting { at } = self.link {
            if at <= now {
                self.connect();
            }
        }
        if let Some(client) = &mut self.client {
            client.handle_input(now, super::ClientInput::Timeout);
        }
        if let Some(publish_ms) = self.config.timeouts.publish_ms {
            let expired = self.publishes.expire(now, publish_ms, &mut self.outputs);
            self.stats.unknown_outcomes += expired;
            if expired > 0 {
                self.breaker.failure(now, &mut self.outputs, &mut self.stats);
            }
        }
        self.requests.expire(now, &mut self.outputs);
        self.check_confirm_timeout();
        self.send_waiting();
    }

    /// A publish unanswered for `confirm_ms` on a live connection: the server is stuck, so the
    /// connection is closed and its publishes go out again on the next one. Not while the
    /// server says it holds them (`Blocked`): it is not stuck, and another connection would be
    /// blocked as well; the wait counts again from `Unblocked`.
    fn check_confirm_timeout(&mut self) {
        let Some(after_ms) = self.config.timeouts.confirm_ms else { return };
        let Some(deadline) = self.confirm_deadline() else { return };
        if deadline > self.now || self.closing_because.is_some() {
            return;
        }
        if let Some(client) = self.client.as_mut().filter(|c| !c.is_closed()) {
            self.closing_because = Some(LinkError::ConfirmTimeout { after_ms });
            client.close();
        }
    }

    /// When the oldest publish on the wire is late, if one is and the server does not hold it.
    fn confirm_deadline(&self) -> Option<Instant> {
        let after_ms = self.config.timeouts.confirm_ms?;
        let sent_at = self.publishes.oldest_on_wire()?;
        if self.blocked {
            return None;
        }
        let waiting_since = self.unblocked_at.map_or(sent_at, |at| at.max(sent_at));
        Some(waiting_since.plus_ms(after_ms))
    }

    /// Sends whatever waits for the open connection: requests, then publishes.
    fn send_waiting(&mut self) {
        let Some(client) = self.client.as_mut().filter(|_| self.link == Link::Open) else { return };
        self.requests.send_waiting(self.now, client, &mut self.subscriptions);
        self.publishes.send_ready(self.now, client, &mut self.outputs, &mut self.stats);
    }

    /// Ends the session for good.
    fn end(&mut self, reason: SessionEnd) {
        self.link = Link::Ended;
        self.client = None;
        self.publishes.clear();
        self.requests.clear();
        self.subscriptions.clear();
        self.event(SessionEvent::Closed { reason });
    }
}
