//! `Connection`: the public handle. Cheap to clone; the connection closes when the last handle
//! (including subscriptions) is dropped or `close` is called.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chute_core::client::{
    ClientConfig, CommandError, ReconnectPolicy, Response, RetryPolicy, Session, SessionStats,
    SubscriptionOptions, Timeouts,
};
use chute_core::Instant;
use chute_protocol::{
    BreakerPolicy, Credentials, Destination, HelloOk, PublishMessage, QueueDeclareOk, QueueOptions,
    QueueStats, QueueSummary, RateLimit,
};
use futures::channel::{mpsc, oneshot};

pub use crate::confirms::Confirmation;
use crate::driver::ConnectionDriver;
use crate::error::{Error, PublishError};
use crate::events::ConnectionEvents;
use crate::open::{open, run_on_own_thread};
use crate::reactor::Reactor;
use crate::shared::{Inner, Shared};
use crate::subscription::Subscription;
use crate::tls::TlsOptions;
use crate::url::Target;

/// How to connect, reconnect, and time operations.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub client: ClientConfig,
    /// Give up on a TCP connect and handshake after this long (for every connection the
    /// client opens; `timeouts.connect_ms` is set from it).
    pub connect_timeout: Duration,
    /// When and where to reconnect after a connection is lost (by default: at once, then
    /// backing off from 100 ms to 5 s with jitter, forever; off, a loss ends the connection
    /// and fails what it carried).
    pub reconnect: ReconnectPolicy,
    /// Timeouts of requests, declarations, publish confirms (a connection that leaves a
    /// publish unanswered that long is taken for stuck and replaced) and the publish deadline.
    pub timeouts: Timeouts,
    /// Refusals retried automatically: `rate-limited`, `resource-limit` (and `queue-full` if
    /// asked) on the connection, `shutting-down` and `storage-failed` on the next.
    pub retry: RetryPolicy,
    /// A circuit breaker around publishing: after `failures_max` failures in a row (failed
    /// connects, losses, timeouts) publishes fail at once with `CommandError::CircuitOpen`
    /// for `open_ms`, then one goes through as a trial. Off by default.
    pub breaker: Option<BreakerPolicy>,
    /// Give messages published without an id a unique one, so that a publish sent again
    /// after a reconnect is recognised by a queue's dedup window (on by default). Only for
    /// queues that have a window (or that the connection has not yet asked about) and topics:
    /// elsewhere an id would cost every message and do nothing.
    pub generate_ids: bool,
    /// For `chutes://`: the CA to trust, a client certificate, the server name to expect.
    pub tls: TlsOptions,
    /// Where the connection's socket I/O runs: by default a task on the caller's tokio
    /// runtime when there is one, else a thread of its own.
    pub io: IoPlacement,
}

/// Where [`Connection::connect`] runs a connection's I/O (its [`ConnectionDriver`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IoPlacement {
    /// Called within a tokio runtime (and the `tokio` feature on, as it is by default): a task
    /// spawned on that runtime, so that publishes, confirms and deliveries cross no thread of
    /// the client's own. The connection then lives as long as the runtime does. Otherwise,
    /// as [`IoPlacement::OwnThread`].
    #[default]
    Auto,
    /// A thread of the connection's own, under any executor or none; the connection outlives
    /// the runtime it was made in. The choice for code that blocks a tokio thread waiting on
    /// the connection (`futures::executor::block_on` inside a task), which a task on that
    /// thread could never serve.
    OwnThread,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            client: ClientConfig::default(),
            connect_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            breaker: None,
            generate_ids: true,
            tls: TlsOptions::default(),
            io: IoPlacement::Auto,
        }
    }
}

impl ConnectOptions {
    /// Options whose connection does not reconnect: a lost connection ends it, failing what
    /// it carried (the behaviour of a single connection).
    pub fn without_reconnect() -> ConnectOptions {
        let reconnect = ReconnectPolicy { enabled: false, ..ReconnectPolicy::default() };
        ConnectOptions { reconnect, ..ConnectOptions::default() }
    }

    /// Logs in as `username`, proving `password` by SCRAM-SHA-256: the password never crosses
    /// the wire, on a plain connection or over TLS, and the server proves it knows it too.
    /// (`chute://user:password@host` says the same.)
    pub fn with_password(mut self, username: &str, password: &str) -> ConnectOptions {
        self.client.credentials =
            Credentials::Password { username: username.into(), password: password.into() };
        self
    }

    /// Logs in with a token, sent in the handshake: over TLS (`chutes://`) only.
    pub fn with_token(mut self, token: &str) -> ConnectOptions {
        self.client.credentials = Credentials::Token { token: token.into() };
        self
    }

    /// Connects even when the server lets this client in without checking its password or
    /// token (a server without users answers the handshake without `AuthOk`). Without this, such
    /// a connect fails with `authentication-failed`: the connection would not be the user's. For
    /// a development server known to run without users.
    pub fn accepting_unchecked_credentials(mut self) -> ConnectOptions {
        self.client.accept_unchecked_credentials = true;
        self
    }
}

/// How a subscription takes deliveries.
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    /// Deliveries the server may send before more credit is granted.
    pub prefetch: u32,
    /// Grant one credit back per settled delivery, so `prefetch` stays the bound on unsettled
    /// deliveries. Without it, call [`Subscription::grant_credit`].
    pub auto_credit: bool,
    /// Overrides the queue's lease for these deliveries.
    pub lease_ms: Option<u32>,
    /// Caps how fast the server delivers to this subscription (a token bucket; its policy is
    /// irrelevant here, since deliveries simply wait for a token).
    pub rate: Option<RateLimit>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions { prefetch: 100, auto_credit: true, lease_ms: None, rate: None }
    }
}

/// What the handles of one connection share; closes the connection when the last handle
/// goes away. One `Arc` of it per handle, so that cloning a `Connection` (once per publish in
/// some callers) is one counter increment.
struct Handle {
    inner: Arc<Inner>,
    server: HelloOk,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut shared = self.inner.lock();
        shared.machine.close();
        shared.drain_outputs();
        drop(shared);
        self.inner.wake();
    }
}

/// A connection to a chute server.
#[derive(Clone)]
pub struct Connection {
    handle: Arc<Handle>,
}

impl Connection {
    /// Connects to `chute://host[:port]` (or a list, `chute://a:4770,b:4770`) with default
    /// options.
    pub async fn connect(url: &str) -> Result<Connection, Error> {
        Connection::connect_with(url, ConnectOptions::default()).await
    }

    /// Connects and completes the handshake. The connection's I/O runs as a task on the
    /// caller's tokio runtime when there is one, else on a thread of its own, so this works
    /// under any executor, and even without one (see [`IoPlacement`]).
    ///
    /// `url` may list several servers (`chute://a:4770,b:4770`): the first that answers is
    /// used, and a lost connection moves to the next (see [`ConnectOptions::reconnect`]).
    /// When every one fails the first time, this fails with the last reason.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Connection, Error> {
        let target = Target::parse(url).map_err(Error::InvalidUrl)?;
        #[cfg(feature = "tokio")]
        if options.io == IoPlacement::Auto {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (inner, server, driver) = open(&target, options, Reactor::Tokio).await?;
                // The task ends with the connection (its last handle dropped, or closed).
                runtime.spawn(driver);
                return Ok(Connection::new(inner, server));
            }
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        let addr = target.servers[0].authority();
        let name = format!("chute-client {addr}");
        std::thread::Builder::new()
            .name(name)
            .spawn(move || run_on_own_thread(target, options, ready_tx))
            .map_err(|e| Error::Connect { addr: addr.clone(), reason: e.to_string() })?;
        let (inner, server) = ready_rx
            .await
            .map_err(|_| Error::Connect { addr, reason: "connection thread ended".into() })??;
        Ok(Connection::new(inner, server))
    }

    /// Connects and completes the handshake, and hands the connection's I/O to the caller as
    /// a [`ConnectionDriver`] to poll, instead of running it on a thread of its own. Polled in
    /// the task that uses the connection, it saves a hand-off between threads per batch of
    /// messages each way, which is most of the client's cost at high rates. Nothing moves on
    /// the connection (publishes, confirms, deliveries, heartbeats, reconnects) while the
    /// driver is not polled.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use chute_client::{ConnectOptions, Connection};
    ///
    /// let (connection, mut driver) =
    ///     Connection::connect_driven("chute://127.0.0.1:4770", ConnectOptions::default()).await?;
    /// let confirmation = driver.run_until(connection.publish("jobs", "hello")).await?;
    /// driver.run_until(confirmation).await?;
    /// driver.run_until(connection.close()).await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_driven(
        url: &str,
        options: ConnectOptions,
    ) -> Result<(Connection, ConnectionDriver), Error> {
        let target = Target::parse(url).map_err(Error::InvalidUrl)?;
        let (inner, server, driver) = open(&target, options, Reactor::AsyncIo).await?;
        Ok((Connection::new(inner, server), driver))
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    fn new(inner: Arc<Inner>, server: HelloOk) -> Connection {
        Connection { handle: Arc::new(Handle { inner, server }) }
    }

    /// The first server's handshake answer: its name, limits and heartbeat.
    pub fn server(&self) -> &HelloOk {
        &self.handle.server
    }

    /// Whether `other` is a handle to this same connection.
    pub fn same_as(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }

    /// Whether a connection is open now (not reconnecting, not closed).
    pub fn is_connected(&self) -> bool {
        self.inner().lock().machine.is_connected()
    }

    /// Counters since the connection was made: connections, disconnects, failed attempts,
    /// publishes sent again, retries, breaker openings, ...
    pub fn stats(&self) -> SessionStats {
        self.inner().lock().machine.stats()
    }

    /// How long ago the server was last heard from on the open connection (any frame, its
    /// heartbeats included); `None` while there is none.
    pub fn last_heard(&self) -> Option<Duration> {
        let shared = self.inner().lock();
        let heard = shared.machine.last_received()?;
        Some(shared.now().saturating_since(heard))
    }

    /// The connection's state changes from now on: lost, reconnecting, reconnected, ...
    pub fn events(&self) -> ConnectionEvents {
        let (sink, events) = mpsc::unbounded();
        let mut shared = self.inner().lock();
        if shared.closed.is_none() {
            shared.events.push(sink);
        }
        ConnectionEvents { events }
    }

    /// Why the connection ended, if it has.
    pub fn closed_reason(&self) -> Option<Error> {
        self.inner().lock().closed_error()
    }

    /// Sends what is pending (acks included), then `Close`, and waits until the socket is
    /// closed.
    pub async fn close(self) {
        let finished = {
            let mut shared = self.inner().lock();
            shared.machine.close();
            shared.drain_outputs();
            let (tx, rx) = oneshot::channel();
            if shared.finished {
                let _ = tx.send(());
            } else {
                shared.finished_waiters.push(tx);
            }
            rx
        };
        self.inner().wake();
        let _ = finished.await;
    }

    /// Runs a request and waits for its answer.
    pub(crate) async fn request(
        &self,
        send: impl FnOnce(&mut Session, Instant) -> Result<u32, CommandError>,
    ) -> Result<Response, Error> {
        let receiver = {
            let mut shared = self.inner().lock();
            if let Some(error) = shared.closed_error() {
                return Err(error);
            }
            let now = shared.now();
            let request_id = send(&mut shared.machine, now)?;
            let (tx, rx) = oneshot::channel();
            shared.requests.insert(request_id, tx);
            rx
        };
        self.inner().wake();
        receiver.await.unwrap_or_else(|_| Err(self.lost()))
    }

    fn lost(&self) -> Error {
        self.inner().lock().closed_error().unwrap_or(Error::Closed {
            code: chute_protocol::ErrorCode::INTERNAL,
            message: "connection dropped".into(),
        })
    }

    /// Creates the queue if needed; an existing queue must have the same options.
    pub async fn declare_queue(
        &self,
        name: &str,
        options: QueueOptions,
    ) -> Result<QueueDeclareOk, Error> {
        match self.request(|m, now| m.declare_queue(now, name, options, false)).await? {
            Response::Declared(ok) => Ok(ok),
            other => Err(unexpected(other)),
        }
    }

    /// Checks that a queue exists and returns its options.
    pub async fn queue_exists(&self, name: &str) -> Result<QueueDeclareOk, Error> {
        match self
            .request(|m, now| m.declare_queue(now, name, QueueOptions::default(), true))
            .await?
        {
            Response::Declared(ok) => Ok(ok),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a queue; returns how many messages it held.
    pub async fn delete_queue(
        &self,
        name: &str,
        if_empty: bool,
        if_unused: bool,
    ) -> Result<u64, Error> {
        done_count(self.request(|m, now| m.delete_queue(now, name, if_empty, if_unused)).await?)
    }

    /// Removes ready messages; returns how many.
    pub async fn purge_queue(&self, name: &str) -> Result<u64, Error> {
        done_count(self.request(|m, now| m.purge_queue(now, name)).await?)
    }

    /// Every queue, in name order (paging through the server's lists).
    pub async fn list_queues(&self) -> Result<Vec<QueueSummary>, Error> {
        let mut all: Vec<QueueSummary> = Vec::new();
        loop {
            let after = all.last().map(|q| q.name.clone());
            match self.request(|m, now| m.list_queues(now, after, 1024)).await? {
                Response::QueueList(page) => {
                    all.extend(page.queues);
                    if !page.more {
                        return Ok(all);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    pub async fn queue_stats(&self, name: &str) -> Result<QueueStats, Error> {
        match self.request(|m, now| m.queue_stats(now, name)).await? {
            Response::QueueStats(stats) => Ok(*stats),
            other => Err(unexpected(other)),
        }
    }

    /// Routes topics matching `pattern` to `queue`. Words are separated by `.`; `*` matches
    /// exactly one word and `#` zero or more. Binding twice is harmless.
    pub async fn bind(&self, queue: &str, pattern: &str) -> Result<(), Error> {
        done_count(self.request(|m, now| m.bind(now, queue, pattern)).await?).map(drop)
    }

    /// Removes a binding made by [`Connection::bind`].
    pub async fn unbind(&self, queue: &str, pattern: &str) -> Result<(), Error> {
        done_count(self.request(|m, now| m.unbind(now, queue, pattern)).await?).map(drop)
    }

    /// Publishes a payload to a queue; see [`Connection::publish_message`].
    pub async fn publish(
        &self,
        queue: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Confirmation, PublishError> {
        let destination = Destination::Queue(queue.to_string());
        self.publish_message(&destination, PublishMessage::new(payload.into())).await
    }

    /// Hands a message to the connection. Returns once it is queued for sending (waiting first
    /// if the server's unconfirmed window is full); the returned [`Confirmation`] resolves on
    /// the server's confirm. Messages from one connection keep their order.
    ///
    /// A topic publish that matches no binding is confirmed and counted as dropped; use
    /// [`Connection::publish_to`] with `mandatory` to have it refused instead.
    pub async fn publish_message(
        &self,
        destination: &Destination,
        message: PublishMessage,
    ) -> Result<Confirmation, PublishError> {
        self.publish_to(destination, false, message).await
    }

    /// [`Connection::publish_message`] with the `mandatory` flag: for a topic, a message that
    /// matches no binding fails with `unroutable` rather than being confirmed and dropped.
    /// (Queue destinations ignore the flag.)
    pub async fn publish_to(
        &self,
        destination: &Destination,
        mandatory: bool,
        message: PublishMessage,
    ) -> Result<Confirmation, PublishError> {
        let register = |shared: &mut Shared, seq: u64| shared.confirms.register(seq);
        self.enqueue_publish(destination, mandatory, message, register).await
    }

    /// Hands a message to the machine once the unconfirmed window has room, and registers for
    /// its outcome (`register`) under the same lock, so the confirm cannot slip past.
    pub(crate) async fn enqueue_publish<T>(
        &self,
        destination: &Destination,
        mandatory: bool,
        message: PublishMessage,
        register: impl FnOnce(&mut Shared, u64) -> T,
    ) -> Result<T, PublishError> {
        loop {
            let waiter = {
                let mut shared = self.inner().lock();
                if let Some(ended) = &shared.closed {
                    return Err(ended.publish_error());
                }
                // Room is checked first so the message moves into the machine: a copy kept for
                // a retry would cost an allocation per publish (the payload's shared counter).
                if !shared.machine.window_full() {
                    // The session's last time, not a clock read per message; see Session::now.
                    let now = shared.machine.now();
                    let seq = shared.machine.publish(now, destination, mandatory, message)?;
                    let registered = register(&mut shared, seq);
                    drop(shared);
                    self.inner().wake();
                    return Ok(registered);
                }
                let (tx, rx) = oneshot::channel();
                shared.window_waiters.push(tx);
                rx
            };
            self.inner().wake();
            let _ = waiter.await;
        }
    }

    /// Subscribes to a queue. The server keeps up to `prefetch` deliveries unsettled on this
    /// subscription; settling one lets the next through.
    pub async fn subscribe(&self, queue: &str, prefetch: u32) -> Result<Subscription, Error> {
        self.subscribe_with(queue, SubscribeOptions { prefetch, ..SubscribeOptions::default() })
            .await
    }

    /// Subscribes with full control over credit, lease and delivery rate.
    pub async fn subscribe_with(
        &self,
        queue: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, Error> {
        let (sink, stream) = mpsc::unbounded();
        let (receiver, subscription) = {
            let mut shared = self.inner().lock();
            if let Some(error) = shared.closed_error() {
                return Err(error);
            }
            let now = shared.now();
            let (request_id, subscription) = shared.machine.subscribe(
                now,
                queue,
                SubscriptionOptions {
                    credit: options.prefetch,
                    lease_ms: options.lease_ms,
                    rate: options.rate,
                    auto_credit: options.auto_credit,
                },
            )?;
            shared.subscriptions.insert(subscription, sink);
            let (tx, rx) = oneshot::channel();
            shared.requests.insert(request_id, tx);
            (rx, subscription)
        };
        self.inner().wake();
        receiver.await.unwrap_or_else(|_| Err(self.lost()))?;
        Ok(Subscription::new(self.clone(), subscription, stream))
    }
}

pub(crate) fn done_count(response: Response) -> Result<u64, Error> {
    match response {
        Response::Done { count } => Ok(count),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn unexpected(response: Response) -> Error {
    Error::Closed {
        code: chute_protocol::ErrorCode::UNEXPECTED_FRAME,
        message: format!("unexpected response {response:?}"),
    }
}
