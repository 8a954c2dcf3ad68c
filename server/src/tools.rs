//! `chuted`'s helper commands for files managed by hand: `hash-password` prints the SCRAM keys
//! a users file holds for a password, `new-token` makes a token and prints it with its hash,
//! `gen-key` writes a key file for encryption at rest.

use std::io::BufRead;

use chute_core::auth::scram::{ScramKeys, ITERATIONS_DEFAULT, ITERATIONS_MAX, ITERATIONS_MIN};
use chute_core::auth::TokenHash;

/// The helper commands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Tool {
    /// Read a password from standard input (its first line) and print its SCRAM-SHA-256 keys,
    /// as the `scram` of a `[[user]]` in the users file. The password itself is not stored.
    HashPassword {
        /// PBKDF2 iterations; more makes each guess at a stolen file slower, and each login
        /// with a password in `Hello` (over TLS) costs the broker thread as much.
        #[arg(long, default_value_t = ITERATIONS_DEFAULT,
              value_parser = clap::value_parser!(u32).range(i64::from(ITERATIONS_MIN)..=i64::from(ITERATIONS_MAX)))]
        iterations: u32,
    },
    /// Make a new random token: prints the token (give it to the service, once) and, on a
    /// second line, its hash (for `tokens` in the users file).
    NewToken,
    /// Write a new key for encryption at rest: 32 random bytes in FILE, created with mode 0600
    /// (`storage.encryption.key_file` or `keys`). An existing file is never overwritten.
    GenKey {
        /// The key file to create.
        file: std::path::PathBuf,
    },
}

/// Runs `tool`; `Err` is one line for standard error.
pub fn run(tool: Tool) -> Result<(), String> {
    match tool {
        Tool::HashPassword { iterations } => {
            let password = read_first_line()?;
            if password.is_empty() {
                return Err("no password on standard input".into());
            }
            println!("{}", hash_password(&password, iterations)?);
        }
        Tool::NewToken => {
            let (token, hash) = new_token()?;
            println!("{token}\n{}", hash.to_text());
        }
        Tool::GenKey { file } => crate::keys::gen_key(&file)?,
    }
    Ok(())
}

pub fn hash_password(password: &str, iterations: u32) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random bytes for the salt: {e}"))?;
    Ok(ScramKeys::derive(password, &salt, iterations).to_text())
}

/// `chute_` and 32 random bytes in URL-safe base64: 256 bits, so a plain SHA-256 of it is
/// as safe to store as a slow hash of a password.
pub fn new_token() -> Result<(String, TokenHash), String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes for the token: {e}"))?;
    let token = format!("chute_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = TokenHash::of(&token);
    Ok((token, hash))
}

fn read_first_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_salts_differ() {
        let first = ScramKeys::parse(&hash_password("secret", 4096).unwrap()).unwrap();
        let second = ScramKeys::parse(&hash_password("secret", 4096).unwrap()).unwrap();
        assert!(first.verify_password("secret"));
        assert!(!first.verify_password("Secret"));
        assert_ne!(first.salt, second.salt);
    }

    #[test]
    fn a_new_token_matches_its_hash() {
        let (token, hash) = new_token().unwrap();
        assert!(token.starts_with("chute_") && token.len() == 6 + 43, "{token}");
        assert_eq!(TokenHash::of(&token), hash);
        assert_ne!(new_token().unwrap().0, token);
    }
}
