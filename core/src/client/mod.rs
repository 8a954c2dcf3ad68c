//! The client state machine: the other end of the protocol, without I/O.
//!
//! Like [`crate::Broker`], it is driven from outside:
//! - getters: [`Client::is_open`], [`Client::server`], [`Client::unconfirmed`];
//! - [`Client::handle_input`]: bytes from the server, timer expiry, transport closed;
//! - commands: [`Client::publish`], [`Client::subscribe`], [`Client::ack`], ... Each returns a
//!   typed error at once or an id whose outcome arrives later as a [`ClientEvent`];
//! - [`Client::poll_output`] and [`Client::poll_timeout`].
//!
//! After every input or command, drain `poll_output` to `None` and arm a timer from
//! `poll_timeout`. Commands may be issued before the handshake completes: their frames follow
//! `Hello` on the wire, which the server processes in order.
//!
//! Small frames are coalesced: consecutive publishes to one destination become one `Publish`
//! frame, consecutive acks one `Ack` frame with ranges, and auto-credit one `Credit` frame per
//! subscription, all flushed when the driver polls for output.

mod commands;
mod login;
mod outstanding;
mod receive;
pub mod session;

pub use commands::{CommandError, SubscriptionOptions};
pub use session::{
    LinkError, NotConfirmed, ReconnectPolicy, RequestError, RetryPolicy, Session, SessionConfig,
    SessionEnd, SessionEvent, SessionInput, SessionOutput, SessionStats, Settled, Timeouts,
};

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};
use chute_protocol::{
    encode_body, Credentials, DeadLetter, DecodeError, Delivery, Destination, DlqListOk, ErrorCode,
    ErrorFrame, Frame, FrameKind, FrameReader, GoingAway, Hello, HelloOk, PublishFailure,
    QueueDeclareOk, QueueListOk, QueueStats, Range, SubscriptionCancelled, FRAME_SIZE_CEILING,
    PREFACE, PROTOCOL_VERSION_MIN,
};

use crate::time::Instant;

/// The highest protocol version this client machine offers: version 2 brings the
/// authentication exchange (§5.8) and the `Blocked` notifications (§5.9).
pub const CLIENT_VERSION_MAX: u16 = 2;

/// How the client introduces itself and times its connection. `Debug` hides the password or
/// token (a logged configuration gives no secret away).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub client_name: String,
    /// Who the client is. A password is proven by SCRAM-SHA-256 and never sent; a token is
    /// sent in `Hello`, so the driver must offer one only over TLS (see `login`).
    pub credentials: Credentials,
    /// Fresh random bytes for each connection: the client's part of a SCRAM nonce. A
    /// [`Session`] draws them for every connection from its seed.
    pub auth_nonce: [u8; 18],
    /// The transport presented a client certificate (mutual TLS): if the server asks for a
    /// login and offers `EXTERNAL`, the client answers with it.
    pub client_certificate: bool,
    /// Connect even when the server lets a client holding a password or token in without
    /// checking it (no `AuthOk`: a server without users). Off by default: such a connection
    /// is not the user's, and the client ends it with `authentication-failed` (libpq's
    /// `require_auth` plays this part). For a development server known to have no users.
    pub accept_unchecked_credentials: bool,
    /// Requested heartbeat interval; 0 accepts the server's.
    pub heartbeat_ms: u32,
    /// Give up if `HelloOk` has not arrived by then.
    pub handshake_timeout_ms: u32,
    /// Unconfirmed publishes allowed before the server's limit is known.
    pub unconfirmed_max_initial: u32,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let credentials = match &self.credentials {
            Credentials::Anonymous => "Anonymous".to_string(),
            Credentials::Password { username, .. } => format!("Password for {username:?}"),
            Credentials::Token { .. } => "Token".to_string(),
        };
        f.debug_struct("ClientConfig")
            .field("client_name", &self.client_name)
            .field("credentials", &format_args!("{credentials}"))
            .field("client_certificate", &self.client_certificate)
            .field("accept_unchecked_credentials", &self.accept_unchecked_credentials)
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("handshake_timeout_ms", &self.handshake_timeout_ms)
            .field("unconfirmed_max_initial", &self.unconfirmed_max_initial)
            .finish_non_exhaustive()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_name: "chute-client".into(),
            credentials: Credentials::Anonymous,
            auth_nonce: [0; 18],
            client_certificate: false,
            accept_unchecked_credentials: false,
            heartbeat_ms: 0,
            handshake_timeout_ms: 10_000,
            unconfirmed_max_initial: 1024,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientInput {
    Received(Bytes),
    /// Received bytes the driver cut into frames and decoded itself, and the error its reader
    /// stopped at, if any; see [`SessionInput::Frames`].
    Frames {
        frames: Vec<Frame>,
        error: Option<DecodeError>,
    },
    Timeout,
    /// The transport closed or failed.
    Closed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutput {
    Send(Bytes),
    Event(ClientEvent),
    /// Finish writing, then close the transport. No further output follows.
    Close,
}

/// The answer to a request, correlated by its request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// `count` as defined for the request (messages purged, deleted, redriven; else 0).
    Done {
        count: u64,
    },
    Declared(QueueDeclareOk),
    QueueList(QueueListOk),
    QueueStats(Box<QueueStats>),
    DlqList(DlqListOk),
    DlqInspect(Box<DeadLetter>),
    Failed(ErrorFrame),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    Connected(HelloOk),
    /// Publish sequence numbers the server accepted.
    Confirmed(Range),
    PublishFailed(PublishFailure),
    Deliveries {
        subscription: u32,
        deliveries: Vec<Delivery>,
    },
    Response {
        request_id: u32,
        response: Response,
    },
    SubscriptionCancelled(SubscriptionCancelled),
    GoingAway(GoingAway),
    /// A resource alarm is raised on the server (`reason`: `memory`, `disk`): publishes on this
    /// connection are not read, nor anything sent after them, until `Unblocked`.
    Blocked {
        reason: String,
    },
    /// The alarm cleared: held publishes are read again.
    Unblocked,
    /// The connection is over; nothing follows.
    Closed {
        reason: CloseReason,
    },
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Closed with a protocol error code: the server's `Close` or connection-level `Error`, or
    /// the client's own verdict (a handshake or heartbeat timeout, bad bytes from the server,
    /// a local `close`).
    Code { code: ErrorCode, message: String },
    /// The transport closed or failed while the connection was open, with no `Close` (the
    /// server died, the network failed). No code fits: `internal` would blame a server bug.
    TransportLost,
}

impl CloseReason {
    /// The protocol code, if the connection was closed with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CloseReason::Code { code, .. } => Some(*code),
            CloseReason::TransportLost => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshaking,
    Open,
    Closed,
}

#[derive(Debug)]
struct SubscriptionState {
    auto_credit: bool,
    credit_owed: u32,
}

/// Frames waiting to be coalesced with the next command of the same kind.
#[derive(Debug, Default)]
enum Pending {
    #[default]
    Nothing,
    /// Messages already encoded in `Client::publish_body`.
    Publish {
        destination: Destination,
        mandatory: bool,
        count: usize,
    },
    Acks(Vec<Range>),
}

#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    reader: FrameReader,
    out: BytesMut,
    outputs: VecDeque<ClientOutput>,
    pending: Pending,
    /// The encoded messages of a pending `Publish` batch: each is encoded when published, so
    /// the caller keeps the message (a session keeps it to publish again after a reconnect).
    publish_body: BytesMut,
    /// No credit is granted any more (the server is going away, §5.7).
    credit_withheld: bool,
    server: Option<HelloOk>,
    started_at: Instant,
    last_received: Instant,
    last_sent: Instant,
    next_request_id: u32,
    next_publish_seq: u64,
    /// Publishes sent and not yet confirmed or failed.
    unconfirmed: u64,
    subscriptions: BTreeMap<u32, SubscriptionState>,
    next_subscription: u32,
    /// Delivery tag → subscription, for deliveries not yet settled.
    outstanding: outstanding::Outstanding,
    login: login::Login,
    /// Commands wait in `out` until `HelloOk`: the server may ask for a login exchange, and
    /// accepts nothing else before it is over.
    hold_commands: bool,
}

impl Client {
    /// A client that has queued its preface and `Hello`.
    pub fn new(config: ClientConfig, now: Instant) -> Client {
        let mut client = Client {
            state: State::Handshaking,
            reader: FrameReader::new(FRAME_SIZE_CEILING),
            out: BytesMut::from(&PREFACE[..]),
            outputs: VecDeque::new(),
            pending: Pending::Nothing,
            publish_body: BytesMut::new(),
            credit_withheld: false,
            server: None,
            started_at: now,
            last_received: now,
            last_sent: now,
            next_request_id: 1,
            next_publish_seq: 1,
            unconfirmed: 0,
            subscriptions: BTreeMap::new(),
            next_subscription: 1,
            outstanding: outstanding::Outstanding::default(),
            login: login::Login::default(),
            hold_commands: login::may_need_exchange(&config.credentials, config.client_certificate),
            config,
        };
        let hello = Hello {
            version_min: PROTOCOL_VERSION_MIN,
            version_max: CLIENT_VERSION_MAX,
            client_name: client.config.client_name.clone(),
            credentials: login::hello_credentials(&client.config.credentials),
            heartbeat_ms: client.config.heartbeat_ms,
        };
        client.encode(FrameKind::Hello, &hello);
        if client.hold_commands {
            let hello = client.out.split().freeze();
            client.outputs.push_back(ClientOutput::Send(hello));
        }
        client
    }

    // ---- getters ----

    /// The server's `HelloOk`, once the handshake completed.
    pub fn server(&self) -> Option<&HelloOk> {
        self.server.as_ref()
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Publishes sent and not yet confirmed or refused.
    pub fn unconfirmed(&self) -> u64 {
        self.unconfirmed
    }

    /// Whether a publish now would be refused with `WindowFull`. A caller that retries once
    /// there is room checks this first, so the message can move into `publish` rather than
    /// be copied for the retry.
    pub fn window_full(&self) -> bool {
        self.unconfirmed >= self.unconfirmed_max()
    }

    /// The most publishes that may be unconfirmed at once.
    pub fn unconfirmed_max(&self) -> u64 {
        match &self.server {
            Some(server) => u64::from(server.limits.unconfirmed_max),
            None => u64::from(self.config.unconfirmed_max_initial),
        }
    }

    /// Deliveries not yet settled, counted per subscription: what a reconnecting session
    /// grants back as credit, since the server will deliver them again.
    pub fn unsettled_by_subscription(&self) -> BTreeMap<u32, u32> {
        let mut counts = BTreeMap::new();
        for subscription in self.outstanding.subscriptions() {
            *counts.entry(subscription).or_insert(0) += 1;
        }
        counts
    }

    /// Deliveries not yet settled, on every subscription.
    pub fn unsettled_len(&self) -> usize {
        self.outstanding.len()
    }

    /// When a frame last arrived from the server (or the connection started).
    pub fn last_received(&self) -> Instant {
        self.last_received
    }

    // ---- inputs ----

    pub fn handle_input(&mut self, now: Instant, input: ClientInput) {
        assert!(now >= self.last_received.min(self.last_sent), "time went backwards");
        match input {
            ClientInput::Received(bytes) => {
                if self.state == State::Closed {
                    return;
                }
                self.last_received = now;
                self.reader.feed(bytes);
                self.process_received();
            }
            ClientInput::Frames { frames, error } => {
                if self.state == State::Closed {
                    return;
                }
                self.last_received = now;
                self.handle_frames(frames, error);
            }
            ClientInput::Timeout => self.check_timers(now),
            ClientInput::Closed => self.end(CloseReason::TransportLost, false),
        }
    }

    // ---- outputs ----

    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        if let Some(output) = self.outputs.pop_front() {
            return Some(output);
        }
        if self.state == State::Closed || self.holding_commands() {
            return None;
        }
        self.flush_pending();
        self.flush_credit();
        if self.out.is_empty() {
            return None;
        }
        Some(ClientOutput::Send(self.out.split().freeze()))
    }

    /// When to call `handle_input(_, ClientInput::Timeout)`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Handshaking => {
                Some(self.started_at.plus_ms(u64::from(self.config.handshake_timeout_ms)))
            }
            State::Open => {
                let heartbeat_ms = u64::from(self.heartbeat_ms());
                let send_at = self.last_sent.plus_ms(heartbeat_ms);
                let dead_at = self.last_received.plus_ms(3 * heartbeat_ms);
                Some(send_at.min(dead_at))
            }
            State::Closed => None,
        }
    }

    // ---- internals ----

    /// Whether commands wait for the login to finish (see `hold_commands`).
    fn holding_commands(&self) -> bool {
        self.hold_commands && self.state == State::Handshaking
    }

    /// Drops the commands held behind a login that will not finish: the server would refuse
    /// them, and their callers learn from the close that they were not carried out.
    fn discard_held_commands(&mut self) {
        if self.holding_commands() {
            self.out.clear();
            self.publish_body.clear();
            self.pending = Pending::Nothing;
        }
    }

    fn heartbeat_ms(&self) -> u32 {
        self.server.as_ref().map_or(0, |s| s.heartbeat_ms).max(1)
    }

    fn check_timers(&mut self, now: Instant) {
        match self.state {
            State::Handshaking => {
                let deadline = self.started_at.plus_ms(u64::from(self.config.handshake_timeout_ms));
                if now >= deadline {
                    let message =
                        format!("no HelloOk within {} ms", self.config.handshake_timeout_ms);
                    self.finish(ErrorCode::HANDSHAKE_TIMEOUT, message, true);
                }
            }
            State::Open => {
                let heartbeat_ms = u64::from(self.heartbeat_ms());
                if now >= self.last_received.plus_ms(3 * heartbeat_ms) {
                    let message = format!("server silent for {} ms", 3 * heartbeat_ms);
                    self.finish(ErrorCode::HEARTBEAT_TIMEOUT, message, true);
                } else if now >= self.last_sent.plus_ms(heartbeat_ms) {
                    self.encode(FrameKind::Heartbeat, &chute_protocol::Heartbeat);
                    self.last_sent = now;
                }
            }
            State::Closed => {}
        }
    }

    /// Ends the connection with a protocol code; see [`Client::end`].
    fn finish(&mut self, code: ErrorCode, message: String, close_transport: bool) {
        self.end(CloseReason::Code { code, message }, close_transport);
    }

    /// Ends the connection: emits `Closed` once and, if `close_transport`, asks the driver to
    /// close the socket.
    fn end(&mut self, reason: CloseReason, close_transport: bool) {
        if self.state == State::Closed {
            return;
        }
        self.discard_held_commands();
        self.state = State::Closed;
        if close_transport {
            if !self.out.is_empty() {
                let bytes = self.out.split().freeze();
                self.outputs.push_back(ClientOutput::Send(bytes));
            }
            self.outputs.push_back(ClientOutput::Close);
        }
        self.outputs.push_back(ClientOutput::Event(ClientEvent::Closed { reason }));
    }

    fn encode<T: serde::Serialize + ?Sized>(&mut self, kind: FrameKind, body: &T) {
        if kind != FrameKind::Publish && kind != FrameKind::Ack {
            self.flush_pending();
        }
        self.encode_now(kind, body);
    }

    /// Encodes a frame of the login, which goes out ahead of any held command. Once nothing is
    /// held (the connection is open), it goes out as any frame does: behind what is batched.
    fn encode_login<T: serde::Serialize + ?Sized>(&mut self, kind: FrameKind, body: &T) {
        if !self.holding_commands() {
            return self.encode(kind, body);
        }
        let mut frame = BytesMut::new();
        encode_body(kind, body, &mut frame, FRAME_SIZE_CEILING)
            .expect("login frames are a few hundred bytes");
        self.outputs.push_back(ClientOutput::Send(frame.freeze()));
    }

    fn encode_now<T: serde::Serialize + ?Sized>(&mut self, kind: FrameKind, body: &T) {
        let frame_size_max =
            self.server.as_ref().map_or(FRAME_SIZE_CEILING, |s| s.limits.frame_size_max);
        encode_body(kind, body, &mut self.out, frame_size_max)
            .expect("commands check sizes before encoding");
    }
}

#[cfg(test)]
mod tests;
