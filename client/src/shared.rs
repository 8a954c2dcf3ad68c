//! State shared by the connection's handles and its I/O thread, behind one mutex. Commands
//! lock it, call the core `Client`, register a waiter, unlock, and nudge the I/O thread.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chute_core::client::{Client, ClientEvent, ClientOutput, CloseReason, Response};
use chute_core::seq_slots::SeqSlots;
use chute_protocol::{Delivery, HelloOk};
use futures::channel::{mpsc, oneshot};

use crate::error::{Ended, Error, PublishError};
use crate::outcomes::PublishOutcome;

pub(crate) struct Shared {
    pub machine: Client,
    /// Publishes waiting for their confirms, by sequence number.
    pub confirms: SeqSlots<oneshot::Sender<Result<(), PublishError>>>,
    /// Where every publish outcome also goes, once `publish_outcomes` was called.
    pub outcomes: Option<mpsc::UnboundedSender<PublishOutcome>>,
    pub requests: BTreeMap<u32, oneshot::Sender<Result<Response, Error>>>,
    /// Each subscription's stream, fed a batch (one `Deliver` frame's worth) at a time: one
    /// channel message and one wake per batch rather than per delivery.
    pub subscriptions: BTreeMap<u32, mpsc::UnboundedSender<Vec<Delivery>>>,
    /// Publishers waiting for room in the unconfirmed window.
    pub window_waiters: Vec<oneshot::Sender<()>>,
    /// Waiting for the handshake.
    pub connected_waiters: Vec<oneshot::Sender<Result<HelloOk, Error>>>,
    /// Why the connection ended, once it has.
    pub closed: Option<Ended>,
    /// The server's address, for the error when the connection is lost.
    pub addr: String,
    /// How the transport failed, told by the driver before it reports the loss to the machine.
    pub transport_error: Option<String>,
    /// Bytes the I/O thread must write.
    pub outgoing: Vec<bytes::Bytes>,
    pub close_transport: bool,
    /// Waiting for the I/O thread to finish.
    pub finished_waiters: Vec<oneshot::Sender<()>>,
    pub finished: bool,
}

pub(crate) struct Inner {
    shared: Mutex<Shared>,
    /// Nudges the I/O thread: capacity one, a full channel already means "look again".
    pub wake_tx: async_channel::Sender<()>,
}

impl Inner {
    pub fn new(machine: Client, addr: String) -> (Arc<Inner>, async_channel::Receiver<()>) {
        let (wake_tx, wake_rx) = async_channel::bounded(1);
        let shared = Shared {
            machine,
            confirms: SeqSlots::default(),
            outcomes: None,
            requests: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            window_waiters: Vec::new(),
            connected_waiters: Vec::new(),
            closed: None,
            addr,
            transport_error: None,
            outgoing: Vec::new(),
            close_transport: false,
            finished_waiters: Vec::new(),
            finished: false,
        };
        (Arc::new(Inner { shared: Mutex::new(shared), wake_tx }), wake_rx)
    }

    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves state we cannot trust; propagate it.
        self.shared.lock().expect("client state poisoned")
    }

    pub fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }

    /// The I/O has stopped for good: `close` calls may return.
    pub fn mark_finished(&self) {
        let mut shared = self.lock();
        shared.finished = true;
        for waiter in shared.finished_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}

impl Shared {
    pub fn closed_error(&self) -> Option<Error> {
        self.closed.as_ref().map(Ended::error)
    }

    /// Drains the machine's outputs: bytes to `outgoing`, events to their waiters.
    pub fn drain_outputs(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                ClientOutput::Send(bytes) => self.outgoing.push(bytes),
                ClientOutput::Close => self.close_transport = true,
                ClientOutput::Event(event) => self.dispatch(event),
            }
        }
    }

    fn dispatch(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected(hello_ok) => {
                for waiter in self.connected_waiters.drain(..) {
                    let _ = waiter.send(Ok(hello_ok.clone()));
                }
            }
            ClientEvent::Confirmed(range) => {
                // The server sends no empty or overflowing range; were one to come, it
                // confirms nothing.
                if let Some(last) = range.last() {
                    self.confirms.remove_range(range.first..=last, |_, waiter| {
                        let _ = waiter.send(Ok(()));
                    });
                }
                if let Some(outcomes) = &self.outcomes {
                    let _ = outcomes.unbounded_send(PublishOutcome::Confirmed(range));
                }
                self.wake_window_waiters();
            }
            ClientEvent::PublishFailed(failure) => {
                let error = PublishError::Refused {
                    code: failure.code,
                    message: failure.message,
                    retry_after_ms: failure.retry_after_ms,
                };
                if let Some(waiter) = self.confirms.remove(failure.seq) {
                    let _ = waiter.send(Err(error.clone()));
                }
                if let Some(outcomes) = &self.outcomes {
                    let refused = PublishOutcome::Refused { seq: failure.seq, error };
                    let _ = outcomes.unbounded_send(refused);
                }
                self.wake_window_waiters();
            }
            ClientEvent::Deliveries { subscription, deliveries } => {
                if let Some(sink) = self.subscriptions.get(&subscription) {
                    let _ = sink.unbounded_send(deliveries);
                }
            }
            ClientEvent::Response { request_id, response } => {
                if let Some(waiter) = self.requests.remove(&request_id) {
                    let result = match response {
                        Response::Failed(error) => Err(Error::Refused {
                            code: error.code,
                            message: error.message,
                            retriable: error.retriable,
                        }),
                        other => Ok(other),
                    };
                    let _ = waiter.send(result);
                }
            }
            ClientEvent::SubscriptionCancelled(cancelled) => {
                tracing::warn!(subscription = cancelled.subscription, message = %cancelled.message, "subscription cancelled by server");
                self.subscriptions.remove(&cancelled.subscription);
            }
            ClientEvent::GoingAway(going_away) => {
                tracing::info!(message = %going_away.message, "server is going away");
            }
            ClientEvent::Closed { reason: CloseReason::Code { code, message } } => {
                self.fail_everything(Ended::Closed { code, message })
            }
            ClientEvent::Closed { reason: CloseReason::TransportLost } => {
                let io_error = self.transport_error.take();
                self.fail_everything(Ended::Lost { addr: self.addr.clone(), io_error })
            }
        }
    }

    fn wake_window_waiters(&mut self) {
        for waiter in self.window_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// The connection ended: every waiter learns why, every stream ends.
    pub fn fail_everything(&mut self, ended: Ended) {
        if self.closed.is_some() {
            return;
        }
        let (error, publish_error) = (ended.error(), ended.publish_error());
        self.closed = Some(ended);
        for (_, waiter) in self.confirms.drain() {
            let _ = waiter.send(Err(publish_error.clone()));
        }
        for (_, waiter) in std::mem::take(&mut self.requests) {
            let _ = waiter.send(Err(error.clone()));
        }
        for waiter in self.connected_waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        self.subscriptions.clear();
        self.outcomes = None;
        self.wake_window_waiters();
    }
}
