//! `chute admin ...`: the server's admin API (docs/ADMIN.md) from the command line, as text
//! for people or, with `--json`, the server's JSON answer on one line.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::admin_http::{query, AdminCredentials, AdminEndpoint, Request, ADMIN_URL_DEFAULT};
use crate::admin_users::{self, UserCommand};

/// `--admin-url` and the credentials, for every command that speaks to the admin endpoint.
#[derive(Args, Debug)]
pub struct AdminUrl {
    /// The server's admin endpoint.
    #[arg(long, global = true, env = "CHUTE_ADMIN_URL", default_value = ADMIN_URL_DEFAULT)]
    pub admin_url: String,
    /// A token of a user with `admin`, for a server with users.
    #[arg(
        long,
        global = true,
        env = "CHUTE_ADMIN_TOKEN",
        hide_env_values = true,
        conflicts_with = "admin_user"
    )]
    pub admin_token: Option<String>,
    /// A user with `admin`, for a server with users; the password comes from the environment
    /// variable CHUTE_ADMIN_PASSWORD (never a flag: others could read it in the process list).
    #[arg(long, global = true, env = "CHUTE_ADMIN_USER")]
    pub admin_user: Option<String>,
}

impl AdminUrl {
    /// The endpoint, with the credentials given.
    pub fn endpoint(&self) -> Result<AdminEndpoint, String> {
        Ok(AdminEndpoint::parse_required(&self.admin_url)?.with_credentials(self.credentials()?))
    }

    pub fn credentials(&self) -> Result<AdminCredentials, String> {
        match (&self.admin_token, &self.admin_user) {
            (Some(token), _) => Ok(AdminCredentials::Token(token.clone())),
            (None, Some(user)) => {
                let password = std::env::var("CHUTE_ADMIN_PASSWORD").map_err(|_| {
                    "--admin-user needs the password in CHUTE_ADMIN_PASSWORD".to_string()
                })?;
                Ok(AdminCredentials::Basic { user: user.clone(), password })
            }
            (None, None) => Ok(AdminCredentials::None),
        }
    }
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    pub url: AdminUrl,
    /// Print the server's JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Version, uptime, state, message totals and rates, connections, queues and storage.
    Overview,
    /// Every connection: peer, client, age, publish and deliver rates, unconfirmed and
    /// in-flight messages.
    Connections,
    /// Close a connection; its client sees `closed-by-operator` and the reason.
    Close {
        /// The connection's id, as `chute admin connections` lists it.
        id: u64,
        /// Why, for the client.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Read the configuration again (file and environment) and apply it, all or nothing; a
    /// refused reload changes nothing and names every problem.
    Reload,
    /// Lame duck: clients are told to reconnect elsewhere, spread over the drain window; then
    /// the server stops.
    Drain {
        /// The window instead of the server's configured one.
        #[arg(long)]
        window_ms: Option<u32>,
    },
    /// The server's users (needs auth.users_file on the server).
    #[command(subcommand)]
    User(UserCommand),
}

/// Lines for people from the server's JSON answer.
pub type Render = fn(&Value) -> Vec<String>;

pub fn run(args: AdminArgs) -> Result<(), String> {
    let endpoint = args.url.endpoint()?;
    let (request, path, render): (Request, String, Render) = match args.command {
        AdminCommand::Overview => (Request::Get, "/api/overview".into(), overview_lines),
        AdminCommand::Connections => (Request::Get, "/api/connections".into(), connection_lines),
        AdminCommand::Close { id, reason } => {
            let reason: Vec<(&str, &str)> = reason.iter().map(|r| ("reason", r.as_str())).collect();
            (Request::Delete, format!("/api/connections/{id}{}", query(&reason)), closed_lines)
        }
        AdminCommand::Reload => (Request::Post, "/api/reload".into(), reload_lines),
        AdminCommand::Drain { window_ms } => {
            let window = window_ms.map(|ms| ms.to_string());
            let window: Vec<(&str, &str)> =
                window.iter().map(|w| ("window_ms", w.as_str())).collect();
            (Request::Post, format!("/api/drain{}", query(&window)), drain_lines)
        }
        AdminCommand::User(command) => admin_users::request(command)?,
    };
    let answer = endpoint.call(request, &path)?;
    if args.json {
        println!("{answer}");
    } else {
        for line in render(&answer) {
            println!("{line}");
        }
    }
    Ok(())
}

/// A number from the JSON, or 0.
fn number(value: &Value, path: &[&str]) -> u64 {
    path.iter().try_fold(value, |value, key| value.get(key)).and_then(Value::as_u64).unwrap_or(0)
}

/// A rate as `12.5/s`, or `-` when there is none.
fn rate(value: Option<&Value>) -> String {
    match value.and_then(Value::as_f64) {
        Some(per_second) => format!("{per_second}/s"),
        None => "-".into(),
    }
}

/// `3m 12s` for milliseconds (to the second).
fn age(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

/// The counters shown first, in this order; the rest follow as the server lists them.
const MAIN_COUNTERS: [&str; 3] = ["published", "delivered", "acked"];

fn overview_lines(overview: &Value) -> Vec<String> {
    let text = |key: &str| overview.get(key).and_then(Value::as_str).unwrap_or("?").to_string();
    let mut state = text("state");
    if let Some(reason) = overview.get("halted").and_then(Value::as_str) {
        state = format!("{state} ({reason})");
    }
    let mut lines = vec![
        format!(
            "chute {} on {}, up {}: {state}",
            text("version"),
            text("node"),
            age(number(overview, &["uptime_ms"]))
        ),
        format!("{:<14}{}", "connections", number(overview, &["connections"])),
        format!("{:<14}{}", "queues", number(overview, &["queues"])),
        format!(
            "{:<14}{} ready, {} delayed, {} in flight ({} bytes)",
            "messages",
            number(overview, &["messages", "ready"]),
            number(overview, &["messages", "delayed"]),
            number(overview, &["messages", "in_flight"]),
            number(overview, &["messages", "bytes"]),
        ),
    ];
    let totals = overview.get("totals").and_then(Value::as_object).cloned().unwrap_or_default();
    let others = totals.keys().filter(|name| !MAIN_COUNTERS.contains(&name.as_str()));
    let names: Vec<&str> = MAIN_COUNTERS.into_iter().chain(others.map(String::as_str)).collect();
    for name in names {
        let total = number(overview, &["totals", name]);
        let per_second = rate(overview.get("rates").and_then(|rates| rates.get(name)));
        lines.push(format!("{:<14}{total} ({per_second})", name.replace('_', " ")));
    }
    lines.push(format!(
        "{:<14}{} segments, {} bytes, {} syncs",
        "storage",
        number(overview, &["storage", "segments"]),
        number(overview, &["storage", "bytes"]),
        number(overview, &["storage", "syncs"]),
    ));
    let interval_ms = number(overview, &["rates", "interval_ms"]);
    lines.push(format!("rates over the last {:.1} s", interval_ms as f64 / 1000.0));
    lines
}

fn connection_lines(connections: &Value) -> Vec<String> {
    let header = format!(
        "{:>6} {:<22} {:<20} {:<9} {:>10} {:>9} {:>9} {:>11} {:>9} {:>4} {:>7}",
        "ID",
        "PEER",
        "CLIENT",
        "STATE",
        "AGE",
        "PUB/S",
        "DELIV/S",
        "UNCONFIRMED",
        "IN-FLIGHT",
        "SUBS",
        "PAUSED"
    );
    let rows = connections.as_array().into_iter().flatten().map(|connection| {
        let text =
            |key: &str| connection.get(key).and_then(Value::as_str).unwrap_or("-").to_string();
        let flag = |key: &str| connection.get(key).and_then(Value::as_bool).unwrap_or(false);
        // A connection held for a resource alarm is paused too; say which.
        let paused = match (flag("blocked"), flag("read_paused")) {
            (true, _) => "blocked",
            (false, true) => "yes",
            (false, false) => "no",
        };
        format!(
            "{:>6} {:<22} {:<20} {:<9} {:>10} {:>9} {:>9} {:>11} {:>9} {:>4} {:>7}",
            number(connection, &["id"]),
            text("peer"),
            text("client_name"),
            text("state"),
            age(number(connection, &["age_ms"])),
            rate(connection.get("rates").and_then(|r| r.get("published"))),
            rate(connection.get("rates").and_then(|r| r.get("delivered"))),
            number(connection, &["unconfirmed"]),
            number(connection, &["in_flight"]),
            number(connection, &["subscriptions"]),
            paused,
        )
    });
    std::iter::once(header).chain(rows).collect()
}

fn closed_lines(closed: &Value) -> Vec<String> {
    vec![format!("closed connection {}", number(closed, &["id"]))]
}

/// `reloaded: nothing changed`, or each change (`key: old -> new`) and each warning.
fn reload_lines(reload: &Value) -> Vec<String> {
    let list = |key: &str| -> Vec<String> {
        let items = reload.get(key).and_then(Value::as_array).into_iter().flatten();
        items.filter_map(Value::as_str).map(String::from).collect()
    };
    let changed = list("changed");
    let mut lines = match changed.is_empty() {
        true => vec!["reloaded: nothing changed".to_string()],
        false => {
            let changes = changed.into_iter().map(|change| format!("  {change}"));
            std::iter::once("reloaded:".to_string()).chain(changes).collect()
        }
    };
    lines.extend(list("warnings").into_iter().map(|warning| format!("warning: {warning}")));
    lines
}

fn drain_lines(drain: &Value) -> Vec<String> {
    if drain.get("already").and_then(Value::as_bool) == Some(true) {
        return vec!["already draining".into()];
    }
    vec![format!(
        "draining: clients are told to reconnect elsewhere over {} ms; then the server stops",
        number(drain, &["window_ms"])
    )]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn overview_for_people() {
        let overview = json!({
            "version": "0.1.0", "node": "box", "uptime_ms": 192_500, "state": "serving",
            "halted": null, "connections": 2, "queues": 3,
            "messages": {"ready": 10, "delayed": 1, "in_flight": 2, "bytes": 300},
            "totals": {"acked": 5, "dead_lettered": 1, "delivered": 6, "published": 12},
            "rates": {"interval_ms": 2000, "acked": 0.5, "delivered": 1.0, "published": 2.25,
                      "dead_lettered": 0.0},
            "storage": {"segments": 1, "bytes": 4096, "syncs": 7},
        });
        assert_eq!(
            overview_lines(&overview),
            [
                "chute 0.1.0 on box, up 3m 12s: serving",
                "connections   2",
                "queues        3",
                "messages      10 ready, 1 delayed, 2 in flight (300 bytes)",
                "published     12 (2.25/s)",
                "delivered     6 (1/s)",
                "acked         5 (0.5/s)",
                "dead lettered 1 (0/s)",
                "storage       1 segments, 4096 bytes, 7 syncs",
                "rates over the last 2.0 s",
            ]
        );
        let halted = json!({"state": "halted", "halted": "fdatasync: EIO"});
        assert!(overview_lines(&halted)[0].ends_with(": halted (fdatasync: EIO)"));
    }

    #[test]
    fn connections_for_people() {
        let connections = json!([{
            "id": 7, "peer": "127.0.0.1:5000", "client_name": "worker", "state": "open",
            "age_ms": 61_000, "rates": {"published": 3.5, "delivered": null},
            "unconfirmed": 1, "in_flight": 2, "subscriptions": 1, "read_paused": true,
        }]);
        let lines = connection_lines(&connections);
        assert!(lines[0].trim_start().starts_with("ID"));
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "7",
                "127.0.0.1:5000",
                "worker",
                "open",
                "1m",
                "1s",
                "3.5/s",
                "-",
                "1",
                "2",
                "1",
                "yes"
            ]
        );
        let blocked = json!([{"id": 8, "read_paused": true, "blocked": true}]);
        let row = connection_lines(&blocked)[1].clone();
        assert!(row.ends_with("blocked"), "a connection held for an alarm says so: {row}");
    }

    #[test]
    fn reload_for_people() {
        let changed = json!({"reloaded": true, "changed": ["limits.connections_max: 1024 -> 5"],
                             "warnings": ["segment_bytes_max is now storage.segment_bytes_max"]});
        assert_eq!(
            reload_lines(&changed),
            [
                "reloaded:",
                "  limits.connections_max: 1024 -> 5",
                "warning: segment_bytes_max is now storage.segment_bytes_max",
            ]
        );
        let same = json!({"reloaded": true, "changed": [], "warnings": []});
        assert_eq!(reload_lines(&same), ["reloaded: nothing changed"]);
    }

    #[test]
    fn drain_and_close_for_people() {
        assert_eq!(
            drain_lines(&json!({"draining": true, "window_ms": 500})),
            ["draining: clients are told to reconnect elsewhere over 500 ms; then the server stops"]
        );
        assert_eq!(drain_lines(&json!({"draining": true, "already": true})), ["already draining"]);
        assert_eq!(closed_lines(&json!({"id": 4, "closed": true})), ["closed connection 4"]);
    }
}
