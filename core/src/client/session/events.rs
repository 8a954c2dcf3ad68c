//! What goes into a session and what comes out: inputs from the driver, outputs for it, and
//! the events and errors the application sees.

use bytes::Bytes;
use chute_protocol::{DecodeError, Delivery, ErrorCode, Frame, GoingAway, HelloOk, Range};

use crate::client::{CommandError, Response};
use crate::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionInput {
    /// The transport that `SessionOutput::Connect` asked for is open.
    TransportUp,
    /// It could not be opened; `reason` is for the events (`connection refused`).
    ConnectFailed {
        reason: String,
    },
    Received(Bytes),
    /// What was received, already cut into frames and decoded by the driver (with a
    /// [`chute_protocol::FrameReader`] of its own, fresh for each transport): the same as
    /// `Received` of those bytes, but a threaded driver can decode outside whatever lock guards
    /// the session. `error`, if any, is what the reader failed with after `frames`; it ends the
    /// connection as bad bytes would.
    Frames {
        frames: Vec<Frame>,
        error: Option<DecodeError>,
    },
    /// The open transport closed or failed under the session (not after its own `Close`).
    TransportClosed {
        reason: String,
    },
    /// `poll_timeout` is due.
    Timeout,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOutput {
    /// Open a transport to the address with this index, within `Timeouts::connect_ms`, and
    /// report `TransportUp` or `ConnectFailed`. Only one transport is open at a time: this
    /// comes only after the previous one was closed (by `Close` or `TransportClosed`).
    Connect {
        address: usize,
    },
    Send(Bytes),
    /// Finish writing, then close the transport. Nothing more is sent on it.
    Close,
    Event(SessionEvent),
}

/// What happened, for the application. Publishes are numbered by the session (from 1, never
/// reused, whatever connection carries them); subscriptions and requests by the ids their
/// commands returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The first connection is open.
    Connected {
        address: usize,
        server: HelloOk,
    },
    /// A connection after a lost one is open, and the session's state is sent again on it:
    /// queues, bindings, subscriptions, and `republished` unanswered publishes.
    Reconnected {
        address: usize,
        server: HelloOk,
        republished: u64,
    },
    /// The connection ended (or an attempt failed); the session reconnects unless a
    /// `Closed` follows.
    Disconnected {
        address: usize,
        error: LinkError,
    },
    /// The next attempt, to this address, after this delay.
    Reconnecting {
        attempt: u32,
        delay_ms: u64,
        address: usize,
    },
    /// These publishes are confirmed. One confirm from the server may become several ranges
    /// when it covers publishes sent again after a reconnect.
    Confirmed(Range),
    /// This publish has no confirm and never will.
    NotConfirmed {
        seq: u64,
        error: NotConfirmed,
    },
    /// Deliveries for a subscription, on the connection numbered `epoch` (see
    /// [`Session::ack`](super::Session::ack)).
    Deliveries {
        subscription: u32,
        epoch: u64,
        deliveries: Vec<Delivery>,
    },
    Response {
        request_id: u32,
        response: Response,
    },
    /// A request got no answer and will not.
    RequestFailed {
        request_id: u32,
        error: RequestError,
    },
    /// The server ended a subscription (its queue was deleted), or refused it again after a
    /// reconnect. Nothing more comes for it.
    SubscriptionCancelled {
        subscription: u32,
        code: ErrorCode,
        message: String,
    },
    /// The server is going away (PROTOCOL.md §5.7). The session finishes what the connection
    /// carries and moves to the next address (or back after the delay).
    GoingAway(GoingAway),
    /// A queue or binding the session declared before could not be declared again after a
    /// reconnect (someone deleted or changed it meanwhile).
    RestoreFailed {
        what: String,
        code: ErrorCode,
        message: String,
    },
    /// The breaker opened: publishes fail at once until `until`, then one is let through.
    BreakerOpened {
        until: Instant,
    },
    /// A publish was confirmed again: the breaker closed.
    BreakerClosed,
    /// The server raised a resource alarm (`reason`: `memory`, `disk`; PROTOCOL.md §5.9): it
    /// does not read this connection's publishes, nor what follows them, until `Unblocked`.
    /// Their confirms wait; nothing is lost.
    Blocked {
        reason: String,
    },
    /// The alarm cleared, or the blocked connection was lost (a block is the connection's:
    /// the next one is told again if the alarm is still raised when it publishes).
    Unblocked,
    /// The session is over; nothing follows.
    Closed {
        reason: SessionEnd,
    },
}

/// Why a publish will not be confirmed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotConfirmed {
    /// The server refused it (nothing was stored), for good or after the retries the deadline
    /// allowed.
    #[error("refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String, retry_after_ms: u64 },
    /// It was sent `sends` times and never answered before its deadline: it may be stored.
    #[error(
        "no confirm within the publish deadline after {sends} sends: it may or may not be stored"
    )]
    UnknownOutcome { sends: u32 },
    /// Its deadline passed before any connection could take it: it was never sent.
    #[error("the publish deadline passed before it could be sent")]
    DeadlinePassed,
    /// A new connection's server refuses it before it is sent (its frame limit is smaller).
    #[error("cannot be sent again: {0}")]
    Unsendable(CommandError),
}

/// Why a request has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    #[error("no answer within {after_ms} ms")]
    TimedOut { after_ms: u64 },
    /// The connection was lost with the request sent and unanswered, and it changes state
    /// (a delete, purge or redrive): it may have happened, so it is not sent again.
    #[error("the connection was lost before the answer; it may or may not have happened")]
    UnknownOutcome,
}

/// Why a connection ended or could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("cannot connect: {reason}")]
    ConnectFailed { reason: String },
    /// Closed with a protocol code, by the server or by the connection's own verdict (a
    /// heartbeat or handshake timeout, bad bytes from the server).
    #[error("closed ({code}): {message}")]
    Closed { code: ErrorCode, message: String },
    /// The transport failed or closed with no `Close`.
    #[error("lost: {reason}")]
    TransportLost { reason: String },
    /// A publish went unanswered for `after_ms`: the connection was taken for stuck and closed.
    #[error("no confirm for {after_ms} ms")]
    ConfirmTimeout { after_ms: u64 },
    /// The server asked clients to move (GoingAway), and the connection was closed once its
    /// answers were in.
    #[error("the server is going away: {message}")]
    GoingAway { message: String },
    /// The application asked to move (`Session::reconnect_now`).
    #[error("closed to reconnect, as asked")]
    Requested,
}

impl LinkError {
    /// Whether trying again can help. A server that refused the client itself (bad
    /// credentials, no common version) or its bytes will refuse them again.
    pub fn is_retriable(&self) -> bool {
        match self {
            LinkError::Closed { code, .. } => {
                *code == ErrorCode::NORMAL_CLOSE || code.is_retriable()
            }
            _ => true,
        }
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The application closed it.
    Closed,
    /// The connection ended and the session does not reconnect: reconnecting is off, or the
    /// server refused something that would be refused again.
    Lost(LinkError),
    /// `attempts` connection attempts in a row failed, the last with `last`.
    GaveUp { attempts: u32, last: LinkError },
}

/// What a settle command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Settled {
    /// Sent (or coalesced to be sent) on the connection that delivered the message.
    Sent,
    /// That connection is gone, so nothing was sent: the server returns the message to its
    /// queue and delivers it again.
    Void,
}

/// Counters since the session started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Connections opened (handshake completed).
    pub connections: u64,
    /// Connections lost or closed under the session.
    pub disconnects: u64,
    /// Connection attempts that failed (refused, timed out, lost before `HelloOk`).
    pub connect_failures: u64,
    /// Publishes sent again on a new connection.
    pub republished: u64,
    /// Refused publishes and requests sent again.
    pub retries: u64,
    /// Publishes given up at their deadline.
    pub unknown_outcomes: u64,
    pub breaker_opens: u64,
    /// Publishes refused at once because the breaker was open.
    pub breaker_rejections: u64,
    /// Deliveries settled after their connection was gone (nothing sent).
    pub void_settles: u64,
}
