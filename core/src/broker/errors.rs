//! Why the broker refused an operation, one type per operation. Each is a peer's fault or a
//! limit: it becomes an error answer (`Error`, or a `PublishFailure` in `PublishRejected`)
//! with the code [`PublishError::code`] or [`DeclareError::code`] gives, and the connection
//! stays open.

use chute_protocol::{
    ErrorCode, PublishFailure, GROUP_KEY_LEN_MAX, MESSAGE_ID_LEN_MAX, NAME_LEN_MAX, PRIORITY_MAX,
};

use crate::auth::Access;
use crate::names::NameError;
use crate::policy::topic::TopicError;

/// An operation the connection's user may not do (`not-authorized`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("user {user:?} may not {} {what} {name:?}", access.label())]
pub struct Denied {
    pub user: String,
    pub access: Access,
    /// `queue` or `topic`.
    pub what: &'static str,
    pub name: String,
}

/// Why one published message was refused. Nothing of it was stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("{count} messages in one Publish; the limit is {max}")]
    BatchTooLarge { count: usize, max: u32 },
    #[error("destination name is {len} bytes, longer than {NAME_LEN_MAX}")]
    DestinationTooLong { len: usize },
    #[error("queue {0:?} does not exist")]
    NoSuchQueue(String),
    #[error(transparent)]
    BadTopic(#[from] TopicError),
    #[error("topic {0:?} matches no binding")]
    Unroutable(String),
    #[error("payload of {len} bytes exceeds payload_size_max ({max})")]
    MessageTooLarge { len: usize, max: u32 },
    #[error("priority {0} is above {PRIORITY_MAX}")]
    PriorityTooHigh(u8),
    #[error("message id is {len} bytes, longer than {MESSAGE_ID_LEN_MAX}")]
    IdTooLong { len: usize },
    #[error("group key is {len} bytes, longer than {GROUP_KEY_LEN_MAX}")]
    GroupTooLong { len: usize },
    #[error("a header name is {len} bytes, longer than {NAME_LEN_MAX}")]
    HeaderNameTooLong { len: usize },
    #[error("queue {queue:?} is full ({limit})")]
    QueueFull { queue: String, limit: QueueLimit },
    #[error("publish rate limit reached; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error(transparent)]
    NotAuthorized(#[from] Denied),
}

/// The limit a full queue reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLimit {
    Messages(u64),
    Bytes(u64),
}

impl std::fmt::Display for QueueLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueLimit::Messages(max) => write!(f, "{max} messages"),
            QueueLimit::Bytes(max) => write!(f, "{max} bytes"),
        }
    }
}

impl PublishError {
    /// The wire code of the `PublishFailure`.
    pub fn code(&self) -> ErrorCode {
        match self {
            PublishError::BatchTooLarge { .. }
            | PublishError::DestinationTooLong { .. }
            | PublishError::BadTopic(_)
            | PublishError::PriorityTooHigh(_)
            | PublishError::IdTooLong { .. }
            | PublishError::GroupTooLong { .. }
            | PublishError::HeaderNameTooLong { .. } => ErrorCode::INVALID_ARGUMENT,
            PublishError::NoSuchQueue(_) => ErrorCode::NO_SUCH_QUEUE,
            PublishError::Unroutable(_) => ErrorCode::UNROUTABLE,
            PublishError::MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            PublishError::QueueFull { .. } => ErrorCode::QUEUE_FULL,
            PublishError::RateLimited { .. } => ErrorCode::RATE_LIMITED,
            PublishError::NotAuthorized(_) => ErrorCode::NOT_AUTHORIZED,
        }
    }

    /// When a retry may succeed, for the refusals that say.
    pub fn retry_after_ms(&self) -> u64 {
        match self {
            PublishError::RateLimited { retry_after_ms } => *retry_after_ms,
            _ => 0,
        }
    }

    /// The refusal of publish `seq`, as the wire carries it.
    pub fn to_failure(&self, seq: u64) -> PublishFailure {
        PublishFailure {
            seq,
            code: self.code(),
            retry_after_ms: self.retry_after_ms(),
            message: self.to_string(),
        }
    }
}

/// Why a queue could not be declared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclareError {
    #[error(transparent)]
    BadName(#[from] NameError),
    #[error("queue {name:?} exists with different options: {difference}")]
    OptionsMismatch { name: String, difference: String },
    #[error("queue {0:?} does not exist")]
    NoSuchQueue(String),
    #[error(transparent)]
    InvalidOptions(#[from] OptionsError),
    #[error("queues_max ({max}) reached")]
    QueuesMax { max: u32 },
}

impl DeclareError {
    /// The wire code of the `Error` answer.
    pub fn code(&self) -> ErrorCode {
        match self {
            DeclareError::BadName(_) => ErrorCode::INVALID_ARGUMENT,
            DeclareError::OptionsMismatch { .. } => ErrorCode::QUEUE_OPTIONS_MISMATCH,
            DeclareError::NoSuchQueue(_) => ErrorCode::NO_SUCH_QUEUE,
            DeclareError::InvalidOptions(_) => ErrorCode::INVALID_QUEUE_OPTIONS,
            DeclareError::QueuesMax { .. } => ErrorCode::RESOURCE_LIMIT,
        }
    }
}

/// Why deleting, purging or altering a queue was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueAdminError {
    #[error("queue {0:?} does not exist")]
    NoSuchQueue(String),
    #[error("queue {name:?} holds {messages} messages")]
    NotEmpty { name: String, messages: u64 },
    #[error("queue {name:?} has {consumers} consumers")]
    InUse { name: String, consumers: usize },
    #[error("queue {name:?}: {option} cannot change on an existing queue (it is {existing})")]
    Immutable { name: String, option: &'static str, existing: String },
    #[error(transparent)]
    InvalidOptions(#[from] OptionsError),
    #[error("queues_max ({max}) reached (the new dead-letter queue would be one too many)")]
    QueuesMax { max: u32 },
}

impl QueueAdminError {
    /// The wire code of the `Error` answer.
    pub fn code(&self) -> ErrorCode {
        match self {
            QueueAdminError::NoSuchQueue(_) => ErrorCode::NO_SUCH_QUEUE,
            QueueAdminError::NotEmpty { .. } | QueueAdminError::InUse { .. } => {
                ErrorCode::QUEUE_IN_USE
            }
            QueueAdminError::Immutable { .. } | QueueAdminError::InvalidOptions(_) => {
                ErrorCode::INVALID_QUEUE_OPTIONS
            }
            QueueAdminError::QueuesMax { .. } => ErrorCode::RESOURCE_LIMIT,
        }
    }
}

/// Queue options that cannot work together (`invalid-queue-options`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    #[error("queue {0:?} cannot be its own dead-letter queue")]
    OwnDeadLetter(String),
    #[error(transparent)]
    BadDeadLetterName(NameError),
    #[error("lease_ms must be at least 1")]
    LeaseZero,
    #[error("backoff.factor_percent must be at least 100 (no shrinking delays)")]
    BackoffShrinks,
    #[error("backoff.base_ms must not exceed backoff.max_ms")]
    BackoffBaseAboveMax,
    #[error("attempts_max must be at least 1 (or unset for unlimited)")]
    AttemptsZero,
    #[error("publish_rate needs per_second and burst of at least 1")]
    PublishRateZero,
    #[error("breaker needs failures_max and open_ms of at least 1")]
    BreakerZero,
    #[error("durability interval needs sync_interval_ms of at least 1")]
    SyncIntervalZero,
}
