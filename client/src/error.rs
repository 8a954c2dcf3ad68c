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
    /// The connection ended (closed by either side, timed out, or failed).
    #[error("connection closed ({code}): {message}")]
    Closed { code: ErrorCode, message: String },
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
            Error::Closed { .. } | Error::Connect { .. } => true,
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
    #[error(transparent)]
    Command(#[from] CommandError),
}
