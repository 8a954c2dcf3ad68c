//! `Pool`: connections for request-style callers (a web handler that publishes). Up to
//! `size_max` connections, opened as needed; a checkout takes an idle healthy one (or opens
//! one, or waits for one up to `checkout_timeout`); connections idle past `idle_timeout` are
//! closed; `publish` spreads publishes over every connection in turn. Runtime-agnostic like
//! the rest of the client: its waits are async-io timers and futures channels, so it works
//! under tokio, smol or `block_on`.
//!
//! Health is what the heartbeats say: a connection is handed out only while it is open and
//! the server was heard from within three heartbeat intervals. One that is reconnecting stays
//! in the pool (its publishes wait for the new connection) but is not handed out; one that
//! has ended for good is dropped.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chute_protocol::{Destination, PublishMessage};

use crate::connection::{Confirmation, ConnectOptions, Connection};
use crate::error::{Error, PublishError};

/// How a pool sizes and checks its connections.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub connect: ConnectOptions,
    /// The most connections open at once.
    pub size_max: usize,
    /// Connections kept open however idle.
    pub size_min: usize,
    /// A connection not checked out for this long is closed (down to `size_min`).
    pub idle_timeout: Duration,
    /// How long a checkout waits for a healthy connection before failing.
    pub checkout_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            connect: ConnectOptions::default(),
            size_max: 8,
            size_min: 1,
            idle_timeout: Duration::from_secs(300),
            checkout_timeout: Duration::from_secs(5),
        }
    }
}

/// What the pool holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolMetrics {
    /// Connections open (idle, checked out, or reconnecting).
    pub size: usize,
    pub idle: usize,
    pub in_use: usize,
    /// Checkouts that found no healthy connection at once and waited.
    pub waits: u64,
    /// Checkouts that waited in vain.
    pub timeouts: u64,
    pub opened: u64,
    /// Connections closed for idleness, or dropped after they ended.
    pub evicted: u64,
}

/// How often a waiting checkout looks again for a connection that became healthy (one that
/// reconnected) when none was returned meanwhile.
const RECHECK_EVERY: Duration = Duration::from_millis(50);

struct Pooled {
    connection: Connection,
    in_use: bool,
    last_used: Instant,
}

struct State {
    connections: Vec<Pooled>,
    /// Connections being opened, counted against `size_max`.
    opening: usize,
    /// The next connection `publish` uses.
    turn: usize,
    metrics: PoolMetrics,
    /// Checkouts waiting for a returned connection.
    waiters: VecDeque<async_channel::Sender<()>>,
}

struct PoolInner {
    url: String,
    options: PoolOptions,
    state: Mutex<State>,
}

/// A pool of connections to one server (or list of servers). Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

/// A checked-out connection; back to the pool when dropped.
pub struct PooledConnection {
    connection: Connection,
    pool: Arc<PoolInner>,
}

impl Deref for PooledConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        let now = Instant::now();
        if let Some(pooled) = state.find(&self.connection) {
            pooled.in_use = false;
            pooled.last_used = now;
        }
        // One waiter is enough: the connection goes to one checkout.
        while let Some(waiter) = state.waiters.pop_front() {
            if waiter.try_send(()).is_ok() {
                break;
            }
        }
    }
}

impl State {
    fn find(&mut self, connection: &Connection) -> Option<&mut Pooled> {
        self.connections.iter_mut().find(|p| p.connection.same_as(connection))
    }
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("pool state poisoned")
    }
}

/// Open, not reconnecting, and heard from within three heartbeat intervals.
fn healthy(connection: &Connection) -> bool {
    let heartbeat = Duration::from_millis(connection.server().heartbeat_ms.max(1).into());
    connection.is_connected() && connection.last_heard().is_some_and(|heard| heard < 3 * heartbeat)
}

impl Pool {
    /// A pool that opens `size_min` connections now (so a wrong address fails here).
    pub async fn new(url: &str, options: PoolOptions) -> Result<Pool, Error> {
        assert!(options.size_max > 0, "a pool of no connections");
        let state = State {
            connections: Vec::new(),
            opening: 0,
            turn: 0,
            metrics: PoolMetrics::default(),
            waiters: VecDeque::new(),
        };
        let inner = PoolInner { url: url.to_string(), options, state: Mutex::new(state) };
        let pool = Pool { inner: Arc::new(inner) };
        for _ in 0..pool.inner.options.size_min.min(pool.inner.options.size_max) {
            pool.open(false).await?;
        }
        Ok(pool)
    }

    /// Opens a connection and adds it to the pool (checked out if `in_use`).
    async fn open(&self, in_use: bool) -> Result<Connection, Error> {
        let result =
            Connection::connect_with(&self.inner.url, self.inner.options.connect.clone()).await;
        let mut state = self.inner.lock();
        state.opening -= usize::from(state.opening > 0);
        let connection = result?;
        state.metrics.opened += 1;
        let pooled = Pooled { connection: connection.clone(), in_use, last_used: Instant::now() };
        state.connections.push(pooled);
        Ok(connection)
    }

    /// Takes a healthy connection for the caller alone until the returned guard is dropped:
    /// an idle one, else a new one while the pool is below `size_max`, else the first one
    /// returned or healthy again within `checkout_timeout`.
    pub async fn get(&self) -> Result<PooledConnection, Error> {
        let deadline = Instant::now() + self.inner.options.checkout_timeout;
        let mut waited = false;
        loop {
            let (waiter, open) = {
                let mut state = self.inner.lock();
                self.evict(&mut state);
                let idle =
                    state.connections.iter_mut().find(|p| !p.in_use && healthy(&p.connection));
                if let Some(pooled) = idle {
                    pooled.in_use = true;
                    let connection = pooled.connection.clone();
                    return Ok(PooledConnection { connection, pool: self.inner.clone() });
                }
                let open = state.connections.len() + state.opening < self.inner.options.size_max;
                if open {
                    state.opening += 1;
                    (None, true)
                } else {
                    if !waited {
                        state.metrics.waits += 1;
                        waited = true;
                    }
                    let (tx, rx) = async_channel::bounded(1);
                    state.waiters.push_back(tx);
                    (Some(rx), false)
                }
            };
            if open {
                let connection = self.open(true).await?;
                return Ok(PooledConnection { connection, pool: self.inner.clone() });
            }
            let now = Instant::now();
            if now >= deadline {
                self.inner.lock().metrics.timeouts += 1;
                return Err(Error::TimedOut {
                    after_ms: self.inner.options.checkout_timeout.as_millis() as u64,
                });
            }
            let wait = RECHECK_EVERY.min(deadline - now);
            if let Some(waiter) = waiter {
                let returned = waiter.recv();
                let timer = async_io::Timer::after(wait);
                futures::future::select(std::pin::pin!(returned), timer).await;
            }
        }
    }

    /// Publishes on the pool's connections in turn (publishing needs no checkout: a
    /// connection carries many publishers), preferring healthy ones; opens the first
    /// connection if there is none.
    pub async fn publish(
        &self,
        destination: &Destination,
        message: PublishMessage,
    ) -> Result<Confirmation, PublishError> {
        let connection = match self.next_for_publish() {
            Some(connection) => connection,
            None => {
                self.inner.lock().opening += 1;
                self.open(false).await.map_err(|error| PublishError::ConnectionLost {
                    addr: self.inner.url.clone(),
                    io_error: Some(error.to_string()),
                })?
            }
        };
        connection.publish_message(destination, message).await
    }

    /// The next connection in turn, the healthy ones first.
    fn next_for_publish(&self) -> Option<Connection> {
        let mut state = self.inner.lock();
        self.evict(&mut state);
        let count = state.connections.len();
        if count == 0 {
            return None;
        }
        let start = state.turn;
        let order = (0..count).map(|step| (start + step) % count);
        let chosen = order
            .clone()
            .find(|&i| healthy(&state.connections[i].connection))
            .or_else(|| order.clone().next())?;
        state.turn = (chosen + 1) % count;
        Some(state.connections[chosen].connection.clone())
    }

    /// Drops connections that ended, and closes idle ones past `idle_timeout` (keeping
    /// `size_min`).
    fn evict(&self, state: &mut State) {
        let before = state.connections.len();
        state.connections.retain(|p| p.connection.closed_reason().is_none());
        let mut evicted = (before - state.connections.len()) as u64;
        let idle_timeout = self.inner.options.idle_timeout;
        let size_min = self.inner.options.size_min;
        while state.connections.len() > size_min {
            let stale = state
                .connections
                .iter()
                .position(|p| !p.in_use && p.last_used.elapsed() >= idle_timeout);
            let Some(at) = stale else { break };
            let pooled = state.connections.remove(at);
            // The last handle: dropping it closes the connection.
            drop(pooled);
            evicted += 1;
        }
        state.metrics.evicted += evicted;
    }

    pub fn metrics(&self) -> PoolMetrics {
        let state = self.inner.lock();
        let in_use = state.connections.iter().filter(|p| p.in_use).count();
        PoolMetrics {
            size: state.connections.len(),
            idle: state.connections.len() - in_use,
            in_use,
            ..state.metrics
        }
    }

    /// Closes every connection (those checked out once returned and dropped).
    pub async fn close(self) {
        let connections: Vec<Connection> = {
            let mut state = self.inner.lock();
            state.connections.drain(..).map(|p| p.connection).collect()
        };
        for connection in connections {
            connection.close().await;
        }
    }
}
