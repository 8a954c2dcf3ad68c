//! State shared by the connection's handles and its I/O, behind one mutex. Commands lock it,
//! call the core `Session`, register a waiter, unlock, and nudge the I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use chute_core::client::{Response, Session, SessionEvent, SessionOutput};
use chute_core::Instant;
use chute_protocol::{Delivery, HelloOk};
use futures::channel::{mpsc, oneshot};
use futures::task::AtomicWaker;

use crate::confirms::ConfirmTable;
use crate::driver::Clock;
use crate::error::{Ended, Error, PublishError};
use crate::events::ConnectionEvent;
use crate::outcomes::PublishOutcome;

/// A batch of deliveries (one `Deliver` frame's worth) and the connection it came on.
pub(crate) type DeliveryBatch = (u64, Vec<Delivery>);

pub(crate) struct Shared {
    pub machine: Session,
    pub clock: Clock,
    /// Publishes waiting for their confirms, by the session's sequence number.
    pub confirms: Arc<ConfirmTable>,
    /// Where every publish outcome also goes, once `publish_outcomes` was called.
    pub outcomes: Option<mpsc::UnboundedSender<PublishOutcome>>,
    pub requests: BTreeMap<u32, oneshot::Sender<Result<Response, Error>>>,
    /// Each subscription's stream, fed a batch at a time: one channel message and one wake per
    /// batch rather than per delivery.
    pub subscriptions: BTreeMap<u32, mpsc::UnboundedSender<DeliveryBatch>>,
    /// Where state changes go.
    pub events: Vec<mpsc::UnboundedSender<ConnectionEvent>>,
    /// Publishers waiting for room in the unconfirmed window.
    pub window_waiters: Vec<oneshot::Sender<()>>,
    /// Waiting for the first handshake.
    pub connected_waiters: Vec<oneshot::Sender<Result<HelloOk, Error>>>,
    /// Why the connection ended, once it has.
    pub closed: Option<Ended>,
    /// The servers' addresses (`host:port`), by the session's address index.
    pub addrs: Vec<String>,
    /// Bytes the I/O must write.
    pub outgoing: Vec<bytes::Bytes>,
    pub close_transport: bool,
    /// The address the I/O must connect to next.
    pub connect_to: Option<usize>,
    /// Waiting for the I/O to finish.
    pub finished_waiters: Vec<oneshot::Sender<()>>,
    pub finished: bool,
}

pub(crate) struct Inner {
    shared: Mutex<Shared>,
    /// Tells the I/O to look at `shared` again.
    nudge: Nudge,
}

/// "Look again", from the handles to the I/O: a flag and one waker. A burst of commands (a
/// publish or an ack each) costs one wake of the I/O, not one per command: while the flag is
/// up, a nudge is a single atomic load. (A channel of capacity one did the same, but allocated
/// a listener each time the I/O waited on it.)
#[derive(Default)]
struct Nudge {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Nudge {
    fn nudge(&self) {
        if !self.pending.load(Ordering::Acquire) && !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    fn poll_nudged(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A nudge between the swap and the registration woke no one: look once more.
        match self.pending.swap(false, Ordering::AcqRel) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

impl Inner {
    pub fn new(machine: Session, clock: Clock, addrs: Vec<String>) -> Arc<Inner> {
        let shared = Shared {
            machine,
            clock,
            confirms: Arc::default(),
            outcomes: None,
            requests: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            events: Vec::new(),
            window_waiters: Vec::new(),
            connected_waiters: Vec::new(),
            closed: None,
            addrs,
            outgoing: Vec::new(),
            close_transport: false,
            connect_to: None,
            finished_waiters: Vec::new(),
            finished: false,
        };
        Arc::new(Inner { shared: Mutex::new(shared), nudge: Nudge::default() })
    }

    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves state we cannot trust; propagate it.
        self.shared.lock().expect("client state poisoned")
    }

    pub fn wake(&self) {
        self.nudge.nudge();
    }

    /// Ready once a handle has called `wake` since the last time this was ready.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.nudge.poll_nudged(cx)
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
    /// The session's clock, read under the lock so that the times it is given never go back.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    pub fn closed_error(&self) -> Option<Error> {
        self.closed.as_ref().map(Ended::error)
    }

    fn addr(&self, address: usize) -> String {
        self.addrs.get(address).cloned().unwrap_or_default()
    }

    /// Drains the machine's outputs: bytes to `outgoing`, events to their waiters.
    pub fn drain_outputs(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                SessionOutput::Send(bytes) => self.outgoing.push(bytes),
                SessionOutput::Close => self.close_transport = true,
                SessionOutput::Connect { address } => self.connect_to = Some(address),
                SessionOutput::Event(event) => self.dispatch(event),
            }
        }
    }

    fn dispatch(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Confirmed(range) => {
                // The session sends no empty or overflowing range.
                if let Some(last) = range.last() {
                    self.confirms.resolve(range.first..=last, Ok(()));
                }
                if let Some(outcomes) = &self.outcomes {
                    let _ = outcomes.unbounded_send(PublishOutcome::Confirmed(range));
                }
                self.wake_window_waiters();
            }
            SessionEvent::NotConfirmed { seq, error } => {
                let error = PublishError::from(error);
                self.confirms.resolve(seq..=seq, Err(error.clone()));
                if let Some(outcomes) = &self.outcomes {
                    let _ = outcomes.unbounded_send(PublishOutcome::Refused { seq, error });
                }
                self.wake_window_waiters();
            }
            SessionEvent::Deliveries { subscription, epoch, deliveries } => {
                if let Some(sink) = self.subscriptions.get(&subscription) {
                    let _ = sink.unbounded_send((epoch, deliveries));
                }
            }
            SessionEvent::Response { request_id, response } => {
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
            SessionEvent::RequestFailed { request_id, error } => {
                if let Some(waiter) = self.requests.remove(&request_id) {
                    let _ = waiter.send(Err(error.into()));
                }
            }
            SessionEvent::SubscriptionCancelled { subscription, code, message } => {
                tracing::warn!(subscription, %code, %message, "subscription cancelled by server");
                self.subscriptions.remove(&subscription);
            }
            SessionEvent::Closed { reason } => {
                let addr = self.addr(self.machine.address());
                let before_first_connection = !self.machine.ever_connected();
                self.fail_everything(Ended::from_session(reason, addr, before_first_connection));
            }
            other => self.state_changed(other),
        }
    }

    /// Connection state changes: the first handshake's waiters, logs, and the event streams.
    fn state_changed(&mut self, event: SessionEvent) {
        let event = match event {
            SessionEvent::Connected { address, server } => {
                for waiter in self.connected_waiters.drain(..) {
                    let _ = waiter.send(Ok(server.clone()));
                }
                ConnectionEvent::Connected { addr: self.addr(address) }
            }
            SessionEvent::Reconnected { address, republished, .. } => {
                tracing::info!(addr = %self.addr(address), republished, "reconnected");
                ConnectionEvent::Reconnected { addr: self.addr(address), republished }
            }
            SessionEvent::Disconnected { address, error } => {
                tracing::info!(addr = %self.addr(address), %error, "disconnected");
                ConnectionEvent::Disconnected { addr: self.addr(address), error }
            }
            SessionEvent::Reconnecting { attempt, delay_ms, address } => {
                let delay = Duration::from_millis(delay_ms);
                ConnectionEvent::Reconnecting { attempt, delay, addr: self.addr(address) }
            }
            SessionEvent::GoingAway(going_away) => {
                tracing::info!(message = %going_away.message, "server is going away");
                ConnectionEvent::GoingAway {
                    addr: self.addr(self.machine.address()),
                    reconnect_after: Duration::from_millis(going_away.reconnect_after_ms.into()),
                    message: going_away.message,
                }
            }
            SessionEvent::BreakerOpened { until } => {
                let open_for = until.saturating_since(self.now());
                ConnectionEvent::BreakerOpened { open_for }
            }
            SessionEvent::BreakerClosed => ConnectionEvent::BreakerClosed,
            SessionEvent::Blocked { reason } => {
                tracing::warn!(%reason, "blocked by the server's resource alarm: publishes wait");
                ConnectionEvent::Blocked { reason }
            }
            SessionEvent::Unblocked => {
                tracing::info!("unblocked: publishes are read again");
                ConnectionEvent::Unblocked
            }
            SessionEvent::RestoreFailed { what, code, message } => {
                tracing::warn!(%what, %code, %message, "not restored after reconnecting");
                ConnectionEvent::RestoreFailed { what, code, message }
            }
            other => {
                tracing::debug!(?other, "unhandled session event");
                return;
            }
        };
        self.emit(event);
    }

    fn emit(&mut self, event: ConnectionEvent) {
        self.events.retain(|sink| sink.unbounded_send(event.clone()).is_ok());
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
        self.confirms.fail_all(&publish_error);
        for (_, waiter) in std::mem::take(&mut self.requests) {
            let _ = waiter.send(Err(error.clone()));
        }
        for waiter in self.connected_waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        self.subscriptions.clear();
        self.outcomes = None;
        self.emit(ConnectionEvent::Closed);
        self.events.clear();
        self.wake_window_waiters();
    }
}
