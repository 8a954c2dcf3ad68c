//! `chute admin user ...`: the server's users file through its admin API (`/api/users`).

use std::io::BufRead;

use clap::Subcommand;
use serde_json::{json, Value};

use crate::admin::Render;
use crate::admin_http::{segment, Request};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Every user: whether it has a password, how many tokens, its permissions.
    List,
    /// Create a user, or change one (what is not given stays as it is).
    Add {
        name: String,
        /// Read the user's password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Make a token for the user; it is printed once, here, and stored only hashed.
        #[arg(long)]
        new_token: bool,
        /// Queue-name patterns the user may configure (declare, delete, purge, bind,
        /// redrive); repeatable. `{user}` stands for the user's name.
        #[arg(long, value_name = "PATTERN")]
        configure: Vec<String>,
        /// Queue or topic patterns the user may publish to; repeatable.
        #[arg(long, value_name = "PATTERN")]
        write: Vec<String>,
        /// Queue patterns the user may consume from, read stats and dead letters of;
        /// repeatable.
        #[arg(long, value_name = "PATTERN")]
        read: Vec<String>,
        /// The user may use the admin API and manage users.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password, read from the first line of standard input.
    Passwd { name: String },
    /// Remove a user; its connections are closed.
    Remove { name: String },
}

/// The request a command makes, and how to show the answer.
pub fn request(command: UserCommand) -> Result<(Request, String, Render), String> {
    Ok(match command {
        UserCommand::List => (Request::Get, "/api/users".into(), list_lines),
        UserCommand::Add { name, password_stdin, new_token, configure, write, read, admin } => {
            let mut body = json!({ "new_token": new_token });
            if password_stdin {
                body["password"] = json!(read_password()?);
            }
            for (key, patterns) in [("configure", configure), ("write", write), ("read", read)] {
                if !patterns.is_empty() {
                    body[key] = json!(patterns);
                }
            }
            if admin {
                body["admin"] = json!(true);
            }
            (Request::Put(body.to_string()), format!("/api/users/{}", segment(&name)), put_lines)
        }
        UserCommand::Passwd { name } => {
            let body = json!({ "password": read_password()? }).to_string();
            (Request::Put(body), format!("/api/users/{}", segment(&name)), put_lines)
        }
        UserCommand::Remove { name } => {
            (Request::Delete, format!("/api/users/{}", segment(&name)), removed_lines)
        }
    })
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err("no password on standard input".into());
    }
    Ok(password)
}

fn list_lines(users: &Value) -> Vec<String> {
    let users = users.as_array().cloned().unwrap_or_default();
    if users.is_empty() {
        return vec!["no users".into()];
    }
    users
        .iter()
        .map(|user| {
            let patterns = |key: &str| {
                let list: Vec<&str> =
                    user[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                if list.is_empty() {
                    "-".to_string()
                } else {
                    list.join(",")
                }
            };
            format!(
                "{}{}  password: {}  tokens: {}  configure: {}  write: {}  read: {}",
                user["name"].as_str().unwrap_or("?"),
                if user["admin"] == true { " (admin)" } else { "" },
                if user["password"] == true { "yes" } else { "no" },
                user["tokens"].as_u64().unwrap_or(0),
                patterns("configure"),
                patterns("write"),
                patterns("read"),
            )
        })
        .collect()
}

fn put_lines(answer: &Value) -> Vec<String> {
    let name = answer["name"].as_str().unwrap_or("?");
    let verb = if answer["created"] == true { "created" } else { "changed" };
    let mut lines = vec![format!("user {name} {verb}")];
    if let Some(token) = answer["token"].as_str() {
        lines.push(format!("token (shown once; the server keeps only its hash): {token}"));
    }
    lines
}

fn removed_lines(answer: &Value) -> Vec<String> {
    vec![format!("user {} removed", answer["name"].as_str().unwrap_or("?"))]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_listed_one_line_each() {
        let answer = json!([
            {"name": "ops", "admin": true, "password": true, "tokens": 0, "configure": ["*"], "write": [], "read": ["*"]},
        ]);
        assert_eq!(
            list_lines(&answer),
            ["ops (admin)  password: yes  tokens: 0  configure: *  write: -  read: *"]
        );
        assert_eq!(list_lines(&json!([])), ["no users"]);
    }

    #[test]
    fn a_new_token_is_shown_once() {
        let lines = put_lines(&json!({"name": "svc", "created": true, "token": "chute_abc"}));
        assert_eq!(lines[0], "user svc created");
        assert!(lines[1].ends_with("chute_abc"));
    }
}
