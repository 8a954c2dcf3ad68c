//! The client's side of one SCRAM exchange.

use subtle::ConstantTimeEq;

use super::keys::{salted_password, ITERATIONS_MAX, ITERATIONS_MIN};
use super::messages::{encode_saslname, parse_server_final, ServerFirst};
use super::{hmac, sha256, to_base64, xor, ScramError};

/// After the client's first message, waiting for the server's. `Debug` hides the password.
#[derive(Clone)]
pub struct ScramClient {
    password: String,
    client_nonce: String,
    bare: String,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("password", &"<hidden>")
            .field("client_nonce", &self.client_nonce)
            .field("bare", &self.bare)
            .finish()
    }
}

/// After the client's final message, waiting for the server's signature.
#[derive(Clone, Debug)]
pub struct ScramClientFinal {
    server_signature: [u8; 32],
}

const GS2_HEADER: &str = "n,,";

impl ScramClient {
    /// Starts an exchange for `username`; `client_nonce` must be unpredictable (printable ASCII
    /// without `,`: base64 of 18 random bytes does).
    pub fn start(username: &str, password: &str, client_nonce: &str) -> (ScramClient, Vec<u8>) {
        let bare = format!("n={},r={client_nonce}", encode_saslname(username));
        let first = format!("{GS2_HEADER}{bare}").into_bytes();
        let client =
            ScramClient { password: password.to_string(), client_nonce: client_nonce.into(), bare };
        (client, first)
    }

    /// Answers the server's first message with the proof. Refuses a server whose nonce does
    /// not extend ours (a replay) or that asks for an unreasonable amount of work.
    pub fn answer(self, server_first: &[u8]) -> Result<(ScramClientFinal, Vec<u8>), ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("UTF-8"))?;
        let first = ServerFirst::parse(text)?;
        let extends_ours = first.nonce.len() > self.client_nonce.len()
            && first.nonce.starts_with(&self.client_nonce);
        if !extends_ours {
            return Err(ScramError::NonceMismatch);
        }
        if !(u64::from(ITERATIONS_MIN)..=u64::from(ITERATIONS_MAX)).contains(&first.iterations) {
            return Err(ScramError::Iterations(first.iterations));
        }
        let salted = salted_password(&self.password, &first.salt, first.iterations as u32);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c={},r={}", to_base64(GS2_HEADER.as_bytes()), first.nonce);
        let auth_message = format!("{},{text},{without_proof}", self.bare);
        let proof = xor(&client_key, &hmac(&stored_key, auth_message.as_bytes()));
        let server_key = hmac(&salted, b"Server Key");
        let server_signature = hmac(&server_key, auth_message.as_bytes());
        let final_message = format!("{without_proof},p={}", to_base64(&proof)).into_bytes();
        Ok((ScramClientFinal { server_signature }, final_message))
    }
}

impl ScramClientFinal {
    /// Whether the server proved it knows the user's keys: only then is it the real server.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let signature = parse_server_final(server_final)?;
        if bool::from(signature.ct_eq(&self.server_signature)) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}
