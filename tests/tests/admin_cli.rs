//! `chute admin ...` and `chute queue alter` against both servers' admin endpoints: what
//! they print for people and with `--json`, and one line with exit 1 when the server refuses.

use std::process::Output;
use std::time::Duration;

use chute_client::{ConnectOptions, Error, ErrorCode};
use chute_tests::http::get;
use chute_tests::{chute, chute_at, stderr, stdout, within, Server, ServerBinary};

const TIMEOUT: Duration = Duration::from_secs(30);

/// `chute` with `--admin-url` set to the server's admin endpoint.
fn admin(server: &Server, args: &[&str]) -> Output {
    let url = format!("http://{}", server.admin_addr.expect("the admin endpoint is on"));
    let mut all = args.to_vec();
    all.extend(["--admin-url", &url]);
    chute(server, &all, None)
}

/// Exit 0 and what it printed.
#[track_caller]
fn succeeded(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
    stdout(output)
}

/// Exit 1 with one line on stderr, which is returned.
#[track_caller]
fn failed(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "stdout: {}", stdout(output));
    let message = stderr(output);
    assert!(message.starts_with("chute: ") && message.lines().count() == 1, "{message:?}");
    message
}

chute_tests::for_both_servers!(
    overview_and_connections,
    close_tells_the_client,
    queue_alter_changes_only_the_flags_given,
    drain_stops_the_server,
    reload_says_what_changed_or_why_not,
);

fn overview_and_connections(binary: ServerBinary) {
    let server = Server::start(binary);
    succeeded(&chute(&server, &["queue", "declare", "jobs"], None));
    succeeded(&chute(&server, &["publish", "jobs"], Some("a\nb\n")));
    let overview = succeeded(&admin(&server, &["admin", "overview"]));
    assert!(overview.starts_with("chute ") && overview.contains(": serving"), "{overview}");
    assert!(overview.contains("\npublished     2 ("), "{overview}");
    assert!(overview.contains("\nqueues        1\n"), "{overview}");
    let json = succeeded(&admin(&server, &["admin", "overview", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(json["totals"]["published"], 2);

    let _client = server.connect_as("listed-client");
    let table = succeeded(&admin(&server, &["admin", "connections"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("PEER") && lines[0].contains("PUB/S"), "{table}");
    assert!(lines.iter().any(|line| line.contains("listed-client") && line.contains("127.0.0.1:")));
    let json = succeeded(&admin(&server, &["admin", "connections", "--json"]));
    assert!(json.starts_with('[') && json.contains("\"listed-client\""), "{json}");
}

fn close_tells_the_client(binary: ServerBinary) {
    let server = Server::start(binary);
    // A reconnecting client would come back; this one ends, with the operator's reason.
    let client = server.connect_with("closed-client", ConnectOptions::without_reconnect());
    let connections = get(server.admin_addr.unwrap(), "/api/connections").json();
    let id = connections[0]["id"].as_u64().unwrap().to_string();
    let closed = succeeded(&admin(&server, &["admin", "close", &id, "--reason", "rebalancing"]));
    assert_eq!(closed, format!("closed connection {id}\n"));
    let error = within("the client learns of the close", TIMEOUT, move || loop {
        if let Some(error) = client.closed_reason() {
            return error;
        }
        std::thread::sleep(Duration::from_millis(10));
    });
    assert!(
        matches!(&error, Error::Closed { code, message }
            if *code == ErrorCode::CLOSED_BY_OPERATOR && message.contains("rebalancing")),
        "{error:?}"
    );
    let again = failed(&admin(&server, &["admin", "close", &id]));
    assert!(again.contains("not open") && again.contains("(no-such-connection)"), "{again}");
}

fn queue_alter_changes_only_the_flags_given(binary: ServerBinary) {
    let server = Server::start(binary);
    succeeded(&chute(&server, &["queue", "declare", "jobs", "--lease-ms", "5000"], None));
    let altered = succeeded(&admin(&server, &["queue", "alter", "jobs", "--max-messages", "1"]));
    assert_eq!(altered, "altered jobs\n  messages max: none -> 1\n");
    let stats = succeeded(&chute(&server, &["queue", "stats", "jobs", "--json"], None));
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["options"]["messages_max"], 1);
    assert_eq!(stats["options"]["lease_ms"], 5000, "an option no flag named stays");
    succeeded(&chute(&server, &["publish", "jobs", "one"], None));
    let full = chute(&server, &["publish", "jobs", "two"], None);
    assert!(stderr(&full).contains("queue-full"), "the new limit holds: {}", stderr(&full));
    let unchanged = succeeded(&admin(&server, &["queue", "alter", "jobs", "--max-messages", "1"]));
    assert_eq!(unchanged, "jobs unchanged\n");

    let durability = failed(&admin(&server, &["queue", "alter", "jobs", "--durability", "none"]));
    assert!(durability.contains("durability cannot change"), "{durability}");
    assert!(durability.contains("(invalid-queue-options)"), "{durability}");
    let missing = failed(&admin(&server, &["queue", "alter", "nowhere", "--lease-ms", "5"]));
    assert!(missing.contains("(no-such-queue)"), "{missing}");
    let json =
        succeeded(&admin(&server, &["queue", "alter", "jobs", "--ttl-ms", "9000", "--json"]));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (json["changed"].as_bool(), json["options"]["ttl_ms"].as_u64()),
        (Some(true), Some(9000))
    );
}

fn drain_stops_the_server(binary: ServerBinary) {
    let mut server = Server::start(binary);
    let drained = succeeded(&admin(&server, &["admin", "drain", "--window-ms", "300"]));
    assert_eq!(
        drained,
        "draining: clients are told to reconnect elsewhere over 300 ms; then the server stops\n"
    );
    assert!(server.wait(TIMEOUT).success(), "{}", server.log());
}

fn reload_says_what_changed_or_why_not(binary: ServerBinary) {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("chute.toml");
    std::fs::write(&file, "version = 1\n").unwrap();
    let server = Server::start_with_args(binary, &["--config", file.to_str().unwrap()]);
    assert_eq!(succeeded(&admin(&server, &["admin", "reload"])), "reloaded: nothing changed\n");
    std::fs::write(&file, "[limits]\nconnections_max = 7\n").unwrap();
    let reloaded = succeeded(&admin(&server, &["admin", "reload"]));
    assert_eq!(reloaded, "reloaded:\n  limits.connections_max: 10000 -> 7\n");
    std::fs::write(&file, "[limits]\nconnections_max = -1\n").unwrap();
    let refused = failed(&admin(&server, &["admin", "reload"]));
    assert!(refused.contains("nothing changed") && refused.contains("limits.connections_max"));
    assert!(refused.ends_with("(config-refused)\n"), "{refused}");
}

/// No admin endpoint there: one line naming the address, exit 1.
#[test]
fn an_unreachable_admin_endpoint_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [&["admin", "overview"][..], &["queue", "alter", "jobs", "--lease-ms", "5"]] {
        let mut all = args.to_vec();
        all.extend(["--admin-url", &url]);
        let message = failed(&chute_at("chute://127.0.0.1:1", &all, None));
        assert!(
            message.contains(&format!("cannot reach the admin endpoint at {url}/api/")),
            "{message}"
        );
    }
    let off = failed(&chute_at(
        "chute://127.0.0.1:1",
        &["admin", "overview", "--admin-url", "off"],
        None,
    ));
    assert!(off.contains("needs the admin endpoint"), "{off}");
}

/// A wrong command line is a usage error (exit 2), checked before anything is sent.
#[test]
fn admin_usage_errors_exit_2() {
    let cases: [(&[&str], &str); 3] = [
        (&["admin"], "'chute admin' needs a subcommand (see 'chute admin --help')"),
        (
            &["admin", "close", "seven"],
            "invalid value 'seven' for '<ID>': invalid digit found in string \
             (see 'chute admin close --help')",
        ),
        (
            &["queue", "alter", "jobs", "--max-messages", "-1"],
            "unexpected argument '-1' found (see 'chute queue alter --help')",
        ),
    ];
    for (args, reason) in cases {
        let output = chute_at("chute://127.0.0.1:1", args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert_eq!(stderr(&output), format!("chute: error: {reason}\n"), "{args:?}");
    }
}
