//! What the driver feeds the broker, and what the broker asks the driver to do.

use bytes::Bytes;
use chute_protocol::ErrorCode;

use crate::ids::ConnId;
use crate::storage::failure::StorageFailure;
use crate::storage::io::{StorageDone, StorageRequest};

/// Something that happened to the broker. Every input carries (through `handle_input`) the
/// current time, which never goes backwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A new connection was accepted. `conn` must not have been used before.
    Accepted { conn: ConnId },
    /// Bytes arrived on a connection, in order.
    Received { conn: ConnId, bytes: Bytes },
    /// The driver wrote this many bytes of earlier `Send` outputs to the socket. This is how the
    /// broker bounds what it queues for a slow reader.
    Flushed { conn: ConnId, bytes: u64 },
    /// The peer closed the connection or it failed. Not sent for connections the broker closed.
    Closed { conn: ConnId },
    /// The storage worker finished (or failed) requests.
    Storage(StorageDone),
    /// The instant returned by `poll_timeout` has passed.
    Timeout,
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
}
