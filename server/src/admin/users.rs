//! `/api/users`: the users file, edited through the API (`chute admin user ...`). Each edit
//! reads the file, changes one user, checks the whole table, writes the file atomically and
//! hands the table to the broker, so the file stays the one source of truth and a reload
//! reads back what was written.

use chute_core::auth::{AuditEvent, AuditKind, AuditOutcome};
use hyper::body::Incoming;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::reply::{self, Answer, ApiError};
use super::AdminState;
use crate::event_loop::LoopEvent;
use crate::tools;
use crate::users_file::{UserEntry, UsersFile};

/// The body of `PUT /api/users/{name}`: what to set; what is left out stays (or is empty, for
/// a new user).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    password: Option<String>,
    /// Make a token for the user; the answer shows it, once.
    #[serde(default)]
    new_token: bool,
    /// Forget every token of the user (before `new_token`, if both).
    #[serde(default)]
    revoke_tokens: bool,
    configure: Option<Vec<String>>,
    write: Option<Vec<String>>,
    read: Option<Vec<String>>,
    admin: Option<bool>,
}

/// `GET /api/users`: every user, without credentials (whether they have a password, how
/// many tokens).
pub fn list(file: &UsersFile) -> Value {
    Value::Array(file.users.iter().map(describe).collect())
}

fn describe(user: &UserEntry) -> Value {
    json!({
        "name": user.name,
        "admin": user.admin,
        "password": user.scram.is_some(),
        "tokens": user.tokens.len(),
        "configure": user.configure,
        "write": user.write,
        "read": user.read,
    })
}

/// Applies `patch` to the user `name` (created if missing). Returns whether it was created
/// and the new token, if one was asked for.
fn apply(
    file: &mut UsersFile,
    name: &str,
    patch: UserPatch,
) -> Result<(bool, Option<String>), ApiError> {
    let created = file.find(name).is_none();
    if created {
        file.users.push(UserEntry { name: name.to_string(), ..UserEntry::default() });
    }
    let entry = file.users.iter_mut().find(|user| user.name == name).expect("just ensured");
    if let Some(password) = patch.password {
        if password.is_empty() {
            return Err(ApiError::bad_request("password is empty"));
        }
        let iterations = chute_core::auth::scram::ITERATIONS_DEFAULT;
        entry.scram =
            Some(tools::hash_password(&password, iterations).map_err(ApiError::unavailable)?);
    }
    if patch.revoke_tokens {
        entry.tokens.clear();
    }
    let token = match patch.new_token {
        true => {
            let (token, hash) = tools::new_token().map_err(ApiError::unavailable)?;
            entry.tokens.push(hash.to_text());
            Some(token)
        }
        false => None,
    };
    entry.configure = patch.configure.unwrap_or(std::mem::take(&mut entry.configure));
    entry.write = patch.write.unwrap_or(std::mem::take(&mut entry.write));
    entry.read = patch.read.unwrap_or(std::mem::take(&mut entry.read));
    entry.admin = patch.admin.unwrap_or(entry.admin);
    Ok((created, token))
}

impl AdminState {
    /// The users file, or `409` when the server has none to edit.
    fn users_file_path(&self) -> Result<std::path::PathBuf, ApiError> {
        self.users.config().users_file.ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no-users-file",
                "the server has no users file to edit: set auth.users_file",
            )
        })
    }

    pub(super) fn users_list(&self) -> Answer {
        let path = self.users_file_path()?;
        let file = UsersFile::read(&path).map_err(ApiError::unavailable)?;
        Ok(reply::json(StatusCode::OK, &list(&file)))
    }

    /// Edits the file with `edit`, checks and writes it, and hands the new table to the
    /// broker. Edits are one at a time.
    async fn edit_users<T>(
        &self,
        edit: impl FnOnce(&mut UsersFile) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let path = self.users_file_path()?;
        let _one_at_a_time = self.users_edit.lock().await;
        let mut file = UsersFile::read(&path).map_err(ApiError::unavailable)?;
        let outcome = edit(&mut file)?;
        let users = file.users().map_err(ApiError::bad_request)?;
        file.write(&path)
            .map_err(|e| ApiError::unavailable(format!("cannot write {}: {e}", path.display())))?;
        let (reply, answer) = futures::channel::oneshot::channel();
        let mut events = self.events.clone();
        use futures::SinkExt;
        if events.send(LoopEvent::SetUsers { users, reply }).await.is_err() || answer.await.is_err()
        {
            return Err(ApiError::unavailable(
                "the broker is not running; the file is written and applies at the next start",
            ));
        }
        Ok(outcome)
    }

    pub(super) async fn put_user(&self, caller: &Caller, name: String, body: Incoming) -> Answer {
        let body = reply::read_body(body).await?;
        let patch: UserPatch = serde_json::from_slice(if body.is_empty() { b"{}" } else { &body })
            .map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
        let (created, token) = self.edit_users(|file| apply(file, &name, patch)).await?;
        let kind = if created { AuditKind::UserAdded } else { AuditKind::UserChanged };
        self.audit_user(caller, kind, &name).await;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok(reply::json(status, &json!({ "name": name, "created": created, "token": token })))
    }

    pub(super) async fn delete_user(&self, caller: &Caller, name: String) -> Answer {
        self.edit_users(|file| {
            let before = file.users.len();
            file.users.retain(|user| user.name != name);
            match file.users.len() < before {
                true => Ok(()),
                false => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no-such-user",
                    format!("user {name:?} does not exist"),
                )),
            }
        })
        .await?;
        self.audit_user(caller, AuditKind::UserRemoved, &name).await;
        Ok(reply::json(StatusCode::OK, &json!({ "name": name, "removed": true })))
    }

    async fn audit_user(&self, caller: &Caller, kind: AuditKind, name: &str) {
        let event = AuditEvent {
            kind,
            conn: None,
            user: caller.user(),
            peer: None,
            resource: Some(name.to_string()),
            outcome: AuditOutcome::Ok,
            detail: String::new(),
        };
        self.audit.record(event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_creates_changes_and_keeps_what_it_leaves_out() {
        let mut file = UsersFile::default();
        let patch = UserPatch {
            password: Some("pw".into()),
            read: Some(vec!["*".into()]),
            new_token: true,
            ..UserPatch::default()
        };
        let (created, token) = apply(&mut file, "svc", patch).unwrap();
        assert!(created);
        let token = token.unwrap();
        let users = file.users().unwrap();
        assert_eq!(users.by_token(&token).unwrap().name, "svc");
        assert!(users.by_password("svc", "pw").is_some());

        let (created, token) =
            apply(&mut file, "svc", UserPatch { admin: Some(true), ..UserPatch::default() })
                .unwrap();
        assert!(!created && token.is_none());
        let entry = file.find("svc").unwrap();
        assert!(
            entry.admin && entry.scram.is_some() && entry.read == ["*"] && entry.tokens.len() == 1
        );
        let listed = list(&file);
        assert_eq!(listed[0]["password"], true);
        assert_eq!(listed[0]["tokens"], 1);
        assert!(!listed.to_string().contains("SCRAM"), "no credential is shown");

        apply(&mut file, "svc", UserPatch { revoke_tokens: true, ..UserPatch::default() }).unwrap();
        assert!(file.find("svc").unwrap().tokens.is_empty());
    }
}
