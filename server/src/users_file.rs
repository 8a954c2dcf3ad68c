//! The users file (`auth.users_file`, TOML): who may log in, with which credentials, and what
//! each may do. Read at the start and on every reload; written by the admin API's user
//! commands (atomically, mode 0600).
//!
//! ```toml
//! [[user]]
//! name = "billing"
//! scram = "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"   # `chuted hash-password`
//! tokens = ["sha256:<base64>"]                                  # hashes only
//! configure = ["{user}.*"]
//! write = ["{user}.*", "events.*"]
//! read = ["{user}.*"]
//! admin = false
//! ```

use std::io::Write;
use std::path::Path;

use chute_core::auth::scram::ScramKeys;
use chute_core::auth::{PermissionRules, Permissions, TokenHash, User, Users};
use serde::{Deserialize, Serialize};

/// The file as written: kept as read so the admin API can change one user and write the rest
/// back unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
}

/// One `[[user]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// SCRAM keys, as `chuted hash-password` prints them; absent: no password login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scram: Option<String>,
    /// Token hashes (`sha256:<base64>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<String>,
    #[serde(default)]
    pub configure: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub admin: bool,
}

impl UserEntry {
    fn to_user(&self) -> Result<User, String> {
        let name = &self.name;
        let scram = match &self.scram {
            Some(text) => {
                Some(ScramKeys::parse(text).map_err(|e| format!("user {name:?}: scram: {e}"))?)
            }
            None => None,
        };
        let tokens = self
            .tokens
            .iter()
            .map(|text| {
                TokenHash::parse(text).ok_or_else(|| {
                    format!("user {name:?}: tokens: {text:?} is not sha256:<base64 of 32 bytes>")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rules = PermissionRules {
            configure: self.configure.clone(),
            write: self.write.clone(),
            read: self.read.clone(),
            admin: self.admin,
        };
        let permissions =
            Permissions::new(&rules, name).map_err(|e| format!("user {name:?}: {e}"))?;
        Ok(User { name: name.clone(), scram, tokens, permissions })
    }
}

impl UsersFile {
    pub fn read(path: &Path) -> Result<UsersFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            let message = e.message().replace('\n', " ");
            match e.span().map(|span| line_of(&text, span.start)) {
                Some(line) => format!("{}:{line}: {message}", path.display()),
                None => format!("{}: {message}", path.display()),
            }
        })
    }

    /// The table the broker checks logins against.
    pub fn users(&self) -> Result<Users, String> {
        let users = self.users.iter().map(UserEntry::to_user).collect::<Result<Vec<_>, _>>()?;
        Users::new(users).map_err(|e| e.to_string())
    }

    /// Replaces the file whole: a reader sees the old file or the new, never a mix. Only the
    /// owner may read it (it holds what a password check needs).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temporary = dir.join(format!(".{name}.tmp"));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(
                b"# chute users: see docs/SECURITY.md. Edited by `chute admin user`.\n",
            )?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    pub fn find(&self, name: &str) -> Option<&UserEntry> {
        self.users.iter().find(|user| user.name == name)
    }
}

/// The users of `path`, checked: one line naming the user and field on a problem.
pub fn load(path: &Path) -> Result<Users, String> {
    UsersFile::read(path)?.users()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn reads_users_with_their_credentials_and_rules() {
        let keys = ScramKeys::derive("pw", b"sixteen-byte-slt", 4096).to_text();
        let token = TokenHash::of("tok").to_text();
        let text = format!(
            "[[user]]\nname = \"alice\"\nscram = \"{keys}\"\ntokens = [\"{token}\"]\nconfigure = [\"{{user}}.*\"]\nadmin = true\n\n[[user]]\nname = \"bob\"\n"
        );
        let users = load(file(&text).path()).unwrap();
        let alice = users.get("alice").unwrap();
        assert!(alice.scram.as_ref().unwrap().verify_password("pw"));
        assert!(alice.permissions.allows(chute_core::auth::Access::Configure, "alice.q"));
        assert!(alice.permissions.is_admin());
        assert_eq!(users.by_token("tok").unwrap().name, "alice");
        assert!(users.get("bob").unwrap().scram.is_none());
    }

    #[test]
    fn problems_name_the_user_and_field() {
        let bad_scram = load(file("[[user]]\nname = \"a\"\nscram = \"plain-text\"\n").path());
        assert!(bad_scram.unwrap_err().contains("user \"a\": scram"));
        let bad_token = load(file("[[user]]\nname = \"a\"\ntokens = [\"tok\"]\n").path());
        assert!(bad_token.unwrap_err().contains("user \"a\": tokens"));
        let bad_rule = load(file("[[user]]\nname = \"a\"\nread = [\"a b\"]\n").path());
        assert!(bad_rule.unwrap_err().contains("user \"a\""));
        let unknown = load(file("[[user]]\nname = \"a\"\npassword = \"x\"\n").path());
        assert!(unknown.unwrap_err().contains(":3: unknown field `password`"));
        let twice = load(file("[[user]]\nname = \"a\"\n[[user]]\nname = \"a\"\n").path());
        assert!(twice.unwrap_err().contains("defined twice"));
    }

    #[test]
    fn writes_back_what_it_read_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let written = UsersFile {
            users: vec![UserEntry {
                name: "a".into(),
                read: vec!["*".into()],
                ..UserEntry::default()
            }],
        };
        written.write(&path).unwrap();
        assert_eq!(UsersFile::read(&path).unwrap(), written);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
