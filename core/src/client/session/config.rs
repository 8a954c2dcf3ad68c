//! What a session is told: where to connect, how to reconnect, how long each operation may
//! take, which refusals to retry, and whether to break the circuit.

use chute_protocol::{BackoffPolicy, BreakerPolicy};

use crate::client::ClientConfig;

/// How a [`Session`](super::Session) connects, reconnects and times its operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Each connection's own settings (name, credentials, heartbeat). Its handshake timeout is
    /// replaced by `timeouts.connect_ms`.
    pub client: ClientConfig,
    /// How many server addresses the driver knows; `SessionOutput::Connect` names one by its
    /// index. At least one.
    pub addresses: usize,
    pub reconnect: ReconnectPolicy,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    /// A circuit breaker around publishing, or none. Open, it fails publishes at once with
    /// `CommandError::CircuitOpen` instead of letting them wait for a server that is down.
    pub breaker: Option<BreakerPolicy>,
    /// Give messages published without an id a unique one, so that publishing them again
    /// after an unknown outcome is harmless on a queue with a dedup window (PROTOCOL.md §7.5).
    /// Only where a window may be: messages to topics, to queues with a window, and to queues
    /// the session does not know yet (it asks the server with a passive declaration, once per
    /// queue); an id does nothing on a queue without one but cost every message.
    pub generate_ids: bool,
    /// Seeds the reconnect jitter, the address shuffle and the prefix of generated ids. Drivers
    /// take it from the operating system; a simulation from its own seed, to replay a run.
    pub seed: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            client: ClientConfig::default(),
            addresses: 1,
            reconnect: ReconnectPolicy::default(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            breaker: None,
            generate_ids: true,
            seed: 0,
        }
    }
}

/// When and where to reconnect after a connection is lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Off, the first lost connection ends the session, as a bare `Client` does.
    pub enabled: bool,
    /// The delay before each attempt: `base_ms`, growing by `factor_percent` per failed attempt
    /// up to `max_ms`, drawn from `[0, that]` with `jitter` (full jitter, so that clients that
    /// lost the same server do not all come back at once).
    pub backoff: BackoffPolicy,
    /// Failed attempts in a row before the session gives up; `None` tries forever.
    pub attempts_max: Option<u32>,
    /// Whether the first connection is retried like a lost one. Off, a session whose first
    /// round over the addresses fails ends at once: a wrong address should fail fast.
    pub retry_first_connect: bool,
    /// Try the addresses in an order shuffled once from the seed, rather than as given, so
    /// that clients spread over a cluster.
    pub shuffle: bool,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            backoff: BackoffPolicy {
                base_ms: 100,
                factor_percent: 200,
                max_ms: 5_000,
                jitter: true,
            },
            attempts_max: None,
            retry_first_connect: false,
            shuffle: false,
        }
    }
}

/// How long each operation may take. Each is counted from when the caller hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From asking the driver to connect to the server's `HelloOk`.
    pub connect_ms: u64,
    /// Requests other than declarations: an answer by then, or `RequestError::TimedOut`.
    pub request_ms: u64,
    /// Queue declarations, which wait for the server's fsync.
    pub declare_ms: u64,
    /// A publish sent on a connection and not answered by then means the connection is stuck
    /// (the server stalled): it is closed, and every unanswered publish is sent again on the
    /// next one. `None` waits as long as the connection lives. Keep it above the longest a
    /// queue's `Pause` rate limit can hold a publish.
    pub confirm_ms: Option<u64>,
    /// A publish with no outcome by then is given up: `UnknownOutcome` if it was sent (it may
    /// be stored), `DeadlinePassed` if it never was. `None` keeps trying for as long as the
    /// session lives.
    pub publish_ms: Option<u64>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 10_000,
            request_ms: 30_000,
            declare_ms: 30_000,
            confirm_ms: Some(60_000),
            publish_ms: Some(300_000),
        }
    }
}

/// Which refusals the session retries by itself, and how soon. Retriable refusals that say
/// "later" (`rate-limited`, `resource-limit`, and `queue-full` if asked) are sent again on the
/// same connection after the server's `retry_after_ms` or the backoff, whichever is longer;
/// those that say "elsewhere" (`shutting-down`, `storage-failed`) on the next connection. Both
/// only while the operation's deadline allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: BackoffPolicy,
    /// Retry publishes refused with `queue-full` too, waiting for consumers to make room.
    pub queue_full: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: BackoffPolicy {
                base_ms: 50,
                factor_percent: 200,
                max_ms: 5_000,
                jitter: true,
            },
            queue_full: false,
        }
    }
}
