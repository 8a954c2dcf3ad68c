//! The broker state machine under structure-aware sequences of client operations.
//!
//! The input (through `arbitrary`) is the options of three queues (`dlq`, `q0`, `q1`) and a
//! sequence of operations: real client machines (`chute_core::client::Client`) connect,
//! publish to queues and topics, subscribe, grant credit, ack, nack, reject, touch,
//! unsubscribe, close or drop their transport; an admin client declares, deletes, purges,
//! binds and redrives; time advances; a client's connection receives raw garbage; and the
//! broker crashes (a process crash keeps every written byte, a machine crash only what a sync
//! covered) and is recovered from its segment files with `Broker::recover`.
//!
//! Storage is chute-core's instant in-memory disk (`test_util::MemDisk`), whose bytes a crash
//! is recovered from; `PauseRead` is honoured by holding a client's bytes.
//!
//! Checked after every step:
//! - nothing panics (in the broker, the client machines or recovery), and recovery accepts
//!   every log the broker wrote, cut as either crash cuts it;
//! - every delivered payload was published by the fuzzer and never refused; attempts are at
//!   least 1 and at most the queue's `attempts_max`; `redelivered` is `attempt > 1`; tags
//!   increase on each connection;
//! - each publish gets at most one outcome, and by the end of the run (after a long wait)
//!   every publish of a client still connected has one;
//! - conservation, per broker lifetime: messages published to queues plus those recovered at
//!   start equal those acked, dropped (counted), purged or deleted with their queue, plus
//!   those the queues still hold (in flight and dead letters included);
//! - each queue's stats add up: ready + delayed + in flight + group-blocked = depth (nothing
//!   waits for the instant disk between steps); its dead-letter count matches its DLQ list;
//!   it has no more in flight than clients hold (unless a paused connection's bytes, which
//!   may settle some, are held);
//! - a process crash (every queue durable) loses no message and no queue; a machine crash
//!   loses no queue whose declaration was answered.
//!
//! Garbage cannot publish, subscribe or change queues, bindings or dead letters behind the
//! fuzzer's back (that would void the checks): the first frame of such a kind in it has its
//! kind byte zeroed, which makes the broker close the connection there.
//!
//! `CHUTE_FUZZ_TRACE=1 cargo fuzz run -s none broker_ops <input>` prints every step.

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use chute_core::client::{Client, ClientConfig, ClientEvent, ClientInput, ClientOutput, Response};
use chute_core::test_util::MemDisk;
use chute_core::{Broker, BrokerConfig, ConnId, Event, Input, Instant, Output};
use chute_protocol::{
    BackoffPolicy, BreakerPolicy, Delivery, Destination, Durability, ExpiryPolicy, FrameKind,
    OverflowPolicy, PublishMessage, QueueOptions, RateLimit, RateLimitPolicy, Schedule,
    FRAME_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

const QUEUES: [&str; 3] = ["dlq", "q0", "q1"];
const PATTERNS: [&str; 4] = ["a.*", "a.#", "#", "b.c"];
const TOPICS: [&str; 4] = ["a.x", "a.b.c", "b.c", "z"];
const CLIENTS_MAX: usize = 4;
const OPS_MAX: usize = 256;
/// Every payload the fuzzer publishes starts with this, then a unique number.
const PAYLOAD_PREFIX: &[u8] = b"\xf0cf";

/// The whole input. The seed generator (`examples/gen_seeds.rs`) writes this layout by hand:
/// keep the field and variant order in step with it.
#[derive(Arbitrary, Debug)]
struct Run {
    queues: [QueueSpec; 3],
    /// Bit 0 and 1: client 0 and 1 start subscribed (to `q0` and `dlq`, credit 8).
    setup: u8,
    ops: Vec<Op>,
}

/// A queue's options, one byte per group of options so that short inputs reach operations.
#[derive(Arbitrary, Debug)]
struct QueueSpec {
    /// `% 3`: always, none, interval (1..=50 ms, from `% 50`).
    durability: u8,
    /// 0: unlimited, else `% 5 + 1` attempts.
    attempts_max: u8,
    /// Bits 0..6: base in units of 4 ms; bit 6: doubling; bit 7: jitter.
    backoff: u8,
    /// Lease in units of 20 ms (+1).
    lease: u8,
    /// 0: no TTL, else in units of 40 ms; bit 7 of `limits` picks the drop policy.
    ttl: u8,
    /// Bits 0..3: messages_max (0 none, else that many); bit 3: drop-head; bits 4..6: bytes_max
    /// (0 none, else 256 times that); bit 7: drop expired messages.
    limits: u8,
    /// Bits 0..3: dead-letter queue (0 none, 1..=5 `dlq`, 6..=7 `q0`); bits 3..5: dedup
    /// window (0 none, else 250 ms times that); bits 5..7: breaker (0 none, else that many
    /// failures, open 500 ms); bit 7: a publish rate of 50/s, burst 5 (pause, or reject when
    /// bit 7 of `durability` is set).
    extras: u8,
}

#[derive(Arbitrary, Debug)]
struct MessageSpec {
    priority: u8,
    group: Option<u8>,
    delay_ms: Option<u16>,
    ttl_ms: Option<u16>,
    id: Option<u8>,
    /// Payload filler, in units of 8 bytes.
    size: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Connect,
    Declare {
        queue: u8,
    },
    Delete {
        queue: u8,
        if_empty: bool,
    },
    Purge {
        queue: u8,
    },
    Bind {
        queue: u8,
        pattern: u8,
    },
    Unbind {
        queue: u8,
        pattern: u8,
    },
    Publish {
        client: u8,
        topic: Option<u8>,
        queue: u8,
        mandatory: bool,
        messages: Vec<MessageSpec>,
    },
    Subscribe {
        client: u8,
        queue: u8,
        credit: u8,
        lease_ms: Option<u16>,
        auto_credit: bool,
    },
    Credit {
        client: u8,
        credit: u8,
    },
    Unsubscribe {
        client: u8,
    },
    Ack {
        client: u8,
        pick: u8,
    },
    Nack {
        client: u8,
        pick: u8,
        delay_ms: Option<u16>,
        reason: bool,
    },
    Reject {
        client: u8,
        pick: u8,
    },
    Touch {
        client: u8,
        pick: u8,
        lease_ms: Option<u16>,
    },
    Close {
        client: u8,
    },
    DropTransport {
        client: u8,
    },
    Advance {
        ms: u16,
    },
    AdvanceLong {
        seconds: u8,
    },
    Redrive {
        queue: u8,
        pick: Option<u8>,
    },
    Garbage {
        client: u8,
        bytes: Vec<u8>,
    },
    Crash {
        machine: bool,
    },
}

fuzz_target!(|run: Run| {
    let mut fuzz = Fuzz::new(&run.queues, run.setup);
    for op in run.ops.iter().take(OPS_MAX) {
        trace(|| format!("{:?} op {op:?}", fuzz.now));
        fuzz.apply(op);
        fuzz.check();
    }
    fuzz.finish();
});

fn queue_options(spec: &QueueSpec) -> QueueOptions {
    let durability = match spec.durability % 3 {
        0 => Durability::Always,
        1 => Durability::None,
        _ => Durability::Interval { sync_interval_ms: 1 + u32::from(spec.durability % 50) },
    };
    let base_ms = u32::from(spec.backoff & 0x3f) * 4;
    let bits = |byte: u8, from: u32, len: u32| (byte >> from) & ((1 << len) - 1);
    let limits = spec.limits;
    let extras = spec.extras;
    QueueOptions {
        durability,
        messages_max: (bits(limits, 0, 3) > 0).then(|| u64::from(bits(limits, 0, 3))),
        bytes_max: (bits(limits, 4, 3) > 0).then(|| 256 * u64::from(bits(limits, 4, 3))),
        overflow: if bits(limits, 3, 1) == 1 {
            OverflowPolicy::DropHead
        } else {
            OverflowPolicy::RejectPublish
        },
        ttl_ms: (spec.ttl > 0).then(|| 40 * u64::from(spec.ttl)),
        expiry: if bits(limits, 7, 1) == 1 { ExpiryPolicy::Drop } else { ExpiryPolicy::DeadLetter },
        dead_letter: match bits(extras, 0, 3) {
            0 => None,
            1..=5 => Some(QUEUES[0].to_string()),
            _ => Some(QUEUES[1].to_string()),
        },
        attempts_max: (spec.attempts_max > 0).then(|| u32::from(spec.attempts_max % 5) + 1),
        backoff: BackoffPolicy {
            base_ms,
            factor_percent: if bits(spec.backoff, 6, 1) == 1 { 200 } else { 100 },
            max_ms: base_ms * 8,
            jitter: bits(spec.backoff, 7, 1) == 1,
        },
        lease_ms: 20 * u32::from(spec.lease) + 1,
        dedup_window_ms: (bits(extras, 3, 2) > 0).then(|| 250 * u64::from(bits(extras, 3, 2))),
        breaker: (bits(extras, 5, 2) > 0)
            .then(|| BreakerPolicy { failures_max: u32::from(bits(extras, 5, 2)), open_ms: 500 }),
        publish_rate: (bits(extras, 7, 1) == 1).then_some(RateLimit {
            per_second: 50,
            burst: 5,
            policy: if spec.durability & 0x80 != 0 {
                RateLimitPolicy::Reject
            } else {
                RateLimitPolicy::Pause
            },
        }),
    }
}

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    // The smallest segments, so runs rotate, checkpoint and compact.
    config.storage.segment_bytes_max = 64 * 1024;
    // A few KiB of payloads in memory: queued payloads beyond leave it and are read back from
    // the log (docs/STORAGE.md §17), so runs evict, read and recover payloads on disk.
    config.storage.payload_cache_bytes = 4 * 1024;
    config
}

// ---- the clients ----

/// A client machine and what the fuzzer knows about its connection.
struct Peer {
    conn: ConnId,
    client: Client,
    /// The transport is closed (by either side): nothing more is sent on it.
    gone: bool,
    /// Bytes held while the broker asked not to be read (`PauseRead`).
    paused: Option<BytesMut>,
    /// Active subscriptions: id → queue name.
    subscriptions: BTreeMap<u32, String>,
    /// Every subscription the client made (ids are not reused): deliveries may still arrive
    /// for one it left while the broker was not reading its `Unsubscribe`.
    queue_of: BTreeMap<u32, String>,
    /// Outstanding deliveries (tag, queue), in the order received.
    outstanding: Vec<(u64, String)>,
    /// The last tag received on the connection.
    last_tag: u64,
    /// Publishes without an outcome yet: client seq → payload.
    unconfirmed: BTreeMap<u64, Bytes>,
    events: Vec<ClientEvent>,
}

/// What the admin client asked and waits for.
#[derive(Debug)]
enum Request {
    Declare(String),
    Purge,
    Other,
}

struct Fuzz {
    now: Instant,
    specs: Vec<QueueOptions>,
    broker: Broker,
    disk: MemDisk,
    peers: Vec<Peer>,
    admin: Option<Peer>,
    next_conn: u64,
    /// Connections the broker closed or forgot: it must send nothing more on them.
    forgotten: BTreeSet<ConnId>,
    requests: BTreeMap<u32, Request>,
    responses: BTreeMap<u32, Response>,
    /// Options in force, by queue name, as declared.
    options: BTreeMap<String, QueueOptions>,
    /// Every payload published, and those refused (never stored).
    sent: BTreeSet<Bytes>,
    refused: BTreeSet<Bytes>,
    /// Every payload delivered at least once, from any queue.
    delivered: BTreeSet<Bytes>,
    next_payload: u32,
    /// Since this broker started: messages recovered at start, and counters of deleted queues
    /// with the messages they held, purges.
    recovered: u64,
    retired_published: u64,
    retired_gone: u64,
}

impl Fuzz {
    fn new(specs: &[QueueSpec; 3], setup: u8) -> Fuzz {
        let now = Instant::ZERO;
        let mut fuzz = Fuzz {
            now,
            specs: specs.iter().map(queue_options).collect(),
            broker: Broker::new(config(), now),
            disk: MemDisk::default(),
            peers: Vec::new(),
            admin: None,
            next_conn: 1,
            forgotten: BTreeSet::new(),
            requests: BTreeMap::new(),
            responses: BTreeMap::new(),
            options: BTreeMap::new(),
            sent: BTreeSet::new(),
            refused: BTreeSet::new(),
            delivered: BTreeSet::new(),
            next_payload: 0,
            recovered: 0,
            retired_published: 0,
            retired_gone: 0,
        };
        fuzz.pump();
        fuzz.connect_admin();
        for index in 0..QUEUES.len() {
            fuzz.declare(index);
        }
        for (client, queue) in [(0u8, 1u8), (1, 0)] {
            fuzz.apply(&Op::Connect);
            if setup & (1 << client) != 0 {
                let subscribe =
                    Op::Subscribe { client, queue, credit: 8, lease_ms: None, auto_credit: false };
                fuzz.apply(&subscribe);
            }
        }
        fuzz
    }

    // ---- driving ----

    fn input(&mut self, input: Input) {
        trace(|| format!("{:?} <- {input:?}", self.now));
        self.broker.handle_input(self.now, input);
    }

    fn open_peer(&mut self) -> Peer {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.input(Input::Accepted { conn, peer: Default::default() });
        let client = Client::new(ClientConfig::default(), self.now);
        Peer {
            conn,
            client,
            gone: false,
            paused: None,
            subscriptions: BTreeMap::new(),
            queue_of: BTreeMap::new(),
            outstanding: Vec::new(),
            last_tag: 0,
            unconfirmed: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    fn connect_admin(&mut self) {
        let admin = self.open_peer();
        self.admin = Some(admin);
        self.pump();
    }

    fn peer_mut(&mut self, conn: ConnId) -> Option<&mut Peer> {
        self.peers.iter_mut().chain(self.admin.iter_mut()).find(|p| p.conn == conn)
    }

    /// Moves bytes, storage requests and events until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(output) = self.broker.poll_output() {
                moved = true;
                self.carry_out(output);
            }
            let conns: Vec<ConnId> =
                self.peers.iter().chain(self.admin.iter()).map(|p| p.conn).collect();
            for conn in conns {
                moved |= self.drain_client(conn);
            }
            if !moved {
                break;
            }
        }
        self.process_events();
    }

    fn carry_out(&mut self, output: Output) {
        trace(|| format!("{:?} -> {output:?}", self.now));
        let now = self.now;
        match output {
            Output::Send { conn, bytes } => {
                assert!(conn.0 < self.next_conn, "Send to {conn}, never accepted");
                assert!(!self.forgotten.contains(&conn), "Send to {conn} after it was closed");
                let len = bytes.len() as u64;
                if let Some(peer) = self.peer_mut(conn).filter(|p| !p.gone) {
                    peer.client.handle_input(now, ClientInput::Received(bytes));
                    self.input(Input::Flushed { conn, bytes: len });
                }
            }
            Output::PauseRead { conn } => {
                if let Some(peer) = self.peer_mut(conn) {
                    peer.paused.get_or_insert_with(BytesMut::new);
                }
            }
            Output::ResumeRead { conn } => {
                let Some(peer) = self.peer_mut(conn) else { return };
                if let Some(held) = peer.paused.take() {
                    if !held.is_empty() && !peer.gone {
                        self.input(Input::Received { conn, bytes: held.freeze() });
                    }
                }
            }
            Output::Close { conn } | Output::Event(Event::ConnectionClosed { conn, .. }) => {
                self.forgotten.insert(conn);
                if let Some(peer) = self.peer_mut(conn) {
                    peer.paused = None;
                }
            }
            Output::Storage(request) => {
                if let Some(done) = self.disk.apply(&request).expect("a request a disk can do") {
                    self.input(Input::Storage(done));
                }
            }
            Output::Event(Event::Halted { failure }) => panic!("the broker halted: {failure}"),
            Output::Event(_) | Output::Audit(_) => {}
        }
    }

    fn drain_client(&mut self, conn: ConnId) -> bool {
        let peer = self.peer_mut(conn).expect("peer exists");
        let mut outputs = Vec::new();
        while let Some(output) = peer.client.poll_output() {
            outputs.push(output);
        }
        let moved = !outputs.is_empty();
        for output in outputs {
            let peer = self.peer_mut(conn).expect("peer exists");
            match output {
                ClientOutput::Send(bytes) => self.send(conn, bytes),
                ClientOutput::Event(event) => peer.events.push(event),
                ClientOutput::Close => self.close_transport(conn),
            }
        }
        moved
    }

    /// The client's side closed the socket: the broker sees the stream end (unless it had
    /// already forgotten the connection).
    fn close_transport(&mut self, conn: ConnId) {
        let Some(peer) = self.peer_mut(conn) else { return };
        if peer.gone {
            return;
        }
        peer.gone = true;
        if !self.forgotten.contains(&conn) {
            self.input(Input::Closed { conn });
        }
    }

    /// Bytes from a client to the broker, held while the broker does not read.
    fn send(&mut self, conn: ConnId, bytes: Bytes) {
        let forgotten = self.forgotten.contains(&conn);
        let Some(peer) = self.peer_mut(conn) else { return };
        if peer.gone || forgotten {
            return;
        }
        if let Some(held) = &mut peer.paused {
            held.extend_from_slice(&bytes);
            return;
        }
        self.input(Input::Received { conn, bytes });
    }

    /// Lets `ms` pass, firing every broker and client timer on the way, in order.
    fn advance(&mut self, ms: u64) {
        let end = self.now.plus_ms(ms);
        loop {
            let clients =
                self.peers.iter().chain(self.admin.iter()).filter_map(|p| p.client.poll_timeout());
            let next = self.broker.poll_timeout().into_iter().chain(clients).min();
            let Some(at) = next.filter(|at| *at <= end) else { break };
            self.now = self.now.max(at);
            self.input(Input::Timeout);
            let now = self.now;
            for peer in self.peers.iter_mut().chain(self.admin.iter_mut()) {
                if peer.client.poll_timeout().is_some_and(|t| t <= now) {
                    peer.client.handle_input(now, ClientInput::Timeout);
                }
            }
            self.pump();
        }
        self.now = end;
        self.input(Input::Timeout);
        self.pump();
    }

    // ---- events ----

    fn process_events(&mut self) {
        let mut closed = Vec::new();
        for index in 0..self.peers.len() + 1 {
            let admin = index == self.peers.len();
            let peer = if !admin {
                &mut self.peers[index]
            } else {
                match &mut self.admin {
                    Some(admin) => admin,
                    None => continue,
                }
            };
            for event in std::mem::take(&mut peer.events) {
                match event {
                    ClientEvent::Connected(_)
                    | ClientEvent::GoingAway(_)
                    | ClientEvent::Blocked { .. }
                    | ClientEvent::Unblocked => {}
                    ClientEvent::Confirmed(range) => {
                        for seq in range.iter() {
                            let payload = peer.unconfirmed.remove(&seq);
                            assert!(payload.is_some(), "confirm of seq {seq}, not outstanding");
                        }
                    }
                    ClientEvent::PublishFailed(failure) => {
                        let payload = peer.unconfirmed.remove(&failure.seq);
                        let payload = payload.unwrap_or_else(|| {
                            panic!("refusal of seq {}, not outstanding", failure.seq)
                        });
                        self.refused.insert(payload);
                    }
                    ClientEvent::Deliveries { subscription, deliveries } => {
                        let queue = peer.queue_of.get(&subscription).cloned();
                        let queue = queue.unwrap_or_else(|| {
                            panic!("delivery to unknown subscription {subscription}")
                        });
                        for delivery in deliveries {
                            check_delivery(
                                &delivery,
                                &self.sent,
                                &self.refused,
                                &mut self.delivered,
                                self.options.get(&queue),
                            );
                            let tag = delivery.tag;
                            assert!(
                                tag > peer.last_tag,
                                "tags on {}: {} then {tag}",
                                peer.conn,
                                peer.last_tag
                            );
                            peer.last_tag = tag;
                            peer.outstanding.push((delivery.tag, queue.clone()));
                        }
                    }
                    // Request ids are per connection; only the admin's are awaited.
                    ClientEvent::Response { request_id, response } if admin => {
                        self.responses.insert(request_id, response);
                    }
                    ClientEvent::Response { .. } => {}
                    ClientEvent::SubscriptionCancelled(cancelled) => {
                        peer.subscriptions.remove(&cancelled.subscription);
                    }
                    ClientEvent::Closed { .. } => closed.push(peer.conn),
                }
            }
        }
        for conn in closed {
            self.forget_peer(conn);
        }
        let requests = std::mem::take(&mut self.requests);
        for (request_id, request) in requests {
            match self.responses.remove(&request_id) {
                Some(response) => self.answered(request, response),
                None => {
                    self.requests.insert(request_id, request);
                }
            }
        }
    }

    /// A client that is closed: its publishes without an outcome will never have one.
    fn forget_peer(&mut self, conn: ConnId) {
        self.close_transport(conn);
        self.peers.retain(|p| p.conn != conn);
        if self.admin.as_ref().is_some_and(|a| a.conn == conn) {
            self.admin = None;
            // Its answers will not come.
            self.requests.clear();
        }
    }

    fn answered(&mut self, request: Request, response: Response) {
        match (request, response) {
            (Request::Declare(name), Response::Declared(ok)) => {
                self.options.insert(name, ok.options);
            }
            (Request::Purge, Response::Done { count }) => self.retired_gone += count,
            _ => {}
        }
    }

    // ---- operations ----

    fn admin(&mut self) -> Option<&mut Client> {
        if self.admin.is_none() {
            self.connect_admin();
        }
        let forgotten = &self.forgotten;
        self.admin
            .as_mut()
            .filter(|a| !a.gone && !forgotten.contains(&a.conn))
            .map(|a| &mut a.client)
    }

    fn declare(&mut self, index: usize) {
        let name = QUEUES[index];
        let options = self.specs[index].clone();
        let dead_letter = options.dead_letter.clone();
        let Some(admin) = self.admin() else { return };
        let Ok(request) = admin.declare_queue(name, options, false) else { return };
        self.requests.insert(request, Request::Declare(name.to_string()));
        self.pump();
        // A dead-letter queue that did not exist was created with the default options.
        if let Some(target) = dead_letter {
            if self.broker.queue_names().any(|n| n == target) && !self.options.contains_key(&target)
            {
                self.options.insert(target, QueueOptions::default());
            }
        }
    }

    fn peer_index(&self, client: u8) -> Option<usize> {
        (!self.peers.is_empty()).then(|| usize::from(client) % self.peers.len())
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Connect => {
                if self.peers.len() < CLIENTS_MAX {
                    let peer = self.open_peer();
                    self.peers.push(peer);
                }
            }
            Op::Declare { queue } => self.declare(usize::from(*queue) % QUEUES.len()),
            Op::Delete { queue, if_empty } => {
                let name = QUEUES[usize::from(*queue) % QUEUES.len()];
                // Its counters go with it: ask for them in the same breath.
                let Some(admin) = self.admin() else { return };
                let Ok(stats) = admin.queue_stats(name) else { return };
                let Ok(delete) = admin.delete_queue(name, *if_empty, false) else { return };
                self.pump();
                let stats = self.responses.remove(&stats);
                let done = self.responses.remove(&delete);
                if let (Some(Response::QueueStats(stats)), Some(Response::Done { count })) =
                    (stats, done)
                {
                    self.retired_published += stats.counters.published;
                    self.retired_gone += stats.counters.acked + stats.counters.dropped + count;
                    self.options.remove(name);
                }
            }
            Op::Purge { queue } => {
                let name = QUEUES[usize::from(*queue) % QUEUES.len()];
                if let Some(Ok(request)) = self.admin().map(|a| a.purge_queue(name)) {
                    self.requests.insert(request, Request::Purge);
                }
            }
            Op::Bind { queue, pattern } | Op::Unbind { queue, pattern } => {
                let name = QUEUES[usize::from(*queue) % QUEUES.len()];
                let pattern = PATTERNS[usize::from(*pattern) % PATTERNS.len()];
                let bind = matches!(op, Op::Bind { .. });
                if let Some(admin) = self.admin() {
                    let request =
                        if bind { admin.bind(name, pattern) } else { admin.unbind(name, pattern) };
                    if let Ok(request) = request {
                        self.requests.insert(request, Request::Other);
                    }
                }
            }
            Op::Publish { client, topic, queue, mandatory, messages } => {
                let Some(index) = self.peer_index(*client) else { return };
                let destination = match topic {
                    Some(t) => {
                        Destination::Topic(TOPICS[usize::from(*t) % TOPICS.len()].to_string())
                    }
                    None => {
                        Destination::Queue(QUEUES[usize::from(*queue) % QUEUES.len()].to_string())
                    }
                };
                for spec in messages.iter().take(8) {
                    let message = self.message(spec);
                    let payload = message.payload.clone();
                    let peer = &mut self.peers[index];
                    if let Ok(seq) = peer.client.publish(&destination, *mandatory, message) {
                        peer.unconfirmed.insert(seq, payload.clone());
                        self.sent.insert(payload);
                    }
                }
            }
            Op::Subscribe { client, queue, credit, lease_ms, auto_credit } => {
                let Some(index) = self.peer_index(*client) else { return };
                let name = QUEUES[usize::from(*queue) % QUEUES.len()];
                let peer = &mut self.peers[index];
                if peer.subscriptions.len() >= 2 {
                    return;
                }
                let lease_ms = lease_ms.map(|ms| u32::from(ms % 3_000) + 1);
                let subscribed =
                    peer.client.subscribe(name, u32::from(*credit), lease_ms, *auto_credit);
                if let Ok((_, subscription)) = subscribed {
                    peer.subscriptions.insert(subscription, name.to_string());
                    peer.queue_of.insert(subscription, name.to_string());
                }
            }
            Op::Credit { client, credit } => {
                let Some(index) = self.peer_index(*client) else { return };
                let peer = &mut self.peers[index];
                if let Some(&subscription) = peer.subscriptions.keys().next() {
                    let _ = peer.client.grant_credit(subscription, u32::from(*credit));
                }
            }
            Op::Unsubscribe { client } => {
                let Some(index) = self.peer_index(*client) else { return };
                let peer = &mut self.peers[index];
                if let Some(&subscription) = peer.subscriptions.keys().next() {
                    peer.subscriptions.remove(&subscription);
                    let _ = peer.client.unsubscribe(subscription);
                }
            }
            Op::Ack { client, pick }
            | Op::Nack { client, pick, .. }
            | Op::Reject { client, pick }
            | Op::Touch { client, pick, .. } => {
                let Some(index) = self.peer_index(*client) else { return };
                let peer = &mut self.peers[index];
                if peer.outstanding.is_empty() {
                    return;
                }
                let at = usize::from(*pick) % peer.outstanding.len();
                let tag = peer.outstanding[at].0;
                let settled = match op {
                    Op::Ack { .. } => peer.client.ack(tag).is_ok(),
                    Op::Nack { delay_ms, reason, .. } => {
                        let reason = reason.then(|| "fuzz".to_string());
                        peer.client.nack(tag, delay_ms.map(u64::from), reason).is_ok()
                    }
                    Op::Reject { .. } => peer.client.reject(tag, "fuzz".into()).is_ok(),
                    Op::Touch { lease_ms, .. } => {
                        let lease_ms = lease_ms.map(|ms| u32::from(ms % 3_000) + 1);
                        let _ = peer.client.touch(tag, lease_ms);
                        false
                    }
                    _ => unreachable!(),
                };
                if settled {
                    peer.outstanding.remove(at);
                }
            }
            Op::Close { client } => {
                let Some(index) = self.peer_index(*client) else { return };
                self.peers[index].client.close();
            }
            Op::DropTransport { client } => {
                let Some(index) = self.peer_index(*client) else { return };
                let conn = self.peers[index].conn;
                self.peers[index].client.handle_input(now, ClientInput::Closed);
                self.close_transport(conn);
            }
            Op::Advance { ms } => return self.advance(u64::from(*ms)),
            Op::AdvanceLong { seconds } => return self.advance(u64::from(*seconds) * 1_000),
            Op::Redrive { queue, pick } => {
                let name = QUEUES[usize::from(*queue) % QUEUES.len()];
                let ids = pick.map(|p| vec![u64::from(p)]).unwrap_or_default();
                if let Some(Ok(request)) = self.admin().map(|a| a.dlq_redrive(name, ids)) {
                    self.requests.insert(request, Request::Other);
                }
            }
            Op::Garbage { client, bytes } => {
                let Some(index) = self.peer_index(*client) else { return };
                // The client's own frames go first, so the garbage starts at a frame boundary.
                self.drain_client(self.peers[index].conn);
                let conn = self.peers[index].conn;
                let (garbage, aligned) = defuse(bytes);
                self.send(conn, Bytes::from(garbage));
                if !aligned {
                    // The stream is out of step: the client's next frames would be read from
                    // the middle. Its socket breaks instead.
                    self.peers[index].client.handle_input(now, ClientInput::Closed);
                    self.close_transport(conn);
                }
            }
            Op::Crash { machine } => return self.crash(*machine),
        }
        self.pump();
    }

    fn message(&mut self, spec: &MessageSpec) -> PublishMessage {
        self.next_payload += 1;
        let mut payload = PAYLOAD_PREFIX.to_vec();
        payload.extend_from_slice(&self.next_payload.to_be_bytes());
        payload.resize(payload.len() + usize::from(spec.size) * 8, b'.');
        let mut message = PublishMessage::new(Bytes::from(payload));
        message.priority = spec.priority % 10;
        message.group = spec.group.map(|g| format!("g{}", g % 3));
        message.schedule = spec.delay_ms.map(|ms| Schedule::DelayMs(u64::from(ms % 4_000)));
        message.ttl_ms = spec.ttl_ms.map(|ms| u64::from(ms % 4_000));
        message.id = spec.id.map(|id| format!("id{}", id % 6));
        message
    }

    /// The broker process dies; a new one recovers from what the disk kept.
    fn crash(&mut self, machine: bool) {
        let before = self.snapshot();
        let all_durable = self.options.values().all(|o| o.durability != Durability::None);
        let files =
            if machine { self.disk.after_machine_crash() } else { self.disk.after_process_crash() };
        let (broker, report) = match Broker::recover(config(), self.now, &files) {
            Ok(recovered) => recovered,
            Err(err) => {
                panic!("recovery refused a log the broker wrote (machine crash: {machine}): {err}")
            }
        };
        trace(|| format!("{:?} crash (machine: {machine}): {report:?}", self.now));
        // What recovery read is what the disk holds now; a torn tail is cut.
        self.disk = MemDisk::recovered_from(&files, report.truncation.as_ref());
        self.broker = broker;
        self.peers.clear();
        self.admin = None;
        self.requests.clear();
        self.responses.clear();
        self.recovered = report.messages;
        self.retired_published = 0;
        self.retired_gone = 0;
        self.pump();

        let names: BTreeSet<String> = self.broker.queue_names().map(str::to_string).collect();
        if let Some(before) = before {
            let names_before: BTreeSet<String> = before.keys().cloned().collect();
            assert_eq!(names, names_before, "queues after a crash (machine: {machine})");
            let depth_before: u64 = before.values().map(|s| s.depth).sum();
            if !machine && all_durable {
                assert_eq!(report.messages, depth_before, "messages after a process crash");
            }
        }
        self.options.retain(|name, _| names.contains(name));
    }

    // ---- checks ----

    /// Every queue's stats and depth at one instant, or `None` if the admin could not ask.
    fn snapshot(&mut self) -> Option<BTreeMap<String, Snapshot>> {
        let names: Vec<String> = self.broker.queue_names().map(str::to_string).collect();
        let admin = self.admin()?;
        let mut asked = Vec::new();
        for name in &names {
            let stats = admin.queue_stats(name).ok()?;
            let list = admin.dlq_list(name, None, 1_024).ok()?;
            asked.push((name.clone(), stats, list));
        }
        self.pump();
        let mut snapshot = BTreeMap::new();
        for (name, stats, list) in asked {
            let stats = self.responses.remove(&stats);
            let list = self.responses.remove(&list);
            let (Some(Response::QueueStats(stats)), Some(Response::DlqList(list))) = (stats, list)
            else {
                return None;
            };
            let depth = self.broker.queue_depth(&name)?;
            self.options.insert(name.clone(), stats.options.clone());
            snapshot.insert(
                name,
                Snapshot {
                    stats: *stats,
                    dead_letters: list.entries.len() as u64,
                    more: list.more,
                    depth,
                },
            );
        }
        Some(snapshot)
    }

    fn check(&mut self) {
        let Some(snapshot) = self.snapshot() else { return };
        let mut published = self.recovered;
        let mut gone = self.retired_gone;
        let mut held = 0;
        for (name, s) in &snapshot {
            let stats = &s.stats;
            let places = stats.ready + stats.delayed + stats.in_flight + stats.group_blocked;
            assert_eq!(
                places, s.depth,
                "{name}: ready + delayed + in flight + group-blocked vs depth: {stats:?}"
            );
            if !s.more {
                assert_eq!(
                    stats.dead_letters, s.dead_letters,
                    "{name}: dead letters vs its DLQ list"
                );
            }
            let held_by_clients = self
                .peers
                .iter()
                .flat_map(|p| p.outstanding.iter())
                .filter(|(_, queue)| queue == name)
                .count() as u64;
            // A settlement held with a paused connection's bytes is not settled yet.
            let holding_bytes =
                self.peers.iter().any(|p| p.paused.as_ref().is_some_and(|b| !b.is_empty()));
            assert!(
                holding_bytes || stats.in_flight <= held_by_clients,
                "{name}: {} in flight, clients hold {held_by_clients}",
                stats.in_flight
            );
            published += stats.counters.published;
            gone += stats.counters.acked + stats.counters.dropped;
            held += s.depth;
        }
        published += self.retired_published;
        assert_eq!(
            published,
            gone + held,
            "conservation: published + recovered = acked + dropped + purged + deleted + held"
        );
    }

    /// After the last operation: wait long enough for every retry, lease and sync, then every
    /// publish of a client still connected must have its outcome.
    fn finish(&mut self) {
        self.advance(30_000);
        self.check();
        for peer in &self.peers {
            assert!(
                peer.gone || peer.unconfirmed.is_empty(),
                "{}: publishes never answered: {:?}",
                peer.conn,
                peer.unconfirmed.keys().collect::<Vec<_>>()
            );
        }
    }
}

struct Snapshot {
    stats: chute_protocol::QueueStats,
    dead_letters: u64,
    more: bool,
    depth: u64,
}

fn check_delivery(
    delivery: &Delivery,
    sent: &BTreeSet<Bytes>,
    refused: &BTreeSet<Bytes>,
    delivered: &mut BTreeSet<Bytes>,
    options: Option<&QueueOptions>,
) {
    assert!(sent.contains(&delivery.payload), "delivered a message never published: {delivery:?}");
    assert!(!refused.contains(&delivery.payload), "delivered a refused publish: {delivery:?}");
    assert!(delivery.attempt >= 1, "attempt 0: {delivery:?}");
    // Redelivered means delivered before anywhere: a later attempt in this queue, or a dead
    // letter's (or a redriven message's) first attempt in its new queue. Topic copies of one
    // payload are separate messages, so the converse does not hold.
    if delivery.attempt > 1 {
        assert!(delivery.redelivered, "attempt {} not redelivered: {delivery:?}", delivery.attempt);
    }
    if delivery.redelivered {
        assert!(
            delivered.contains(&delivery.payload),
            "redelivered, never delivered: {delivery:?}"
        );
    }
    delivered.insert(delivery.payload.clone());
    if let Some(max) = options.and_then(|o| o.attempts_max) {
        assert!(
            delivery.attempt <= max,
            "attempt {} of at most {max}: {delivery:?}",
            delivery.attempt
        );
    }
}

/// Garbage that cannot act behind the fuzzer's back: walking it frame by frame as the broker
/// will, the first frame that could publish, subscribe, or change queues, bindings or dead
/// letters gets kind 0, at which the broker stops reading and closes the connection. Also
/// returns whether the garbage ends on a frame boundary (or at a frame the broker refuses).
fn defuse(bytes: &[u8]) -> (Vec<u8>, bool) {
    const UNSAFE: [FrameKind; 9] = [
        FrameKind::QueueDeclare,
        FrameKind::QueueDelete,
        FrameKind::QueuePurge,
        FrameKind::Bind,
        FrameKind::Unbind,
        FrameKind::Publish,
        FrameKind::Subscribe,
        FrameKind::Unsubscribe,
        FrameKind::DlqRedrive,
    ];
    let mut garbage = bytes.to_vec();
    let mut at = 0;
    while at + FRAME_HEADER_LEN <= garbage.len() {
        let body_len = u32::from_be_bytes(garbage[at..at + 4].try_into().unwrap());
        let kind = garbage[at + 4];
        if UNSAFE.iter().any(|k| *k as u8 == kind) {
            garbage[at + 4] = 0;
            return (garbage, true);
        }
        if FrameKind::from_u8(kind).is_none() || garbage[at + 5] != 0 {
            // Refused at this header: nothing after it is read.
            return (garbage, true);
        }
        at = (at + FRAME_HEADER_LEN).saturating_add(body_len as usize);
    }
    let aligned = at == garbage.len();
    (garbage, aligned)
}

fn trace(line: impl FnOnce() -> String) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("CHUTE_FUZZ_TRACE").is_some()) {
        eprintln!("{}", line());
    }
}
