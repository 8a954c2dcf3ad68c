//! Hot reload, all or nothing, on both servers: `POST /api/reload` and SIGHUP read the
//! configuration file again; a valid change applies to what comes next (a lowered
//! `limits.connections_max` refuses the next connection), an invalid file or a change of a
//! restart-only key changes nothing and says why.

use std::path::Path;
use std::time::Duration;

use chute_client::Connection;
use chute_protocol::ErrorCode;
use chute_tests::{fill_config, http, metric, wait_for, Server, ServerBinary};
use futures::executor::block_on;

const SERVED: &str = "[server]\nlisten = LISTEN\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n";

fn config(limits: &str) -> String {
    format!("version = 1\n{SERVED}[limits]\n{limits}")
}

fn rewrite(path: &Path, server: &Server, text: &str) {
    std::fs::write(path, fill_config(text, &server.data_dir)).unwrap();
}

fn reload_by_api(server: &Server) -> (u16, serde_json::Value) {
    let answer = http::http(server.admin_addr.unwrap(), "POST", "/api/reload", None);
    let (status, body) = (answer.status, answer.body);
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (status, json)
}

fn connect(server: &Server) -> Result<Connection, chute_client::Error> {
    block_on(Connection::connect(&server.url()))
}

/// The error of a connection that must be refused.
fn refused(server: &Server, what: &str) -> chute_client::Error {
    match connect(server) {
        Ok(_) => panic!("{what} was accepted"),
        Err(error) => error,
    }
}

fn metrics(server: &Server) -> String {
    let answer = http::get(server.admin_addr.unwrap(), "/metrics");
    let (status, page) = (answer.status, answer.body);
    assert_eq!(status, 200);
    page
}

fn reloads(server: &Server, result: &str) -> f64 {
    let series = format!("chute_config_reloads_total{{result=\"{result}\"}}");
    metric(&metrics(server), &series).unwrap_or_else(|| panic!("no {series}"))
}

/// A lowered connection limit refuses the next connection, and keeps the open one.
fn a_valid_reload_applies(binary: ServerBinary) {
    let (server, path) = Server::start_with_config(binary, &config("connections_max = 100\n"));
    let first = connect(&server).expect("a first connection");
    let loaded_at = metric(&metrics(&server), "chute_config_last_reload_success_timestamp_seconds");
    assert!(loaded_at.unwrap() > 0.0, "the start's load counts as a success");

    rewrite(&path, &server, &config("connections_max = 1\n"));
    let (status, answer) = reload_by_api(&server);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reloaded"], true);
    assert_eq!(answer["changed"], serde_json::json!(["limits.connections_max: 100 -> 1"]));

    let refused = refused(&server, "a second connection beyond the new limit");
    assert_eq!(refused.code(), Some(ErrorCode::RESOURCE_LIMIT), "{refused}");
    block_on(first.declare_queue("still-served", Default::default())).expect("the open one");
    assert_eq!(reloads(&server, "ok"), 1.0);
    server.wait_for_log("configuration reloaded");
    assert!(server.stop().success());
}

#[test]
fn a_valid_reload_applies_tokio() {
    a_valid_reload_applies(ServerBinary::Tokio);
}

#[test]
fn a_valid_reload_applies_smol() {
    a_valid_reload_applies(ServerBinary::Smol);
}

/// A file with problems changes nothing: the answer and the log name every problem, and the
/// old limit still holds.
fn an_invalid_reload_changes_nothing(binary: ServerBinary) {
    let (server, path) = Server::start_with_config(binary, &config("connections_max = 2\n"));
    let _first = connect(&server).expect("a first connection");

    rewrite(&path, &server, &config("connections_max = 1\nqueues_max = 0\ncredit_mux = 5\n"));
    let (status, answer) = reload_by_api(&server);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["reloaded"], false);
    let problems: Vec<&str> =
        answer["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].ends_with(":9:1: limits.credit_mux: unknown field `credit_mux`, expected one of `frame_size_max`, `payload_size_max`, `publish_batch_max`, `unconfirmed_max`, `credit_max`, `subscriptions_per_connection_max`, `connections_max`, `queues_max`, `queue_messages_max`, `connection_outbound_bytes_max`, `bindings_max`, `dedup_entries_max`, `partial_frames_bytes_max`, `publish_rate`, `connection_publish_rate`"), "{problems:#?}");
    assert!(
        problems[1]
            .ends_with(":8:1: limits.queues_max = 0 is out of range: must be in 1..=1048576"),
        "{problems:#?}"
    );

    let _second = connect(&server).expect("the old limit (2) still holds, not the refused 1");
    let log = server.log();
    assert!(log.contains("configuration not reloaded, nothing changed"), "{log}");
    assert!(log.contains("limits.queues_max = 0 is out of range"), "{log}");
    assert_eq!(reloads(&server, "failed"), 1.0);
    assert_eq!(reloads(&server, "ok"), 0.0);
    assert!(server.stop().success());
}

#[test]
fn an_invalid_reload_changes_nothing_tokio() {
    an_invalid_reload_changes_nothing(ServerBinary::Tokio);
}

#[test]
fn an_invalid_reload_changes_nothing_smol() {
    an_invalid_reload_changes_nothing(ServerBinary::Smol);
}

/// A reload that changes where the server keeps its data is refused whole: the key is named,
/// and the limit changed beside it is not applied either.
fn a_restart_only_key_is_refused(binary: ServerBinary) {
    let (server, path) = Server::start_with_config(binary, &config("connections_max = 2\n"));
    let _first = connect(&server).expect("a first connection");
    let moved = config("connections_max = 1\n").replace("DATA_DIR", "\"/var/lib/elsewhere\"");
    rewrite(&path, &server, &moved);
    let (status, answer) = reload_by_api(&server);
    assert_eq!(status, 409, "{answer}");
    let problems = answer["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{answer}");
    let problem = problems[0].as_str().unwrap();
    assert!(problem.contains(":5:1: server.data_dir needs a restart (running "), "{problem}");
    assert!(problem.ends_with(", new \"/var/lib/elsewhere\")"), "{problem}");
    let _second = connect(&server).expect("connections_max = 1 was not applied");
    assert!(server.stop().success());
}

#[test]
fn a_restart_only_key_is_refused_tokio() {
    a_restart_only_key_is_refused(ServerBinary::Tokio);
}

#[test]
fn a_restart_only_key_is_refused_smol() {
    a_restart_only_key_is_refused(ServerBinary::Smol);
}

/// SIGHUP reloads as the API does (and no longer kills the server): a valid change applies,
/// an invalid one is logged with its problems and changes nothing.
fn sighup_reloads(binary: ServerBinary) {
    let (server, path) = Server::start_with_config(binary, &config("connections_max = 100\n"));
    let _first = connect(&server).expect("a first connection");

    rewrite(&path, &server, &config("connections_max = 0\n"));
    server.signal("HUP");
    wait_for("the failed reload", Duration::from_secs(10), || reloads(&server, "failed") == 1.0);
    server.wait_for_log("limits.connections_max = 0 is out of range");
    let _second = connect(&server).expect("nothing changed");

    rewrite(&path, &server, &config("connections_max = 2\n"));
    server.signal("HUP");
    wait_for("the reload", Duration::from_secs(10), || reloads(&server, "ok") == 1.0);
    let refused = refused(&server, "a third connection beyond the new limit");
    assert_eq!(refused.code(), Some(ErrorCode::RESOURCE_LIMIT), "{refused}");
    server.wait_for_log("limits.connections_max: 100 -> 2");
    assert!(server.stop().success());
}

#[test]
fn sighup_reloads_tokio() {
    sighup_reloads(ServerBinary::Tokio);
}

#[test]
fn sighup_reloads_smol() {
    sighup_reloads(ServerBinary::Smol);
}

/// Flags stay above the file after a reload, as at the start: a --set value is not replaced
/// by the file's.
#[test]
fn flags_keep_winning_after_a_reload() {
    for binary in ServerBinary::ALL {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("chute.toml");
        std::fs::write(&path, "[limits]\nconnections_max = 100\nqueues_max = 100\n").unwrap();
        let server = Server::start_with_args(
            binary,
            &["--config", path.to_str().unwrap(), "--set", "limits.connections_max=1"],
        );
        let _first = connect(&server).expect("a first connection");
        std::fs::write(&path, "[limits]\nconnections_max = 100\nqueues_max = 50\n").unwrap();
        let (status, answer) = reload_by_api(&server);
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["changed"], serde_json::json!(["limits.queues_max: 100 -> 50"]));
        let refused = refused(&server, "the flag's limit of 1 still holds");
        assert_eq!(refused.code(), Some(ErrorCode::RESOURCE_LIMIT), "{refused}");
        assert!(server.stop().success());
    }
}

/// The log's filter and format reload: after a reload to `debug` and `json`, a new connection's
/// debug line ("accepted") is written, as JSON.
fn the_log_level_and_format_reload(binary: ServerBinary) {
    let served = format!("{SERVED}[log]\n");
    let (server, path) = Server::start_with_config(binary, &format!("{served}level = \"info\"\n"));
    let _first = connect(&server).expect("a connection before the reload");
    assert!(!server.log().contains("accepted"), "info hides debug lines: {}", server.log());

    rewrite(&path, &server, &format!("{served}level = \"debug\"\nformat = \"json\"\n"));
    let (status, answer) = reload_by_api(&server);
    assert_eq!(status, 200, "{answer}");
    let _second = connect(&server).expect("a connection after the reload");
    wait_for("the debug line of the new connection", Duration::from_secs(10), || {
        server.log().lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|event| {
                event["level"] == "DEBUG" && event["fields"]["message"] == "accepted"
            })
        })
    });
    assert!(server.stop().success());
}

#[test]
fn the_log_level_and_format_reload_tokio() {
    the_log_level_and_format_reload(ServerBinary::Tokio);
}

#[test]
fn the_log_level_and_format_reload_smol() {
    the_log_level_and_format_reload(ServerBinary::Smol);
}
