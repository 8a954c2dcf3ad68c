//! SCRAM-SHA-256 (RFC 5802, RFC 7677) without I/O: the keys a server stores, the messages, the
//! server's and the client's side of the exchange.
//!
//! The exchange, as carried by protocol version 2 (`AuthStart` … `AuthOk`, PROTOCOL.md §5.8):
//!
//! ```text
//! client                                       server
//! client-first  n,,n=alice,r=<client nonce>  →
//!                                            ←  server-first  r=<client+server nonce>,s=<salt>,i=<n>
//! client-final  c=biws,r=<nonce>,p=<proof>   →
//!                                            ←  server-final  v=<server signature>
//! ```
//!
//! The server keeps only `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and `ServerKey`:
//! neither lets anyone log in, and the password never crosses the wire. Channel binding
//! (`-PLUS`) is not offered; clients that ask for it are refused rather than downgraded.
//!
//! Passwords are used as their UTF-8 bytes, without SASLprep: a client in another language
//! must not normalise them either (PROTOCOL.md says so).

mod client;
mod keys;
mod messages;
mod server;

pub use client::{ScramClient, ScramClientFinal};
pub use keys::{KeysError, ScramKeys, ITERATIONS_DEFAULT, ITERATIONS_MAX, ITERATIONS_MIN};
pub use messages::ClientFirst;
pub use server::ScramServer;

/// The mechanism's name in `AuthRequired` and `AuthStart`.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Why an exchange failed. The server reports every one of them to the client as the same
/// `authentication-failed`; the variants are for the audit log and for tests.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding was asked for; this server does not offer SCRAM-SHA-256-PLUS")]
    ChannelBinding,
    #[error("an authorization identity other than the user is not supported")]
    AuthorizationIdentity,
    #[error("the nonce does not continue this exchange's")]
    NonceMismatch,
    #[error("the proof does not match the user's keys")]
    BadProof,
    #[error("no such user")]
    UnknownUser,
    #[error("the server's signature is wrong: it does not know the password")]
    BadServerSignature,
    #[error("the server asks for {0} iterations, outside {ITERATIONS_MIN}..={ITERATIONS_MAX}")]
    Iterations(u64),
    #[error("the server refused: {0}")]
    ServerError(String),
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn to_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    BASE64.encode(bytes)
}

fn from_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    BASE64.decode(text).ok()
}

#[cfg(test)]
mod tests;
