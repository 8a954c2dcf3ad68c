//! The users the server runs with: read from `auth.users_file` at the start and on every
//! reload, handed to the broker (which checks logins and permissions), and shared with the
//! admin endpoint (which checks its own requests against the same table).

use std::sync::{Arc, RwLock};

use chute_core::auth::{AuthConfig, Users};

use crate::users_file;

/// The current users (`None` without a users file: nothing is checked) and `[auth]`.
#[derive(Debug, Default)]
pub struct SharedUsers {
    users: RwLock<Option<Arc<Users>>>,
    config: RwLock<AuthConfig>,
}

impl SharedUsers {
    pub fn get(&self) -> Option<Arc<Users>> {
        self.users.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set(&self, users: Option<Users>) {
        *self.users.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = users.map(Arc::new);
    }

    pub fn config(&self) -> AuthConfig {
        self.config.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set_config(&self, config: AuthConfig) {
        *self.config.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }
}

/// The users `auth` names: `None` without a users file. `Err` names the file and the problem.
pub fn load(auth: &AuthConfig) -> Result<Option<Users>, String> {
    let Some(path) = &auth.users_file else { return Ok(None) };
    users_file::load(path).map(Some).map_err(|problem| format!("auth.users_file: {problem}"))
}

/// What a reload changed in the users, for its answer: `users: added a, b; changed c; removed
/// d`, or nothing.
pub fn describe_changes(old: Option<&Users>, new: Option<&Users>) -> Vec<String> {
    let names = |users: Option<&Users>| -> Vec<String> {
        users.map(|u| u.iter().map(|user| user.name.clone()).collect()).unwrap_or_default()
    };
    match (old, new) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => return vec!["users: authentication on".into()],
        (Some(_), None) => return vec!["users: authentication off".into()],
        _ => {}
    }
    let (old_names, new_names) = (names(old), names(new));
    let (old, new) = (old.expect("matched"), new.expect("matched"));
    let added: Vec<&str> =
        new_names.iter().filter(|n| old.get(n).is_none()).map(String::as_str).collect();
    let removed: Vec<&str> =
        old_names.iter().filter(|n| new.get(n).is_none()).map(String::as_str).collect();
    let changed: Vec<&str> = new_names
        .iter()
        .filter(|n| old.get(n).is_some_and(|user| Some(user) != new.get(n)))
        .map(String::as_str)
        .collect();
    let parts: Vec<String> = [("added", added), ("changed", changed), ("removed", removed)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what} {}", names.join(", ")))
        .collect();
    match parts.is_empty() {
        true => Vec::new(),
        false => vec![format!("users: {}", parts.join("; "))],
    }
}

#[cfg(test)]
mod tests {
    use chute_core::auth::{Permissions, User};

    use super::*;

    fn users(names: &[(&str, bool)]) -> Users {
        Users::new(names.iter().map(|(name, admin)| User {
            name: name.to_string(),
            scram: None,
            tokens: Vec::new(),
            permissions: if *admin { Permissions::all() } else { Permissions::default() },
        }))
        .unwrap()
    }

    #[test]
    fn changes_name_who_was_added_changed_and_removed() {
        let old = users(&[("a", false), ("b", false), ("c", false)]);
        let new = users(&[("a", false), ("b", true), ("d", false)]);
        assert_eq!(
            describe_changes(Some(&old), Some(&new)),
            ["users: added d; changed b; removed c"]
        );
        assert!(describe_changes(Some(&old), Some(&old)).is_empty());
        assert_eq!(describe_changes(None, Some(&old)), ["users: authentication on"]);
    }
}
