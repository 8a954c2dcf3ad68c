//! The users a server knows: their credentials (SCRAM keys, hashed tokens) and permissions.
//! Built by the driver (from the users file) and handed to the broker whole; a reload hands
//! a new table.

use std::collections::BTreeMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use super::permissions::Permissions;
use super::scram::ScramKeys;

/// Longest user name; the same bound as queue names.
pub const USER_NAME_LEN_MAX: usize = chute_protocol::NAME_LEN_MAX;

/// The SHA-256 of a token. Tokens are long random strings made by the server
/// (`chute admin user add --token`), so a plain hash is as hard to reverse as the token is to
/// guess, and a login costs one hash rather than a deliberately slow one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

const TOKEN_HASH_PREFIX: &str = "sha256:";

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        use sha2::Digest;
        TokenHash(sha2::Sha256::digest(token.as_bytes()).into())
    }

    /// `sha256:<base64>`, as the users file holds it.
    pub fn to_text(&self) -> String {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(self.0);
        format!("{TOKEN_HASH_PREFIX}{encoded}")
    }

    pub fn parse(text: &str) -> Option<TokenHash> {
        use base64::Engine;
        let encoded = text.strip_prefix(TOKEN_HASH_PREFIX)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        Some(TokenHash(bytes.try_into().ok()?))
    }
}

/// One user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Absent: the user cannot log in with a password (tokens or a certificate only).
    pub scram: Option<ScramKeys>,
    pub tokens: Vec<TokenHash>,
    pub permissions: Permissions,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsersError {
    #[error("user name {0:?} is empty, longer than {USER_NAME_LEN_MAX} bytes, or holds a space or control character")]
    BadName(String),
    #[error("user {0:?} is defined twice")]
    Duplicate(String),
    #[error("users {0:?} and {1:?} share a token")]
    SharedToken(String, String),
}

/// Every user, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    by_name: BTreeMap<String, Arc<User>>,
}

/// Printable ASCII without spaces: what certificate identities (e-mail addresses, DNS names,
/// URIs) need, and nothing a log line or the audit log could be confused by.
pub fn check_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= USER_NAME_LEN_MAX
        && name.bytes().all(|b| b.is_ascii_graphic())
}

impl Users {
    pub fn new(users: impl IntoIterator<Item = User>) -> Result<Users, UsersError> {
        let mut by_name = BTreeMap::new();
        for user in users {
            if !check_user_name(&user.name) {
                return Err(UsersError::BadName(user.name));
            }
            let name = user.name.clone();
            if by_name.insert(name.clone(), Arc::new(user)).is_some() {
                return Err(UsersError::Duplicate(name));
            }
        }
        let users = Users { by_name };
        users.check_tokens_unique()?;
        Ok(users)
    }

    fn check_tokens_unique(&self) -> Result<(), UsersError> {
        let mut owners: BTreeMap<[u8; 32], &str> = BTreeMap::new();
        for user in self.by_name.values() {
            for token in &user.tokens {
                if let Some(other) = owners.insert(token.0, &user.name) {
                    return Err(UsersError::SharedToken(other.into(), user.name.clone()));
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<User>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<User>> {
        self.by_name.values()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The user holding `token`. Every stored hash is compared, in constant time each, so the
    /// time taken says nothing about which (or whether any) matched.
    pub fn by_token(&self, token: &str) -> Option<&Arc<User>> {
        let presented = TokenHash::of(token);
        let mut found = None;
        for user in self.by_name.values() {
            for stored in &user.tokens {
                if bool::from(stored.0.ct_eq(&presented.0)) {
                    found = Some(user);
                }
            }
        }
        found
    }

    /// The user `name` if `password` is theirs (a `Password` in `Hello`, over TLS).
    pub fn by_password(&self, name: &str, password: &str) -> Option<&Arc<User>> {
        let user = self.by_name.get(name)?;
        let keys = user.scram.as_ref()?;
        keys.verify_password(password).then_some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: Option<&str>, tokens: &[&str]) -> User {
        User {
            name: name.to_string(),
            scram: password.map(|p| ScramKeys::derive(p, b"salt-of-16-bytes", 4096)),
            tokens: tokens.iter().map(|t| TokenHash::of(t)).collect(),
            permissions: Permissions::default(),
        }
    }

    #[test]
    fn a_token_finds_its_user_only() {
        let users =
            Users::new([user("a", None, &["tok-a"]), user("b", None, &["tok-b1", "tok-b2"])])
                .unwrap();
        assert_eq!(users.by_token("tok-b2").unwrap().name, "b");
        assert_eq!(users.by_token("tok-a").unwrap().name, "a");
        assert!(users.by_token("tok-c").is_none());
        assert!(users.by_token("").is_none());
    }

    #[test]
    fn a_password_is_checked_against_the_users_keys() {
        let users = Users::new([user("a", Some("secret"), &[]), user("t", None, &["x"])]).unwrap();
        assert_eq!(users.by_password("a", "secret").unwrap().name, "a");
        assert!(users.by_password("a", "Secret").is_none());
        assert!(users.by_password("nobody", "secret").is_none());
        assert!(users.by_password("t", "").is_none(), "no keys, no password login");
    }

    #[test]
    fn tables_with_clashes_are_refused() {
        let twice = Users::new([user("a", None, &[]), user("a", None, &[])]);
        assert_eq!(twice, Err(UsersError::Duplicate("a".into())));
        let shared = Users::new([user("a", None, &["t"]), user("b", None, &["t"])]);
        assert_eq!(shared, Err(UsersError::SharedToken("a".into(), "b".into())));
        for bad in ["", "with space", "tab\t", &"x".repeat(256)] {
            assert!(matches!(Users::new([user(bad, None, &[])]), Err(UsersError::BadName(_))));
        }
        assert!(Users::new([user("spiffe://prod/ns/billing", None, &[])]).is_ok());
    }

    #[test]
    fn token_hashes_read_back_from_text() {
        let hash = TokenHash::of("tok");
        assert_eq!(TokenHash::parse(&hash.to_text()), Some(hash));
        assert_eq!(TokenHash::parse("md5:abc"), None);
        assert_eq!(TokenHash::parse("sha256:AAAA"), None);
    }
}
