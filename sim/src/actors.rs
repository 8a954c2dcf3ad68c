//! The clients: each actor drives one `chute_core::client::Session`, the real client logic
//! (reconnect with backoff, restore, republish, retries, breaker, void settles), over the
//! simulated network. The simulator only plays the driver: it opens a connection when the
//! session asks (or refuses it while the broker is down) and carries bytes and timers.
//!
//! - The admin declares every queue and binding, then lists the dead-letter queues every 250 ms
//!   and has the oracle audit each entry.
//! - Publishers publish messages with unique ids (`m<key>`, payload derived from the key) and
//!   hand them to their session, which keeps every unconfirmed one and sends it again, same
//!   id, in order, on every new connection. A publish the breaker refuses waits for later.
//! - Consumers subscribe with credit once; the session subscribes again on every new
//!   connection. They ack most deliveries after a processing time; some they nack (with or
//!   without a delay and a reason), reject, touch and ack late, hold past their lease, or
//!   answer by closing (`Session::reconnect_now`) or dropping the connection. In the liveness
//!   phase they ack everything. Settling a delivery of a lost connection is void.
//! - Probers (`probers.rs`) are publishers logged in as users with permissions of their own:
//!   they publish inside and outside their rights and ask for queue stats and passive
//!   declarations, and every answer is judged against the simulator's own checker.
//! - The drainer appears in the liveness phase and acks everything from every queue, dead-letter
//!   queues included.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chute_core::client::{
    CommandError, LinkError, ReconnectPolicy, Response, RetryPolicy, Session, SessionConfig,
    SessionEvent, SessionInput, SessionOutput, Settled, SubscriptionOptions, Timeouts,
};
use chute_core::{ConnId, Input, Instant};
use chute_protocol::{
    BackoffPolicy, BreakerPolicy, Delivery, Destination, ErrorCode, PublishMessage, Schedule,
    LIST_PAGE_MAX,
};

use crate::events::{Action, Event, Wake};
use crate::oracle::{message_id, parse_id, payload, Dest, MsgInfo};
use crate::topology::QIdx;
use crate::trace::TraceEvent;
use crate::world::{Phase, World, HEARTBEAT_MS};

#[derive(Debug)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    /// Created when the actor starts; lives for the whole run.
    pub session: Option<Session>,
    /// The connection the session has now.
    pub conn: Option<ConnId>,
    pub timer_at: Option<Instant>,
    /// The user (index into the users table) a prober logs in as; others are anonymous.
    pub account: Option<usize>,
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
    /// Messages not yet handed to the session (its window was full, or the breaker open).
    pub to_send: VecDeque<u32>,
    /// The session's publish sequence numbers (stable over reconnects) → key.
    pub seq_to_key: BTreeMap<u64, u32>,
    /// A retry for the breaker is scheduled.
    retry_scheduled: bool,
    /// A prober's requests in flight: what each asks to do, judged when it is answered.
    pub probes: BTreeMap<u32, crate::probers::Probe>,
}

#[derive(Debug, Default)]
pub struct Consumer {
    queues: Vec<QIdx>,
    drainer: bool,
    /// The session's subscription → (queue, lease in ms).
    subs: BTreeMap<u32, (QIdx, u32)>,
}

impl Actor {
    fn new(name: String, role: Role) -> Actor {
        Actor { name, role, session: None, conn: None, timer_at: None, account: None }
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
        for user in 0..self.users.current().len() {
            let mut prober =
                Actor::new(format!("prober{user}"), Role::Publisher(Publisher::default()));
            prober.account = Some(user);
            self.actors.push(prober);
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
            Wake::Start => self.start(actor),
            Wake::Publish => self.publish_tick(actor),
            Wake::RetryPublish => {
                if let Role::Publisher(publisher) = &mut self.actors[actor].role {
                    publisher.retry_scheduled = false;
                }
                self.publish_pending(actor);
            }
            Wake::Audit => self.audit_tick(actor),
            Wake::Settle { epoch, tag, queue, key, action } => {
                self.settle(actor, epoch, tag, queue, key, action)
            }
        }
    }

    /// The session's settings: the real defaults where the simulation allows them, timings
    /// scaled to its short runs.
    fn session_config(&mut self, actor: usize) -> SessionConfig {
        let name = self.actors[actor].name.clone();
        // Probers have no breaker: their refusals are the point.
        let breaker = matches!(self.actors[actor].role, Role::Publisher(_))
            && self.actors[actor].account.is_none();
        let (credentials, client_certificate) = self.credentials_of(actor);
        SessionConfig {
            client: chute_core::client::ClientConfig {
                client_name: name,
                credentials,
                client_certificate,
                ..self.client_config.clone()
            },
            addresses: 1,
            reconnect: ReconnectPolicy {
                enabled: true,
                backoff: BackoffPolicy {
                    base_ms: 40,
                    factor_percent: 200,
                    max_ms: 1_000,
                    jitter: true,
                },
                attempts_max: None,
                // Actors start while the broker may be down.
                retry_first_connect: true,
                shuffle: false,
            },
            timeouts: Timeouts {
                connect_ms: 2_000,
                // Longer than any run: an answer the workload waits for never times out.
                request_ms: 600_000,
                declare_ms: 600_000,
                // Longer than a partition: a connection that holds a publish this long (a
                // stalled broker) is replaced, and the publish sent again.
                confirm_ms: Some(u64::from(HEARTBEAT_MS) * 10),
                // Every publish must end confirmed: no deadline.
                publish_ms: None,
            },
            retry: RetryPolicy::default(),
            breaker: breaker.then_some(BreakerPolicy { failures_max: 3, open_ms: 200 }),
            // Publishers give their own ids, which the oracle reads back.
            generate_ids: false,
            seed: self.rng.next_u64(),
        }
    }

    /// The actor's session starts (and asks to connect); the admin declares, consumers
    /// subscribe, once: the session does it again on every new connection.
    fn start(&mut self, actor: usize) {
        if self.actors[actor].session.is_some() {
            return;
        }
        let config = self.session_config(actor);
        self.actors[actor].session = Some(Session::new(config, self.now));
        match &self.actors[actor].role {
            Role::Admin(_) => self.declare_all(actor),
            Role::Consumer(_) => self.subscribe_all(actor),
            Role::Publisher(_) => {}
        }
        self.drain_session(actor);
    }

    // ---- the session ----

    fn session(&mut self, actor: usize) -> &mut Session {
        self.actors[actor].session.as_mut().expect("a started actor")
    }

    /// Feeds the session something from its connection.
    pub fn session_input(&mut self, actor: usize, input: SessionInput) {
        let now = self.now;
        let Some(session) = self.actors[actor].session.as_mut() else { return };
        session.handle_input(now, input);
        self.drain_session(actor);
    }

    pub fn drain_session(&mut self, actor: usize) {
        while let Some(output) = self.actors[actor].session.as_mut().and_then(Session::poll_output)
        {
            match output {
                SessionOutput::Connect { .. } => self.open_conn(actor),
                SessionOutput::Send(bytes) => {
                    if let Some(conn) = self.actors[actor].conn {
                        self.net_send(conn, true, bytes);
                    }
                }
                SessionOutput::Close => self.close_conn(actor),
                SessionOutput::Event(event) => self.actor_event(actor, event),
            }
        }
        self.arm_client_timer(actor);
    }

    /// The session asks for a transport: refused while the broker is down.
    fn open_conn(&mut self, actor: usize) {
        let now = self.now;
        if self.broker.is_none() {
            self.record(TraceEvent::Refused { actor: actor as u32 });
            let refused = SessionInput::ConnectFailed { reason: "connection refused".into() };
            return self.session(actor).handle_input(now, refused);
        }
        let conn = self.new_conn(actor);
        self.record(TraceEvent::Connect { actor: actor as u32, conn: conn.0 });
        self.actors[actor].conn = Some(conn);
        let peer = self.peer_of(actor);
        self.broker_input(Input::Accepted { conn, peer });
        self.session(actor).handle_input(now, SessionInput::TransportUp);
    }

    /// The session closes its transport: its bytes reach the broker, then the stream ends.
    fn close_conn(&mut self, actor: usize) {
        let Some(conn) = self.actors[actor].conn.take() else { return };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.client_closing = true;
            c.client_attached = false;
        }
        self.finish_client_close(conn);
    }

    /// The session's connection is gone (its `Disconnected` event): forget it.
    fn detach(&mut self, actor: usize) {
        let Some(conn) = self.actors[actor].conn.take() else { return };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.client_attached = false;
        }
        self.maybe_remove(conn);
    }

    fn arm_client_timer(&mut self, actor: usize) {
        let a = &mut self.actors[actor];
        let Some(at) = a.session.as_ref().and_then(Session::poll_timeout) else { return };
        let at = at.max(self.now);
        if a.timer_at.is_none_or(|current| at < current) {
            a.timer_at = Some(at);
            self.events.push(at, Event::ClientTimer { actor });
        }
    }

    pub fn on_client_timer(&mut self, actor: usize) {
        let a = &mut self.actors[actor];
        if a.timer_at != Some(self.now) {
            return;
        }
        a.timer_at = None;
        self.session_input(actor, SessionInput::Timeout);
    }

    fn actor_event(&mut self, actor: usize, event: SessionEvent) {
        match event {
            SessionEvent::Connected { .. } | SessionEvent::Reconnected { .. } => {
                self.map_subscriptions(actor);
                self.publish_pending(actor);
            }
            SessionEvent::Disconnected { error, .. } => self.on_disconnected(actor, error),
            SessionEvent::Confirmed(range) => {
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
                    self.judge_publish(actor, key, false);
                    self.oracle.messages[key as usize].confirmed = true;
                    self.record(TraceEvent::Confirm { actor: actor as u32, key });
                }
                self.publish_pending(actor);
            }
            SessionEvent::NotConfirmed { seq, error } => {
                if self.prober_not_confirmed(actor, seq, &error) {
                    return self.publish_pending(actor);
                }
                let name = &self.actors[actor].name;
                self.fail(("publish-refused", format!("{name}: publish {seq}: {error}")));
            }
            SessionEvent::Deliveries { subscription, epoch, deliveries } => {
                for delivery in deliveries {
                    self.on_delivery(actor, subscription, epoch, delivery);
                }
            }
            SessionEvent::Response { request_id, response } => {
                self.on_response(actor, request_id, response)
            }
            // A removed user's requests die with its session.
            SessionEvent::RequestFailed { .. } if self.account_removed(actor) => {}
            SessionEvent::RequestFailed { request_id, error } => {
                let name = &self.actors[actor].name;
                self.fail(("request-refused", format!("{name}: request {request_id}: {error}")));
            }
            SessionEvent::SubscriptionCancelled { subscription, code, message } => {
                let detail = format!("subscription {subscription}: {code}: {message}");
                self.fail(("subscription-cancelled", detail));
            }
            SessionEvent::RestoreFailed { what, code, message } => {
                self.fail(("restore-refused", format!("{what}: {code}: {message}")));
            }
            SessionEvent::Closed { reason } => {
                if self.account_removed(actor) {
                    return self.retire(actor);
                }
                let name = &self.actors[actor].name;
                self.fail(("session-ended", format!("{name}: {reason:?}")));
            }
            _ => {}
        }
    }

    /// Tells the network which subscription id of the new connection is which queue, so that
    /// the broker's `Deliver` frames can be attributed. The session subscribed before telling
    /// us it is connected, and before sending anything.
    fn map_subscriptions(&mut self, actor: usize) {
        let a = &self.actors[actor];
        let (Role::Consumer(consumer), Some(conn), Some(session)) = (&a.role, a.conn, &a.session)
        else {
            return;
        };
        let mapping: Vec<(u32, QIdx)> = consumer
            .subs
            .iter()
            .filter_map(|(sub, (q, _))| Some((session.subscription_wire_id(*sub)?, *q)))
            .collect();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.subs.extend(mapping);
        }
    }

    fn on_disconnected(&mut self, actor: usize, error: LinkError) {
        let expected = [
            ErrorCode::NORMAL_CLOSE,
            ErrorCode::HEARTBEAT_TIMEOUT,
            ErrorCode::HANDSHAKE_TIMEOUT,
            ErrorCode::STORAGE_FAILED,
            ErrorCode::SHUTTING_DOWN,
        ];
        // A lost transport (reset, crash), a refused connect, a stuck connection replaced, a
        // move the consumer asked for: all expected. A protocol error is not.
        let code = match &error {
            LinkError::Closed { code, message } => {
                // A removed user's connection is closed, and it may not log in again.
                let removed = [ErrorCode::CLOSED_BY_OPERATOR, ErrorCode::AUTHENTICATION_FAILED];
                let expected_here = expected.contains(code)
                    || (removed.contains(code) && self.account_removed(actor));
                if !expected_here {
                    let name = &self.actors[actor].name;
                    let detail = format!("{name}: closed with {code:?}: {message}");
                    self.fail(("connection-error", detail));
                }
                Some(code.0)
            }
            LinkError::ConnectFailed { .. } => return,
            _ => None,
        };
        // A lost transport has no wire code; the trace records it as u16::MAX.
        let code = code.unwrap_or(u16::MAX);
        self.record(TraceEvent::ClientClosed { actor: actor as u32, code });
        self.detach(actor);
    }

    fn on_response(&mut self, actor: usize, request_id: u32, response: Response) {
        if self.probe_answered(actor, request_id, &response) {
            return;
        }
        if let Response::Failed(error) = &response {
            let name = &self.actors[actor].name;
            return self
                .fail(("request-refused", format!("{name}: request {request_id}: {error:?}")));
        }
        let Role::Admin(admin) = &mut self.actors[actor].role else { return };
        if admin.pending.remove(&request_id) && admin.pending.is_empty() && !admin.ready {
            admin.ready = true;
            self.start_faults();
            return;
        }
        if let (Some(dlq), Response::DlqList(list)) = (admin.audits.remove(&request_id), response) {
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

    // ---- admin ----

    fn declare_all(&mut self, actor: usize) {
        let now = self.now;
        let a = &mut self.actors[actor];
        let (Some(session), Role::Admin(admin)) = (a.session.as_mut(), &mut a.role) else { return };
        for spec in &self.topology.queues {
            let request = session.declare_queue(now, &spec.name, spec.options.clone(), false);
            admin.pending.insert(request.expect("a new session takes commands"));
        }
        for (pattern, q) in &self.topology.bindings {
            let request = session.bind(now, &self.topology.queue(*q).name, pattern);
            admin.pending.insert(request.expect("a new session takes commands"));
        }
    }

    fn audit_tick(&mut self, actor: usize) {
        if matches!(self.phase, Phase::Faults | Phase::Liveness) {
            self.schedule(250, Event::Wake { actor, wake: Wake::Audit });
        }
        let a = &self.actors[actor];
        let connected = a.session.as_ref().is_some_and(Session::is_connected);
        if !connected || !matches!(&a.role, Role::Admin(admin) if admin.ready) {
            return;
        }
        let dlqs: Vec<QIdx> = (0..self.topology.queues.len() as QIdx)
            .filter(|q| self.topology.queue(*q).is_dlq())
            .collect();
        for dlq in dlqs {
            self.list_dead_letters(actor, dlq, None);
        }
        self.drain_session(actor);
    }

    fn list_dead_letters(&mut self, actor: usize, dlq: QIdx, after: Option<u64>) {
        let now = self.now;
        let name = self.topology.queue(dlq).name.clone();
        let a = &mut self.actors[actor];
        let (Some(session), Role::Admin(admin)) = (a.session.as_mut(), &mut a.role) else { return };
        if let Ok(request) = session.dlq_list(now, &name, after, LIST_PAGE_MAX as u32) {
            admin.audits.insert(request, dlq);
        }
    }

    // ---- publishers ----

    fn publish_tick(&mut self, actor: usize) {
        if self.phase != Phase::Faults {
            return; // publishers only finish what is unconfirmed from now on
        }
        let workload = &self.cfg.workload;
        // A prober publishes one message a tick: its refusals are cheap to check, and a few
        // hundred of them a run are plenty.
        let prober = self.actors[actor].account.is_some();
        let burst = if prober { 1 } else { self.rng.range(1, workload.burst_max.max(1)) };
        let every = workload.publish_every_ms;
        if self.account_removed(actor) {
            return;
        }
        for _ in 0..burst {
            self.new_message(actor);
        }
        self.probe(actor);
        let after = self.rng.interval(every);
        self.schedule(after, Event::Wake { actor, wake: Wake::Publish });
        self.publish_pending(actor);
    }

    fn new_message(&mut self, actor: usize) {
        let w = self.cfg.workload.clone();
        let t = &self.topology;
        // Probers publish to topics more often: a topic's write check is theirs to test.
        let prober = self.actors[actor].account.is_some();
        let topic_per_mille = if prober { 500 } else { w.topic_per_mille };
        let (dest, mut targets) = if self.rng.chance(topic_per_mille) {
            let topic = self.rng.index(t.topics.len());
            (Dest::Topic(topic as u8), t.route(&t.topics[topic]))
        } else {
            let sources = t.sources();
            let q = sources[self.rng.index(sources.len())];
            (Dest::Queue(q), vec![q])
        };
        let (work, delayed) = (t.idx("work"), t.idx("delayed"));
        let unauthorized = !self.may_write(actor, dest);
        if unauthorized {
            targets.clear();
        }
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
            unauthorized,
            users_epoch: self.users.epoch(),
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
        // A publish refused by the checker is counted when the broker refuses it (`denied`).
        self.stats.published += u64::from(!unauthorized);
        let Role::Publisher(publisher) = &mut self.actors[actor].role else {
            unreachable!("a publisher")
        };
        publisher.unconfirmed.insert(key);
        publisher.to_send.push_back(key);
    }

    /// Hands messages to the session while its window has room. It sends them when it has a
    /// connection, and again on every new one until they are confirmed.
    fn publish_pending(&mut self, actor: usize) {
        let now = self.now;
        loop {
            let a = &mut self.actors[actor];
            let (Some(session), Role::Publisher(publisher)) = (a.session.as_mut(), &mut a.role)
            else {
                return;
            };
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
            match session.publish(now, &destination, mandatory, message) {
                Ok(seq) => {
                    publisher.seq_to_key.insert(seq, key);
                    publisher.to_send.pop_front();
                    self.trace
                        .record(self.now, TraceEvent::Publish { actor: actor as u32, key, seq });
                }
                Err(CommandError::WindowFull { .. }) => break,
                // The breaker is open: try again once it lets a trial through.
                Err(CommandError::CircuitOpen { retry_in_ms }) => {
                    if !std::mem::replace(&mut publisher.retry_scheduled, true) {
                        let wake = Event::Wake { actor, wake: Wake::RetryPublish };
                        self.schedule(retry_in_ms.max(1), wake);
                    }
                    break;
                }
                Err(error) => return self.fail(("client-command", format!("publish: {error}"))),
            }
        }
        self.drain_session(actor);
    }

    // ---- consumers ----

    fn subscribe_all(&mut self, actor: usize) {
        let credit_max = self.cfg.workload.credit_max.max(1);
        let now = self.now;
        let Role::Consumer(consumer) = &self.actors[actor].role else { return };
        let (queues, drainer) = (consumer.queues.clone(), consumer.drainer);
        for q in queues {
            let spec = self.topology.queue(q);
            let (credit, lease_ms) = if drainer {
                (64, None)
            } else {
                let lease = self.rng.chance(200).then(|| self.rng.range(150, 400) as u32);
                (self.rng.range(1, u64::from(credit_max)) as u32, lease)
            };
            let options = SubscriptionOptions { credit, lease_ms, rate: None, auto_credit: true };
            let lease = lease_ms.unwrap_or(spec.options.lease_ms);
            let name = spec.name.clone();
            let (_, subscription) = self
                .session(actor)
                .subscribe(now, &name, options)
                .expect("a new session takes commands");
            let Role::Consumer(consumer) = &mut self.actors[actor].role else { unreachable!() };
            consumer.subs.insert(subscription, (q, lease));
            self.trace.record(
                self.now,
                TraceEvent::Subscribe { actor: actor as u32, queue: q, subscription },
            );
        }
    }

    fn on_delivery(&mut self, actor: usize, subscription: u32, epoch: u64, delivery: Delivery) {
        let Role::Consumer(consumer) = &self.actors[actor].role else { return };
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
        let wake = Wake::Settle { epoch, tag, queue, key, action };
        self.schedule(after, Event::Wake { actor, wake });
    }

    /// Settles a delivery through the session, which sends nothing for one of a connection
    /// that is gone (void: the broker delivers the message again).
    fn settle(&mut self, actor: usize, epoch: u64, tag: u64, q: QIdx, key: u32, action: Action) {
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
            if self.session(actor).epoch() != epoch {
                return; // the delivery died with its connection
            }
            self.record(TraceEvent::Disconnect { actor: who, graceful });
            if !graceful {
                if let Some(conn) = self.actors[actor].conn {
                    self.reset_conn(conn);
                }
                return;
            }
            self.session(actor).reconnect_now();
            return self.drain_session(actor);
        }
        let session = self.actors[actor].session.as_mut().expect("a started actor");
        let result = match &action {
            Action::Ack => session.ack(epoch, tag),
            Action::Nack { delay_ms, reason } => {
                session.nack(epoch, tag, *delay_ms, reason.clone())
            }
            Action::Reject { reason } => session.reject(epoch, tag, reason.clone()),
            Action::Touch { .. } => session.touch(epoch, tag, None),
            Action::Disconnect { .. } => unreachable!("handled above"),
        };
        match result {
            Ok(Settled::Sent) => self.settled(actor, epoch, tag, q, key, action),
            // Void: the connection is gone, nothing was sent, the broker redelivers.
            Ok(Settled::Void) | Err(CommandError::Closed) => {}
            Err(error) => return self.fail(("client-command", format!("settle m{key}: {error}"))),
        }
        self.drain_session(actor);
    }

    /// What a settle that went out means for the oracle and the trace.
    fn settled(&mut self, actor: usize, epoch: u64, tag: u64, q: QIdx, key: u32, action: Action) {
        let who = actor as u32;
        match action {
            Action::Ack => {
                self.oracle.acked(&self.topology, q, key);
                self.stats.acks += 1;
                self.record(TraceEvent::Ack { actor: who, key, tag });
            }
            Action::Nack { delay_ms, reason } => {
                self.oracle.nacked(q, key, reason);
                self.stats.nacks += 1;
                self.record(TraceEvent::Nack { actor: who, key, tag, delay_ms });
            }
            Action::Reject { reason } => {
                self.oracle.rejected(q, key, reason);
                self.stats.rejects += 1;
                self.record(TraceEvent::Reject { actor: who, key, tag });
            }
            Action::Touch { ack_after_ms } => {
                self.stats.touches += 1;
                self.record(TraceEvent::Touch { actor: who, key, tag });
                let wake = Wake::Settle { epoch, tag, queue: q, key, action: Action::Ack };
                self.events.push(self.now.plus_ms(ack_after_ms), Event::Wake { actor, wake });
            }
            Action::Disconnect { .. } => unreachable!("handled by settle"),
        }
    }
}
