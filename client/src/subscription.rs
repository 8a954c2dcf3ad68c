//! A subscription as a `Stream` of deliveries, and the settle operations on each delivery.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use chute_core::client::{CommandError, Session, Settled};
use chute_protocol::Header;
use futures::channel::mpsc;
use futures::Stream;

use crate::connection::{done_count, Connection};
use crate::error::Error;
use crate::shared::{DeliveryBatch, Inner};

/// Deliveries from one queue. Carries on over reconnects (the subscription is made again on
/// each new connection, with the credit it had). Ends when the connection closes for good or
/// the server cancels the subscription (the queue was deleted); [`Connection::closed_reason`]
/// tells which.
pub struct Subscription {
    connection: Connection,
    id: u32,
    stream: mpsc::UnboundedReceiver<DeliveryBatch>,
    /// The rest of the last batch taken from `stream`, and its connection's epoch.
    batch: std::vec::IntoIter<chute_protocol::Delivery>,
    epoch: u64,
}

impl Subscription {
    pub(crate) fn new(
        connection: Connection,
        id: u32,
        stream: mpsc::UnboundedReceiver<DeliveryBatch>,
    ) -> Subscription {
        Subscription { connection, id, stream, batch: Vec::new().into_iter(), epoch: 0 }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Lets the server send `credit` more deliveries.
    pub fn grant_credit(&self, credit: u32) -> Result<(), Error> {
        let inner = self.connection.inner();
        let mut shared = inner.lock();
        if let Some(error) = shared.closed_error() {
            return Err(error);
        }
        shared.machine.grant_credit(self.id, credit)?;
        drop(shared);
        inner.wake();
        Ok(())
    }

    /// Stops deliveries. Once the server has answered, the stream yields what it had already
    /// received and then ends; settle those deliveries as usual (they stay leased until then).
    pub async fn unsubscribe(&self) -> Result<(), Error> {
        let response = self.connection.request(|m, now| m.unsubscribe(now, self.id)).await?;
        // The server sends no `Deliver` for this subscription after its `Done`, and the
        // connection hands events over in arrival order, so every delivery is already in the
        // stream: dropping the sink ends it after them.
        self.connection.inner().lock().subscriptions.remove(&self.id);
        done_count(response).map(drop)
    }
}

impl Stream for Subscription {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = &mut *self;
        loop {
            if let Some(wire) = this.batch.next() {
                let inner = this.connection.inner().clone();
                return Poll::Ready(Some(Delivery { wire, epoch: this.epoch, inner }));
            }
            match Pin::new(&mut this.stream).poll_next(cx) {
                Poll::Ready(Some((epoch, batch))) => {
                    this.epoch = epoch;
                    this.batch = batch.into_iter();
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// One delivered message. Settle it with exactly one of `ack`, `nack` or `reject`; until then
/// it counts against the subscription's prefetch and its lease runs.
///
/// If the connection it came on is lost first, settling it fails with
/// [`Error::DeliveryVoid`] and sends nothing: the server returns the message to its queue and
/// delivers it again.
pub struct Delivery {
    wire: chute_protocol::Delivery,
    /// The connection it came on, counted by the session.
    epoch: u64,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.wire.fmt(f)
    }
}

impl Delivery {
    pub fn payload(&self) -> &Bytes {
        &self.wire.payload
    }

    pub fn tag(&self) -> u64 {
        self.wire.tag
    }

    /// 1 on the first delivery.
    pub fn attempt(&self) -> u32 {
        self.wire.attempt
    }

    pub fn redelivered(&self) -> bool {
        self.wire.redelivered
    }

    pub fn message_id(&self) -> Option<&str> {
        self.wire.id.as_deref()
    }

    pub fn headers(&self) -> &[Header] {
        &self.wire.headers
    }

    pub fn published_unix_ms(&self) -> u64 {
        self.wire.published_unix_ms
    }

    pub fn priority(&self) -> u8 {
        self.wire.priority
    }

    pub fn group(&self) -> Option<&str> {
        self.wire.group.as_deref()
    }

    /// The wire form, with every field.
    pub fn as_wire(&self) -> &chute_protocol::Delivery {
        &self.wire
    }

    /// Done with the message: the server forgets it.
    pub fn ack(&self) -> Result<(), Error> {
        self.settle(|machine, epoch, tag| machine.ack(epoch, tag))
    }

    /// A failed attempt: the server delivers it again after its backoff, or after `delay_ms`.
    pub fn nack(&self, delay_ms: Option<u64>, reason: Option<String>) -> Result<(), Error> {
        self.settle(|machine, epoch, tag| machine.nack(epoch, tag, delay_ms, reason))
    }

    /// The message cannot be processed: dead-letter it with this reason.
    pub fn reject(&self, reason: String) -> Result<(), Error> {
        self.settle(|machine, epoch, tag| machine.reject(epoch, tag, reason))
    }

    /// Extends the lease (to the subscription's lease, or `lease_ms`, from now).
    pub fn touch(&self, lease_ms: Option<u32>) -> Result<(), Error> {
        self.settle(|machine, epoch, tag| machine.touch(epoch, tag, lease_ms))
    }

    fn settle(
        &self,
        command: impl FnOnce(&mut Session, u64, u64) -> Result<Settled, CommandError>,
    ) -> Result<(), Error> {
        let mut shared = self.inner.lock();
        if let Some(error) = shared.closed_error() {
            return Err(error);
        }
        let settled = command(&mut shared.machine, self.epoch, self.wire.tag)?;
        drop(shared);
        match settled {
            Settled::Sent => {
                self.inner.wake();
                Ok(())
            }
            Settled::Void => Err(Error::DeliveryVoid { tag: self.wire.tag }),
        }
    }
}
