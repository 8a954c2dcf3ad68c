//! What the driver feeds the broker, and what the broker asks the driver to do.

use bytes::Bytes;
use chute_protocol::ErrorCode;

use crate::auth::AuditEvent;
use crate::ids::ConnId;
use crate::policy::alarm::{Resource, ResourceReading};
use crate::storage::failure::StorageFailure;
use crate::storage::io::{StorageDone, StorageRequest};

/// Something that happened to the broker. Every input carries (through `handle_input`) the
/// current time, which never goes backwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A new connection was accepted. `conn` must not have been used before.
    Accepted { conn: ConnId, peer: PeerInfo },
    /// Bytes arrived on a connection, in order.
    Received { conn: ConnId, bytes: Bytes },
    /// The driver wrote this many bytes of earlier `Send` outputs to the socket. This is how the
    /// broker bounds what it queues for a slow reader.
    Flushed { conn: ConnId, bytes: u64 },
    /// The peer closed the connection or it failed. Not sent for connections the broker closed.
    Closed { conn: ConnId },
    /// The storage worker finished (or failed) requests.
    Storage(StorageDone),
    /// What the process's memory and the data directory's free space measure now: every
    /// `alarms.check_interval_ms`, and once before the first connection is accepted (so a
    /// broker started short of disk comes up with its alarm raised).
    Resources(ResourceReading),
    /// The instant returned by `poll_timeout` has passed.
    Timeout,
}

/// What the driver knows about a connection's other end when it accepts it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address, for the audit log and the limit on failed logins per source. None
    /// where there is no address (in-process transports, the simulator).
    pub addr: Option<std::net::SocketAddr>,
    /// The connection is encrypted (TLS), so a password may be sent on it.
    pub tls: bool,
    /// The user a verified client certificate maps to (mutual TLS), if one was presented.
    pub certificate_user: Option<String>,
}

/// Something the driver must do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the connection, after everything sent before.
    Send {
        conn: ConnId,
        bytes: Bytes,
    },
    /// Stop reading from the connection until `ResumeRead`.
    PauseRead {
        conn: ConnId,
    },
    ResumeRead {
        conn: ConnId,
    },
    /// Finish writing what was sent, then close the socket. The broker has forgotten the
    /// connection; further input for it is ignored.
    Close {
        conn: ConnId,
    },
    /// Hand to the storage worker, in order.
    Storage(StorageRequest),
    /// For logs and metrics; needs no action.
    Event(Event),
    /// For the audit log (only when `BrokerConfig::audit` is on); the driver stamps the time.
    Audit(AuditEvent),
}

/// Notable things, for the driver's logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ConnectionOpened {
        conn: ConnId,
        client_name: String,
        version: u16,
    },
    /// The connection ended; `code` says why (`normal-close` when the client closed it).
    ConnectionClosed {
        conn: ConnId,
        code: ErrorCode,
        message: String,
    },
    QueueCreated {
        name: String,
    },
    QueueDeleted {
        name: String,
    },
    /// Storage failed and the broker stopped serving. The driver should exit non-zero.
    Halted {
        failure: StorageFailure,
    },
    /// A resource alarm was raised: publishes are held until it clears. For memory the reading
    /// is the RSS and the threshold the high mark; for disk, free bytes and the low mark.
    AlarmRaised {
        resource: Resource,
        reading_bytes: u64,
        threshold_bytes: u64,
    },
    /// The alarm cleared (past the threshold by the hysteresis gap).
    AlarmCleared {
        resource: Resource,
        reading_bytes: u64,
        threshold_bytes: u64,
    },
}
