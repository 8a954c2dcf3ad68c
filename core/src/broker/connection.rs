//! One client connection as the broker sees it: its handshake state, its inbound frame reader,
//! its outbound buffer and backlog, its subscriptions and the deliveries it holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use chute_protocol::{
    encode_body, push_to_ranges, EncodeError, ErrorCode, ErrorFrame, FrameKind, FrameReader, Range,
    ServerLimits,
};
use serde::Serialize;

use super::authenticate::Login;
use super::outbound::{Gate, Outbound};
use super::rate_limits::WaitingPublishes;
use crate::auth::User;
use crate::ids::QueueId;
use crate::io::PeerInfo;
use crate::policy::breaker::Breaker;
use crate::policy::token_bucket::TokenBucket;
use crate::queue::Message;
use crate::seq_slots::SeqSlots;
use crate::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    /// Waiting for the preface and `Hello`.
    AwaitingHello,
    /// `AuthRequired` went out: the authentication exchange runs (`Connection::login`).
    Authenticating,
    /// The login failed; `authentication-failed` goes out at `until`, nothing is read.
    Refusing {
        until: Instant,
    },
    Open,
    /// The client sent `Close`. Nothing more is read; the answers to what it sent before are
    /// still sent (those waiting for the log wait for it), and then the socket is closed.
    Closing,
}

/// One reason for not reading a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum PauseReason {
    /// More than `connection_outbound_bytes_max` is queued for the socket.
    OutboundBacklog = 1,
    /// `unconfirmed_max` publishes are waiting for the log.
    Unconfirmed = 2,
    /// The broker is shutting down.
    Shutdown = 4,
    /// A publish rate limit with the `pause` policy is in debt.
    RateLimited = 8,
    /// The broker holds more partly received frames than `partial_frames_bytes_max`, and this
    /// connection is in the middle of a large one.
    PartialFrames = 16,
    /// Its login failed; it is closed once the failure delay has passed.
    LoginRefused = 32,
    /// It sent a publish while a resource alarm is raised (`alarms.rs`).
    Alarm = 64,
}

/// Why reading from a connection is paused; reading resumes when no reason remains. Changed
/// only through [`Connection::set_paused`], which says when the driver must be told.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PauseReasons(u8);

impl PauseReasons {
    pub fn contains(self, reason: PauseReason) -> bool {
        self.0 & reason as u8 != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// Paused for the broker's own reasons, not for what the peer holds: while so, the peer's
    /// silence and its unfinished frame are the broker's doing.
    pub fn by_broker(self) -> bool {
        self.0 & !(PauseReason::PartialFrames as u8) != 0
    }
}

#[derive(Debug)]
pub(crate) struct Subscription {
    pub queue: QueueId,
    pub credit: u32,
    /// Overrides the queue's lease.
    pub lease_ms: Option<u32>,
    pub breaker: Breaker,
    /// Caps the delivery rate to this subscription.
    pub rate: Option<TokenBucket>,
}

impl Subscription {
    /// Whether this consumer may take a delivery now: credit left, breaker not open, rate not
    /// exhausted.
    pub fn may_deliver(&self, now: Instant) -> bool {
        self.credit > 0
            && self.breaker.allows_delivery(now)
            && self.rate.as_ref().is_none_or(|rate| rate.available(now) >= 1)
    }

    pub fn on_delivery(&mut self, now: Instant) {
        assert!(self.credit > 0, "a delivery to a consumer without credit");
        self.credit -= 1;
        self.breaker.on_delivery(now);
        if let Some(rate) = self.rate.as_mut() {
            let _ = rate.try_take(now, 1);
        }
    }

    /// When this consumer, now blocked by its breaker or rate, may take a delivery again.
    pub fn unblocks_at(&self, now: Instant) -> Option<Instant> {
        if self.credit == 0 {
            return None;
        }
        let breaker =
            (!self.breaker.allows_delivery(now)).then(|| self.breaker.reopens_at()).flatten();
        let rate = self.rate.as_ref().and_then(|rate| match rate.refill_time(now, 1) {
            Some(crate::policy::token_bucket::Refill::At(at)) => Some(at),
            _ => None,
        });
        breaker.into_iter().chain(rate).max()
    }
}

/// A delivery the connection holds and must settle.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub queue: QueueId,
    pub subscription: u32,
    pub message: Message,
    /// When the lease runs out and the attempt fails with `Timeout`.
    pub lease_deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub state: ConnState,
    pub reader: FrameReader,
    pub outbound: Outbound,
    pub in_dirty_list: bool,
    paused: PauseReasons,
    pub accepted_at: Instant,
    pub last_received: Instant,
    pub last_sent: Instant,
    /// When the frame being received started arriving, while one is incomplete.
    pub frame_started_at: Option<Instant>,
    /// What its frame reader holds, as last counted into the broker's total.
    pub partial_held_bytes: u64,
    pub heartbeat_ms: u32,
    /// The protocol version negotiated in the handshake (0 before it).
    pub version: u16,
    /// The instant this connection's timer is registered for, if any.
    pub timer_at: Option<Instant>,
    pub client_name: String,
    /// Its other end, as the driver saw it when accepting it.
    pub peer: PeerInfo,
    /// Who it authenticated as; `None` while authenticating, and when the broker has no
    /// users (then nothing is checked).
    pub user: Option<Arc<User>>,
    /// The authentication exchange, while one runs.
    pub login: Option<Box<Login>>,
    /// Why the connection is closing, once the client sent `Close`.
    pub close_message: String,
    /// Sequence number the next published message takes.
    pub next_publish_seq: u64,
    /// Publishes accepted since the last `Confirm` was encoded, and the durability they need.
    pub confirm_ranges: Vec<Range>,
    pub confirm_gate: Gate,
    pub subscriptions: BTreeMap<u32, Subscription>,
    pub next_tag: u64,
    /// Deliveries it holds, by tag.
    pub in_flight: SeqSlots<InFlight>,
    /// When the connection's lease timer is armed: at or before the earliest lease deadline of
    /// its deliveries (settled ones leave it early; it then re-arms when it fires).
    pub lease_timer_at: Option<Instant>,
    /// The limits this connection was (or will be) told in `HelloOk`. They hold for its whole
    /// life: a reload that changes the broker's limits applies to later connections, since a
    /// client may rely on what it was told (a frame size, a credit ceiling).
    pub limits: ServerLimits,
    /// The connection-level publish rate limit, if the broker sets one.
    pub publish_rate: Option<TokenBucket>,
    /// When a rate-limit pause ends, if one is in force.
    pub rate_resume_at: Option<Instant>,
    /// Publishes held until a `pause` rate limit has tokens for them.
    pub waiting_publishes: Option<WaitingPublishes>,
    /// A publish read while a resource alarm is raised, handled once every alarm clears.
    pub held_publish: Option<chute_protocol::Publish>,
    /// It was sent `Blocked` and is owed `Unblocked`.
    pub told_blocked: bool,
    /// Publishes accepted from it and deliveries made to it, for operators.
    pub published_total: u64,
    pub delivered_total: u64,
}

impl Connection {
    pub fn new(now: Instant, limits: ServerLimits, peer: PeerInfo) -> Connection {
        Connection {
            state: ConnState::AwaitingHello,
            reader: FrameReader::expecting_preface(limits.frame_size_max),
            outbound: Outbound::default(),
            in_dirty_list: false,
            paused: PauseReasons::default(),
            accepted_at: now,
            last_received: now,
            last_sent: now,
            frame_started_at: None,
            partial_held_bytes: 0,
            heartbeat_ms: 0,
            version: 0,
            timer_at: None,
            client_name: String::new(),
            peer,
            user: None,
            login: None,
            close_message: String::new(),
            next_publish_seq: 1,
            confirm_ranges: Vec::new(),
            confirm_gate: Gate::default(),
            subscriptions: BTreeMap::new(),
            next_tag: 1,
            in_flight: SeqSlots::default(),
            lease_timer_at: None,
            limits,
            publish_rate: None,
            rate_resume_at: None,
            waiting_publishes: None,
            held_publish: None,
            told_blocked: false,
            published_total: 0,
            delivered_total: 0,
        }
    }

    pub fn pause_reasons(&self) -> PauseReasons {
        self.paused
    }

    /// Sets or clears one reason not to read. Returns `Some(paused)` when reading as a whole
    /// turned paused or resumed, which the driver must be told; `None` when it did not change.
    pub fn set_paused(&mut self, reason: PauseReason, on: bool) -> Option<bool> {
        let was = self.paused.any();
        if on {
            self.paused.0 |= reason as u8;
        } else {
            self.paused.0 &= !(reason as u8);
        }
        let is = self.paused.any();
        (was != is).then_some(is)
    }

    /// Bytes queued for this connection's socket, in the core and in the driver.
    pub fn outbound_backlog(&self) -> u64 {
        self.outbound.backlog()
    }

    /// Encodes a frame into the outbound buffer, or leaves it as it was and says why the frame
    /// does not fit.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        kind: FrameKind,
        body: &T,
    ) -> Result<(), EncodeError> {
        encode_body(kind, body, self.outbound.buffer(), self.limits.frame_size_max)
    }

    pub fn send_error(&mut self, request_id: u32, code: ErrorCode, message: String) {
        let mut frame = ErrorFrame {
            request_id,
            code,
            retriable: code.is_retriable(),
            retry_after_ms: 0,
            message,
        };
        // Messages are short, but may quote what a client sent: cut one that would not fit.
        let text_bytes_max = (self.limits.frame_size_max as usize).saturating_sub(64);
        if frame.message.len() > text_bytes_max {
            let cut = (0..=text_bytes_max).rev().find(|at| frame.message.is_char_boundary(*at));
            frame.message.truncate(cut.unwrap_or(0));
        }
        self.send(FrameKind::Error, &frame).expect("an error frame is cut to fit");
    }

    /// Records an accepted publish for the next `Confirm`, which must wait for `gate`.
    pub fn confirm(&mut self, seq: u64, gate: Gate) {
        assert!(seq < self.next_publish_seq, "a confirm for publish {seq}, not yet numbered");
        assert!(
            self.confirm_ranges.last().and_then(|r| r.last()).is_none_or(|last| last < seq),
            "publishes are confirmed in order, each once"
        );
        self.published_total += 1;
        push_to_ranges(&mut self.confirm_ranges, seq);
        self.outbound.accept_unconfirmed();
        self.confirm_gate = Gate {
            written_lsn: self.confirm_gate.written_lsn.max(gate.written_lsn),
            synced_lsn: self.confirm_gate.synced_lsn.max(gate.synced_lsn),
        };
    }

    /// The backlog at which the broker stops reading this connection. Deliveries stop one
    /// frame earlier (at `connection_outbound_bytes_max`), so a consumer's own deliveries never
    /// stop the broker reading its acks; only replies it does not read (confirms, answers) do.
    pub fn read_pause_backlog(&self, outbound_bytes_max: u64) -> u64 {
        outbound_bytes_max + u64::from(self.limits.frame_size_max)
    }

    /// Past the handshake, and not closing.
    pub fn is_open(&self) -> bool {
        self.state == ConnState::Open
    }

    /// Whether the broker may queue more deliveries for this connection now.
    pub fn can_take_deliveries(&self, outbound_bytes_max: u64) -> bool {
        self.state == ConnState::Open && self.outbound_backlog() < outbound_bytes_max
    }

    /// Idle timeout: three heartbeat intervals without a byte from the client.
    pub fn idle_deadline(&self) -> Instant {
        self.last_received.plus_ms(3 * u64::from(self.heartbeat_ms))
    }

    pub fn heartbeat_deadline(&self) -> Instant {
        self.last_sent.plus_ms(u64::from(self.heartbeat_ms))
    }

    /// When the frame being received must be complete, if one is.
    pub fn frame_deadline(&self, frame_timeout_ms: u32) -> Option<Instant> {
        self.frame_started_at.map(|at| at.plus_ms(frame_timeout_ms.into()))
    }
}

/// The last frames of a connection the broker closes: `Error` (for failures) and `Close`.
pub(crate) fn append_closing_frames(
    out: &mut bytes::BytesMut,
    code: ErrorCode,
    message: &str,
    frame_size_max: u32,
) {
    if code != ErrorCode::SHUTTING_DOWN && code != ErrorCode::NORMAL_CLOSE {
        let error = ErrorFrame {
            request_id: 0,
            code,
            retriable: code.is_retriable(),
            retry_after_ms: 0,
            message: message.to_string(),
        };
        encode_body(FrameKind::Error, &error, out, frame_size_max)
            .expect("a short error frame fits");
    }
    let close = chute_protocol::Close { code, message: message.to_string() };
    encode_body(FrameKind::Close, &close, out, frame_size_max).expect("a short close frame fits");
}
