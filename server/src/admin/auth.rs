//! Who may use the admin endpoint. Without users (no `auth.users_file`) nobody is checked, as
//! the clients are not. With users, `/api/...` needs a user with the `admin` tag, by HTTP
//! basic (`user:password`) or a bearer token, over TLS or from this host; the probes
//! (`/healthz`, `/readyz`, `/metrics`) are open to whom `auth.open_probes` says. A failed
//! attempt is answered after `auth.failure_delay_ms` and counted against its source like a
//! client's.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use chute_core::auth::failed_logins::Source;
use chute_core::auth::{OpenProbes, User};
use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::StatusCode;

use super::reply::ApiError;
use super::routes::Route;
use super::AdminState;
use crate::runtime::Runtime;

/// Who is asking, once allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Nobody is checked (no users), or a probe open to this peer.
    Unchecked,
    Admin(String),
}

impl Caller {
    pub fn user(&self) -> Option<String> {
        match self {
            Caller::Unchecked => None,
            Caller::Admin(name) => Some(name.clone()),
        }
    }
}

/// The request's credentials, as far as they can be read.
enum Presented<'a> {
    None,
    Basic { user: String, password: String },
    Bearer(&'a str),
    Unreadable,
}

fn presented(headers: &HeaderMap) -> Presented<'_> {
    let Some(value) = headers.get(AUTHORIZATION) else { return Presented::None };
    let Ok(value) = value.to_str() else { return Presented::Unreadable };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Presented::Bearer(token.trim());
    }
    let Some(encoded) = value.strip_prefix("Basic ") else { return Presented::Unreadable };
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok();
    let text = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
    match text.as_deref().and_then(|text| text.split_once(':')) {
        Some((user, password)) => Presented::Basic { user: user.into(), password: password.into() },
        None => Presented::Unreadable,
    }
}

/// Lets the request through as its caller, or refuses it: `401` with a challenge for missing
/// or wrong credentials (after the failure delay), `403` for a user without `admin`.
pub async fn authorize<R: Runtime>(
    runtime: &R,
    state: &AdminState,
    route: &Route,
    headers: &HeaderMap,
    peer: SocketAddr,
    tls: bool,
) -> Result<Caller, ApiError> {
    let Some(users) = state.users.get() else { return Ok(Caller::Unchecked) };
    let auth = state.auth_config();
    if route.is_probe() && probe_open(auth.open_probes, peer) {
        return Ok(Caller::Unchecked);
    }
    let source = Source::of(peer.ip());
    if let Some(wait) = state.failed_logins_wait(source) {
        let message = format!(
            "too many failed logins from this address; try again in {} ms",
            wait.as_millis()
        );
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-failed-logins",
            message,
        ));
    }
    let user: Option<std::sync::Arc<User>> = match presented(headers) {
        Presented::None => {
            return Err(challenge(
                "credentials required: HTTP basic (user:password) or a bearer token",
            ))
        }
        _ if !(tls || peer.ip().is_loopback()) => {
            return Err(challenge("credentials are accepted only over TLS or from this host"));
        }
        Presented::Basic { user, password } => users.by_password(&user, &password).cloned(),
        Presented::Bearer(token) => users.by_token(token).cloned(),
        Presented::Unreadable => None,
    };
    let Some(user) = user else {
        state.record_failed_login(source);
        let delay = Duration::from_millis(u64::from(auth.failure_delay_ms));
        runtime.sleep_until(std::time::Instant::now() + delay).await;
        return Err(challenge("authentication failed"));
    };
    if !user.permissions.is_admin() {
        let message = format!("user {:?} is not an admin", user.name);
        return Err(ApiError::new(StatusCode::FORBIDDEN, "not-authorized", message));
    }
    Ok(Caller::Admin(user.name.clone()))
}

fn probe_open(open: OpenProbes, peer: SocketAddr) -> bool {
    match open {
        OpenProbes::Everyone => true,
        OpenProbes::Loopback => peer.ip().is_loopback(),
        OpenProbes::Nobody => false,
    }
}

/// `401` with `WWW-Authenticate`, so a browser or curl knows to ask.
fn challenge(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "authentication-required", message)
        .with_header("www-authenticate", "Basic realm=\"chute\", charset=\"UTF-8\"")
}
