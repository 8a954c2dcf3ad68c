//! The admin HTTP endpoint (default `127.0.0.1:4771`): health checks for orchestrators,
//! Prometheus metrics, and a small JSON API.
//!
//! - `GET /healthz`: `200 ok` while the process runs, during recovery too;
//! - `GET /readyz`: `200 ready` while the broker serves; `503` and a one-line reason while it
//!   recovers, while it syncs its startup checkpoint, after it halted, while it drains (lame
//!   duck: `draining`), or once it is shutting down;
//! - `GET /metrics`: Prometheus text, see [`metrics`];
//! - `GET /api/queues`: a JSON array with one object per queue (what it holds, its counters);
//! - `POST /api/reload`: reload the configuration, all or nothing (JSON: what changed, or every
//!   problem; `409` when refused).
//!
//! Anything else is `404` (`405` for another method on these paths).
//!
//! The broker belongs to the broker task, so a handler asks it for a snapshot
//! ([`LoopEvent::Stats`]) and waits, with a timeout, for the reply. The storage worker's
//! counters are atomics read directly. Each connection is served by a task of its own, at most
//! [`ADMIN_CONNECTIONS_MAX`] at once and each for at most [`ADMIN_CONNECTION_LIFETIME`], so a
//! slow or idle client holds one slot for a bounded time and never holds up the broker.

mod metrics;
mod process;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chute_core::BrokerStats;
use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use futures::SinkExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use smol_hyper::rt::FuturesIo;

use crate::config::request_reload;
use crate::counters::ServerCounters;
use crate::event_loop::LoopEvent;
use crate::runtime::{accept_until_stopped, Runtime};
use crate::storage_worker::StorageMetrics;
use process::ProcessStats;

/// Admin connections served at once; more are closed as soon as they are accepted. Scrapers
/// and probes need a handful; the bound keeps a flood from costing more than 64 small tasks.
pub const ADMIN_CONNECTIONS_MAX: usize = 64;
/// The most a request head (request line and headers) may take; hyper answers a larger one
/// with `431`. Bodies are never read: every endpoint is a `GET`.
pub const ADMIN_REQUEST_HEAD_BYTES_MAX: usize = 16 * 1024;
/// How long one connection may stay open, keep-alive included. Then it gets
/// [`ADMIN_CLOSE_GRACE`] to finish the response in progress, and is dropped.
pub const ADMIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
pub const ADMIN_CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How long a handler waits for the broker task's snapshot before answering `503`.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// To ask the broker task for snapshots.
    events: mpsc::Sender<LoopEvent>,
    storage: Arc<StorageMetrics>,
    counters: ServerCounters,
}

impl AdminState {
    pub fn new(
        events: mpsc::Sender<LoopEvent>,
        storage: Arc<StorageMetrics>,
        counters: ServerCounters,
    ) -> AdminState {
        AdminState { phase: AtomicU8::new(Phase::Recovering as u8), events, storage, counters }
    }

    pub fn set_phase(&self, phase: Phase) {
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
/// own.
pub async fn accept_loop<R: Runtime>(
    runtime: R,
    listener: R::Listener,
    state: Arc<AdminState>,
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
        runtime.spawn(serve_connection(runtime.clone(), stream, peer, state.clone(), slot));
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
    stream: R::Stream,
    peer: SocketAddr,
    state: Arc<AdminState>,
    _slot: Slot,
) {
    let service = {
        let runtime = runtime.clone();
        hyper::service::service_fn(move |request| {
            let runtime = runtime.clone();
            let state = state.clone();
            async move { Ok::<_, Infallible>(respond(&runtime, &state, request).await) }
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

type Body = Full<Bytes>;

async fn respond<R: Runtime>(
    runtime: &R,
    state: &AdminState,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path();
    if path == "/api/reload" {
        return reload(runtime, state, request.method()).await;
    }
    if !matches!(path, "/healthz" | "/readyz" | "/metrics" | "/api/queues") {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => match broker_stats(runtime, state).await {
            Ok(stats) => match not_ready_reason(&stats) {
                None => text(StatusCode::OK, "ready"),
                Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &reason),
            },
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, reason),
        },
        "/metrics" => {
            let stats = broker_stats(runtime, state).await.ok();
            let page = metrics::encode(
                stats.as_ref(),
                &state.storage,
                &ProcessStats::read(),
                &state.counters,
            );
            body(StatusCode::OK, metrics::CONTENT_TYPE, page)
        }
        _ => match broker_stats(runtime, state).await {
            Ok(stats) => body(StatusCode::OK, "application/json", queues_json(&stats)),
            Err(reason) => {
                let error = serde_json::json!({ "error": reason }).to_string();
                body(StatusCode::SERVICE_UNAVAILABLE, "application/json", error)
            }
        },
    }
}

/// `POST /api/reload`: `200` with what changed, `409` with every problem when refused (nothing
/// changed), `503` when the broker task does not answer.
async fn reload<R: Runtime>(runtime: &R, state: &AdminState, method: &Method) -> Response<Body> {
    if method != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only POST");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let json =
        |status, value: serde_json::Value| body(status, "application/json", format!("{value}\n"));
    if let Some(reason) = state.phase().not_serving_reason() {
        return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "error": reason }));
    }
    let mut events = state.events.clone();
    let ask = request_reload(&mut events);
    futures::pin_mut!(ask);
    let timeout = runtime.sleep_until(Instant::now() + STATS_TIMEOUT);
    futures::pin_mut!(timeout);
    match future::select(ask, timeout).await {
        Either::Left((Ok(outcome), _)) => json(StatusCode::OK, outcome.to_json()),
        Either::Left((Err(error @ crate::config::ReloadError::Refused(_)), _)) => {
            json(StatusCode::CONFLICT, error.to_json())
        }
        Either::Left((Err(error), _)) => json(StatusCode::SERVICE_UNAVAILABLE, error.to_json()),
        Either::Right(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "the broker did not answer in time" }),
        ),
    }
}

/// A snapshot from the broker task, or why there is none.
async fn broker_stats<R: Runtime>(
    runtime: &R,
    state: &AdminState,
) -> Result<BrokerStats, &'static str> {
    if let Some(reason) = state.phase().not_serving_reason() {
        return Err(reason);
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    let mut events = state.events.clone();
    let ask = async move {
        events.send(LoopEvent::Stats(reply_tx)).await.ok()?;
        reply_rx.await.ok()
    };
    futures::pin_mut!(ask);
    let timeout = runtime.sleep_until(Instant::now() + STATS_TIMEOUT);
    futures::pin_mut!(timeout);
    match future::select(ask, timeout).await {
        Either::Left((Some(stats), _)) => Ok(stats),
        Either::Left((None, _)) => Err("stopped"),
        Either::Right(_) => Err("the broker did not answer in time"),
    }
}

/// Why a broker that answered is not ready, on one line.
fn not_ready_reason(stats: &BrokerStats) -> Option<String> {
    if let Some(reason) = &stats.halted {
        return Some(format!("halted: {}", reason.replace(['\r', '\n'], " ")));
    }
    if stats.draining {
        return Some("draining".to_string());
    }
    stats.shutting_down.then(|| "shutting down".to_string())
}

/// `/api/queues`: the queues in name order, with what they hold and their counters.
fn queues_json(stats: &BrokerStats) -> String {
    let queues: Vec<serde_json::Value> = stats
        .queues
        .iter()
        .map(|queue| {
            serde_json::json!({
                "name": queue.name,
                "ready": queue.ready,
                "delayed": queue.delayed,
                "in_flight": queue.in_flight,
                "group_blocked": queue.group_blocked,
                "bytes": queue.bytes,
                "dead_letters": queue.dead_letters,
                "consumers": queue.consumers.len(),
                "counters": queue.counters,
            })
        })
        .collect();
    let mut json = serde_json::Value::Array(queues).to_string();
    json.push('\n');
    json
}

fn text(status: StatusCode, line: &str) -> Response<Body> {
    body(status, "text/plain; charset=utf-8", format!("{line}\n"))
}

fn body(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use chute_core::{Broker, BrokerConfig, Instant};
    use chute_protocol::QueueOptions;

    use super::*;

    fn stats() -> BrokerStats {
        let mut broker = Broker::new(BrokerConfig::default(), Instant::ZERO);
        broker.declare_queue("jobs", QueueOptions::default(), false).unwrap();
        broker.stats()
    }

    #[test]
    fn a_serving_broker_is_ready() {
        assert_eq!(not_ready_reason(&stats()), None);
    }

    #[test]
    fn halted_and_stopping_brokers_are_not_ready() {
        let mut halted = stats();
        halted.halted = Some("fdatasync failed:\nEIO".into());
        assert_eq!(not_ready_reason(&halted).unwrap(), "halted: fdatasync failed: EIO");
        let mut stopping = stats();
        stopping.shutting_down = true;
        assert_eq!(not_ready_reason(&stopping).unwrap(), "shutting down");
        let mut draining = stats();
        draining.draining = true;
        assert_eq!(not_ready_reason(&draining).unwrap(), "draining");
    }

    /// Only a serving broker can be ready: before (recovery, the startup checkpoint's sync)
    /// and after, `/readyz` says why not without asking the broker task, which does not run.
    #[test]
    fn only_the_serving_phase_asks_the_broker() {
        let state = AdminState::new(
            mpsc::channel(1).0,
            Arc::new(StorageMetrics::default()),
            ServerCounters::default(),
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
    }

    #[test]
    fn queues_are_listed_as_json_objects() {
        let json: serde_json::Value = serde_json::from_str(&queues_json(&stats())).unwrap();
        assert_eq!(json[0]["name"], "jobs");
        assert_eq!(json[0]["ready"], 0);
        assert_eq!(json[0]["counters"]["published"], 0);
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
