//! The broker state machine.

mod admin;
mod alarms;
mod audit;
mod authenticate;
mod authorize;
mod cold_reads;
mod connection;
mod consume;
mod dispatch;
mod dlq;
mod errors;
mod failure;
mod frames;
mod handshake;
mod inbound;
mod invariants;
mod leases;
mod liveness;
mod operator;
mod outbound;
mod payloads;
mod publish;
mod queue_timer;
mod rate_limits;
mod reconfigure;
mod recover;
mod routing;
mod stats;
mod stopping;
mod storage;
mod timers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chute_protocol::{AttemptOutcome, ErrorCode};

use crate::auth::{AuditKind, AuditOutcome};
use crate::config::BrokerConfig;
use crate::ids::{ConnId, Lsn, QueueId};
use crate::io::{Event, Input, Output, PeerInfo};
use crate::policy::token_bucket::TokenBucket;
use crate::queue::Queue;
use crate::rng::Rng;
use crate::storage::failure::StorageFailure;
use crate::storage::log::Log;
use crate::storage::manifest::Manifest;
use crate::time::Instant;

use connection::{ConnState, Connection, PauseReason};
pub use errors::{DeclareError, Denied, OptionsError, PublishError, QueueAdminError, QueueLimit};
pub use operator::{ConnectionInfo, ConnectionState};
pub use payloads::PayloadCacheStats;
pub use recover::{Recovery, RecoveryReport};
pub use stats::{AuthCounters, BrokerStats, QueueHealth};
use timers::{TimerKey, Timers};

/// The broker, without I/O.
///
/// Methods come in four kinds:
/// - getters (`&self`): [`Broker::stats`], [`Broker::queue_names`],
///   [`Broker::connection_count`], ...;
/// - [`Broker::handle_input`]: everything that happens to the broker (connections, bytes,
///   flushes, timers, storage completions);
/// - commands: operator actions such as [`Broker::shutdown`];
/// - [`Broker::poll_output`] and [`Broker::poll_timeout`]: what the driver must do next.
///
/// After every `handle_input` or command, drain `poll_output` until it returns `None`, then
/// sleep until `poll_timeout` (or the next input) and call `handle_input(now, Input::Timeout)`.
/// Every call carries a `now` that never goes backwards. Bad bytes from a peer never panic: they
/// become an error frame and a `Close` for that connection alone.
///
/// Durability: every change to durable state is a record in the log (`Output::Storage`). A
/// publish to a durable queue is confirmed, and becomes deliverable, only once the storage
/// worker reports a sync that covers it; at most one sync is in flight and it covers every
/// append before it (group commit). A failed write or sync halts the broker.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use chute_core::{Broker, BrokerConfig, ConnId, Input, Instant, Output};
/// use chute_protocol::{Credentials, Frame, Hello, PREFACE};
///
/// let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
/// let conn = ConnId(1);
/// broker.handle_input(Instant::ZERO, Input::Accepted { conn, peer: Default::default() });
///
/// let mut hello = BytesMut::from(&PREFACE[..]);
/// Frame::Hello(Hello {
///     version_min: 1,
///     version_max: 1,
///     client_name: "doc".into(),
///     credentials: Credentials::Anonymous,
///     heartbeat_ms: 0,
/// })
/// .encode(&mut hello, 1 << 20)
/// .unwrap();
/// broker.handle_input(Instant::ZERO, Input::Received { conn, bytes: hello.freeze() });
///
/// while let Some(output) = broker.poll_output() {
///     match output {
///         // write `bytes` to the socket: here, a HelloOk frame
///         Output::Send { bytes, .. } => assert_eq!(bytes[4], chute_protocol::FrameKind::HelloOk as u8),
///         // a new broker creates its first log segment
///         Output::Storage(request) => { /* hand to the storage worker */ }
///         _ => {}
///     }
/// }
/// assert!(broker.poll_timeout().is_some()); // heartbeats are due later
/// ```
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    now: Instant,
    connections: BTreeMap<ConnId, Connection>,
    queues: BTreeMap<QueueId, Queue>,
    queue_ids: BTreeMap<String, QueueId>,
    next_queue_id: u64,
    next_message_seq: u64,
    bindings: routing::Bindings,
    /// Non-mandatory topic publishes that matched no binding.
    unroutable_dropped: u64,
    /// The broker-wide publish rate limit, if configured.
    publish_rate: Option<TokenBucket>,
    /// Jitter for retry backoff.
    rng: Rng,
    log: Log,
    timers: Timers,
    outputs: VecDeque<Output>,
    /// Connections that may have bytes to send.
    dirty_connections: Vec<ConnId>,
    /// Connections holding bytes back until the log catches up.
    waiting_connections: BTreeSet<ConnId>,
    /// Queues that may be able to deliver.
    dirty_queues: BTreeSet<QueueId>,
    /// Queues with published messages waiting for the log.
    pending_queues: BTreeSet<QueueId>,
    /// What connections' frame readers hold, and who is paused for it.
    partial: inbound::PartialFrames,
    shutting_down: bool,
    /// Lame duck: when the drain window ends and the graceful stop begins, once drained.
    drain_ends_at: Option<Instant>,
    /// Why the broker stopped, once storage failed.
    halted: Option<StorageFailure>,
    /// The users, and what failed logins cost.
    auth: authenticate::Authentication,
    /// Memory and disk alarms, which hold publishes while raised.
    alarms: alarms::Alarms,
    /// A record someone waits for was appended; sync as soon as none is in flight.
    sync_wanted: bool,
    /// Records nobody waits for must be synced by then.
    lazy_sync_at: Option<Instant>,
    /// The manifest's durable end is not brought up to date again before then.
    manifest_due_at: Option<Instant>,
    /// Reads of evicted payloads in flight.
    reads: payloads::PayloadReads,
}

impl Broker {
    /// A broker with no queues and an empty log (its first segment is created through
    /// `poll_output`). Panics if `config` does not validate: the driver must validate
    /// configuration (and report errors) before starting the core.
    pub fn new(config: BrokerConfig, now: Instant) -> Broker {
        let log = Log::create(
            config.storage.clone(),
            config.keyring.clone(),
            Lsn::ZERO,
            Manifest::default(),
        );
        Broker::new_with_log(config, now, log)
    }

    fn with_log(config: BrokerConfig, now: Instant, log: Log) -> Broker {
        if let Err(err) = config.validate() {
            panic!("invalid broker config: {err}");
        }
        let publish_rate = config.limits.publish_rate.map(|rate| TokenBucket::new(rate, now));
        let rng = Rng::new(config.seed);
        let auth = authenticate::Authentication::new(&config.auth, config.seed);
        Broker {
            config,
            now,
            connections: BTreeMap::new(),
            queues: BTreeMap::new(),
            queue_ids: BTreeMap::new(),
            next_queue_id: 1,
            next_message_seq: 1,
            bindings: routing::Bindings::default(),
            unroutable_dropped: 0,
            publish_rate,
            rng,
            log,
            timers: Timers::default(),
            outputs: VecDeque::new(),
            dirty_connections: Vec::new(),
            waiting_connections: BTreeSet::new(),
            dirty_queues: BTreeSet::new(),
            pending_queues: BTreeSet::new(),
            partial: inbound::PartialFrames::default(),
            shutting_down: false,
            drain_ends_at: None,
            halted: None,
            auth,
            alarms: alarms::Alarms::default(),
            sync_wanted: false,
            lazy_sync_at: None,
            manifest_due_at: None,
            reads: payloads::PayloadReads::default(),
        }
    }

    // ---- getters ----

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    pub fn queue_names(&self) -> impl Iterator<Item = &str> {
        self.queue_ids.keys().map(String::as_str)
    }

    /// Messages the named queue holds: waiting for the log, ready, and in flight.
    pub fn queue_depth(&self, name: &str) -> Option<u64> {
        let id = self.queue_ids.get(name)?;
        Some(self.queues[id].messages_len())
    }

    /// True once `shutdown` was called, the log is synced, and every connection is closed.
    pub fn is_drained(&self) -> bool {
        self.shutting_down && self.connections.is_empty() && !self.log.has_unsynced()
    }

    /// Why the broker halted, if it did. A halted broker serves nothing; the driver should
    /// exit non-zero and let recovery start from the disk.
    pub fn halted(&self) -> Option<&StorageFailure> {
        self.halted.as_ref()
    }

    /// Log segments and what is still live in each, oldest first.
    pub fn log_segments(&self) -> impl Iterator<Item = (Lsn, &crate::storage::log::SegmentState)> {
        self.log.segments().iter().map(|(base, state)| (*base, state))
    }

    // ---- inputs ----

    /// Feeds one input. Then drain `poll_output`.
    ///
    /// Input for a connection the broker already closed is ignored: the driver may still have
    /// had bytes or flush reports for it in flight when it saw the `Close`.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        self.advance_time(now);
        match input {
            Input::Accepted { conn, peer } => self.handle_accepted(conn, peer),
            Input::Received { conn, bytes } => self.handle_received(conn, bytes),
            Input::Flushed { conn, bytes } => self.handle_flushed(conn, bytes),
            Input::Closed { conn } => {
                if self.connections.contains_key(&conn) {
                    self.forget_connection(conn, ErrorCode::NORMAL_CLOSE, "peer closed".into());
                }
            }
            Input::Storage(done) => self.handle_storage(done),
            Input::Resources(reading) => self.handle_resources(reading),
            Input::Timeout => {}
        }
        self.resume_partial_frames();
        self.dispatch_dirty_queues();
        self.after_input();
        debug_assert!(self.dirty_queues.is_empty(), "dispatch left queues unvisited");
        #[cfg(debug_assertions)]
        self.check_connection_invariants();
    }

    // ---- commands: see `stopping.rs` (shutdown, drain) and `operator.rs` ----

    // ---- outputs ----

    /// The next thing the driver must do, or `None` when there is nothing more for now.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        if let Some(request) = self.log.poll_request() {
            return Some(Output::Storage(request));
        }
        while let Some(conn) = self.dirty_connections.pop() {
            if let Some(output) = self.take_send(conn) {
                return Some(output);
            }
        }
        None
    }

    /// When the driver must call `handle_input(_, Input::Timeout)` next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    // ---- internals shared by the submodules ----

    fn advance_time(&mut self, now: Instant) {
        assert!(now >= self.now, "time went backwards: {now:?} < {:?}", self.now);
        self.now = now;
        while let Some(key) = self.timers.pop_due(now) {
            self.fire_timer(key);
        }
    }

    fn fire_timer(&mut self, key: TimerKey) {
        match key {
            TimerKey::Connection(conn) => self.fire_connection_timer(conn),
            TimerKey::LazySync => self.fire_lazy_sync(),
            TimerKey::DrainEnd => self.fire_drain_end(),
            TimerKey::Leases(conn) => self.fire_leases(conn),
            TimerKey::Queue(queue) => self.fire_queue_timer(queue),
            TimerKey::RateResume(conn) => self.fire_rate_resume(conn),
        }
    }

    /// The connection, which the caller knows to be open.
    fn connection_mut(&mut self, conn: ConnId) -> &mut Connection {
        self.connections.get_mut(&conn).unwrap_or_else(|| panic!("{conn} is not open"))
    }

    fn handle_accepted(&mut self, conn: ConnId, peer: PeerInfo) {
        assert!(!self.connections.contains_key(&conn), "connection id {conn} reused");
        let connection = Connection::new(self.now, self.server_limits(), peer);
        self.connections.insert(conn, connection);
        self.audit(
            AuditKind::ConnectionAccepted,
            Some(conn),
            None,
            None,
            AuditOutcome::Ok,
            String::new(),
        );
        if let Some(failure) = &self.halted {
            let (code, message) = (failure.code(), failure.halt_message());
            self.close_connection(conn, code, message);
        } else if self.shutting_down || self.drain_ends_at.is_some() {
            self.close_connection(conn, ErrorCode::SHUTTING_DOWN, "server shutting down".into());
        } else if self.connections.len() > self.config.limits.connections_max as usize {
            let max = self.config.limits.connections_max;
            let message = format!("connections_max ({max}) reached");
            self.close_connection(conn, ErrorCode::RESOURCE_LIMIT, message);
        } else {
            self.arm_connection_timer(conn);
        }
    }

    /// Bytes from a connection. Nothing may follow a client's `Close`; what does is not read.
    fn handle_received(&mut self, conn: ConnId, bytes: bytes::Bytes) {
        let now = self.now;
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        if connection.state == ConnState::Closing {
            return;
        }
        connection.last_received = now;
        connection.reader.feed(bytes);
        self.process_received(conn);
    }

    /// The socket took bytes. Below `connection_outbound_bytes_max` the connection may take
    /// deliveries again (whether or not reading was paused: dispatch stops at that limit on
    /// its own), and a connection paused for its backlog is read again.
    fn handle_flushed(&mut self, conn: ConnId, bytes: u64) {
        let outbound_bytes_max = self.config.limits.connection_outbound_bytes_max;
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        let outbound = &mut connection.outbound;
        assert!(bytes <= outbound.unflushed_bytes, "flushed more than was sent");
        outbound.unflushed_bytes -= bytes;
        if connection.outbound_backlog() >= outbound_bytes_max {
            return;
        }
        let queues: Vec<QueueId> = connection.subscriptions.values().map(|s| s.queue).collect();
        self.dirty_queues.extend(queues);
        if connection.pause_reasons().contains(PauseReason::OutboundBacklog) {
            self.set_read_pause(conn, PauseReason::OutboundBacklog, false);
            self.process_received(conn);
        }
    }

    /// Sets or clears one reason not to read a connection, and tells the driver when reading
    /// as a whole pauses or resumes. Resuming does not read what is buffered: callers that
    /// clear a reason call `process_received` when they want that.
    fn set_read_pause(&mut self, conn: ConnId, reason: PauseReason, on: bool) {
        match self.connection_mut(conn).set_paused(reason, on) {
            Some(true) => self.outputs.push_back(Output::PauseRead { conn }),
            Some(false) => self.outputs.push_back(Output::ResumeRead { conn }),
            None => {}
        }
    }

    fn mark_dirty(&mut self, conn: ConnId) {
        let connection = self.connection_mut(conn);
        if !connection.in_dirty_list && !connection.outbound.is_empty() {
            connection.in_dirty_list = true;
            self.dirty_connections.push(conn);
        }
    }

    /// Moves bytes the log allows into a `Send`.
    fn take_send(&mut self, conn: ConnId) -> Option<Output> {
        let outbound_bytes_max = self.config.limits.connection_outbound_bytes_max;
        let (written, synced) = (self.log.written_lsn(), self.log.synced_lsn());
        let now = self.now;
        let connection = self.connections.get_mut(&conn)?;
        connection.in_dirty_list = false;
        connection.outbound.release(written, synced);
        if connection.outbound.is_waiting() {
            self.waiting_connections.insert(conn);
        }
        let bytes = connection.outbound.take_ready()?;
        connection.last_sent = now;
        if connection.state == ConnState::Closing && connection.outbound.is_empty() {
            // The `Close` follows the `Send` returned here: `outputs` is drained first.
            self.finish_client_close(conn);
            return Some(Output::Send { conn, bytes });
        }
        if connection.outbound.unflushed_bytes >= connection.read_pause_backlog(outbound_bytes_max)
            && !connection.pause_reasons().contains(PauseReason::OutboundBacklog)
        {
            self.set_read_pause(conn, PauseReason::OutboundBacklog, true);
        }
        Some(Output::Send { conn, bytes })
    }

    /// Sends an error and a `Close` frame, then closes: for peers that broke the protocol or
    /// timed out, for shutdown, and when storage failed. Bytes still waiting for the log (such
    /// as confirms not yet durable) are dropped: their outcome is unknown to the client.
    fn close_connection(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        let (written, synced) = (self.log.written_lsn(), self.log.synced_lsn());
        let connection = self.connection_mut(conn);
        connection.outbound.release(written, synced);
        let frame_size_max = connection.limits.frame_size_max;
        let mut last =
            connection.outbound.take_ready().map(bytes::BytesMut::from).unwrap_or_default();
        connection::append_closing_frames(&mut last, code, &message, frame_size_max);
        self.outputs.push_back(Output::Send { conn, bytes: last.freeze() });
        self.outputs.push_back(Output::Close { conn });
        self.forget_connection(conn, code, message);
    }

    /// Drops all state of a connection: its subscriptions end, its timers stop, and each
    /// delivery it held fails with `Disconnect` (retried after the backoff, the attempt
    /// counted).
    fn forget_connection(&mut self, conn: ConnId, code: ErrorCode, message: String) {
        self.audit_closed(conn, code, &message);
        let mut connection = self.connections.remove(&conn).expect("connection exists");
        self.waiting_connections.remove(&conn);
        self.timers.set(&mut connection.timer_at, None, TimerKey::Connection(conn));
        self.timers.set(&mut connection.rate_resume_at, None, TimerKey::RateResume(conn));
        self.timers.set(&mut connection.lease_timer_at, None, TimerKey::Leases(conn));
        self.forget_partial_frame(conn, connection.partial_held_bytes);
        self.end_consuming(conn, &mut connection);
        self.outputs.push_back(Output::Event(Event::ConnectionClosed { conn, code, message }));
    }

    /// Ends the connection's subscriptions and fails each delivery it holds with `Disconnect`.
    fn end_consuming(&mut self, conn: ConnId, connection: &mut Connection) {
        for (subscription, sub) in std::mem::take(&mut connection.subscriptions) {
            if let Some(queue) = self.queues.get_mut(&sub.queue) {
                queue.remove_consumer(crate::queue::ConsumerKey { conn, subscription });
            }
        }
        // Newest first: retries that go straight back to the front keep their delivery order.
        for (_, in_flight) in connection.in_flight.drain().rev() {
            let failure = failure::Failure {
                outcome: AttemptOutcome::Disconnect,
                reason: None,
                delay_ms: None,
            };
            self.fail_attempt(in_flight, failure);
        }
        debug_assert!(connection.in_flight.is_empty() && connection.subscriptions.is_empty());
    }

    /// The client sent `Close`: it will settle nothing more, so its deliveries fail now; the
    /// answers to what it sent before `Close` still go out (PROTOCOL.md §5.6), and the socket
    /// is closed once they have.
    fn begin_client_close(&mut self, conn: ConnId, client_message: String) {
        let mut connection = self.connections.remove(&conn).expect("connection exists");
        self.end_consuming(conn, &mut connection);
        // During the authentication exchange a client may give up with `Close` too.
        assert!(
            matches!(connection.state, ConnState::Open | ConnState::Authenticating),
            "{conn}: Close before Hello or twice"
        );
        connection.state = ConnState::Closing;
        connection.frame_started_at = None;
        connection.close_message = if client_message.is_empty() {
            "Close from the client".to_string()
        } else {
            format!("Close from the client: {client_message}")
        };
        self.connections.insert(conn, connection);
        if self.connection_mut(conn).outbound.is_empty() {
            self.finish_client_close(conn);
        } else {
            self.mark_dirty(conn);
        }
    }

    /// A closing connection has sent everything it owed: close the socket.
    fn finish_client_close(&mut self, conn: ConnId) {
        let connection = self.connection_mut(conn);
        assert_eq!(connection.state, ConnState::Closing, "{conn} is not closing");
        assert!(connection.outbound.is_empty(), "{conn} closes with answers unsent");
        let message = std::mem::take(&mut connection.close_message);
        self.outputs.push_back(Output::Close { conn });
        self.forget_connection(conn, ErrorCode::NORMAL_CLOSE, message);
    }
}
