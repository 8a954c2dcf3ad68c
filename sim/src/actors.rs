//! The clients: each actor drives one `chute_core::client::Client` machine over the simulated
//! network, reconnecting with backoff whenever its connection dies.
//!
//! - The admin declares every queue and binding, then lists the dead-letter queues every 250 ms
//!   and has the oracle audit each entry.
//! - Publishers publish messages with unique ids (`m<key>`, payload derived from the key), keep
//!   every unconfirmed message, and republish all of them, same ids, in order, on every new
//!   connection.
//! - Consumers subscribe with credit, and ack most deliveries after a processing time; some they
//!   nack (with or without a delay and a reason), reject, touch and ack late, hold past their
//!   lease, or answer by dropping the connection. In the liveness phase they ack everything.
//! - The drainer appears in the liveness phase and acks everything from every queue, dead-letter
//!   queues included.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chute_core::client::SubscriptionOptions;
use chute_core::client::{
    Client, ClientEvent, ClientInput, ClientOutput, CloseReason, CommandError, Response,
};
use chute_core::{ConnId, Input, Instant};
use chute_protocol::{Delivery, Destination, ErrorCode, PublishMessage, Schedule, LIST_PAGE_MAX};

use crate::events::{Action, Event, Wake};
use crate::oracle::{message_id, parse_id, payload, Dest, MsgInfo};
use crate::topology::QIdx;
use crate::trace::TraceEvent;
use crate::world::{Phase, World};

#[derive(Debug)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    pub client: Option<Client>,
    pub conn: Option<ConnId>,
    /// `HelloOk` arrived on the current connection.
    pub connected: bool,
    pub timer_at: Option<Instant>,
    /// Connections lost or refused in a row, for the backoff.
    pub failures: u32,
}

#[derive(Debug)]
pub enum Role {
    Admin(Admin),
    Publisher(Publisher),
    Consumer(Consumer),
}

#[derive(Debug, Default)]
pub struct Admin {
    /// Declarations and bindings not yet answered.
    pending: BTreeSet<u32>,
    ready: bool,
    /// `DlqList` requests in flight → dead-letter queue.
    audits: BTreeMap<u32, QIdx>,
}

#[derive(Debug, Default)]
pub struct Publisher {
    /// Every message not yet confirmed, in publish order (keys grow).
    pub unconfirmed: BTreeSet<u32>,
    /// Unconfirmed messages not yet sent on the current connection.
    to_send: VecDeque<u32>,
    /// Publish sequence numbers of the current connection.
    seq_to_key: BTreeMap<u64, u32>,
}

#[derive(Debug, Default)]
pub struct Consumer {
    queues: Vec<QIdx>,
    drainer: bool,
    /// Subscription → (queue, lease in ms).
    subs: BTreeMap<u32, (QIdx, u32)>,
    /// Subscribe requests not yet answered.
    pending: BTreeSet<u32>,
}

impl Actor {
    fn new(name: String, role: Role) -> Actor {
        Actor {
            name,
            role,
            client: None,
            conn: None,
            connected: false,
            timer_at: None,
            failures: 0,
        }
    }
}

impl World {
    pub fn create_actors(&mut self) {
        self.actors.push(Actor::new("admin".into(), Role::Admin(Admin::default())));
        for index in 0..self.cfg.publishers {
            let publisher = Publisher::default();
            self.actors.push(Actor::new(format!("pub{index}"), Role::Publisher(publisher)));
        }
        let sources = self.topology.sources();
        let consumers = self.cfg.consumers;
        for index in 0..consumers {
            let mut queues: Vec<QIdx> = sources
                .iter()
                .enumerate()
                .filter(|(i, _)| i % consumers == index)
                .map(|(_, q)| *q)
                .collect();
            if queues.is_empty() {
                queues.push(sources[index % sources.len()]);
            }
            let consumer = Consumer { queues, ..Consumer::default() };
            self.actors.push(Actor::new(format!("con{index}"), Role::Consumer(consumer)));
        }
    }

    /// The liveness phase's drainers: one connection per queue, or (with
    /// `Workload::shared_drainer`) one connection subscribed to every queue.
    pub fn add_drainers(&mut self) -> Vec<usize> {
        let all: Vec<QIdx> = (0..self.topology.queues.len() as QIdx).collect();
        let groups: Vec<Vec<QIdx>> = if self.cfg.workload.shared_drainer {
            vec![all]
        } else {
            all.into_iter().map(|q| vec![q]).collect()
        };
        let mut actors = Vec::new();
        for (index, queues) in groups.into_iter().enumerate() {
            let consumer = Consumer { queues, drainer: true, ..Consumer::default() };
            self.actors.push(Actor::new(format!("drainer{index}"), Role::Consumer(consumer)));
            actors.push(self.actors.len() - 1);
        }
        actors
    }

    // ---- wakes ----

    pub fn on_wake(&mut self, actor: usize, wake: Wake) {
        if self.phase == Phase::Done {
            return;
        }
        match wake {
            Wake::Connect => self.connect(actor),
            Wake::Publish => self.publish_tick(actor),
            Wake::Audit => self.audit_tick(actor),
            Wake::Settle { conn, tag, queue, key, action } => {
                self.settle(actor, conn, tag, queue, key, action)
            }
        }
    }

    fn connect(&mut self, actor: usize) {
        if self.actors[actor].conn.is_some() {
            return;
        }
        if self.broker.is_none() {
            self.record(TraceEvent::Refused { actor: actor as u32 });
            return self.reconnect_later(actor);
        }
        let conn = self.new_conn(actor);
        self.record(TraceEvent::Connect { actor: actor as u32, conn: conn.0 });
        let config = self.client_config.clone();
        let a = &mut self.actors[actor];
        a.client = Some(Client::new(
            chute_core::client::ClientConfig { client_name: a.name.clone(), ..config },
            self.now,
        ));
        a.conn = Some(conn);
        a.connected = false;
        a.timer_at = None;
        self.broker_input(Input::Accepted { conn, peer: Default::default() });
        match &self.actors[actor].role {
            Role::Admin(admin) if !admin.ready => self.declare_all(actor),
            Role::Consumer(_) => self.subscribe_all(actor, conn),
            _ => {}
        }
        self.drain_client(actor);
    }

    fn reconnect_later(&mut self, actor: usize) {
        let a = &mut self.actors[actor];
        a.failures += 1;
        let backoff = (20u64 << a.failures.min(5)).min(1_000);
        let after = backoff + self.rng.range(0, 20);
        self.schedule(after, Event::Wake { actor, wake: Wake::Connect });
    }

    // ---- the client machine ----

    pub fn client_input(&mut self, actor: usize, input: ClientInput) {
        let now = self.now;
        let Some(client) = self.actors[actor].client.as_mut() else { return };
        client.handle_input(now, input);
        self.drain_client(actor);
    }

    pub fn drain_client(&mut self, actor: usize) {
        while let Some(output) = self.actors[actor].client.as_mut().and_then(Client::poll_output) {
            match output {
                ClientOutput::Send(bytes) => {
                    if let Some(conn) = self.actors[actor].conn {
                        self.net_send(conn, true, bytes);
                    }
                }
                ClientOutput::Close => {
                    if let Some(conn) = self.actors[actor].conn {
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.client_closing = true;
                        }
                        self.finish_client_close(conn);
                    }
                }
                ClientOutput::Event(event) => self.actor_event(actor, event),
            }
        }
        self.arm_client_timer(actor);
    }

    fn arm_client_timer(&mut self, actor: usize) {
        let a = &mut self.actors[actor];
        let (Some(client), Some(conn)) = (a.client.as_ref(), a.conn) else { return };
        let Some(at) = client.poll_timeout() else { return };
        let at = at.max(self.now);
        if a.timer_at.is_none_or(|current| at < current) {
            a.timer_at = Some(at);
            self.events.push(at, Event::ClientTimer { actor, conn });
        }
    }

    pub fn on_client_timer(&mut self, actor: usize, conn: ConnId) {
        let a = &mut self.actors[actor];
        if a.conn != Some(conn) || a.timer_at != Some(self.now) {
            return;
        }
        a.timer_at = None;
        self.client_input(actor, ClientInput::Timeout);
    }

    fn actor_event(&mut self, actor: usize, event: ClientEvent) {
        match event {
            ClientEvent::Connected(_) => {
                let a = &mut self.actors[actor];
                a.connected = true;
                a.failures = 0;
                if let Role::Publisher(publisher) = &mut a.role {
                    publisher.to_send = publisher.unconfirmed.iter().copied().collect();
                    self.publish_pending(actor);
                }
            }
            ClientEvent::Closed { reason } => self.on_closed(actor, reason),
            ClientEvent::Confirmed(range) => {
                let Role::Publisher(publisher) = &mut self.actors[actor].role else { return };
                let mut confirmed = Vec::new();
                for seq in range.iter() {
                    if let Some(key) = publisher.seq_to_key.remove(&seq) {
                        if publisher.unconfirmed.remove(&key) {
                            confirmed.push(key);
                        }
                    }
                }
                for key in confirmed {
                    self.oracle.messages[key as usize].confirmed = true;
                    self.record(TraceEvent::Confirm { actor: actor as u32, key });
                }
                self.publish_pending(actor);
            }
            ClientEvent::PublishFailed(failure) => {
                self.fail(("publish-refused", format!("{}: {failure:?}", self.actors[actor].name)));
            }
            ClientEvent::Deliveries { subscription, deliveries } => {
                for delivery in deliveries {
                    self.on_delivery(actor, subscription, delivery);
                }
            }
            ClientEvent::Response { request_id, response } => {
                self.on_response(actor, request_id, response)
            }
            ClientEvent::SubscriptionCancelled(cancelled) => {
                self.fail(("subscription-cancelled", format!("{cancelled:?}")));
            }
            ClientEvent::GoingAway(_) => {}
        }
    }

    fn on_closed(&mut self, actor: usize, reason: CloseReason) {
        let expected = [
            ErrorCode::NORMAL_CLOSE,
            ErrorCode::HEARTBEAT_TIMEOUT,
            ErrorCode::HANDSHAKE_TIMEOUT,
            ErrorCode::STORAGE_FAILED,
            ErrorCode::SHUTTING_DOWN,
        ];
        // A lost transport (reset, crash) is expected too.
        if let CloseReason::Code { code, message } = &reason {
            if !expected.contains(code) {
                let name = &self.actors[actor].name;
                self.fail(("connection-error", format!("{name}: closed with {code:?}: {message}")));
            }
        }
        // A lost transport has no wire code; the trace records it as u16::MAX.
        let code = reason.code().map_or(u16::MAX, |code| code.0);
        self.record(TraceEvent::ClientClosed { actor: actor as u32, code });
        let a = &mut self.actors[actor];
        let conn = a.conn.take();
        a.client = None;
        a.connected = false;
        a.timer_at = None;
        match &mut a.role {
            Role::Admin(admin) => {
                admin.pending.clear();
                admin.audits.clear();
            }
            Role::Publisher(publisher) => {
                publisher.to_send.clear();
                publisher.seq_to_key.clear();
            }
            Role::Consumer(consumer) => {
                consumer.subs.clear();
                consumer.pending.clear();
            }
        }
        if let Some(conn) = conn {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.client_attached = false;
            }
            self.maybe_remove(conn);
        }
        if self.phase != Phase::Done {
            self.reconnect_later(actor);
        }
    }

    fn on_response(&mut self, actor: usize, request_id: u32, response: Response) {
        if let Response::Failed(error) = &response {
            let name = &self.actors[actor].name;
            return self
                .fail(("request-refused", format!("{name}: request {request_id}: {error:?}")));
        }
        match &mut self.actors[actor].role {
            Role::Admin(admin) => {
                if admin.pending.remove(&request_id) && admin.pending.is_empty() && !admin.ready {
                    admin.ready = true;
                    self.start_faults();
                    return;
                }
                if let (Some(dlq), Response::DlqList(list)) =
                    (admin.audits.remove(&request_id), response)
                {
                    self.record(TraceEvent::Audit { dlq, entries: list.entries.len() as u32 });
                    for entry in &list.entries {
                        let result = self.oracle.audit(&self.topology, self.now, dlq, entry);
                        self.check(result);
                    }
                    if list.more {
                        let after = list.entries.last().map(|e| e.dead_id);
                        self.list_dead_letters(actor, dlq, after);
                    }
                }
            }
            Role::Consumer(consumer) => {
                consumer.pending.remove(&request_id);
            }
            Role::Publisher(_) => {}
        }
    }

    // ---- admin ----

    fn declare_all(&mut self, actor: usize) {
        let a = &mut self.actors[actor];
        let (Some(client), Role::Admin(admin)) = (a.client.as_mut(), &mut a.role) else { return };
        for spec in &self.topology.queues {
            let request = client.declare_queue(&spec.name, spec.options.clone(), false);
            admin.pending.insert(request.expect("a new client takes commands"));
        }
        for (pattern, q) in &self.topology.bindings {
            let request = client.bind(&self.topology.queue(*q).name, pattern);
            admin.pending.insert(request.expect("a new client takes commands"));
        }
    }

    fn audit_tick(&mut self, actor: usize) {
        if matches!(self.phase, Phase::Faults | Phase::Liveness) {
            self.schedule(250, Event::Wake { actor, wake: Wake::Audit });
        }
        let a = &self.actors[actor];
        if !a.connected || !matches!(&a.role, Role::Admin(admin) if admin.ready) {
            return;
        }
        let dlqs: Vec<QIdx> = (0..self.topology.queues.len() as QIdx)
            .filter(|q| self.topology.queue(*q).is_dlq())
            .collect();
        for dlq in dlqs {
            self.list_dead_letters(actor, dlq, None);
        }
        self.drain_client(actor);
    }

    fn list_dead_letters(&mut self, actor: usize, dlq: QIdx, after: Option<u64>) {
        let name = self.topology.queue(dlq).name.clone();
        let a = &mut self.actors[actor];
        let (Some(client), Role::Admin(admin)) = (a.client.as_mut(), &mut a.role) else { return };
        if let Ok(request) = client.dlq_list(&name, after, LIST_PAGE_MAX as u32) {
            admin.audits.insert(request, dlq);
        }
    }

    // ---- publishers ----

    fn publish_tick(&mut self, actor: usize) {
        if self.phase != Phase::Faults {
            return; // publishers only finish what is unconfirmed from now on
        }
        let workload = &self.cfg.workload;
        let burst = self.rng.range(1, workload.burst_max.max(1));
        let every = workload.publish_every_ms;
        for _ in 0..burst {
            self.new_message(actor);
        }
        let after = self.rng.interval(every);
        self.schedule(after, Event::Wake { actor, wake: Wake::Publish });
        self.publish_pending(actor);
    }

    fn new_message(&mut self, actor: usize) {
        let w = self.cfg.workload.clone();
        let t = &self.topology;
        let (dest, targets) = if self.rng.chance(w.topic_per_mille) {
            let topic = self.rng.index(t.topics.len());
            (Dest::Topic(topic as u8), t.route(&t.topics[topic]))
        } else {
            let sources = t.sources();
            let q = sources[self.rng.index(sources.len())];
            (Dest::Queue(q), vec![q])
        };
        let (work, delayed) = (t.idx("work"), t.idx("delayed"));
        let mut info = MsgInfo {
            dest,
            targets,
            group: None,
            delay_ms: None,
            ttl_ms: None,
            priority: 0,
            payload_len: 0,
            first_publish: self.now,
            confirmed: false,
        };
        if dest == Dest::Queue(work) {
            if self.rng.chance(w.group_per_mille) {
                info.group = Some(self.rng.below(4) as u8);
            } else if self.rng.chance(200) {
                info.priority = 1;
            }
        }
        if dest == Dest::Queue(delayed) {
            if self.rng.chance(w.delay_per_mille) {
                info.delay_ms = Some(self.rng.range(1, 1_500));
            }
            if self.rng.chance(w.message_ttl_per_mille) {
                info.ttl_ms = Some(self.rng.range(200, 2_000));
            }
        }
        info.payload_len = if self.rng.chance(w.large_payload_per_mille) {
            self.rng.range(2_048, 8_192) as u32
        } else {
            self.rng.range(16, 400) as u32
        };
        let key = self.oracle.new_message(info);
        self.stats.published += 1;
        let a = &mut self.actors[actor];
        let Role::Publisher(publisher) = &mut a.role else { unreachable!("a publisher") };
        publisher.unconfirmed.insert(key);
        if a.connected {
            publisher.to_send.push_back(key);
        }
    }

    /// Sends unsent messages while the unconfirmed window has room.
    fn publish_pending(&mut self, actor: usize) {
        loop {
            let a = &mut self.actors[actor];
            let (Some(client), Role::Publisher(publisher)) = (a.client.as_mut(), &mut a.role)
            else {
                return;
            };
            if !a.connected {
                return;
            }
            let Some(&key) = publisher.to_send.front() else { break };
            let info = &self.oracle.messages[key as usize];
            let (destination, mandatory) = match info.dest {
                Dest::Queue(q) => (Destination::Queue(self.topology.queue(q).name.clone()), false),
                Dest::Topic(t) => {
                    (Destination::Topic(self.topology.topics[t as usize].clone()), true)
                }
            };
            let message = PublishMessage {
                id: Some(message_id(key)),
                headers: Vec::new(),
                payload: payload(key, info.payload_len),
                schedule: info.delay_ms.map(Schedule::DelayMs),
                ttl_ms: info.ttl_ms,
                priority: info.priority,
                group: info.group.map(|g| format!("g{g}")),
            };
            match client.publish(&destination, mandatory, message) {
                Ok(seq) => {
                    publisher.seq_to_key.insert(seq, key);
                    publisher.to_send.pop_front();
                    self.trace
                        .record(self.now, TraceEvent::Publish { actor: actor as u32, key, seq });
                }
                Err(CommandError::WindowFull { .. } | CommandError::Closed) => break,
                Err(error) => return self.fail(("client-command", format!("publish: {error}"))),
            }
        }
        self.drain_client(actor);
    }

    // ---- consumers ----

    fn subscribe_all(&mut self, actor: usize, conn: ConnId) {
        let credit_max = self.cfg.workload.credit_max.max(1);
        let a = &mut self.actors[actor];
        let (Some(client), Role::Consumer(consumer)) = (a.client.as_mut(), &mut a.role) else {
            return;
        };
        for q in consumer.queues.clone() {
            let spec = self.topology.queue(q);
            let (credit, lease_ms) = if consumer.drainer {
                (64, None)
            } else {
                let lease = self.rng.chance(200).then(|| self.rng.range(150, 400) as u32);
                (self.rng.range(1, u64::from(credit_max)) as u32, lease)
            };
            let options = SubscriptionOptions { credit, lease_ms, rate: None, auto_credit: true };
            let (request, subscription) =
                client.subscribe_with(&spec.name, options).expect("a new client takes commands");
            consumer.pending.insert(request);
            consumer.subs.insert(subscription, (q, lease_ms.unwrap_or(spec.options.lease_ms)));
            self.conns.get_mut(&conn).expect("just opened").subs.insert(subscription, q);
            self.trace.record(
                self.now,
                TraceEvent::Subscribe { actor: actor as u32, queue: q, subscription },
            );
        }
    }

    fn on_delivery(&mut self, actor: usize, subscription: u32, delivery: Delivery) {
        let a = &self.actors[actor];
        let (Role::Consumer(consumer), Some(conn)) = (&a.role, a.conn) else { return };
        let Some(&(queue, lease_ms)) = consumer.subs.get(&subscription) else { return };
        // The oracle vetted the id when the broker emitted it.
        let Some(key) = delivery.id.as_deref().and_then(parse_id) else { return };
        let tag = delivery.tag;
        let calm = consumer.drainer || self.phase != Phase::Faults;
        let w = &self.cfg.workload;
        let processing_ms = if consumer.drainer { 5 } else { w.processing_ms_max };
        let mut after = self.rng.range(0, processing_ms);
        let lease_ms = u64::from(lease_ms);
        let mut roll = if calm { u64::MAX } else { self.rng.below(1000) };
        let mut pick = |per_mille: u32| {
            let hit = roll < u64::from(per_mille);
            roll = roll.saturating_sub(u64::from(per_mille));
            hit
        };
        let action = if pick(w.nack_per_mille) {
            let delay_ms = self.rng.chance(500).then(|| self.rng.range(0, 100));
            let reason =
                self.rng.chance(700).then(|| format!("nack:m{key}:{}", self.rng.below(1 << 30)));
            Action::Nack { delay_ms, reason }
        } else if pick(w.reject_per_mille) {
            Action::Reject { reason: format!("reject:m{key}:{}", self.rng.below(1 << 30)) }
        } else if pick(w.touch_per_mille) {
            after = lease_ms * 2 / 3;
            Action::Touch { ack_after_ms: lease_ms * 2 / 3 }
        } else if pick(w.hold_per_mille) {
            // Past the lease: the broker retries it elsewhere; the late ack is ignored there.
            after = lease_ms + self.rng.range(20, 300);
            self.stats.holds += 1;
            self.record(TraceEvent::Hold { actor: actor as u32, key, tag });
            Action::Ack
        } else if pick(w.disconnect_per_mille) {
            Action::Disconnect { graceful: self.rng.chance(500) }
        } else {
            Action::Ack
        };
        let wake = Wake::Settle { conn, tag, queue, key, action };
        self.schedule(after, Event::Wake { actor, wake });
    }

    fn settle(&mut self, actor: usize, conn: ConnId, tag: u64, q: QIdx, key: u32, action: Action) {
        if self.actors[actor].conn != Some(conn) {
            return; // the delivery died with its connection
        }
        let action = match action {
            // In the liveness phase consumers ack everything.
            Action::Nack { .. } | Action::Reject { .. } | Action::Disconnect { .. }
                if self.phase != Phase::Faults =>
            {
                Action::Ack
            }
            action => action,
        };
        let who = actor as u32;
        if let Action::Disconnect { graceful } = action {
            self.record(TraceEvent::Disconnect { actor: who, graceful });
            if !graceful {
                return self.reset_conn(conn);
            }
            if let Some(client) = self.actors[actor].client.as_mut() {
                client.close();
            }
            return self.drain_client(actor);
        }
        let Some(client) = self.actors[actor].client.as_mut() else { return };
        let result = match action {
            Action::Ack => client.ack(tag).map(|()| {
                self.oracle.acked(&self.topology, q, key);
                self.stats.acks += 1;
                self.trace.record(self.now, TraceEvent::Ack { actor: who, key, tag });
            }),
            Action::Nack { delay_ms, reason } => {
                client.nack(tag, delay_ms, reason.clone()).map(|()| {
                    self.oracle.nacked(q, key, reason);
                    self.stats.nacks += 1;
                    self.trace
                        .record(self.now, TraceEvent::Nack { actor: who, key, tag, delay_ms });
                })
            }
            Action::Reject { reason } => client.reject(tag, reason.clone()).map(|()| {
                self.oracle.rejected(q, key, reason);
                self.stats.rejects += 1;
                self.trace.record(self.now, TraceEvent::Reject { actor: who, key, tag });
            }),
            Action::Touch { ack_after_ms } => client.touch(tag, None).map(|()| {
                self.stats.touches += 1;
                self.trace.record(self.now, TraceEvent::Touch { actor: who, key, tag });
                let wake = Wake::Settle { conn, tag, queue: q, key, action: Action::Ack };
                self.events.push(self.now.plus_ms(ack_after_ms), Event::Wake { actor, wake });
            }),
            Action::Disconnect { .. } => unreachable!("handled above"),
        };
        match result {
            Ok(()) | Err(CommandError::Closed) => {}
            Err(error) => return self.fail(("client-command", format!("settle m{key}: {error}"))),
        }
        self.drain_client(actor);
    }
}
