//! The server's side of one SCRAM exchange.

use subtle::ConstantTimeEq;

use super::keys::{ScramKeys, ITERATIONS_DEFAULT};
use super::messages::{ClientFinal, ClientFirst};
use super::{hmac, sha256, to_base64, xor, ScramError};

/// Between the server's first message and the client's final one.
#[derive(Clone, Debug)]
pub struct ScramServer {
    username: String,
    /// False for an unknown user: the exchange runs on made-up keys and fails at the end, so
    /// that whether a user exists cannot be told from the answers.
    known: bool,
    keys: ScramKeys,
    gs2_header: String,
    nonce: String,
    /// `client-first-bare "," server-first`: the start of the AuthMessage both sides sign.
    signed_start: String,
}

impl ScramServer {
    /// Answers `first` with the server's first message. `keys` are the user's, or `None` for
    /// an unknown user, who gets `decoy_salt` (the same every time for one name, so that
    /// asking twice does not reveal the difference either).
    pub fn start(
        first: ClientFirst,
        keys: Option<ScramKeys>,
        decoy_salt: &[u8],
        server_nonce: &str,
    ) -> (ScramServer, Vec<u8>) {
        assert!(!server_nonce.is_empty() && !server_nonce.contains(','));
        let known = keys.is_some();
        let keys = keys.unwrap_or_else(|| ScramKeys {
            salt: decoy_salt.to_vec(),
            iterations: ITERATIONS_DEFAULT,
            stored_key: [0; 32],
            server_key: [0; 32],
        });
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!("r={nonce},s={},i={}", to_base64(&keys.salt), keys.iterations);
        let signed_start = format!("{},{server_first}", first.bare);
        let server = ScramServer {
            username: first.username,
            known,
            keys,
            gs2_header: first.gs2_header,
            nonce,
            signed_start,
        };
        (server, server_first.into_bytes())
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks the client's proof; on success, the user and the server's final message
    /// (its signature, which proves to the client that the server knows the keys too).
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let final_message = ClientFinal::parse(client_final)?;
        if final_message.channel_binding != to_base64(self.gs2_header.as_bytes()) {
            return Err(ScramError::Malformed("channel binding differs from the GS2 header"));
        }
        if final_message.nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = format!("{},{}", self.signed_start, final_message.without_proof);
        let client_signature = hmac(&self.keys.stored_key, auth_message.as_bytes());
        let client_key = xor(&final_message.proof, &client_signature);
        let proof_holds: bool = sha256(&client_key).ct_eq(&self.keys.stored_key).into();
        if !self.known {
            return Err(ScramError::UnknownUser);
        }
        if !proof_holds {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.keys.server_key, auth_message.as_bytes());
        Ok((self.username, format!("v={}", to_base64(&server_signature)).into_bytes()))
    }
}
