//! What each endpoint does: ask the broker task, and turn its answer (or refusal) into HTTP.
//! The JSON shapes are in [`super::json`], documented in docs/ADMIN.md.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chute_core::storage::failure::StorageFailure;
use chute_core::{BrokerStats, ConnId, QueueAdminError};
use chute_protocol::{ErrorCode, QueueOptions};
use futures::channel::oneshot;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::auth::Caller;
use super::json::{self, OptionsPatch, Overview};
use super::process::ProcessStats;
use super::reply::{self, text, Answer, ApiError, Body, Query};
use super::routes::Route;
use super::{ask, metrics, AdminState, Unanswered, COMMAND_TIMEOUT, STATS_TIMEOUT};
use crate::config::ReloadError;
use crate::event_loop::{DrainAnswer, LoopEvent};
use crate::operator::{CommandError, OperatorRequest};
use crate::runtime::Runtime;

/// The longest reason an operator may give for closing a connection; the client sees it in
/// its `Close`, which has room for much more, but a reason is a sentence.
pub const CLOSE_REASON_BYTES_MAX: usize = 1024;

/// Answers a request for `route`, whose method the route takes.
pub async fn handle<R: Runtime>(
    runtime: &R,
    state: &AdminState,
    route: Route,
    request: Request<Incoming>,
    caller: &Caller,
) -> Answer {
    let method = request.method().clone();
    let query = match route.parameters(&method) {
        Some(known) => Query::parse(request.uri().query(), known)?,
        // Probes and scrapers may add parameters of their own; these endpoints take none.
        None => Query::default(),
    };
    let handler = Handler { runtime, state };
    match route {
        Route::Healthz => Ok(text(StatusCode::OK, "ok")),
        Route::Readyz => Ok(handler.readyz().await),
        Route::Metrics => Ok(handler.metrics_page().await),
        Route::Overview => handler.overview().await,
        Route::Queues => handler.queues().await,
        Route::Queue(name) if method == Method::PUT => {
            handler.put_queue(name, &query, request.into_body()).await
        }
        Route::Queue(name) if method == Method::DELETE => handler.delete_queue(name, &query).await,
        Route::Queue(name) => handler.queue(name).await,
        Route::QueuePurge(name) => handler.purge_queue(name).await,
        Route::Connections => handler.connections().await,
        Route::Connection(id) => handler.close_connection(&id, &query).await,
        Route::Drain => handler.drain(&query).await,
        Route::Reload => handler.reload().await,
        Route::Users => state.users_list(),
        Route::Alerts => Ok(handler.alerts()),
        Route::User(name) if method == Method::PUT => {
            state.put_user(caller, name, request.into_body()).await
        }
        Route::User(name) => state.delete_user(caller, name).await,
    }
}

/// Why a broker that answered is not ready, on one line.
fn not_ready_reason(stats: &BrokerStats) -> Option<String> {
    if let Some(failure) = &stats.halted {
        return Some(format!("halted: {}", failure.halt_message().replace(['\r', '\n'], " ")));
    }
    if stats.draining {
        return Some("draining".to_string());
    }
    stats.shutting_down.then(|| "shutting down".to_string())
}

/// What every endpoint works with.
struct Handler<'a, R> {
    runtime: &'a R,
    state: &'a AdminState,
}

impl<R: Runtime> Handler<'_, R> {
    async fn readyz(&self) -> Response<Body> {
        match ask(self.runtime, self.state, STATS_TIMEOUT, LoopEvent::Stats).await {
            Ok(stats) => match not_ready_reason(&stats) {
                None => text(StatusCode::OK, "ready"),
                Some(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &reason),
            },
            Err(unanswered) => text(StatusCode::SERVICE_UNAVAILABLE, unanswered.reason()),
        }
    }

    async fn metrics_page(&self) -> Response<Body> {
        let stats = ask(self.runtime, self.state, STATS_TIMEOUT, LoopEvent::Stats).await.ok();
        let state = self.state;
        let now_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let process = ProcessStats::read();
        let page =
            metrics::encode(stats.as_ref(), &state.storage, &process, &state.counters, now_unix_ms);
        reply::body(StatusCode::OK, metrics::CONTENT_TYPE, page)
    }

    /// `GET /api/alerts`: every alert that is not inactive, as of the last evaluation.
    fn alerts(&self) -> Response<Body> {
        let alerts: Vec<serde_json::Value> =
            self.state.counters.alerts.alerts().iter().map(crate::alerts::alert_json).collect();
        reply::json(StatusCode::OK, &json!({ "alerts": alerts }))
    }

    async fn overview(&self) -> Answer {
        let stats = self.snapshot(LoopEvent::Stats).await?;
        let state = self.state;
        let now = Instant::now();
        let serving_since = state.serving_since.get().copied().unwrap_or(state.started);
        let totals = json::counter_totals(&stats.totals);
        let rates = locked(&state.totals).record(now, totals, |_| serving_since);
        let overview = Overview {
            node: &state.node,
            uptime_ms: now.saturating_duration_since(state.started).as_millis() as u64,
            stats: &stats,
            storage: &state.storage,
            rates: &rates,
        };
        Ok(reply::json(StatusCode::OK, &json::overview_json(&overview)))
    }

    async fn queues(&self) -> Answer {
        let stats = self.snapshot(LoopEvent::Stats).await?;
        Ok(reply::json(StatusCode::OK, &json::queues_json(&stats)))
    }

    async fn queue(&self, name: String) -> Answer {
        let ask =
            |reply| LoopEvent::Operator(OperatorRequest::QueueStats { name: name.clone(), reply });
        match self.snapshot(ask).await? {
            Some(stats) => Ok(reply::json(StatusCode::OK, &json::to_json(&stats))),
            None => Err(command_error(QueueAdminError::NoSuchQueue(name).into())),
        }
    }

    /// Declares the queue with the options in the body (defaults for those left out), or
    /// with `?alter=true` changes those the body names on the existing queue.
    async fn put_queue(&self, name: String, query: &Query, body: Incoming) -> Answer {
        let alter = query.flag("alter")?;
        let body = reply::read_body(body).await?;
        let patch = OptionsPatch::parse(&body).map_err(ApiError::bad_request)?;
        if alter {
            let ask = |reply| {
                LoopEvent::Operator(OperatorRequest::Alter { name: name.clone(), patch, reply })
            };
            let altered = self.command(ask).await?.map_err(command_error)?;
            let answer = json!({
                "name": name,
                "changed": altered.changed,
                "options": json::to_json(&altered.options),
            });
            return Ok(reply::json(StatusCode::OK, &answer));
        }
        let options = patch.apply(&QueueOptions::default()).map_err(ApiError::bad_request)?;
        let ask = |reply| {
            LoopEvent::Operator(OperatorRequest::Declare { name: name.clone(), options, reply })
        };
        let declared = self.command(ask).await?.map_err(command_error)?;
        let status = if declared.created { StatusCode::CREATED } else { StatusCode::OK };
        let answer = json!({
            "name": name,
            "created": declared.created,
            "options": json::to_json(&declared.options),
        });
        Ok(reply::json(status, &answer))
    }

    async fn delete_queue(&self, name: String, query: &Query) -> Answer {
        let (if_empty, if_unused) = (query.flag("if_empty")?, query.flag("if_unused")?);
        let ask = |reply| {
            let name = name.clone();
            LoopEvent::Operator(OperatorRequest::Delete { name, if_empty, if_unused, reply })
        };
        let messages = self.command(ask).await?.map_err(command_error)?;
        let answer = json!({ "name": name, "deleted": true, "messages": messages });
        Ok(reply::json(StatusCode::OK, &answer))
    }

    async fn purge_queue(&self, name: String) -> Answer {
        let ask = |reply| LoopEvent::Operator(OperatorRequest::Purge { name: name.clone(), reply });
        let purged = self.command(ask).await?.map_err(command_error)?;
        Ok(reply::json(StatusCode::OK, &json!({ "name": name, "purged": purged })))
    }

    async fn connections(&self) -> Answer {
        let ask = |reply| LoopEvent::Operator(OperatorRequest::Connections(reply));
        let infos = self.snapshot(ask).await?;
        let now = Instant::now();
        let accepted_at: BTreeMap<u64, Instant> = infos
            .iter()
            .map(|info| {
                let age = Duration::from_millis(info.age_ms);
                (info.id.0, now.checked_sub(age).unwrap_or(self.state.started))
            })
            .collect();
        let totals = json::connection_totals(&infos);
        let rates =
            locked(&self.state.connection_totals).record(now, totals, |(id, _)| accepted_at[id]);
        Ok(reply::json(StatusCode::OK, &json::connections_json(&infos, &rates)))
    }

    /// Closes a connection with `closed-by-operator` and the `reason` parameter, which its
    /// client sees.
    async fn close_connection(&self, id: &str, query: &Query) -> Answer {
        let Ok(id) = id.parse() else {
            let message = format!("connection id must be a whole number, not {id:?}");
            return Err(ApiError::bad_request(message));
        };
        let conn = ConnId(id);
        let reason = query.text("reason").unwrap_or("no reason given").to_string();
        if reason.len() > CLOSE_REASON_BYTES_MAX {
            let message =
                format!("reason is {} bytes, over {CLOSE_REASON_BYTES_MAX}", reason.len());
            return Err(ApiError::bad_request(message));
        }
        let ask = |reply| LoopEvent::Operator(OperatorRequest::Close { conn, reason, reply });
        if !self.command(ask).await? {
            let message = format!("connection {id} is not open");
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no-such-connection", message));
        }
        Ok(reply::json(StatusCode::OK, &json!({ "id": id, "closed": true })))
    }

    /// Lame duck, over the configured window or `?window_ms=`.
    async fn drain(&self, query: &Query) -> Answer {
        let window_ms = query.number::<u32>("window_ms")?;
        let ask = |reply| LoopEvent::Drain { window_ms, reply: Some(reply) };
        match self.command(ask).await? {
            DrainAnswer::Started { window_ms } => {
                let answer = json!({ "draining": true, "window_ms": window_ms });
                Ok(reply::json(StatusCode::ACCEPTED, &answer))
            }
            DrainAnswer::AlreadyDraining => {
                let answer = json!({ "draining": true, "already": true });
                Ok(reply::json(StatusCode::OK, &answer))
            }
            DrainAnswer::Stopping => Err(ApiError::new(
                StatusCode::CONFLICT,
                "shutting-down",
                "the server is already shutting down",
            )),
            DrainAnswer::Halted(failure) => Err(halted(&failure)),
        }
    }

    /// Reloads the configuration, all or nothing: `200` with what changed, or `409` with every
    /// problem (and nothing changed).
    async fn reload(&self) -> Answer {
        match self.command(LoopEvent::Reload).await? {
            Ok(outcome) => Ok(reply::json(StatusCode::OK, &outcome.to_json())),
            Err(error @ ReloadError::Refused(_)) => {
                let mut answer = error.to_json();
                answer["error"] = json!({ "code": "config-refused", "message": error.to_string() });
                Ok(reply::json(StatusCode::CONFLICT, &answer))
            }
            Err(error @ ReloadError::Unavailable) => Err(ApiError::unavailable(error.to_string())),
        }
    }

    /// A snapshot from the broker task, or `503` saying why there is none.
    async fn snapshot<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> LoopEvent,
    ) -> Result<T, ApiError> {
        ask(self.runtime, self.state, STATS_TIMEOUT, make)
            .await
            .map_err(|unanswered| ApiError::unavailable(unanswered.reason()))
    }

    /// A command's answer from the broker task, or `503` saying why there is none.
    async fn command<T: Send + 'static>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> LoopEvent,
    ) -> Result<T, ApiError> {
        let answer = ask(self.runtime, self.state, COMMAND_TIMEOUT, make).await;
        answer.map_err(|unanswered| match unanswered {
            Unanswered::TimedOut => ApiError::unavailable(format!(
                "the broker did not answer within {} s; the command may still take effect",
                COMMAND_TIMEOUT.as_secs()
            )),
            Unanswered::NotServing(reason) => ApiError::unavailable(reason),
        })
    }
}

/// A refused or failed command as HTTP: the chute error code's label, and the status that
/// fits it.
fn command_error(error: CommandError) -> ApiError {
    let message = error.to_string();
    let code = match &error {
        CommandError::Halted(failure) => return halted(failure),
        CommandError::BadOptions(_) => return ApiError::bad_request(message),
        CommandError::Declare(error) => error.code(),
        CommandError::Queue(error) => error.code(),
    };
    let status = match (&error, code) {
        (CommandError::Queue(QueueAdminError::Immutable { .. }), _) => StatusCode::CONFLICT,
        (_, ErrorCode::NO_SUCH_QUEUE) => StatusCode::NOT_FOUND,
        (_, ErrorCode::QUEUE_IN_USE | ErrorCode::QUEUE_OPTIONS_MISMATCH) => StatusCode::CONFLICT,
        (_, ErrorCode::RESOURCE_LIMIT) => StatusCode::CONFLICT,
        (_, ErrorCode::INVALID_ARGUMENT | ErrorCode::INVALID_QUEUE_OPTIONS) => {
            StatusCode::BAD_REQUEST
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match code {
        ErrorCode::QUEUE_OPTIONS_MISMATCH => {
            format!("{message} (PUT with ?alter=true changes them)")
        }
        _ => message,
    };
    ApiError::new(status, code.label().unwrap_or("internal"), message)
}

fn halted(failure: &StorageFailure) -> ApiError {
    let label = failure.code().label().unwrap_or("storage-failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, label, failure.halt_message())
}

/// The rate sampler, even if a handler panicked while holding it (its samples stay usable).
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use chute_core::ids::Lsn;
    use chute_core::storage::failure::OsError;
    use chute_core::DeclareError;

    use super::super::json::test_stats as stats;
    use super::*;
    use crate::operator::test_failure;

    #[test]
    fn a_serving_broker_is_ready() {
        assert_eq!(not_ready_reason(&stats()), None);
    }

    #[test]
    fn halted_and_stopping_brokers_are_not_ready() {
        let mut halted = stats();
        let error = OsError::new(std::io::ErrorKind::Other, "Input/output\nerror");
        halted.halted = Some(StorageFailure::Sync { through: Lsn(1), error });
        assert_eq!(
            not_ready_reason(&halted).unwrap(),
            "halted: storage failed, broker halted: fdatasync failed: Input/output error"
        );
        let mut stopping = stats();
        stopping.shutting_down = true;
        assert_eq!(not_ready_reason(&stopping).unwrap(), "shutting down");
        let mut draining = stats();
        draining.draining = true;
        assert_eq!(not_ready_reason(&draining).unwrap(), "draining");
    }

    /// Each refusal gets the status HTTP expects and the chute code's label.
    #[test]
    fn refusals_map_to_statuses_and_labels() {
        let cases: [(CommandError, StatusCode, &str); 7] = [
            (
                QueueAdminError::NoSuchQueue("q".into()).into(),
                StatusCode::NOT_FOUND,
                "no-such-queue",
            ),
            (
                QueueAdminError::NotEmpty { name: "q".into(), messages: 3 }.into(),
                StatusCode::CONFLICT,
                "queue-in-use",
            ),
            (
                QueueAdminError::Immutable {
                    name: "q".into(),
                    option: "durability",
                    existing: "Always".into(),
                }
                .into(),
                StatusCode::CONFLICT,
                "invalid-queue-options",
            ),
            (
                DeclareError::OptionsMismatch { name: "q".into(), difference: "lease_ms".into() }
                    .into(),
                StatusCode::CONFLICT,
                "queue-options-mismatch",
            ),
            (
                DeclareError::InvalidOptions(chute_core::broker::OptionsError::LeaseZero).into(),
                StatusCode::BAD_REQUEST,
                "invalid-queue-options",
            ),
            (CommandError::BadOptions("x".into()), StatusCode::BAD_REQUEST, "invalid-argument"),
            (
                CommandError::Halted(test_failure()),
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-failed",
            ),
        ];
        for (error, status, code) in cases {
            let api = command_error(error.clone());
            assert_eq!((api.status, api.code), (status, code), "{error:?}");
        }
        let mismatch = command_error(
            DeclareError::OptionsMismatch { name: "q".into(), difference: "x".into() }.into(),
        );
        assert!(mismatch.message.ends_with("(PUT with ?alter=true changes them)"));
    }
}
