//! Every v1 frame body. `docs/PROTOCOL.md` is the normative description; field order here is
//! the wire order (postcard encodes fields in declaration order with no names or tags).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;
use crate::message::{DeadLetter, DeadLetterSummary, Delivery, PublishMessage, ShareBytes};
use crate::queue_options::{QueueOptions, RateLimit};

/// A run of consecutive numbers: publish sequence numbers in `Confirm`, delivery tags in
/// `Ack`, `Nack`, `Reject` and `Touch`. `count` is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range {
    pub first: u64,
    pub count: u32,
}

impl Range {
    pub fn one(value: u64) -> Range {
        Range { first: value, count: 1 }
    }

    /// The numbers in the range. A range that would run past `u64::MAX` is cut off there.
    pub fn iter(self) -> impl Iterator<Item = u64> {
        let end = self.first.saturating_add(u64::from(self.count));
        self.first..end
    }

    /// The last number in the range, or `None` for an empty or overflowing range.
    pub fn last(self) -> Option<u64> {
        self.count.checked_sub(1).and_then(|n| self.first.checked_add(u64::from(n)))
    }
}

/// Appends `value` to `ranges`, extending the last range when `value` follows it.
pub fn push_to_ranges(ranges: &mut Vec<Range>, value: u64) {
    if let Some(last) = ranges.last_mut() {
        if last.count < u32::MAX && last.last().and_then(|l| l.checked_add(1)) == Some(value) {
            last.count += 1;
            return;
        }
    }
    ranges.push(Range::one(value));
}

// ---- connection -------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credentials {
    Anonymous,
    Password { username: String, password: String },
    Token { token: String },
}

/// Client → server, first frame after the preface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version_min: u16,
    pub version_max: u16,
    /// Free text shown in the server's logs and connection list.
    pub client_name: String,
    pub credentials: Credentials,
    /// Heartbeat interval the client would like; 0 accepts the server's.
    pub heartbeat_ms: u32,
}

/// The limits a server enforces on this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLimits {
    /// Largest frame body the server accepts.
    pub frame_size_max: u32,
    /// Largest message payload.
    pub payload_size_max: u32,
    /// Most messages in one `Publish` frame.
    pub publish_batch_max: u32,
    /// Publishes the server will hold unconfirmed for one connection before it stops reading.
    pub unconfirmed_max: u32,
    /// Most credit one subscription may hold.
    pub credit_max: u32,
    /// Most subscriptions on one connection.
    pub subscriptions_max: u32,
}

/// Server → client, the answer to `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloOk {
    pub version: u16,
    pub server_name: String,
    pub connection_id: u64,
    /// Interval at which both sides send a `Heartbeat` when otherwise idle. A peer silent for
    /// three intervals is dead.
    pub heartbeat_ms: u32,
    pub limits: ServerLimits,
}

/// Server → client: the server is draining; reconnect elsewhere or after the delay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoingAway {
    pub reconnect_after_ms: u32,
    pub message: String,
}

/// Either direction: the sender sends nothing after this frame and closes the stream once
/// it is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close {
    pub code: ErrorCode,
    pub message: String,
}

/// Server → client: a request failed (`request_id` names it) or, with `request_id` 0, the
/// connection-level problem that is about to close the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub request_id: u32,
    pub code: ErrorCode,
    pub retriable: bool,
    /// When retriable, how long to wait before retrying; 0 when unknown.
    pub retry_after_ms: u64,
    pub message: String,
}

// ---- version 2: authentication exchange and flow notifications ---------------------------

/// Server → client (version 2), instead of `HelloOk`: the connection must authenticate before
/// anything else. The client answers with `AuthStart` naming one of `mechanisms`; nothing but
/// `AuthStart`, `AuthResponse`, `Heartbeat` and `Close` is accepted until `AuthOk`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequired {
    /// The version the server chose (2 or higher), as `HelloOk.version` would say.
    pub version: u16,
    /// Mechanism names, most preferred first (`SCRAM-SHA-256`).
    #[serde(deserialize_with = "crate::bounded::mechanisms")]
    pub mechanisms: Vec<String>,
}

/// Client → server (version 2): begins authenticating with `mechanism`; `data` is its first
/// message (for SCRAM-SHA-256 the client-first-message of RFC 5802).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStart {
    pub mechanism: String,
    #[serde(
        serialize_with = "crate::bounded::bytes",
        deserialize_with = "crate::bounded::auth_data"
    )]
    pub data: Bytes,
}

/// Server → client (version 2): the mechanism's next challenge (SCRAM: server-first-message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthChallenge {
    #[serde(
        serialize_with = "crate::bounded::bytes",
        deserialize_with = "crate::bounded::auth_data"
    )]
    pub data: Bytes,
}

/// Client → server (version 2): the answer to a challenge (SCRAM: client-final-message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    #[serde(
        serialize_with = "crate::bounded::bytes",
        deserialize_with = "crate::bounded::auth_data"
    )]
    pub data: Bytes,
}

/// Server → client (version 2): authenticated as `user`. `data` is the mechanism's last
/// message (SCRAM: server-final-message, the server's own proof, which the client checks).
/// `HelloOk` follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthOk {
    pub user: String,
    #[serde(
        serialize_with = "crate::bounded::bytes",
        deserialize_with = "crate::bounded::auth_data"
    )]
    pub data: Bytes,
}

/// Server → client (version 2): the server stopped reading this connection because a resource
/// alarm is raised (`reason` names it: memory, disk); publishes on it wait. Consumers are not
/// blocked. `Unblocked` follows when the alarm clears.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub reason: String,
}

/// Server → client (version 2): the alarm behind `Blocked` cleared; the connection is read
/// again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unblocked;

/// Server → client: the request succeeded. `count` is defined per request (messages purged,
/// deleted or redriven; 0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub request_id: u32,
    pub count: u64,
}

// ---- queues and bindings ----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDeclare {
    pub request_id: u32,
    pub name: String,
    pub options: QueueOptions,
    /// Only check that the queue exists; never create it.
    pub passive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDeclareOk {
    pub request_id: u32,
    pub created: bool,
    /// The options in force (the existing queue's, for a passive declare).
    pub options: QueueOptions,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDelete {
    pub request_id: u32,
    pub name: String,
    /// Refuse with `queue-in-use` if the queue holds messages.
    pub if_empty: bool,
    /// Refuse with `queue-in-use` if the queue has subscribers.
    pub if_unused: bool,
}

/// Removes every ready and delayed message; in-flight deliveries are left to settle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePurge {
    pub request_id: u32,
    pub name: String,
}

/// `Bind` and `Unbind`: route topics matching `pattern` to `queue`. Words are separated by
/// `.`; `*` matches exactly one word and `#` zero or more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub request_id: u32,
    pub queue: String,
    pub pattern: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    pub request_id: u32,
    /// List queues whose names sort after this one (paging).
    pub after: Option<String>,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummary {
    pub name: String,
    pub ready: u64,
    pub in_flight: u64,
    pub consumers: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueListOk {
    pub request_id: u32,
    #[serde(deserialize_with = "crate::bounded::queues")]
    pub queues: Vec<QueueSummary>,
    /// More queues follow the last one listed.
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatsRequest {
    pub request_id: u32,
    pub name: String,
}

/// State of a consumer's circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    /// Not delivering until this wall-clock time.
    Open {
        until_unix_ms: u64,
    },
    /// One trial delivery outstanding.
    HalfOpen,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    pub connection_id: u64,
    pub subscription: u32,
    pub credit: u32,
    pub in_flight: u32,
    pub breaker: BreakerState,
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueCounters {
    pub published: u64,
    pub delivered: u64,
    pub acked: u64,
    pub nacked: u64,
    pub rejected: u64,
    pub redelivered: u64,
    pub timed_out: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub deduplicated: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    pub name: String,
    pub options: QueueOptions,
    pub ready: u64,
    pub delayed: u64,
    pub in_flight: u64,
    /// Messages waiting to be released by their group.
    pub group_blocked: u64,
    /// Payload bytes held (ready, delayed and in flight).
    pub bytes: u64,
    /// Messages this queue holds as a dead-letter queue.
    pub dead_letters: u64,
    pub counters: QueueCounters,
    #[serde(deserialize_with = "crate::bounded::consumers")]
    pub consumers: Vec<ConsumerInfo>,
    #[serde(deserialize_with = "crate::bounded::bindings")]
    pub bindings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatsOk {
    pub request_id: u32,
    pub stats: QueueStats,
}

// ---- publishing -------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    Queue(String),
    /// Routed through bindings to every queue whose pattern matches.
    Topic(String),
}

/// Client → server: a batch of messages to one destination. Each message takes the next
/// publish sequence number of the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct Publish<P = Bytes> {
    pub destination: Destination,
    /// For topics: fail a message that matches no binding with `unroutable` instead of
    /// confirming and counting it as dropped.
    pub mandatory: bool,
    #[serde(deserialize_with = "crate::bounded::messages")]
    pub messages: Vec<PublishMessage<P>>,
}

/// Server → client: these publishes are accepted (durable where the queue promises it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    #[serde(deserialize_with = "crate::bounded::ranges")]
    pub ranges: Vec<Range>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishFailure {
    pub seq: u64,
    pub code: ErrorCode,
    pub retry_after_ms: u64,
    pub message: String,
}

/// Server → client: these publishes were not accepted; nothing of them was stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRejected {
    #[serde(deserialize_with = "crate::bounded::failures")]
    pub failures: Vec<PublishFailure>,
}

// ---- consuming --------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    pub request_id: u32,
    /// Chosen by the client, unique among its active subscriptions.
    pub subscription: u32,
    pub queue: String,
    /// Initial credit: deliveries the server may send before more credit is granted.
    pub credit: u32,
    /// Overrides the queue's lease for deliveries to this subscription.
    pub lease_ms: Option<u32>,
    /// Caps the delivery rate to this subscription.
    pub rate: Option<RateLimit>,
}

/// Client → server: grant `credit` more deliveries. Each settled delivery does not return
/// credit by itself; clients grant it explicitly (typically once per batch of acks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub subscription: u32,
    pub credit: u32,
}

/// Outstanding deliveries stay leased to the connection and must still be settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe {
    pub request_id: u32,
    pub subscription: u32,
}

/// Server → client: deliveries for one subscription, each using one credit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct Deliver<P = Bytes> {
    pub subscription: u32,
    #[serde(deserialize_with = "crate::bounded::deliveries")]
    pub deliveries: Vec<Delivery<P>>,
}

/// Server → client: the subscription ended without the client asking (queue deleted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionCancelled {
    pub subscription: u32,
    pub code: ErrorCode,
    pub message: String,
}

/// Settles deliveries as processed. `request_id` 0 asks for no answer; any other value is
/// answered with `Done` once the settlement is durable, or with `Error`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub request_id: u32,
    #[serde(deserialize_with = "crate::bounded::ranges")]
    pub ranges: Vec<Range>,
}

/// A failed attempt: the message returns after the queue's backoff, or after `delay_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    pub request_id: u32,
    #[serde(deserialize_with = "crate::bounded::ranges")]
    pub ranges: Vec<Range>,
    pub delay_ms: Option<u64>,
    pub reason: Option<String>,
}

/// The message cannot be processed: dead-letter it now with reason `rejected`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub request_id: u32,
    #[serde(deserialize_with = "crate::bounded::ranges")]
    pub ranges: Vec<Range>,
    pub reason: String,
}

/// Extends the lease of outstanding deliveries to `lease_ms` from now (the subscription's
/// lease when `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touch {
    pub request_id: u32,
    #[serde(deserialize_with = "crate::bounded::ranges")]
    pub ranges: Vec<Range>,
    pub lease_ms: Option<u32>,
}

// ---- dead letters -----------------------------------------------------------------------

/// Lists the dead letters held by the dead-letter queue `queue`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqList {
    pub request_id: u32,
    pub queue: String,
    /// List entries with a larger `dead_id` (paging).
    pub after: Option<u64>,
    pub limit: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqListOk {
    pub request_id: u32,
    #[serde(deserialize_with = "crate::bounded::entries")]
    pub entries: Vec<DeadLetterSummary>,
    pub more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqInspect {
    pub request_id: u32,
    pub queue: String,
    pub dead_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "P: AsRef<[u8]>", deserialize = "P: Deserialize<'de>"))]
pub struct DlqInspectOk<P = Bytes> {
    pub request_id: u32,
    pub entry: DeadLetter<P>,
}

/// Moves dead letters back to their source queues with attempts reset; every entry when
/// `dead_ids` is empty. Answered with `Done { count }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqRedrive {
    pub request_id: u32,
    pub queue: String,
    #[serde(deserialize_with = "crate::bounded::dead_ids")]
    pub dead_ids: Vec<u64>,
}

impl ShareBytes for Publish<&[u8]> {
    type Shared = Publish;
    fn share(self, body: &Bytes) -> Publish {
        Publish {
            destination: self.destination,
            mandatory: self.mandatory,
            messages: self.messages.share(body),
        }
    }
}

impl ShareBytes for Deliver<&[u8]> {
    type Shared = Deliver;
    fn share(self, body: &Bytes) -> Deliver {
        Deliver { subscription: self.subscription, deliveries: self.deliveries.share(body) }
    }
}

impl ShareBytes for DlqInspectOk<&[u8]> {
    type Shared = DlqInspectOk;
    fn share(self, body: &Bytes) -> DlqInspectOk {
        DlqInspectOk { request_id: self.request_id, entry: self.entry.share(body) }
    }
}
