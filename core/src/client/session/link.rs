//! The session's connection over time: connecting, the handshake, what a new connection is
//! sent, losing it, and when and where to try next.

use chute_protocol::{Credentials, ErrorCode, GoingAway, HelloOk};

use super::events::{LinkError, SessionEnd, SessionEvent, SessionOutput};
use super::requests::{Origin, RequestSpec};
use super::retry::{self, Retry};
use super::{Link, Session};
use crate::client::{Client, ClientConfig, ClientEvent, CloseReason, Response};
use crate::policy::backoff::retry_delay_ms;
use crate::time::Instant;

impl Session {
    /// Asks the driver for a transport to the current address.
    pub(super) fn connect(&mut self) {
        self.link = Link::Connecting;
        let address = self.address();
        self.outputs.push_back(SessionOutput::Connect { address });
    }

    pub(super) fn transport_up(&mut self) {
        if self.link != Link::Connecting {
            return;
        }
        let connect_ms = self.config.timeouts.connect_ms;
        let mut config = ClientConfig {
            handshake_timeout_ms: u32::try_from(connect_ms).unwrap_or(u32::MAX),
            ..self.config.client.clone()
        };
        // Drawn only for a password, so that the jitter a seed gives is otherwise unchanged.
        if matches!(config.credentials, Credentials::Password { .. }) {
            config.auth_nonce = self.auth_nonce();
        }
        self.client = Some(Client::new(config, self.now));
        self.epoch += 1;
        self.link = Link::Handshaking;
        self.closing_because = None;
        self.lost_reason = None;
    }

    /// The client's part of a SCRAM nonce for the next connection: a fresh one each time, so
    /// that no two exchanges share a nonce, from the session's seed (which the driver draws
    /// from the operating system), so that a simulation replays.
    fn auth_nonce(&mut self) -> [u8; 18] {
        let mut nonce = [0u8; 18];
        for chunk in nonce.chunks_mut(8) {
            let draw = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&draw[..chunk.len()]);
        }
        nonce
    }

    /// An attempt to connect failed before the handshake completed.
    pub(super) fn attempt_failed(&mut self, error: LinkError) {
        self.client = None;
        self.stats.connect_failures += 1;
        let address = self.address();
        self.event(SessionEvent::Disconnected { address, error: error.clone() });
        self.breaker.failure(self.now, &mut self.outputs, &mut self.stats);
        self.failures += 1;
        self.next_attempt(error, true);
    }

    pub(super) fn client_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected(server) => self.opened(server),
            ClientEvent::Confirmed(range) => {
                if self.publishes.confirmed(range, &mut self.outputs) > 0 {
                    self.breaker.success(self.now, &mut self.outputs);
                }
                self.send_waiting();
            }
            ClientEvent::PublishFailed(failure) => self.publish_refused(failure),
            ClientEvent::Deliveries { subscription, deliveries } => {
                let Some(id) = self.subscriptions.by_wire(subscription) else { return };
                self.subscriptions.delivered(id, deliveries.len());
                let epoch = self.epoch;
                self.event(SessionEvent::Deliveries { subscription: id, epoch, deliveries });
            }
            ClientEvent::Response { request_id, response } => self.answered(request_id, response),
            ClientEvent::SubscriptionCancelled(cancelled) => {
                let Some(id) = self.subscriptions.by_wire(cancelled.subscription) else { return };
                self.subscriptions.remove(id);
                let (code, message) = (cancelled.code, cancelled.message);
                self.event(SessionEvent::SubscriptionCancelled { subscription: id, code, message });
            }
            ClientEvent::GoingAway(going_away) => self.going_away(going_away),
            ClientEvent::Blocked { reason } => {
                self.blocked = true;
                self.event(SessionEvent::Blocked { reason });
            }
            ClientEvent::Unblocked => self.unblocked(),
            ClientEvent::Closed { reason } => self.closed(reason),
        }
    }

    /// The handshake completed: put the session's state back on the connection, in the order
    /// it depends on (queues before their bindings, subscriptions and publishes; the server
    /// handles a connection's frames in order).
    fn opened(&mut self, server: HelloOk) {
        self.link = Link::Open;
        self.failures = 0;
        self.stats.connections += 1;
        self.server = Some(server.clone());
        let address = self.address();
        let now = self.now;
        if self.breaker.state(now) == Some(crate::policy::breaker::BreakerView::HalfOpen) {
            self.breaker.success(now, &mut self.outputs);
        }
        let republished_before = self.stats.republished;
        let client = self.client.as_mut().expect("open with a client");
        for spec in self.topology.restore_specs() {
            let id = self.requests.add(spec, Origin::Restore, now, &self.config.timeouts);
            self.requests.send(id, client, &mut self.subscriptions);
        }
        self.requests.send_waiting(now, client, &mut self.subscriptions);
        for subscription in self.subscriptions.ids() {
            if self.requests.app_subscribe_waiting(subscription) {
                continue;
            }
            let spec = RequestSpec::Subscribe { subscription };
            let id = self.requests.add(spec, Origin::Restore, now, &self.config.timeouts);
            self.requests.send(id, client, &mut self.subscriptions);
        }
        self.publishes.send_ready(now, client, &mut self.outputs, &mut self.stats);
        let event = if self.ever_connected {
            let republished = self.stats.republished - republished_before;
            SessionEvent::Reconnected { address, server, republished }
        } else {
            SessionEvent::Connected { address, server }
        };
        self.ever_connected = true;
        self.event(event);
    }

    fn publish_refused(&mut self, failure: chute_protocol::PublishFailure) {
        let code = failure.code;
        let server_trouble = [
            ErrorCode::SHUTTING_DOWN,
            ErrorCode::STORAGE_FAILED,
            ErrorCode::INTERNAL,
            ErrorCode::RESOURCE_LIMIT,
        ];
        if server_trouble.contains(&code) {
            self.breaker.failure(self.now, &mut self.outputs, &mut self.stats);
        }
        let (policy, reconnects) = (&self.config.retry, self.config.reconnect.enabled);
        let (rng, now, publish_ms) = (&mut self.rng, self.now, self.config.timeouts.publish_ms);
        let retry_after_ms = failure.retry_after_ms;
        self.publishes.refused(failure, &mut self.outputs, |refusals, published_at| {
            let deadline = publish_ms.map(|ms| published_at.plus_ms(ms));
            retry::decide(code, retry_after_ms, refusals, policy, reconnects, rng, (now, deadline))
        });
    }

    fn answered(&mut self, wire: u32, response: Response) {
        let Some((id, mut request)) = self.requests.answered(wire) else { return };
        if let Response::Failed(error) = &response {
            request.refusals += 1;
            let (policy, reconnects) = (&self.config.retry, self.config.reconnect.enabled);
            let window = (self.now, Some(request.deadline()));
            let (code, after_ms) = (error.code, error.retry_after_ms);
            match retry::decide(
                code,
                after_ms,
                request.refusals,
                policy,
                reconnects,
                &mut self.rng,
                window,
            ) {
                Retry::At(at) => return self.requests.retry(id, request, Some(at)),
                Retry::NextConnection => return self.requests.retry(id, request, None),
                Retry::No => {}
            }
        }
        self.topology.answered(&request.spec, &response);
        if let RequestSpec::Declare { name, .. } = &request.spec {
            match &response {
                Response::Declared(ok) => {
                    self.dedup_windows.learn(name, ok.options.dedup_window_ms.is_some())
                }
                // A probe of a queue that is not there: keep giving its messages ids.
                Response::Failed(_) if request.origin == Origin::Probe => {
                    self.dedup_windows.learn(name, true)
                }
                _ => {}
            }
        }
        match (request.origin, &response) {
            (Origin::App, _) => {
                if let (RequestSpec::Subscribe { subscription }, Response::Failed(_)) =
                    (&request.spec, &response)
                {
                    self.subscriptions.remove(*subscription);
                }
                self.event(SessionEvent::Response { request_id: id, response });
            }
            (Origin::Restore, Response::Failed(error)) => {
                self.restore_refused(&request.spec, error)
            }
            (Origin::Restore | Origin::Probe, _) => {}
        }
    }

    /// The server refused to take back something the session had: a queue or binding is
    /// dropped from what is restored, a subscription ends.
    fn restore_refused(&mut self, spec: &RequestSpec, error: &chute_protocol::ErrorFrame) {
        let (code, message) = (error.code, error.message.clone());
        let what = match spec {
            RequestSpec::Subscribe { subscription } => {
                self.subscriptions.remove(*subscription);
                let subscription = *subscription;
                return self.event(SessionEvent::SubscriptionCancelled {
                    subscription,
                    code,
                    message,
                });
            }
            RequestSpec::Declare { name, .. } => format!("queue {name}"),
            RequestSpec::Bind { queue, pattern } => format!("binding {pattern} to {queue}"),
            other => format!("{other:?}"),
        };
        self.topology.forget(spec);
        self.event(SessionEvent::RestoreFailed { what, code, message });
    }

    /// §5.7: with another address to move to, stop sending new work here, finish what was
    /// sent and let the application settle the deliveries it holds (the point of a lame-duck
    /// window), then move. With nowhere else to go (one address, or no reconnecting) the
    /// connection serves on until the server closes it, as NATS clients do; either way the
    /// address is not used again before `reconnect_after_ms`.
    fn going_away(&mut self, going_away: GoingAway) {
        let address = self.address();
        let until = self.now.plus_ms(u64::from(going_away.reconnect_after_ms));
        self.barred_until[address] = self.barred_until[address].max(until);
        let elsewhere = self.config.reconnect.enabled && self.config.addresses > 1;
        if self.link == Link::Open && elsewhere {
            self.link = Link::Draining;
            if let Some(client) = &mut self.client {
                client.withhold_credit();
            }
            self.closing_because =
                Some(LinkError::GoingAway { message: going_away.message.clone() });
        }
        self.event(SessionEvent::GoingAway(going_away));
    }

    /// While draining: once nothing sent is unanswered and no delivery is unsettled, closes,
    /// to move on. Returns whether it closed.
    pub(super) fn finish_drain(&mut self) -> bool {
        if self.link != Link::Draining
            || self.publishes.on_wire() > 0
            || self.requests.on_wire() > 0
        {
            return false;
        }
        match self.client.as_mut().filter(|c| !c.is_closed() && c.unsettled_len() == 0) {
            Some(client) => {
                client.close();
                true
            }
            None => false,
        }
    }

    /// The connection ended (its `Closed` event, always the last of it).
    fn unblocked(&mut self) {
        if std::mem::take(&mut self.blocked) {
            self.unblocked_at = Some(self.now);
            self.event(SessionEvent::Unblocked);
        }
    }

    fn closed(&mut self, reason: CloseReason) {
        let client = self.client.take().expect("a connection's events come from it");
        self.unblocked();
        if self.link == Link::Ended {
            // The application closed the session, and the connection's last bytes are out.
            return self.end(SessionEnd::Closed);
        }
        let error = match (self.closing_because.take(), reason) {
            (Some(ours), _) => ours,
            (None, CloseReason::Code { code, message }) => LinkError::Closed { code, message },
            (None, CloseReason::TransportLost) => {
                let reason = self.lost_reason.take();
                LinkError::TransportLost {
                    reason: reason.unwrap_or_else(|| "transport closed".into()),
                }
            }
        };
        if self.link == Link::Handshaking {
            return self.attempt_failed(error);
        }
        self.stats.disconnects += 1;
        self.publishes.connection_lost();
        self.requests.connection_lost(&mut self.outputs);
        self.dedup_windows.connection_lost();
        self.subscriptions.connection_lost(&client.unsettled_by_subscription());
        let address = self.address();
        self.event(SessionEvent::Disconnected { address, error: error.clone() });
        // Moving away from a server that asked for it is no failure, and needs no backoff.
        let moving = matches!(error, LinkError::GoingAway { .. } | LinkError::Requested);
        if !moving {
            self.breaker.failure(self.now, &mut self.outputs, &mut self.stats);
        }
        self.next_attempt(error, !moving);
    }

    /// Schedules the next attempt (after the backoff when `back_off`), or gives up.
    fn next_attempt(&mut self, error: LinkError, back_off: bool) {
        let reconnect = &self.config.reconnect;
        if !reconnect.enabled || !error.is_retriable() {
            return self.end(SessionEnd::Lost(error));
        }
        let failures = self.failures;
        let first_round_over = !self.ever_connected
            && !reconnect.retry_first_connect
            && failures as usize >= self.order.len();
        let too_many = reconnect.attempts_max.is_some_and(|max| failures >= max);
        if first_round_over || too_many {
            return self.end(SessionEnd::GaveUp { attempts: failures, last: error });
        }
        let attempt = failures + 1;
        let delay_ms =
            if back_off { retry_delay_ms(&reconnect.backoff, attempt, &mut self.rng) } else { 0 };
        let (position, at) = self.next_address(self.now.plus_ms(delay_ms));
        self.position = position;
        let address = self.order[position];
        let delay_ms = at.saturating_since(self.now).as_millis() as u64;
        self.event(SessionEvent::Reconnecting { attempt, delay_ms, address });
        self.link = Link::Waiting { at };
    }

    /// The next address in turn that may be used at `earliest`, and when; if every one is
    /// barred then, the one free first.
    fn next_address(&self, earliest: Instant) -> (usize, Instant) {
        let count = self.order.len();
        let candidates = (1..=count).map(|step| (self.position + step) % count);
        let free_at = |position: usize| self.barred_until[self.order[position]].max(earliest);
        let mut best: Option<(usize, Instant)> = None;
        for position in candidates {
            let at = free_at(position);
            if at == earliest {
                return (position, at);
            }
            if best.is_none_or(|(_, best_at)| at < best_at) {
                best = Some((position, at));
            }
        }
        best.expect("at least one address")
    }
}
