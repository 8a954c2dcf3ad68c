//! Client errors, kept apart by who is at fault.

use chute_core::client::CommandError;
use chute_protocol::ErrorCode;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid server address: {0}")]
    InvalidUrl(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection ended with a protocol code: closed by either side, or timed out.
    #[error("connection closed ({code}): {message}")]
    Closed { code: ErrorCode, message: String },
    /// The connection to `addr` ended without a `Close`: the socket failed or was closed under
    /// it (the server died, the network failed). `io_error` says how, when known.
    #[error("connection to {addr} was lost{}", colon_then(io_error))]
    ConnectionLost { addr: String, io_error: Option<String> },
    /// The server refused a request.
    #[error("server refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String, retriable: bool },
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
            Error::Closed { .. } | Error::ConnectionLost { .. } | Error::Connect { .. } => true,
            Error::InvalidUrl(_) | Error::Command(_) => false,
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
    #[error(transparent)]
    Command(#[from] CommandError),
}

impl PublishError {
    /// Whether publishing again (possibly after reconnecting) may succeed. After `Unconfirmed`
    /// or `ConnectionLost` the message may be stored already: a retry can store it twice unless
    /// it carries an id and the queue has a dedup window.
    pub fn is_retriable(&self) -> bool {
        match self {
            PublishError::Refused { code, .. } => code.is_retriable(),
            PublishError::Unconfirmed { .. } | PublishError::ConnectionLost { .. } => true,
            PublishError::Command(_) => false,
        }
    }
}

/// How a connection ended, as each of its waiters learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Closed { code: ErrorCode, message: String },
    Lost { addr: String, io_error: Option<String> },
}

impl Ended {
    /// For requests, subscriptions and commands issued afterwards.
    pub fn error(&self) -> Error {
        match self.clone() {
            Ended::Closed { code, message } => Error::Closed { code, message },
            Ended::Lost { addr, io_error } => Error::ConnectionLost { addr, io_error },
        }
    }

    /// For publishes waiting for their confirms.
    pub fn publish_error(&self) -> PublishError {
        match self.clone() {
            Ended::Closed { code, message } => PublishError::Unconfirmed { code, message },
            Ended::Lost { addr, io_error } => PublishError::ConnectionLost { addr, io_error },
        }
    }
}

fn colon_then(detail: &Option<String>) -> String {
    detail.as_ref().map(|detail| format!(": {detail}")).unwrap_or_default()
}
