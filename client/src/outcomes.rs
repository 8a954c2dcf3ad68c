//! Publishing without a future per message: the outcomes of a connection's publishes as one
//! stream of ranges (publisher confirms in the RabbitMQ manner).

use std::pin::Pin;
use std::task::{Context, Poll};

use chute_protocol::{Destination, PublishMessage, Range};
use futures::channel::mpsc;
use futures::Stream;

use crate::connection::Connection;
use crate::error::{Error, PublishError};

/// What became of a connection's publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The server confirmed these sequence numbers (durably, where the queue promises that).
    Confirmed(Range),
    /// The server refused this one.
    Refused { seq: u64, error: PublishError },
}

/// The outcomes of every publish made on the connection from the moment it was taken, in the
/// order the server sent them (a queue in memory may confirm before an earlier durable
/// publish's fsync). Ends when the connection does; publishes with no outcome by then may or
/// may not have been stored.
pub struct PublishOutcomes {
    outcomes: mpsc::UnboundedReceiver<PublishOutcome>,
}

impl Stream for PublishOutcomes {
    type Item = PublishOutcome;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PublishOutcome>> {
        Pin::new(&mut self.outcomes).poll_next(cx)
    }
}

impl Connection {
    /// Starts reporting publish outcomes as a stream, for [`Connection::publish_tracked`]. A
    /// connection has one such stream: taking another replaces it, and the first one ends.
    /// Outcomes wait in the stream until read (one per range the server confirms, usually
    /// covering many publishes), so read it as you publish, or drop it.
    pub fn publish_outcomes(&self) -> Result<PublishOutcomes, Error> {
        let mut shared = self.inner().lock();
        if let Some(error) = shared.closed_error() {
            return Err(error);
        }
        let (sink, outcomes) = mpsc::unbounded();
        shared.outcomes = Some(sink);
        Ok(PublishOutcomes { outcomes })
    }

    /// Publishes like [`Connection::publish_to`] (waiting first if the unconfirmed window is
    /// full) but returns the publish's sequence number instead of a future: its outcome arrives
    /// on [`Connection::publish_outcomes`]. Sequence numbers increase with each publish on the
    /// connection. For publishers that keep thousands in flight, this saves a future, a channel
    /// and a wake per message.
    pub async fn publish_tracked(
        &self,
        destination: &Destination,
        mandatory: bool,
        message: PublishMessage,
    ) -> Result<u64, PublishError> {
        self.enqueue_publish(destination, mandatory, message, |_, seq| seq).await
    }
}
