//! Who a connection is: the credentials in `Hello`, the version-2 exchange (`AuthRequired`,
//! `AuthStart`, `AuthChallenge`, `AuthResponse`, `AuthOk`), and what a failure costs. The
//! table of who may log in how is in `crate::auth`'s module docs.

use std::sync::Arc;

use bytes::Bytes;
use chute_protocol::{
    AuthChallenge, AuthOk, AuthRequired, AuthResponse, AuthStart, Credentials, ErrorCode, Frame,
    FrameKind,
};

use super::connection::{ConnState, PauseReason};
use super::stats::AuthCounters;
use super::Broker;
use crate::auth::failed_logins::{FailedLogins, Source};
use crate::auth::scram::{self, ClientFirst, ScramServer};
use crate::auth::{
    AuditKind, AuditOutcome, AuthConfig, Permissions, User, Users, ANONYMOUS, EXTERNAL,
};
use crate::ids::ConnId;
use crate::time::Instant;

/// What every failed login tells the client: nothing about which part was wrong.
const FAILED: &str = "authentication failed";

/// The longest trace an `ANONYMOUS` login may carry (RFC 4505 §2: 255 characters).
const ANONYMOUS_TRACE_CHARS_MAX: usize = 255;

/// The broker's side of authentication: the users (none: nothing is checked), the secret its
/// nonces and decoy salts are made from, and the failed logins per source.
#[derive(Debug)]
pub(crate) struct Authentication {
    users: Option<Arc<Users>>,
    secret: [u8; 32],
    nonces_made: u64,
    pub failed: FailedLogins,
    pub counters: AuthCounters,
}

impl Authentication {
    /// Until the driver sets a secret, it derives from the seed: reproducible for the
    /// simulator, and no worse than predictable for a broker without users.
    pub fn new(config: &AuthConfig, seed: u64) -> Authentication {
        let mut secret = [0u8; 32];
        secret[..8].copy_from_slice(&seed.to_le_bytes());
        Authentication {
            users: None,
            secret,
            nonces_made: 0,
            failed: FailedLogins::new(config),
            counters: AuthCounters::default(),
        }
    }

    pub fn users(&self) -> Option<&Arc<Users>> {
        self.users.as_ref()
    }

    /// Unpredictable without the secret, never repeated under it.
    fn server_nonce(&mut self) -> String {
        self.nonces_made += 1;
        let mac = scram_hmac(&self.secret, b"nonce", &self.nonces_made.to_le_bytes());
        base64_of(&mac[..18])
    }

    /// The salt shown for a user who does not exist: the same on every attempt for one name,
    /// so that asking twice does not tell a real user's (fixed) salt from a made-up one.
    fn decoy_salt(&self, username: &str) -> [u8; 16] {
        let mac = scram_hmac(&self.secret, b"decoy-salt", username.as_bytes());
        mac[..16].try_into().expect("16 of 32 bytes")
    }
}

fn scram_hmac(key: &[u8], label: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key");
    mac.update(label);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What `Hello` settled, kept while an exchange runs.
#[derive(Clone, Debug)]
pub(crate) struct HelloTerms {
    pub version: u16,
    pub heartbeat_ms: u32,
    pub client_name: String,
}

/// A login past `Hello`, until `HelloOk`.
#[derive(Debug)]
pub(crate) struct Login {
    pub terms: HelloTerms,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    /// `AuthRequired` went out; `AuthStart` is next.
    AwaitingStart,
    Scram(Box<ScramServer>),
}

/// A login that failed, for the client, the audit log and the per-source budget.
struct Refusal {
    claimed_user: Option<String>,
    mechanism: &'static str,
    /// For the audit log only.
    reason: String,
    /// What the client is told: [`FAILED`], or why no credential could be accepted at all.
    message: String,
    /// Counts against the source's budget: a credential was tried and was wrong.
    guessed: bool,
}

impl Refusal {
    fn wrong_credential(
        claimed_user: Option<&str>,
        mechanism: &'static str,
        reason: String,
    ) -> Self {
        Refusal {
            claimed_user: claimed_user.map(str::to_string),
            mechanism,
            reason,
            message: FAILED.to_string(),
            guessed: true,
        }
    }

    /// A refusal that says why: nothing about the credential's correctness is in it.
    fn unusable(claimed_user: Option<&str>, mechanism: &'static str, message: &str) -> Self {
        Refusal {
            claimed_user: claimed_user.map(str::to_string),
            mechanism,
            reason: message.to_string(),
            message: format!("{FAILED}: {message}"),
            guessed: false,
        }
    }
}

/// What `Hello`'s credentials lead to.
enum Verdict {
    /// Open the connection as this user (`None`: the broker has no users). `confirm`: say so
    /// in `AuthOk` first (version 2, for a secret in `Hello`), so that a client holding a
    /// secret can tell a server that checked it from one that did not look.
    Open {
        user: Option<Arc<User>>,
        mechanism: &'static str,
        confirm: bool,
    },
    /// Version 2 and nothing usable in `Hello`: offer these mechanisms.
    Exchange(Vec<String>),
    Refused(Refusal),
}

impl Broker {
    /// Replaces the users (`None`: authentication off). Open connections take their user's
    /// new permissions at once; a connection whose user is gone, or that opened without
    /// authentication when the broker now has users, is closed.
    pub fn set_users(&mut self, now: Instant, users: Option<Users>) {
        self.command(now, |broker| {
            broker.auth.users = users.map(Arc::new);
            broker.refresh_connection_users();
            broker.refresh_binding_owners();
        });
    }

    /// The secret the SCRAM nonces and decoy salts are made from. A server sets 32 random
    /// bytes once, before accepting connections.
    pub fn set_auth_secret(&mut self, secret: [u8; 32]) {
        self.auth.secret = secret;
    }

    fn refresh_connection_users(&mut self) {
        let Some(users) = self.auth.users.clone() else { return };
        let conns: Vec<ConnId> = self.connections.keys().copied().collect();
        for conn in conns {
            let connection = self.connection_mut(conn);
            if connection.state != ConnState::Open {
                continue;
            }
            let name = connection.user.as_ref().map(|user| user.name.clone());
            let fresh = name.as_deref().and_then(|name| self.user_named(&users, name));
            match (name, fresh) {
                (_, Some(user)) => self.connection_mut(conn).user = Some(user),
                (Some(name), None) => {
                    let message = format!("user {name:?} was removed");
                    self.close_connection(conn, ErrorCode::CLOSED_BY_OPERATOR, message);
                }
                (None, None) => {
                    let message = "the server now requires authentication".to_string();
                    self.close_connection(conn, ErrorCode::CLOSED_BY_OPERATOR, message);
                }
            }
        }
    }

    /// The user `name`, or for the anonymous user a rightless stand-in when the file does not
    /// define it (anonymous clients then get in, and may do nothing).
    fn user_named(&self, users: &Users, name: &str) -> Option<Arc<User>> {
        if let Some(user) = users.get(name) {
            return Some(user.clone());
        }
        let anonymous = &self.config.auth.anonymous_user;
        (self.config.auth.allow_anonymous && name == anonymous).then(|| {
            Arc::new(User {
                name: anonymous.clone(),
                scram: None,
                tokens: Vec::new(),
                permissions: Permissions::default(),
            })
        })
    }

    /// After `Hello` negotiated `terms`: open the connection, start an exchange, or refuse.
    pub(super) fn authenticate_hello(
        &mut self,
        conn: ConnId,
        terms: HelloTerms,
        credentials: &Credentials,
    ) {
        if let Some(until) = self.source_blocked_until(conn) {
            let wait_ms = until.saturating_since(self.now).as_millis();
            let message = format!(
                "{FAILED}: too many failed logins from this address; try again in {wait_ms} ms"
            );
            self.auth.counters.logins_blocked += 1;
            self.audit_login(conn, None, "-", AuditOutcome::Denied, message.clone());
            return self.close_connection(conn, ErrorCode::AUTHENTICATION_FAILED, message);
        }
        match self.judge_hello(conn, terms.version, credentials) {
            Verdict::Open { user, mechanism, confirm } => {
                let auth_ok = confirm.then(Vec::new);
                self.open_connection(conn, terms, user, mechanism, auth_ok)
            }
            Verdict::Exchange(mechanisms) => {
                let required = AuthRequired { version: terms.version, mechanisms };
                let connection = self.connection_mut(conn);
                connection.send(FrameKind::AuthRequired, &required).expect("a few short names");
                connection.state = ConnState::Authenticating;
                connection.login = Some(Box::new(Login { terms, stage: Stage::AwaitingStart }));
                self.mark_dirty(conn);
            }
            Verdict::Refused(refusal) => self.refuse_login(conn, refusal),
        }
    }

    fn source_blocked_until(&self, conn: ConnId) -> Option<Instant> {
        self.auth.users.as_ref()?;
        let addr = self.connections.get(&conn)?.peer.addr?;
        self.auth.failed.blocked_until(self.now, Source::of(addr.ip()))
    }

    fn judge_hello(&mut self, conn: ConnId, version: u16, credentials: &Credentials) -> Verdict {
        let Some(users) = self.auth.users.clone() else {
            return Verdict::Open { user: None, mechanism: "none", confirm: false };
        };
        let peer = &self.connection_mut(conn).peer;
        let (tls, certificate_user) = (peer.tls, peer.certificate_user.clone());
        let confirm = version >= 2;
        match credentials {
            Credentials::Password { .. } | Credentials::Token { .. } if !tls => {
                let claimed = match credentials {
                    Credentials::Password { username, .. } => Some(username.as_str()),
                    _ => None,
                };
                let message = "a password or token is accepted only over TLS; use SCRAM-SHA-256 (protocol version 2) or TLS";
                Verdict::Refused(Refusal::unusable(claimed, mechanism_of(credentials), message))
            }
            Credentials::Password { username, password } => {
                match users.by_password(username, password) {
                    Some(user) => {
                        Verdict::Open { user: Some(user.clone()), mechanism: "PLAIN", confirm }
                    }
                    None => Verdict::Refused(Refusal::wrong_credential(
                        Some(username),
                        "PLAIN",
                        "wrong password, or no such user".into(),
                    )),
                }
            }
            Credentials::Token { token } => match users.by_token(token) {
                Some(user) => {
                    Verdict::Open { user: Some(user.clone()), mechanism: "TOKEN", confirm }
                }
                None => Verdict::Refused(Refusal::wrong_credential(
                    None,
                    "TOKEN",
                    "unknown token".into(),
                )),
            },
            Credentials::Anonymous => self.judge_anonymous(&users, version, certificate_user),
        }
    }

    fn judge_anonymous(
        &self,
        users: &Users,
        version: u16,
        certificate_user: Option<String>,
    ) -> Verdict {
        if let Some(name) = certificate_user {
            return match users.get(&name) {
                Some(user) => {
                    Verdict::Open { user: Some(user.clone()), mechanism: EXTERNAL, confirm: false }
                }
                None => Verdict::Refused(Refusal::wrong_credential(
                    Some(&name),
                    EXTERNAL,
                    "the client certificate's user is not in the users file".into(),
                )),
            };
        }
        // A version-2 client may hold a password it means to prove by SCRAM: letting it in
        // as the anonymous user here would downgrade it without its knowing. It chooses.
        if version >= 2 {
            let mut mechanisms = vec![scram::MECHANISM.to_string()];
            if self.config.auth.allow_anonymous {
                mechanisms.push(ANONYMOUS.to_string());
            }
            return Verdict::Exchange(mechanisms);
        }
        if self.config.auth.allow_anonymous {
            let user = self.user_named(users, &self.config.auth.anonymous_user);
            return Verdict::Open { user, mechanism: ANONYMOUS, confirm: false };
        }
        let message = "this server requires credentials: a password or token over TLS, a client certificate, or SCRAM-SHA-256 (protocol version 2)";
        Verdict::Refused(Refusal::unusable(None, "ANONYMOUS", message))
    }

    /// `AuthStart`, `AuthResponse`, `Heartbeat` and `Close` while authenticating; anything
    /// else ends the connection.
    pub(super) fn handle_login_frame(&mut self, conn: ConnId, frame: Frame) {
        match frame {
            Frame::AuthStart(start) => self.handle_auth_start(conn, start),
            Frame::AuthResponse(response) => self.handle_auth_response(conn, response),
            Frame::Heartbeat(_) => {}
            Frame::Close(close) => self.begin_client_close(conn, close.message),
            other => {
                let message = format!("{:?} before authentication completed", other.kind());
                self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, message)
            }
        }
    }

    fn handle_auth_start(&mut self, conn: ConnId, start: AuthStart) {
        let login = self.connection_mut(conn).login.as_mut().expect("authenticating");
        if !matches!(login.stage, Stage::AwaitingStart) {
            let message = "AuthStart during an exchange".into();
            return self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, message);
        }
        match start.mechanism.as_str() {
            scram::MECHANISM => self.start_scram(conn, &start.data),
            EXTERNAL => self.finish_external(conn, &start.data),
            ANONYMOUS if self.config.auth.allow_anonymous => {
                self.finish_anonymous(conn, &start.data)
            }
            _ => {
                let message = "mechanism not offered; see AuthRequired";
                self.refuse_login(conn, Refusal::unusable(None, "unknown", message))
            }
        }
    }

    fn start_scram(&mut self, conn: ConnId, client_first: &[u8]) {
        let first = match ClientFirst::parse(client_first) {
            Ok(first) => first,
            Err(error) => {
                let refusal = Refusal::wrong_credential(None, scram::MECHANISM, error.to_string());
                return self.refuse_login(conn, refusal);
            }
        };
        let users = self.auth.users.clone().unwrap_or_default();
        let keys = users.get(&first.username).and_then(|user| user.scram.clone());
        let decoy_salt = self.auth.decoy_salt(&first.username);
        let nonce = self.auth.server_nonce();
        let (server, server_first) = ScramServer::start(first, keys, &decoy_salt, &nonce);
        let connection = self.connection_mut(conn);
        let challenge = AuthChallenge { data: Bytes::from(server_first) };
        connection.send(FrameKind::AuthChallenge, &challenge).expect("bounded by the client's");
        connection.login.as_mut().expect("authenticating").stage = Stage::Scram(Box::new(server));
        self.mark_dirty(conn);
    }

    fn handle_auth_response(&mut self, conn: ConnId, response: AuthResponse) {
        let login = self.connection_mut(conn).login.as_mut().expect("authenticating");
        let Stage::Scram(server) = std::mem::replace(&mut login.stage, Stage::AwaitingStart) else {
            let message = "AuthResponse without a challenge".into();
            return self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, message);
        };
        let claimed = server.username().to_string();
        let outcome = server.finish(&response.data);
        let users = self.auth.users.clone().unwrap_or_default();
        match outcome {
            Ok((name, server_final)) => match users.get(&name) {
                Some(user) => {
                    let user = Some(user.clone());
                    let terms = self.take_login(conn).terms;
                    self.open_connection(conn, terms, user, scram::MECHANISM, Some(server_final))
                }
                // The users were replaced during the exchange, without this one.
                None => {
                    let reason = "the user was removed during the exchange".to_string();
                    let refusal = Refusal::wrong_credential(Some(&name), scram::MECHANISM, reason);
                    self.refuse_login(conn, refusal)
                }
            },
            Err(error) => {
                let refusal =
                    Refusal::wrong_credential(Some(&claimed), scram::MECHANISM, error.to_string());
                self.refuse_login(conn, refusal)
            }
        }
    }

    /// EXTERNAL: the client certificate's user, if the client asks for no other (`data` empty
    /// or that same name).
    fn finish_external(&mut self, conn: ConnId, data: &[u8]) {
        let certificate_user = self.connection_mut(conn).peer.certificate_user.clone();
        let users = self.auth.users.clone().unwrap_or_default();
        let asked = std::str::from_utf8(data).unwrap_or("\u{fffd}");
        let user = certificate_user
            .as_deref()
            .filter(|name| asked.is_empty() || asked == *name)
            .and_then(|name| users.get(name).cloned());
        match user {
            Some(user) => {
                let terms = self.take_login(conn).terms;
                self.open_connection(conn, terms, Some(user), EXTERNAL, Some(Vec::new()))
            }
            None => {
                let reason = "no client certificate, or its user is not the one asked for or not in the users file";
                let refusal =
                    Refusal::wrong_credential(certificate_user.as_deref(), EXTERNAL, reason.into());
                self.refuse_login(conn, refusal)
            }
        }
    }

    /// ANONYMOUS (RFC 4505), offered only when anonymous clients are allowed: the anonymous
    /// user. `data` is empty or a trace of at most 255 characters, which identifies nobody.
    fn finish_anonymous(&mut self, conn: ConnId, trace: &[u8]) {
        let trace_fits = std::str::from_utf8(trace)
            .is_ok_and(|trace| trace.chars().count() <= ANONYMOUS_TRACE_CHARS_MAX);
        if !trace_fits {
            let message = "the ANONYMOUS trace must be UTF-8 of at most 255 characters";
            return self.refuse_login(conn, Refusal::unusable(None, ANONYMOUS, message));
        }
        let users = self.auth.users.clone().unwrap_or_default();
        let user = self.user_named(&users, &self.config.auth.anonymous_user);
        let terms = self.take_login(conn).terms;
        self.open_connection(conn, terms, user, ANONYMOUS, Some(Vec::new()))
    }

    fn take_login(&mut self, conn: ConnId) -> Box<Login> {
        self.connection_mut(conn).login.take().expect("authenticating")
    }

    /// Opens the connection: `AuthOk` first if an exchange ran (`server_final`), then
    /// `HelloOk`.
    fn open_connection(
        &mut self,
        conn: ConnId,
        terms: HelloTerms,
        user: Option<Arc<User>>,
        mechanism: &'static str,
        server_final: Option<Vec<u8>>,
    ) {
        if self.auth.users.is_some() {
            assert!(user.is_some(), "with users, a connection opens only as one");
            self.auth.counters.logins_succeeded += 1;
            let name = user.as_ref().map(|user| user.name.clone());
            self.audit_login(conn, name, mechanism, AuditOutcome::Ok, String::new());
        }
        if let Some(server_final) = server_final {
            let name = user.as_ref().map_or_else(String::new, |user| user.name.clone());
            let auth_ok = AuthOk { user: name, data: Bytes::from(server_final) };
            let connection = self.connection_mut(conn);
            connection.send(FrameKind::AuthOk, &auth_ok).expect("a name and a signature");
        }
        let connection = self.connection_mut(conn);
        connection.user = user;
        connection.login = None;
        self.open_after_hello(conn, terms);
    }

    /// Fails the login: the client hears `authentication-failed` after the configured delay,
    /// whatever went wrong, and reads nothing more meanwhile.
    fn refuse_login(&mut self, conn: ConnId, refusal: Refusal) {
        self.auth.counters.logins_failed += 1;
        let addr = self.connection_mut(conn).peer.addr;
        if let (true, Some(addr)) = (refusal.guessed, addr) {
            self.auth.failed.record(self.now, Source::of(addr.ip()));
        }
        let detail = format!("{}: {}", refusal.mechanism, refusal.reason);
        self.audit_login(
            conn,
            refusal.claimed_user,
            refusal.mechanism,
            AuditOutcome::Failed,
            detail,
        );
        let delay_ms = u64::from(self.config.auth.failure_delay_ms);
        if delay_ms == 0 {
            return self.close_connection(conn, ErrorCode::AUTHENTICATION_FAILED, refusal.message);
        }
        let until = self.now.plus_ms(delay_ms);
        let connection = self.connection_mut(conn);
        connection.state = ConnState::Refusing { until };
        connection.login = None;
        connection.close_message = refusal.message;
        self.set_read_pause(conn, PauseReason::LoginRefused, true);
        self.arm_connection_timer(conn);
    }

    /// The refusal's delay is over.
    pub(super) fn finish_refusal(&mut self, conn: ConnId) {
        let message = std::mem::take(&mut self.connection_mut(conn).close_message);
        self.close_connection(conn, ErrorCode::AUTHENTICATION_FAILED, message);
    }

    fn audit_login(
        &mut self,
        conn: ConnId,
        user: Option<String>,
        mechanism: &str,
        outcome: AuditOutcome,
        detail: String,
    ) {
        let kind = match outcome {
            AuditOutcome::Ok => AuditKind::AuthenticationSucceeded,
            AuditOutcome::Denied | AuditOutcome::Failed => AuditKind::AuthenticationFailed,
        };
        let detail = if detail.is_empty() { mechanism.to_string() } else { detail };
        self.audit(kind, Some(conn), user, None, outcome, detail);
    }
}

fn mechanism_of(credentials: &Credentials) -> &'static str {
    match credentials {
        Credentials::Anonymous => ANONYMOUS,
        Credentials::Password { .. } => "PLAIN",
        Credentials::Token { .. } => "TOKEN",
    }
}
