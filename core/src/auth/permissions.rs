//! What a user may do: RabbitMQ's three permissions on name patterns, plus the admin tag.
//!
//! | access      | allows                                                                 |
//! |-------------|------------------------------------------------------------------------|
//! | `configure` | declare, delete, purge a queue; bind and unbind it; redrive its dead letters |
//! | `write`     | publish to a queue, or to a topic                                      |
//! | `read`      | subscribe to a queue; its stats; list and inspect its dead letters      |
//! | `admin`     | the admin API and user management                                      |
//!
//! Nothing is allowed that no pattern allows (default deny).

use super::pattern::{NamePattern, PatternError};

/// One of the three per-name permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    Configure,
    Write,
    Read,
}

impl Access {
    pub const ALL: [Access; 3] = [Access::Configure, Access::Write, Access::Read];

    pub fn label(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// A user's permissions, with `{user}` already replaced by the user's name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    configure: Vec<NamePattern>,
    write: Vec<NamePattern>,
    read: Vec<NamePattern>,
    admin: bool,
}

/// The permissions of one user as written (in the users file): pattern texts per access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionRules {
    pub configure: Vec<String>,
    pub write: Vec<String>,
    pub read: Vec<String>,
    pub admin: bool,
}

impl Permissions {
    /// Everything, everywhere: a server without authentication treats every client so.
    pub fn all() -> Permissions {
        let star = || vec![NamePattern::new("*", "").expect("* is a pattern")];
        Permissions { configure: star(), write: star(), read: star(), admin: true }
    }

    /// `rules` for the user called `user`.
    pub fn new(rules: &PermissionRules, user: &str) -> Result<Permissions, PatternError> {
        let parse = |texts: &[String]| -> Result<Vec<NamePattern>, PatternError> {
            texts.iter().map(|text| NamePattern::new(text, user)).collect()
        };
        Ok(Permissions {
            configure: parse(&rules.configure)?,
            write: parse(&rules.write)?,
            read: parse(&rules.read)?,
            admin: rules.admin,
        })
    }

    /// Whether `access` to the queue or topic `name` is allowed.
    pub fn allows(&self, access: Access, name: &str) -> bool {
        self.patterns(access).iter().any(|pattern| pattern.matches(name))
    }

    /// Whether any access at all is allowed to `name` (what a queue listing shows).
    pub fn allows_any(&self, name: &str) -> bool {
        Access::ALL.into_iter().any(|access| self.allows(access, name))
    }

    pub fn is_admin(&self) -> bool {
        self.admin
    }

    pub fn patterns(&self, access: Access) -> &[NamePattern] {
        match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(configure: &[&str], write: &[&str], read: &[&str]) -> PermissionRules {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        PermissionRules {
            configure: owned(configure),
            write: owned(write),
            read: owned(read),
            admin: false,
        }
    }

    #[test]
    fn each_access_has_its_own_patterns() {
        let perms = Permissions::new(&rules(&["{user}.*"], &["orders", "events.*"], &["*"]), "bob")
            .unwrap();
        assert!(perms.allows(Access::Configure, "bob.jobs"));
        assert!(!perms.allows(Access::Configure, "alice.jobs"));
        assert!(perms.allows(Access::Write, "orders"));
        assert!(perms.allows(Access::Write, "events.eu"));
        assert!(!perms.allows(Access::Write, "bob.jobs"));
        assert!(perms.allows(Access::Read, "anything"));
        assert!(!perms.is_admin());
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let none = Permissions::new(&PermissionRules::default(), "u").unwrap();
        assert!(Access::ALL.into_iter().all(|access| !none.allows(access, "q")));
        assert!(!none.allows_any("q"));
        assert!(!none.is_admin());
    }

    #[test]
    fn all_allows_everything() {
        let all = Permissions::all();
        assert!(Access::ALL.into_iter().all(|access| all.allows(access, "x/y:z")));
        assert!(all.is_admin());
    }

    #[test]
    fn a_bad_pattern_is_refused() {
        assert!(Permissions::new(&rules(&["ok"], &["not ok"], &[]), "u").is_err());
    }
}
