//! Error codes carried by `Error`, `Close` and `PublishRejected` frames.
//!
//! A code is a `u16` newtype rather than an enum so that a client can decode codes added by a
//! newer server (it sees an unknown code, not a decode failure). `docs/PROTOCOL.md` lists every
//! code, what it means, and whether a request that failed with it may be retried.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $label:literal, retriable: $retriable:literal; )*) => {
        impl ErrorCode {
            $( $(#[$doc])* pub const $name: ErrorCode = ErrorCode($value); )*

            /// Every code defined by this version, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$( ErrorCode::$name ),*];

            /// The code's name as written in `docs/PROTOCOL.md`, or `None` for a code this
            /// version does not know.
            pub fn label(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some($label), )*
                    _ => None,
                }
            }

            /// Whether the same request may succeed if sent again later (possibly to another
            /// server). Unknown codes are not retriable.
            pub fn is_retriable(self) -> bool {
                match self.0 {
                    $( $value => $retriable, )*
                    _ => false,
                }
            }
        }
    };
}

error_codes! {
    /// A frame could not be decoded, or broke a framing rule. The connection is closed.
    MALFORMED_FRAME = 1, "malformed-frame", retriable: false;
    /// A frame's declared length exceeds the receiver's limit. The connection is closed.
    FRAME_TOO_LARGE = 2, "frame-too-large", retriable: false;
    /// The frame kind is unknown, or not allowed in this direction or state. Closed.
    UNEXPECTED_FRAME = 3, "unexpected-frame", retriable: false;
    /// The client's version range does not include a version the server speaks. Closed.
    UNSUPPORTED_VERSION = 4, "unsupported-version", retriable: false;
    /// The first eight bytes were not the chute preface. Closed.
    BAD_PREFACE = 5, "bad-preface", retriable: false;
    /// The credentials in `Hello` were refused. Closed.
    AUTHENTICATION_FAILED = 6, "authentication-failed", retriable: false;
    /// The authenticated user may not perform this operation on this resource.
    NOT_AUTHORIZED = 7, "not-authorized", retriable: false;
    /// No `Hello` arrived within the handshake timeout. Closed.
    HANDSHAKE_TIMEOUT = 8, "handshake-timeout", retriable: true;
    /// Nothing arrived within the idle timeout (missed heartbeats). Closed.
    HEARTBEAT_TIMEOUT = 9, "heartbeat-timeout", retriable: true;
    /// A field is outside what the protocol allows (a name too long, priority above 9, ...).
    INVALID_ARGUMENT = 10, "invalid-argument", retriable: false;
    /// A frame that had started did not complete within the server's frame timeout. Closed.
    SLOW_FRAME = 11, "slow-frame", retriable: true;

    /// The named queue does not exist.
    NO_SUCH_QUEUE = 20, "no-such-queue", retriable: false;
    /// A queue of that name exists with different options.
    QUEUE_OPTIONS_MISMATCH = 21, "queue-options-mismatch", retriable: false;
    /// `QueueDelete` with `if_empty` or `if_unused` found the queue not empty or in use.
    QUEUE_IN_USE = 22, "queue-in-use", retriable: false;
    /// The queue options are inconsistent (e.g. a dead-letter target that is the queue itself).
    INVALID_QUEUE_OPTIONS = 23, "invalid-queue-options", retriable: false;

    /// The queue is at `messages_max` or `bytes_max` and its overflow policy rejects publishes.
    QUEUE_FULL = 30, "queue-full", retriable: true;
    /// A publish rate limit is exhausted; `retry_after_ms` says when a token is available.
    RATE_LIMITED = 31, "rate-limited", retriable: true;
    /// A mandatory publish to a topic matched no binding.
    UNROUTABLE = 32, "unroutable", retriable: false;
    /// A message's payload exceeds the server's `payload_size_max`.
    MESSAGE_TOO_LARGE = 33, "message-too-large", retriable: false;

    /// An ack, nack, reject or touch named a delivery tag that is not outstanding.
    UNKNOWN_DELIVERY_TAG = 40, "unknown-delivery-tag", retriable: false;
    /// The subscription id is not active on this connection.
    NO_SUCH_SUBSCRIPTION = 41, "no-such-subscription", retriable: false;
    /// The subscription id is already active on this connection.
    SUBSCRIPTION_EXISTS = 42, "subscription-exists", retriable: false;
    /// Granting this credit would exceed the server's `credit_max`.
    CREDIT_OVERFLOW = 43, "credit-overflow", retriable: false;
    /// The dead-letter entry does not exist (already redriven or purged).
    NO_SUCH_DEAD_LETTER = 44, "no-such-dead-letter", retriable: false;

    /// A server-wide limit was reached (connections, queues, subscriptions, bindings).
    RESOURCE_LIMIT = 50, "resource-limit", retriable: true;
    /// The broker stopped accepting work because storage failed; it must be restarted.
    STORAGE_FAILED = 51, "storage-failed", retriable: true;
    /// The server is shutting down or draining (lame duck).
    SHUTTING_DOWN = 52, "shutting-down", retriable: true;
    /// The server hit a bug. Please report it.
    INTERNAL = 53, "internal", retriable: true;
    /// An operator closed the connection (the admin API); the message says why.
    CLOSED_BY_OPERATOR = 54, "closed-by-operator", retriable: true;
    /// The peer closed the connection normally.
    NORMAL_CLOSE = 0, "normal-close", retriable: false;
}

impl std::fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.label() {
            Some(label) => write!(f, "{label}({})", self.0),
            None => write!(f, "unknown({})", self.0),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes are the wire contract: two names must never share a number.
    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.0), "duplicate error code {}", code.0);
        }
    }

    /// A code from a newer server is shown as unknown and treated as not retriable.
    #[test]
    fn unknown_codes_are_not_retriable() {
        let code = ErrorCode(9999);
        assert_eq!(code.label(), None);
        assert!(!code.is_retriable());
        assert_eq!(format!("{code}"), "unknown(9999)");
    }
}
