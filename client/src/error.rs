//! Client errors, kept apart by who is at fault.

use chute_core::client::{CommandError, LinkError, NotConfirmed, RequestError, SessionEnd};
use chute_protocol::ErrorCode;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid server address: {0}")]
    InvalidUrl(String),
    /// The connect options cannot work: a TLS file that cannot be read or used, credentials
    /// given twice, a token without TLS.
    #[error("invalid connect options: {0}")]
    InvalidOptions(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection ended with a protocol code: closed by either side, or timed out.
    #[error("connection closed ({code}): {message}")]
    Closed { code: ErrorCode, message: String },
    /// The connection to `addr` ended without a `Close`: the socket failed or was closed under
    /// it (the server died, the network failed). `io_error` says how, when known.
    #[error("connection to {addr} was lost{}", colon_then(io_error))]
    ConnectionLost { addr: String, io_error: Option<String> },
    /// Reconnecting failed `attempts` times in a row (`ReconnectPolicy::attempts_max`).
    #[error("gave up reconnecting after {attempts} attempts; the last: {last}")]
    GaveUp { attempts: u32, last: LinkError },
    /// The server refused a request.
    #[error("server refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String, retriable: bool },
    /// No answer within the request's timeout (`ConnectOptions::timeouts`).
    #[error("no answer within {after_ms} ms")]
    TimedOut { after_ms: u64 },
    /// The connection was lost under a request that changes state (delete, purge, redrive):
    /// it may or may not have happened, so it was not sent again.
    #[error(
        "the connection was lost before the answer; the request may or may not have taken effect"
    )]
    UnknownOutcome,
    /// The delivery came on a connection that has since been lost: nothing was sent, and the
    /// server delivers the message again (to this subscription, which carries on over the new
    /// connection, or to another consumer).
    #[error(
        "delivery {tag} is void: its connection was lost, and the message will be delivered again"
    )]
    DeliveryVoid { tag: u64 },
    /// The client refused a command before sending it.
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl Error {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Closed { code, .. } | Error::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying (possibly after reconnecting) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Refused { retriable, .. } => *retriable,
            // A server that refused the client itself (its credentials, its version) will
            // refuse it again.
            Error::Closed { code, .. } => *code == ErrorCode::NORMAL_CLOSE || code.is_retriable(),
            Error::ConnectionLost { .. }
            | Error::Connect { .. }
            | Error::GaveUp { .. }
            | Error::TimedOut { .. } => true,
            Error::InvalidUrl(_)
            | Error::InvalidOptions(_)
            | Error::Command(_)
            | Error::UnknownOutcome => false,
            Error::DeliveryVoid { .. } => false,
        }
    }
}

impl From<RequestError> for Error {
    fn from(error: RequestError) -> Error {
        match error {
            RequestError::TimedOut { after_ms } => Error::TimedOut { after_ms },
            _ => Error::UnknownOutcome,
        }
    }
}

/// A publish the server did not confirm.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("publish refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String, retry_after_ms: u64 },
    /// The connection ended before the confirm arrived: the message may or may not be stored.
    #[error("connection closed before the confirm ({code}): {message}")]
    Unconfirmed { code: ErrorCode, message: String },
    /// The connection was lost (see [`Error::ConnectionLost`]) before the confirm arrived: the
    /// message may or may not be stored.
    #[error("connection to {addr} was lost before the confirm{}", colon_then(io_error))]
    ConnectionLost { addr: String, io_error: Option<String> },
    /// Sent `sends` times (over reconnects) and never answered before the publish deadline
    /// (`Timeouts::publish_ms`): it may or may not be stored.
    #[error("no confirm within the publish deadline after {sends} sends: the message may or may not be stored")]
    UnknownOutcome { sends: u32 },
    /// The publish deadline passed before any connection could take the message: it was never
    /// sent.
    #[error("the publish deadline passed before the message could be sent")]
    DeadlinePassed,
    /// The client gave up reconnecting (see [`Error::GaveUp`]) before the confirm arrived.
    #[error("gave up reconnecting after {attempts} attempts ({last}) before the confirm")]
    GaveUp { attempts: u32, last: LinkError },
    /// Refused before sending: too large, invalid, or the circuit breaker is open
    /// (`CommandError::CircuitOpen`).
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl PublishError {
    /// Whether publishing again (possibly after reconnecting) may succeed. After `Unconfirmed`,
    /// `ConnectionLost` or `UnknownOutcome` the message may be stored already: a retry can
    /// store it twice unless it carries an id and the queue has a dedup window.
    pub fn is_retriable(&self) -> bool {
        match self {
            PublishError::Refused { code, .. } => code.is_retriable(),
            PublishError::Unconfirmed { .. }
            | PublishError::ConnectionLost { .. }
            | PublishError::UnknownOutcome { .. }
            | PublishError::DeadlinePassed
            | PublishError::GaveUp { .. }
            | PublishError::Command(CommandError::CircuitOpen { .. }) => true,
            PublishError::Command(_) => false,
        }
    }
}

impl From<NotConfirmed> for PublishError {
    fn from(error: NotConfirmed) -> PublishError {
        match error {
            NotConfirmed::Refused { code, message, retry_after_ms } => {
                PublishError::Refused { code, message, retry_after_ms }
            }
            NotConfirmed::UnknownOutcome { sends } => PublishError::UnknownOutcome { sends },
            NotConfirmed::DeadlinePassed => PublishError::DeadlinePassed,
            NotConfirmed::Unsendable(refused) => PublishError::Command(refused),
            // NotConfirmed is non-exhaustive: a future reason is at least an unknown outcome.
            _ => PublishError::UnknownOutcome { sends: 0 },
        }
    }
}

/// How a connection ended, as each of its waiters learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Closed { code: ErrorCode, message: String },
    Lost { addr: String, io_error: Option<String> },
    Unreachable { addr: String, reason: String },
    GaveUp { attempts: u32, last: LinkError },
}

impl Ended {
    /// The session's end, with the address it was last at. Before the first connection, the
    /// last attempt's reason is the answer to `connect` (a refusal says why, with its code).
    pub fn from_session(end: SessionEnd, addr: String, before_first_connection: bool) -> Ended {
        let from_link = |error: LinkError| match error {
            LinkError::Closed { code, message } => Ended::Closed { code, message },
            LinkError::ConnectFailed { reason } => {
                Ended::Unreachable { addr: addr.clone(), reason }
            }
            LinkError::TransportLost { reason } => {
                Ended::Lost { addr: addr.clone(), io_error: Some(reason) }
            }
            other => Ended::Lost { addr: addr.clone(), io_error: Some(other.to_string()) },
        };
        match end {
            SessionEnd::Closed => {
                Ended::Closed { code: ErrorCode::NORMAL_CLOSE, message: "client closed".into() }
            }
            SessionEnd::Lost(error) => from_link(error),
            SessionEnd::GaveUp { last, .. } if before_first_connection => from_link(last),
            SessionEnd::GaveUp { attempts, last } => match last {
                LinkError::ConnectFailed { reason } => Ended::Unreachable { addr, reason },
                last => Ended::GaveUp { attempts, last },
            },
        }
    }

    /// For requests, subscriptions and commands issued afterwards.
    pub fn error(&self) -> Error {
        match self.clone() {
            Ended::Closed { code, message } => Error::Closed { code, message },
            Ended::Lost { addr, io_error } => Error::ConnectionLost { addr, io_error },
            Ended::Unreachable { addr, reason } => Error::Connect { addr, reason },
            Ended::GaveUp { attempts, last } => Error::GaveUp { attempts, last },
        }
    }

    /// For publishes waiting for their confirms.
    pub fn publish_error(&self) -> PublishError {
        match self.clone() {
            Ended::Closed { code, message } => PublishError::Unconfirmed { code, message },
            Ended::Lost { addr, io_error } => PublishError::ConnectionLost { addr, io_error },
            Ended::Unreachable { addr, reason } => {
                PublishError::ConnectionLost { addr, io_error: Some(reason) }
            }
            Ended::GaveUp { attempts, last } => PublishError::GaveUp { attempts, last },
        }
    }
}

fn colon_then(detail: &Option<String>) -> String {
    detail.as_ref().map(|detail| format!(": {detail}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refusal of the client itself is not worth retrying; a server going away is.
    #[test]
    fn closed_is_retriable_by_its_code() {
        let closed = |code| Error::Closed { code, message: String::new() };
        assert!(!closed(ErrorCode::AUTHENTICATION_FAILED).is_retriable());
        assert!(!closed(ErrorCode::UNSUPPORTED_VERSION).is_retriable());
        assert!(closed(ErrorCode::SHUTTING_DOWN).is_retriable());
        assert!(closed(ErrorCode::NORMAL_CLOSE).is_retriable());
    }
}
