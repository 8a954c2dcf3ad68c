//! The admin HTTP endpoint (default `127.0.0.1:4771`): health checks for orchestrators,
//! Prometheus metrics, and a JSON API for operators (docs/ADMIN.md lists every endpoint).
//!
//! - `GET /healthz`: `200 ok` while the process runs, during recovery too;
//! - `GET /readyz`: `200 ready` while the broker serves; `503` and a one-line reason while it
//!   recovers, while it syncs its startup checkpoint, after it halted, while it drains (lame
//!   duck: `draining`), or once it is shutting down;
//! - `GET /metrics`: Prometheus text, see [`metrics`];
//! - `/api/...`: the overview, queues (list, stats, declare, alter, delete, purge),
//!   connections (list, close), reload and drain, in JSON ([`routes`] maps paths to
//!   [`handlers`]).
//!
//! The broker belongs to the broker task, so a handler sends it a [`LoopEvent`] with a reply
//! channel and waits, with a timeout, for the answer ([`ask`]). The storage worker's counters
//! are atomics read directly. Each connection is served by a task of its own, at most
//! [`ADMIN_CONNECTIONS_MAX`] at once and each for at most [`ADMIN_CONNECTION_LIFETIME`], so a
//! slow or idle client holds one slot for a bounded time and never holds up the broker.

mod auth;
mod handlers;
mod json;
mod metrics;
pub(crate) mod process;
mod rates;
mod reply;
mod routes;
mod users;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use futures::SinkExt;
use smol_hyper::rt::FuturesIo;

pub use json::OptionsPatch;

use chute_core::auth::failed_logins::{FailedLogins, Source};
use chute_core::auth::{AuditEvent, AuditKind, AuditOutcome};

use crate::access::SharedUsers;
use crate::audit::AuditHandle;
use crate::counters::ServerCounters;
use crate::event_loop::LoopEvent;
use crate::runtime::{accept_until_stopped, Runtime};
use crate::storage_worker::StorageMetrics;
use crate::tls::{ServerStream, TlsAcceptor};
use rates::Rates;

/// Admin connections served at once; more are closed as soon as they are accepted. Scrapers
/// and probes need a handful; the bound keeps a flood from costing more than 64 small tasks.
pub const ADMIN_CONNECTIONS_MAX: usize = 64;
/// The most a request head (request line and headers) may take; hyper answers a larger one
/// with `431`. Bodies have their own limit, [`reply::ADMIN_REQUEST_BODY_BYTES_MAX`].
pub const ADMIN_REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
/// How long one connection may stay open, keep-alive included. Then it gets
/// [`ADMIN_CLOSE_GRACE`] to finish the response in progress, and is dropped.
pub const ADMIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
pub const ADMIN_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a handler waits for the broker task's snapshot before answering `503`.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a handler waits for a command's answer, which may wait for an fsync, before
/// answering `503`. Within [`ADMIN_CONNECTION_LIFETIME`], so the answer can still be sent.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the server is in its life, as `/readyz` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Reading the log; the broker task does not run yet.
    Recovering = 0,
    /// Writing and syncing the startup checkpoint; no connection is served yet.
    SyncingCheckpoint = 1,
    /// The broker task runs (it may still have halted or begun a graceful stop).
    Serving = 2,
    /// The broker task has returned.
    Stopped = 3,
}

impl Phase {
    /// Why the server is not ready in this phase, or `None` while it serves (then the broker
    /// itself says whether it is ready).
    fn not_serving_reason(self) -> Option<&'static str> {
        match self {
            Phase::Recovering => Some("recovering the log"),
            Phase::SyncingCheckpoint => Some("syncing the startup checkpoint"),
            Phase::Serving => None,
            Phase::Stopped => Some("stopped"),
        }
    }
}

/// What every admin handler shares.
pub struct AdminState {
    phase: AtomicU8,
    /// To ask the broker task for snapshots and commands.
    events: mpsc::Sender<LoopEvent>,
    storage: Arc<StorageMetrics>,
    counters: ServerCounters,
    /// When the process started (as good as: when the endpoint was set up, before recovery).
    started: Instant,
    /// When the broker began serving: its counters start from zero then.
    serving_since: OnceLock<Instant>,
    /// This machine's host name, shown by the overview.
    node: String,
    /// Recent totals, for the overview's rates.
    totals: Mutex<Rates<String>>,
    /// Recent per-connection totals, for the connections' rates.
    connection_totals: Mutex<Rates<(u64, &'static str)>>,
    /// Who may use the endpoint (`admin::auth`).
    users: Arc<SharedUsers>,
    /// Failed admin logins per source, on the same budget as clients'.
    failed_logins: Mutex<FailedLogins>,
    audit: AuditHandle,
    /// Edits of the users file, one at a time.
    users_edit: futures::lock::Mutex<()>,
}

impl AdminState {
    pub fn new(
        events: mpsc::Sender<LoopEvent>,
        storage: Arc<StorageMetrics>,
        counters: ServerCounters,
        users: Arc<SharedUsers>,
        audit: AuditHandle,
    ) -> AdminState {
        let failed_logins = Mutex::new(FailedLogins::new(&users.config()));
        AdminState {
            phase: AtomicU8::new(Phase::Recovering as u8),
            events,
            storage,
            counters,
            started: Instant::now(),
            serving_since: OnceLock::new(),
            node: process::node_name(),
            totals: Mutex::new(Rates::default()),
            connection_totals: Mutex::new(Rates::default()),
            users,
            failed_logins,
            audit,
            users_edit: futures::lock::Mutex::new(()),
        }
    }

    fn auth_config(&self) -> chute_core::auth::AuthConfig {
        self.users.config()
    }

    /// The core's time for the failed-login budget: nanoseconds since the endpoint started.
    fn core_now(&self) -> chute_core::Instant {
        chute_core::Instant::from_nanos(self.started.elapsed().as_nanos() as u64)
    }

    /// How long `source` must wait, if it failed too often.
    fn failed_logins_wait(&self, source: Source) -> Option<Duration> {
        let now = self.core_now();
        let until = self
            .failed_logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocked_until(now, source)?;
        Some(Duration::from_nanos(until.as_nanos() - now.as_nanos()))
    }

    fn record_failed_login(&self, source: Source) {
        let now = self.core_now();
        self.failed_logins.lock().unwrap_or_else(|p| p.into_inner()).record(now, source);
    }

    /// A queue changed through the API.
    async fn audit_queue_change(
        &self,
        user: Option<String>,
        peer: SocketAddr,
        kind: AuditKind,
        queue: String,
    ) {
        let event = AuditEvent {
            kind,
            conn: None,
            user,
            peer: Some(peer),
            resource: Some(queue),
            outcome: AuditOutcome::Ok,
            detail: "admin API".into(),
        };
        self.audit.record(event).await;
    }

    /// The audit event of one API request.
    async fn audit_request(
        &self,
        user: Option<String>,
        peer: SocketAddr,
        resource: String,
        status: hyper::StatusCode,
    ) {
        let outcome = match status.as_u16() {
            401 | 403 | 429 => AuditOutcome::Denied,
            code if code >= 400 => AuditOutcome::Failed,
            _ => AuditOutcome::Ok,
        };
        let event = AuditEvent {
            kind: AuditKind::AdminRequest,
            conn: None,
            user,
            peer: Some(peer),
            resource: Some(resource),
            outcome,
            detail: status.as_u16().to_string(),
        };
        self.audit.record(event).await;
    }

    pub fn set_phase(&self, phase: Phase) {
        if phase == Phase::Serving {
            let _ = self.serving_since.set(Instant::now());
        }
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Recovering,
            1 => Phase::SyncingCheckpoint,
            2 => Phase::Serving,
            _ => Phase::Stopped,
        }
    }
}

/// Accepts admin connections until `stop` fires or is dropped, serving each on a task of its
/// own: over HTTPS when `tls` is given (`tls.admin`), with the client listener's certificate.
pub async fn accept_loop<R: Runtime>(
    runtime: R,
    listener: R::Listener,
    state: Arc<AdminState>,
    tls: Option<Arc<TlsAcceptor>>,
    mut stop: oneshot::Receiver<()>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while let Some((stream, peer)) =
        accept_until_stopped(&runtime, &listener, &mut stop, "admin").await
    {
        let Some(slot) = Slot::take(&open) else {
            tracing::debug!(%peer, open = ADMIN_CONNECTIONS_MAX, "admin connection refused");
            continue;
        };
        let (runtime, state, tls) = (runtime.clone(), state.clone(), tls.clone());
        runtime.clone().spawn(async move {
            // The handshake runs on the connection's own task and slot, bounded in time.
            let stream = match tls {
                Some(tls) => match tls.admin_handshake(&runtime, stream).await {
                    Ok(stream) => stream,
                    Err(failure) => {
                        return tracing::debug!(%peer, %failure, "admin TLS handshake failed");
                    }
                },
                None => ServerStream::Plain(stream),
            };
            serve_connection(runtime, stream, peer, state, slot).await;
        });
    }
}

/// One of the [`ADMIN_CONNECTIONS_MAX`] connection slots, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Slot> {
        // Only the accept loop takes slots, so the check and the increment cannot race with
        // another taker; tasks only give slots back.
        if open.load(Ordering::Acquire) >= ADMIN_CONNECTIONS_MAX {
            return None;
        }
        open.fetch_add(1, Ordering::AcqRel);
        Some(Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn serve_connection<R: Runtime>(
    runtime: R,
    stream: ServerStream<R::Stream>,
    peer: SocketAddr,
    state: Arc<AdminState>,
    _slot: Slot,
) {
    let service = {
        let runtime = runtime.clone();
        hyper::service::service_fn(move |request| {
            let runtime = runtime.clone();
            let state = state.clone();
            // TLS on the admin endpoint comes with `tls.admin`; until then it is plain.
            async move {
                Ok::<_, Infallible>(routes::respond(&runtime, &state, request, peer, false).await)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own header timeout needs a hyper timer; the lifetime below bounds slow clients.
    builder.max_buf_size(ADMIN_REQUEST_HEAD_BYTES_MAX).header_read_timeout(None);
    let connection = builder.serve_connection(FuturesIo::new(stream), service);
    futures::pin_mut!(connection);
    let lifetime = runtime.sleep_until(Instant::now() + ADMIN_CONNECTION_LIFETIME);
    futures::pin_mut!(lifetime);
    let result = match future::select(connection.as_mut(), lifetime).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            connection.as_mut().graceful_shutdown();
            let grace = runtime.sleep_until(Instant::now() + ADMIN_CLOSE_GRACE);
            futures::pin_mut!(grace);
            match future::select(connection, grace).await {
                Either::Left((result, _)) => result,
                Either::Right(_) => Ok(()),
            }
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "admin connection failed");
    }
}

/// Why the broker task gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The broker task does not run (yet, or any more): the reason.
    NotServing(&'static str),
    /// It did not answer within the timeout.
    TimedOut,
}

impl Unanswered {
    pub fn reason(self) -> &'static str {
        match self {
            Unanswered::NotServing(reason) => reason,
            Unanswered::TimedOut => "the broker did not answer in time",
        }
    }
}

/// Sends the broker task the event `ask` makes around a reply channel, and waits at most
/// `timeout` for the answer. Nothing is sent unless the broker task runs.
pub async fn ask<R: Runtime, T: Send + 'static>(
    runtime: &R,
    state: &AdminState,
    timeout: Duration,
    ask: impl FnOnce(oneshot::Sender<T>) -> LoopEvent,
) -> Result<T, Unanswered> {
    if let Some(reason) = state.phase().not_serving_reason() {
        return Err(Unanswered::NotServing(reason));
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    let mut events = state.events.clone();
    let event = ask(reply_tx);
    let exchange = async move {
        events.send(event).await.ok()?;
        reply_rx.await.ok()
    };
    futures::pin_mut!(exchange);
    let timeout = runtime.sleep_until(Instant::now() + timeout);
    futures::pin_mut!(timeout);
    match future::select(exchange, timeout).await {
        // A dropped reply: the broker task stopped with the question unanswered.
        Either::Left((answer, _)) => answer.ok_or(Unanswered::NotServing("stopped")),
        Either::Right(_) => Err(Unanswered::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a serving broker can be ready: before (recovery, the startup checkpoint's sync)
    /// and after, `/readyz` says why not without asking the broker task, which does not run.
    #[test]
    fn only_the_serving_phase_asks_the_broker() {
        let state = AdminState::new(
            mpsc::channel(1).0,
            Arc::new(StorageMetrics::default()),
            ServerCounters::default(),
            Arc::default(),
            crate::audit::AuditLog::off().handle(),
        );
        let reasons: Vec<Option<&str>> =
            [Phase::Recovering, Phase::SyncingCheckpoint, Phase::Serving, Phase::Stopped]
                .into_iter()
                .map(|phase| {
                    state.set_phase(phase);
                    assert_eq!(state.phase(), phase, "the phase reads back");
                    phase.not_serving_reason()
                })
                .collect();
        let expected = [
            Some("recovering the log"),
            Some("syncing the startup checkpoint"),
            None,
            Some("stopped"),
        ];
        assert_eq!(reasons, expected);
        assert!(state.serving_since.get().is_some(), "serving began");
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let open = Arc::new(AtomicUsize::new(0));
        let slots: Vec<Slot> =
            (0..ADMIN_CONNECTIONS_MAX).map_while(|_| Slot::take(&open)).collect();
        assert_eq!(slots.len(), ADMIN_CONNECTIONS_MAX);
        assert!(Slot::take(&open).is_none());
        drop(slots);
        assert_eq!(open.load(Ordering::Acquire), 0);
        assert!(Slot::take(&open).is_some());
    }
}
