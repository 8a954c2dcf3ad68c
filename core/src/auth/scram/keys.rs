//! What a server stores for a SCRAM user, and its text form in the users file.

use subtle::ConstantTimeEq;

use super::{from_base64, hmac, sha256, to_base64};

/// RFC 7677's minimum, and PostgreSQL's and Kafka's default. The server computes the salted
/// password only to check a `Password` sent in `Hello` over TLS; that cost lands on the broker
/// thread, so the default stays at the minimum and operators who want more set it per user.
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_DEFAULT: u32 = 4096;
/// A client refuses a server asking for more (it would be made to burn CPU), and the users
/// file may not hold more.
pub const ITERATIONS_MAX: u32 = 1_000_000;
const SALT_LEN_MIN: usize = 8;
const SALT_LEN_MAX: usize = 64;

/// The salted keys of one user: enough to check a login, not enough to make one.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    // The keys are not secrets the way a password is, but a StoredKey and ServerKey let
    // whoever holds them impersonate the server: keep them out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramKeys {{ iterations: {}, .. }}", self.iterations)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    #[error(
        "SCRAM keys must read SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64), as `chuted hash-password` prints them"
    )]
    Format,
    #[error("SCRAM iterations {0} are outside {min}..={max}", min = ITERATIONS_MIN, max = ITERATIONS_MAX)]
    Iterations(u64),
    #[error("SCRAM salt of {0} bytes; {SALT_LEN_MIN} to {SALT_LEN_MAX} expected")]
    Salt(usize),
}

const PREFIX: &str = "SCRAM-SHA-256$";

impl ScramKeys {
    /// The keys for `password` (RFC 5802 §3: SaltedPassword = PBKDF2-HMAC-SHA-256).
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        assert!((ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations));
        let salted = salted_password(password, salt, iterations);
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&hmac(&salted, b"Client Key")),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is this user's: for a `Password` sent in `Hello` (over TLS only).
    /// Costs one PBKDF2 of `iterations` rounds.
    pub fn verify_password(&self, password: &str) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        let stored_key = sha256(&hmac(&salted, b"Client Key"));
        stored_key.ct_eq(&self.stored_key).into()
    }

    /// PostgreSQL's text form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn to_text(&self) -> String {
        format!(
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            to_base64(&self.salt),
            to_base64(&self.stored_key),
            to_base64(&self.server_key)
        )
    }

    pub fn parse(text: &str) -> Result<ScramKeys, KeysError> {
        let rest = text.strip_prefix(PREFIX).ok_or(KeysError::Format)?;
        let (iteration_salt, keys) = rest.split_once('$').ok_or(KeysError::Format)?;
        let (iterations, salt) = iteration_salt.split_once(':').ok_or(KeysError::Format)?;
        let (stored_key, server_key) = keys.split_once(':').ok_or(KeysError::Format)?;
        let iterations: u64 = iterations.parse().map_err(|_| KeysError::Format)?;
        if !(u64::from(ITERATIONS_MIN)..=u64::from(ITERATIONS_MAX)).contains(&iterations) {
            return Err(KeysError::Iterations(iterations));
        }
        let salt = from_base64(salt).ok_or(KeysError::Format)?;
        if !(SALT_LEN_MIN..=SALT_LEN_MAX).contains(&salt.len()) {
            return Err(KeysError::Salt(salt.len()));
        }
        let key = |text: &str| -> Result<[u8; 32], KeysError> {
            from_base64(text).and_then(|bytes| bytes.try_into().ok()).ok_or(KeysError::Format)
        };
        Ok(ScramKeys {
            salt,
            iterations: iterations as u32,
            stored_key: key(stored_key)?,
            server_key: key(server_key)?,
        })
    }
}

pub(super) fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    salted
}
