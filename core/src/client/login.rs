//! The client's side of logging in (PROTOCOL.md §5.3, §5.8): which credentials go in `Hello`,
//! and the version-2 exchange when the server asks for one.
//!
//! - A password is never put in `Hello`: the client sends `Anonymous` and proves the password
//!   by SCRAM-SHA-256 when the server answers `AuthRequired`, on any connection. The server
//!   proves itself back in `AuthOk`, and a server that cannot is refused.
//! - A token goes in `Hello` as it is; the driver sends one only over TLS. A version-2 server
//!   that checked it says so in `AuthOk` before `HelloOk`.
//! - A client holding a password or token that is let in without `AuthOk` (a server without
//!   users, or one that skipped the login) ends the connection: its credentials were never
//!   checked, so it is not who it thinks it is there. `accept_unchecked_credentials` turns
//!   this off.
//! - A client without credentials answers `AuthRequired` with `ANONYMOUS` when it is offered
//!   (a server with users that lets anonymous clients in).
//! - A client certificate logs in with `Anonymous` (the server reads the certificate's user);
//!   if the server asks anyway and offers `EXTERNAL`, the client answers with it.
//!
//! Until the login is over, the commands a caller issues wait in the client: behind a `Hello`
//! that may be answered by `AuthRequired`, the server accepts nothing but the exchange. Only a
//! token or a client certificate is settled by `Hello` alone, so only those pipeline.

use bytes::Bytes;
use chute_protocol::{
    AuthChallenge, AuthOk, AuthRequired, AuthResponse, AuthStart, Credentials, ErrorCode, FrameKind,
};

use super::{Client, CLIENT_VERSION_MAX};
use crate::auth::scram::{self, ScramClient, ScramClientFinal};
use crate::auth::{ANONYMOUS, EXTERNAL};

/// Where the client is in the exchange.
#[derive(Debug, Default)]
pub(super) enum Login {
    /// `Hello` sent; `HelloOk` or `AuthRequired` next.
    #[default]
    Hello,
    /// `AuthStart` SCRAM-SHA-256 sent; `AuthChallenge` next.
    ScramStarted(Box<ScramClient>),
    /// `AuthResponse` sent; `AuthOk` with the server's signature next.
    ScramAnswered(Box<ScramClientFinal>),
    /// `AuthStart EXTERNAL` sent; `AuthOk` next.
    External,
    /// `AuthStart ANONYMOUS` sent; `AuthOk` next.
    Anonymous,
    /// `AuthOk` arrived (and, for SCRAM, proved the server); `HelloOk` next.
    Proven,
}

/// The credentials `Hello` carries for a client configured with `credentials`.
pub(super) fn hello_credentials(credentials: &Credentials) -> Credentials {
    match credentials {
        // Proven by SCRAM instead, so the password never crosses the wire.
        Credentials::Password { .. } => Credentials::Anonymous,
        other => other.clone(),
    }
}

/// Whether the server may answer `Hello` with `AuthRequired`, so that nothing but the
/// exchange may follow `Hello` until `HelloOk`: for a password, and for no credentials at all
/// (a server with users asks even when it lets anonymous clients in).
pub(super) fn may_need_exchange(credentials: &Credentials, client_certificate: bool) -> bool {
    match credentials {
        Credentials::Password { .. } => true,
        Credentials::Anonymous => !client_certificate,
        Credentials::Token { .. } => false,
    }
}

/// Whether a client configured with `credentials` holds a secret the server must be seen to
/// check before the connection is trusted.
fn holds_secret(credentials: &Credentials) -> bool {
    matches!(credentials, Credentials::Password { .. } | Credentials::Token { .. })
}

/// The base64 text of the connection's nonce bytes: printable, without `,`, as SCRAM wants.
fn nonce_text(nonce: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

impl Client {
    /// `AuthRequired`: start the mechanism the client has credentials for, or end the
    /// connection saying why it cannot log in.
    pub(super) fn auth_required(&mut self, required: AuthRequired) {
        if !matches!(self.login, Login::Hello) {
            return self.login_violation("AuthRequired during the exchange");
        }
        if !(2..=CLIENT_VERSION_MAX).contains(&required.version) {
            let message = format!("AuthRequired for version {}, not one offered", required.version);
            return self.login_violation(&message);
        }
        let offers = |name: &str| required.mechanisms.iter().any(|m| m == name);
        match &self.config.credentials {
            Credentials::Password { username, password } if offers(scram::MECHANISM) => {
                let nonce = nonce_text(&self.config.auth_nonce);
                let (client, first) = ScramClient::start(username, password, &nonce);
                self.send_auth_start(scram::MECHANISM, first);
                self.login = Login::ScramStarted(Box::new(client));
            }
            _ if self.config.client_certificate && offers(EXTERNAL) => {
                self.send_auth_start(EXTERNAL, Vec::new());
                self.login = Login::External;
            }
            Credentials::Anonymous if offers(ANONYMOUS) => {
                self.send_auth_start(ANONYMOUS, Vec::new());
                self.login = Login::Anonymous;
            }
            credentials => {
                let has = match credentials {
                    Credentials::Password { .. } => "a password",
                    Credentials::Token { .. } => "a token",
                    Credentials::Anonymous if self.config.client_certificate => {
                        "a client certificate"
                    }
                    Credentials::Anonymous => "no credentials",
                };
                let offered = required.mechanisms.join(", ");
                let message = format!(
                    "the server requires a login by {offered}; this client has {has} for none of them"
                );
                self.finish(ErrorCode::AUTHENTICATION_FAILED, message, true);
            }
        }
    }

    /// `AuthChallenge`: the SCRAM server-first-message, answered with the proof.
    pub(super) fn auth_challenge(&mut self, challenge: AuthChallenge) {
        let Login::ScramStarted(client) = std::mem::take(&mut self.login) else {
            return self.login_violation("AuthChallenge without an exchange under way");
        };
        match client.answer(&challenge.data) {
            Ok((waiting, final_message)) => {
                let response = AuthResponse { data: Bytes::from(final_message) };
                self.encode_login(FrameKind::AuthResponse, &response);
                self.login = Login::ScramAnswered(Box::new(waiting));
            }
            Err(error) => {
                let message = format!("the server's SCRAM challenge is refused: {error}");
                self.finish(ErrorCode::AUTHENTICATION_FAILED, message, true);
            }
        }
    }

    /// `AuthOk`: for SCRAM, the server's signature must prove it knows the user's keys before
    /// anything is trusted on this connection.
    pub(super) fn auth_ok(&mut self, ok: AuthOk) {
        match std::mem::take(&mut self.login) {
            Login::ScramAnswered(waiting) => match waiting.verify(&ok.data) {
                Ok(()) => self.login = Login::Proven,
                Err(error) => {
                    let message = format!(
                        "the server did not prove it knows the password ({error}): it is not the server the user is registered with"
                    );
                    self.finish(ErrorCode::AUTHENTICATION_FAILED, message, true);
                }
            },
            Login::External | Login::Anonymous => self.login = Login::Proven,
            // The server checked the token in `Hello`.
            Login::Hello if matches!(self.config.credentials, Credentials::Token { .. }) => {
                self.login = Login::Proven
            }
            _ => self.login_violation("AuthOk without an exchange under way"),
        }
    }

    /// Why `HelloOk` may not be accepted now, if it may not: an exchange the client started is
    /// unfinished, or the client holds a secret nobody checked.
    pub(super) fn login_incomplete(&self) -> Option<(ErrorCode, String)> {
        match self.login {
            Login::Proven => None,
            Login::Hello if !holds_secret(&self.config.credentials) => None,
            Login::Hello if self.config.accept_unchecked_credentials => None,
            Login::Hello => Some((
                ErrorCode::AUTHENTICATION_FAILED,
                "the server admitted this connection without checking its credentials (it has no users, or skipped the login); set accept_unchecked_credentials to connect anyway".into(),
            )),
            _ => Some((
                ErrorCode::UNEXPECTED_FRAME,
                "HelloOk before the login exchange finished (no AuthOk)".into(),
            )),
        }
    }

    fn send_auth_start(&mut self, mechanism: &str, data: Vec<u8>) {
        let start = AuthStart { mechanism: mechanism.to_string(), data: Bytes::from(data) };
        self.encode_login(FrameKind::AuthStart, &start);
    }

    fn login_violation(&mut self, message: &str) {
        self.finish(ErrorCode::UNEXPECTED_FRAME, message.to_string(), true);
    }
}
