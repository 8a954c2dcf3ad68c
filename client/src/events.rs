//! The connection's state changes as a stream: connected, lost, reconnecting, back.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use chute_core::client::LinkError;
use chute_protocol::ErrorCode;
use futures::channel::mpsc;
use futures::Stream;

/// A change in a connection's state. Publishes and deliveries are not events: they have
/// their own futures and streams.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The first connection is open.
    Connected {
        addr: String,
    },
    /// The connection to `addr` ended, or an attempt to open one failed.
    Disconnected {
        addr: String,
        error: LinkError,
    },
    /// The next attempt (`attempt`, from 1 in a row), to `addr`, after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        addr: String,
    },
    /// A new connection is open and carries the connection's state again: queues, bindings,
    /// subscriptions, and `republished` publishes that had no confirm.
    Reconnected {
        addr: String,
        republished: u64,
    },
    /// The server is going away; the connection moves once what it sent is answered.
    GoingAway {
        addr: String,
        reconnect_after: Duration,
        message: String,
    },
    /// The circuit breaker opened: publishes fail at once for `open_for`.
    BreakerOpened {
        open_for: Duration,
    },
    BreakerClosed,
    /// After a reconnect, the server refused to take back a queue, binding or subscription.
    RestoreFailed {
        what: String,
        code: ErrorCode,
        message: String,
    },
    /// The server raised a resource alarm (`reason`: `memory`, `disk`; PROTOCOL.md §5.9): it
    /// holds this connection's publishes, unconfirmed, and does not read what follows them
    /// until `Unblocked`. Nothing is lost; confirms come once the alarm clears.
    Blocked {
        reason: String,
    },
    /// The alarm cleared, or the blocked connection was lost (a reconnected one starts
    /// unblocked).
    Unblocked,
    /// The connection is over for good.
    Closed,
}

/// State changes of a connection from the moment the stream was taken. Ends when the
/// connection does. Events wait in the stream until read; they are few (one per change).
pub struct ConnectionEvents {
    pub(crate) events: mpsc::UnboundedReceiver<ConnectionEvent>,
}

impl Stream for ConnectionEvents {
    type Item = ConnectionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}
