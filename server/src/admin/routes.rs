//! Which endpoint a request is for: its path (segments percent-decoded, so a queue named
//! `a/b` is `/api/queues/a%2Fb`) and then its method. An unknown path is `404`, a method the
//! path does not take `405` with `Allow`.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, Request, Response, StatusCode};

use std::net::SocketAddr;

use chute_core::auth::AuditKind;

use super::reply::{ApiError, Body};
use super::AdminState;
use super::{auth, handlers};
use crate::runtime::Runtime;

/// An endpoint, with what its path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Readyz,
    Metrics,
    Overview,
    Queues,
    Queue(String),
    QueuePurge(String),
    Connections,
    Connection(String),
    Reload,
    Drain,
    Users,
    User(String),
    Alerts,
}

impl Route {
    /// The route `path` names, if any.
    pub fn parse(path: &str) -> Result<Option<Route>, ApiError> {
        let Some(path) = path.strip_prefix('/') else { return Ok(None) };
        let segments: Vec<String> = path.split('/').map(decode).collect::<Result<_, _>>()?;
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let route = match segments.as_slice() {
            ["healthz"] => Route::Healthz,
            ["readyz"] => Route::Readyz,
            ["metrics"] => Route::Metrics,
            ["api", "overview"] => Route::Overview,
            ["api", "queues"] => Route::Queues,
            ["api", "queues", name] if !name.is_empty() => Route::Queue(name.to_string()),
            ["api", "queues", name, "purge"] if !name.is_empty() => {
                Route::QueuePurge(name.to_string())
            }
            ["api", "connections"] => Route::Connections,
            ["api", "connections", id] if !id.is_empty() => Route::Connection(id.to_string()),
            ["api", "reload"] => Route::Reload,
            ["api", "drain"] => Route::Drain,
            ["api", "users"] => Route::Users,
            ["api", "alerts"] => Route::Alerts,
            ["api", "users", name] if !name.is_empty() => Route::User(name.to_string()),
            _ => return Ok(None),
        };
        Ok(Some(route))
    }

    /// `/healthz`, `/readyz` and `/metrics`: what orchestrators and scrapers read.
    pub fn is_probe(&self) -> bool {
        matches!(self, Route::Healthz | Route::Readyz | Route::Metrics)
    }

    /// The methods the endpoint takes (`HEAD` wherever `GET` is).
    pub fn methods(&self) -> &'static [Method] {
        match self {
            Route::Healthz
            | Route::Readyz
            | Route::Metrics
            | Route::Overview
            | Route::Queues
            | Route::Connections
            | Route::Alerts
            | Route::Users => &[Method::GET, Method::HEAD],
            Route::User(_) => &[Method::PUT, Method::DELETE],
            Route::Queue(_) => &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
            Route::Connection(_) => &[Method::DELETE],
            Route::QueuePurge(_) | Route::Reload | Route::Drain => &[Method::POST],
        }
    }

    /// The query parameters the endpoint takes with `method`; any other is refused. `None`:
    /// the query is not looked at (health checks and scrapes).
    pub fn parameters(&self, method: &Method) -> Option<&'static [&'static str]> {
        match self {
            Route::Healthz | Route::Readyz | Route::Metrics => None,
            Route::Queue(_) if method == Method::PUT => Some(&["alter"]),
            Route::Queue(_) if method == Method::DELETE => Some(&["if_empty", "if_unused"]),
            Route::Connection(_) => Some(&["reason"]),
            Route::Drain => Some(&["window_ms"]),
            _ => Some(&[]),
        }
    }
}

/// A path segment without its percent-encoding.
fn decode(segment: &str) -> Result<String, ApiError> {
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8();
    match decoded {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => Err(ApiError::bad_request(format!("path segment {segment:?} is not UTF-8"))),
    }
}

/// Answers `request` from `peer` (over TLS or not); API requests are audited.
pub async fn respond<R: Runtime>(
    runtime: &R,
    state: &AdminState,
    request: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let route = match Route::parse(request.uri().path()) {
        Ok(Some(route)) => route,
        Ok(None) => {
            let message = format!("no endpoint at {} (see docs/ADMIN.md)", request.uri().path());
            return ApiError::new(StatusCode::NOT_FOUND, "not-found", message).into_response();
        }
        Err(error) => return error.into_response(),
    };
    let methods = route.methods();
    if !methods.contains(request.method()) {
        return method_not_allowed(request.method(), methods);
    }
    let caller = auth::authorize(runtime, state, &route, request.headers(), peer, tls).await;
    let audited =
        (!route.is_probe()).then(|| format!("{} {}", request.method(), request.uri().path()));
    let altering = request.uri().query().is_some_and(|query| query.contains("alter=true"));
    let change = queue_change(&route, request.method(), altering);
    let response = match caller.clone() {
        Ok(caller) => match handlers::handle(runtime, state, route, request, &caller).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        },
        Err(error) => error.into_response(),
    };
    if let Some(resource) = audited {
        let user = caller.ok().and_then(|caller| caller.user());
        let status = response.status();
        if let (Some((kind, queue)), true) = (change, status.is_success()) {
            // A declare of a queue that existed (200) changed nothing.
            if kind != AuditKind::QueueDeclared || status == StatusCode::CREATED {
                state.audit_queue_change(user.clone(), peer, kind, queue).await;
            }
        }
        state.audit_request(user, peer, resource, status).await;
    }
    response
}

/// The queue a request changes, and how, for the audit log.
fn queue_change(route: &Route, method: &Method, altering: bool) -> Option<(AuditKind, String)> {
    match (route, method) {
        (Route::Queue(name), &Method::PUT) if altering => {
            Some((AuditKind::QueueAltered, name.clone()))
        }
        (Route::Queue(name), &Method::PUT) => Some((AuditKind::QueueDeclared, name.clone())),
        (Route::Queue(name), &Method::DELETE) => Some((AuditKind::QueueDeleted, name.clone())),
        (Route::QueuePurge(name), _) => Some((AuditKind::QueuePurged, name.clone())),
        _ => None,
    }
}

fn method_not_allowed(method: &Method, allowed: &[Method]) -> Response<Body> {
    let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    let allowed = allowed.join(", ");
    let message = format!("{method} is not allowed here; use {allowed}");
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", message)
        .into_response();
    let allow = HeaderValue::from_str(&allowed).expect("method names are valid header text");
    response.headers_mut().insert(ALLOW, allow);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Option<Route> {
        Route::parse(path).unwrap()
    }

    #[test]
    fn paths_name_their_endpoints() {
        assert_eq!(route("/healthz"), Some(Route::Healthz));
        assert_eq!(route("/api/overview"), Some(Route::Overview));
        assert_eq!(route("/api/queues"), Some(Route::Queues));
        assert_eq!(route("/api/queues/jobs"), Some(Route::Queue("jobs".into())));
        assert_eq!(route("/api/queues/jobs/purge"), Some(Route::QueuePurge("jobs".into())));
        assert_eq!(route("/api/connections/12"), Some(Route::Connection("12".into())));
        assert_eq!(route("/api/reload"), Some(Route::Reload));
        assert_eq!(route("/api/drain"), Some(Route::Drain));
        assert_eq!(route("/api/alerts"), Some(Route::Alerts));
    }

    /// Queue names may hold `/` and `:`: a name is one segment, percent-decoded.
    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(route("/api/queues/a%2Fb:c"), Some(Route::Queue("a/b:c".into())));
        assert_eq!(route("/api/queues/a%2Fb/purge"), Some(Route::QueuePurge("a/b".into())));
        let error = Route::parse("/api/queues/%ff").unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn other_paths_are_unknown() {
        for path in [
            "",
            "/",
            "/nope",
            "/metrics/extra",
            "/api",
            "/api/queues/",
            "/api/queues/a/b",
            "/api/queues/a/purge/x",
            "/api/connections/",
            "/healthz/",
        ] {
            assert_eq!(route(path), None, "{path}");
        }
    }

    /// Each endpoint names the parameters it takes; the API refuses others, the probes ignore
    /// them.
    #[test]
    fn parameters_per_endpoint_and_method() {
        let queue = Route::Queue("q".into());
        assert_eq!(queue.parameters(&Method::PUT), Some(&["alter"][..]));
        assert_eq!(queue.parameters(&Method::DELETE), Some(&["if_empty", "if_unused"][..]));
        assert_eq!(queue.parameters(&Method::GET), Some(&[][..]));
        assert_eq!(Route::Drain.parameters(&Method::POST), Some(&["window_ms"][..]));
        assert_eq!(Route::Metrics.parameters(&Method::GET), None);
    }

    #[test]
    fn a_wrong_method_lists_the_right_ones() {
        let response = method_not_allowed(&Method::POST, Route::Queue("q".into()).methods());
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD, PUT, DELETE");
    }
}
