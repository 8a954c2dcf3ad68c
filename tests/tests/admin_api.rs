//! The admin HTTP API (docs/ADMIN.md) of both binaries, over real HTTP: each endpoint's
//! answers and refusals, durability of what it changes, closing connections, and draining.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chute_client::{
    ConnectOptions, Connection, ConnectionEvent, Error, ErrorCode, LinkError, PublishError,
    QueueOptions,
};
use chute_tests::http::{get, http, HttpAnswer};
use chute_tests::{within, Server, ServerBinary};
use futures::executor::block_on;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin(server: &Server) -> SocketAddr {
    server.admin_addr.expect("the admin endpoint is on")
}

fn put(addr: SocketAddr, path: &str, body: &str) -> HttpAnswer {
    http(addr, "PUT", path, Some(body.as_bytes()))
}

/// Asserts the answer's status and, for an error, its code.
#[track_caller]
fn expect_error(answer: &HttpAnswer, status: u16, code: &str) {
    assert_eq!((answer.status, answer.error_code().as_str()), (status, code), "{answer:?}");
    assert!(answer.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

/// Publishes `count` messages to `queue` and waits for each confirm; returns the refusals.
fn publish(connection: &Connection, queue: &str, count: usize) -> Vec<PublishError> {
    block_on(async {
        let mut refused = Vec::new();
        for i in 0..count {
            let confirmation = connection.publish(queue, format!("m{i}")).await.unwrap();
            if let Err(error) = confirmation.await {
                refused.push(error);
            }
        }
        refused
    })
}

chute_tests::for_both_servers!(
    queues_are_declared_shown_altered_purged_and_deleted,
    refusals_carry_status_and_code,
    a_declare_is_durable_when_answered,
    an_altered_limit_holds_and_survives_a_restart,
    closing_a_connection_tells_its_client,
    drain_stops_the_server_after_the_window,
    the_overview_moves_with_traffic,
    reload_applies_a_valid_file_and_refuses_a_bad_one,
);

/// The life of a queue through the API.
fn queues_are_declared_shown_altered_purged_and_deleted(binary: ServerBinary) {
    let server = Server::start(binary);
    let admin = admin(&server);
    let created = put(admin, "/api/queues/jobs", r#"{"messages_max": 10, "lease_ms": 5000}"#);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["created"], true);
    assert_eq!(created.json()["options"]["messages_max"], 10);
    assert_eq!(created.json()["options"]["overflow"], "reject-publish", "defaults fill the rest");
    let again = put(admin, "/api/queues/jobs", r#"{"messages_max": 10, "lease_ms": 5000}"#);
    assert_eq!((again.status, &again.json()["created"]), (200, &json!(false)));
    // A name with `/` and `:` is one percent-encoded segment.
    assert_eq!(put(admin, "/api/queues/eu%2Fjobs:1", "").status, 201);
    assert!(get(admin, "/api/queues").body.contains("\"name\":\"eu/jobs:1\""));

    let connection = server.connect_as("publisher");
    assert!(publish(&connection, "jobs", 3).is_empty());
    let shown = get(admin, "/api/queues/jobs");
    assert_eq!(shown.status, 200, "{shown:?}");
    let stats = shown.json();
    assert_eq!((stats["name"].as_str(), stats["ready"].as_u64()), (Some("jobs"), Some(3)));
    assert_eq!(stats["counters"]["published"], 3);
    assert_eq!(stats["options"]["lease_ms"], 5000);
    assert!(stats["consumers"].is_array() && stats["bindings"].is_array());

    let altered = put(admin, "/api/queues/jobs?alter=true", r#"{"ttl_ms": 60000}"#);
    assert_eq!(altered.status, 200, "{altered:?}");
    assert_eq!(altered.json()["changed"], true);
    assert_eq!(altered.json()["options"]["ttl_ms"], 60_000);
    assert_eq!(altered.json()["options"]["lease_ms"], 5000, "what the body leaves out stays");
    let same = put(admin, "/api/queues/jobs?alter=true", r#"{"ttl_ms": 60000}"#);
    assert_eq!(same.json()["changed"], false);

    let purged = http(admin, "POST", "/api/queues/jobs/purge", None);
    assert_eq!((purged.status, purged.json()["purged"].as_u64()), (200, Some(3)), "{purged:?}");
    assert!(publish(&connection, "jobs", 1).is_empty());
    let deleted = http(admin, "DELETE", "/api/queues/jobs", None);
    assert_eq!((deleted.status, deleted.json()["messages"].as_u64()), (200, Some(1)));
    expect_error(&get(admin, "/api/queues/jobs"), 404, "no-such-queue");
    expect_error(&http(admin, "DELETE", "/api/queues/jobs", None), 404, "no-such-queue");
    expect_error(&http(admin, "POST", "/api/queues/jobs/purge", None), 404, "no-such-queue");
}

/// Each kind of bad request gets its status and a JSON error with a code.
fn refusals_carry_status_and_code(binary: ServerBinary) {
    let server = Server::start(binary);
    let admin = admin(&server);
    assert_eq!(put(admin, "/api/queues/jobs", "").status, 201);
    let connection = server.connect_as("publisher");
    assert!(publish(&connection, "jobs", 2).is_empty());

    // 404: unknown paths, queues and connections.
    expect_error(&get(admin, "/api/nothing"), 404, "not-found");
    expect_error(&get(admin, "/api/queues/missing"), 404, "no-such-queue");
    let alter_missing = put(admin, "/api/queues/missing?alter=true", r#"{"ttl_ms": 5}"#);
    expect_error(&alter_missing, 404, "no-such-queue");
    expect_error(
        &http(admin, "DELETE", "/api/connections/999999", None),
        404,
        "no-such-connection",
    );
    // 405 with Allow.
    let wrong = http(admin, "POST", "/api/queues/jobs", None);
    expect_error(&wrong, 405, "method-not-allowed");
    assert_eq!(wrong.header("allow"), Some("GET, HEAD, PUT, DELETE"));
    assert_eq!(http(admin, "GET", "/api/drain", None).header("allow"), Some("POST"));
    assert_eq!(http(admin, "DELETE", "/api/overview", None).status, 405);
    // 400: bodies and parameters.
    expect_error(&put(admin, "/api/queues/new", "{not json"), 400, "invalid-argument");
    expect_error(&put(admin, "/api/queues/new", "[1, 2]"), 400, "invalid-argument");
    let typo = put(admin, "/api/queues/new", r#"{"mesages_max": 5}"#);
    expect_error(&typo, 400, "invalid-argument");
    assert!(typo.body.contains("mesages_max"), "{typo:?}");
    let wrong_type = put(admin, "/api/queues/new", r#"{"overflow": "sideways"}"#);
    expect_error(&wrong_type, 400, "invalid-argument");
    assert!(wrong_type.body.contains("overflow"), "{wrong_type:?}");
    expect_error(
        &put(admin, "/api/queues/new", r#"{"lease_ms": 0}"#),
        400,
        "invalid-queue-options",
    );
    expect_error(&put(admin, "/api/queues/bad%20name", ""), 400, "invalid-argument");
    expect_error(&put(admin, "/api/queues/new?alter=maybe", ""), 400, "invalid-argument");
    expect_error(
        &http(admin, "DELETE", "/api/queues/jobs?if_full=true", None),
        400,
        "invalid-argument",
    );
    expect_error(&http(admin, "DELETE", "/api/connections/abc", None), 400, "invalid-argument");
    expect_error(&http(admin, "POST", "/api/drain?window_ms=-1", None), 400, "invalid-argument");
    let long_reason = format!("/api/connections/1?reason={}", "x".repeat(2000));
    expect_error(&http(admin, "DELETE", &long_reason, None), 400, "invalid-argument");
    assert_eq!(get(admin, "/api/queues/new").status, 404, "nothing refused was created");
    // 409: a declare that disagrees, an alter of durability, a queue in use.
    let mismatch = put(admin, "/api/queues/jobs", r#"{"ttl_ms": 5}"#);
    expect_error(&mismatch, 409, "queue-options-mismatch");
    assert!(mismatch.body.contains("alter=true"), "{mismatch:?}");
    let durability = put(admin, "/api/queues/jobs?alter=true", r#"{"durability": "none"}"#);
    expect_error(&durability, 409, "invalid-queue-options");
    assert!(durability.body.contains("durability cannot change"), "{durability:?}");
    let in_use = http(admin, "DELETE", "/api/queues/jobs?if_empty=true", None);
    expect_error(&in_use, 409, "queue-in-use");
    assert!(in_use.body.contains("holds 2 messages"), "{in_use:?}");
    assert_eq!(get(admin, "/api/queues/jobs").json()["ready"], 2, "still there");
    // 413: a body over the limit.
    let huge = format!(r#"{{"dead_letter": "{}"}}"#, "x".repeat(70 * 1024));
    expect_error(&put(admin, "/api/queues/big", &huge), 413, "body-too-large");
    server.stop();
}

/// A declare answered 200 is on disk: killed at once after the answer, the server recovers
/// the queue.
fn a_declare_is_durable_when_answered(binary: ServerBinary) {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(binary, data.path(), &[]);
    let created = put(admin(&server), "/api/queues/kept", r#"{"messages_max": 7}"#);
    assert_eq!(created.status, 201, "{created:?}");
    server.kill();
    let server = Server::start_in(binary, data.path(), &[]);
    let shown = get(admin(&server), "/api/queues/kept");
    assert_eq!(shown.status, 200, "the declared queue was lost: {shown:?}\n{}", server.log());
    assert_eq!(shown.json()["options"]["messages_max"], 7);
}

/// A limit set by an alter holds at once, and after a kill and a restart.
fn an_altered_limit_holds_and_survives_a_restart(binary: ServerBinary) {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(binary, data.path(), &[]);
    assert_eq!(put(admin(&server), "/api/queues/capped", "").status, 201);
    let altered = put(admin(&server), "/api/queues/capped?alter=true", r#"{"messages_max": 2}"#);
    assert_eq!(altered.status, 200, "{altered:?}");
    let connection = server.connect_as("publisher");
    let refused = publish(&connection, "capped", 3);
    assert_eq!(refused.len(), 1, "the third publish is refused: {refused:?}");
    let full =
        matches!(&refused[0], PublishError::Refused { code, .. } if *code == ErrorCode::QUEUE_FULL);
    assert!(full, "{:?}", refused[0]);
    drop(connection);
    server.kill();

    let server = Server::start_in(binary, data.path(), &[]);
    let shown = get(admin(&server), "/api/queues/capped").json();
    assert_eq!(shown["options"]["messages_max"], 2, "{shown}");
    assert_eq!(shown["ready"], 2);
    let connection = server.connect_as("publisher");
    let refused = publish(&connection, "capped", 1);
    assert_eq!(refused.len(), 1, "the limit still holds after the restart");
}

/// An operator closes a connection: the list shows it with its peer and client name, and its
/// client learns `closed-by-operator` with the reason. A reconnecting client comes back as a
/// new connection, as RabbitMQ's and NATS's clients do after a forced close; one that does
/// not reconnect ends with the operator's close as its reason.
fn closing_a_connection_tells_its_client(binary: ServerBinary) {
    let server = Server::start(binary);
    let admin = admin(&server);
    let reconnecting = server.connect_as("doomed-worker");
    let entry = listed_connection(admin, "doomed-worker");
    assert_eq!(entry["state"], "open");
    assert!(entry["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{entry}");
    assert_eq!(entry["user"], serde_json::Value::Null);
    for field in ["age_ms", "published_total", "unconfirmed", "in_flight", "subscriptions"] {
        assert!(entry[field].is_u64(), "{field} in {entry}");
    }
    let id = entry["id"].as_u64().unwrap();
    let events = reconnecting.events();
    close_by_operator(admin, id);
    let disconnected = within("the client learns of the close", TIMEOUT, move || {
        let mut seen = Vec::new();
        for event in futures::executor::block_on_stream(events) {
            match event {
                ConnectionEvent::Reconnected { .. } => return seen,
                other => seen.push(other),
            }
        }
        panic!("the events ended without a reconnect: {seen:?}")
    });
    let closed_by_operator = disconnected.iter().any(|event| {
        matches!(event, ConnectionEvent::Disconnected {
            error: LinkError::Closed { code, message }, ..
        } if *code == ErrorCode::CLOSED_BY_OPERATOR && message.contains("moving to node 2"))
    });
    assert!(closed_by_operator, "{disconnected:?}");
    let again = listed_connection(admin, "doomed-worker");
    assert_ne!(again["id"], id, "the reconnected client is a new connection: {again}");
    let gone = http(admin, "DELETE", &format!("/api/connections/{id}"), None);
    expect_error(&gone, 404, "no-such-connection");

    let single = server.connect_with("doomed-once", ConnectOptions::without_reconnect());
    close_by_operator(admin, listed_connection(admin, "doomed-once")["id"].as_u64().unwrap());
    let error = within("the client learns of the close", TIMEOUT, move || loop {
        if let Some(error) = single.closed_reason() {
            return error;
        }
        std::thread::sleep(Duration::from_millis(10));
    });
    match error {
        Error::Closed { code, message } => {
            assert_eq!(code, ErrorCode::CLOSED_BY_OPERATOR);
            assert!(message.contains("moving to node 2"), "{message}");
        }
        other => panic!("expected a close by the operator, got {other:?}"),
    }
}

/// The one open connection named `client_name` in `GET /api/connections`.
fn listed_connection(admin: SocketAddr, client_name: &str) -> serde_json::Value {
    let client_name = client_name.to_string();
    within("the connection is listed", TIMEOUT, move || loop {
        let listed = get(admin, "/api/connections");
        assert_eq!(listed.status, 200, "{listed:?}");
        let connections = listed.json();
        let named: Vec<_> = connections
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["client_name"] == client_name && c["state"] == "open")
            .cloned()
            .collect();
        if let [entry] = named.as_slice() {
            return entry.clone();
        }
        std::thread::sleep(Duration::from_millis(10));
    })
}

fn close_by_operator(admin: SocketAddr, id: u64) {
    let path = format!("/api/connections/{id}?reason=moving%20to%20node%202");
    let closed = http(admin, "DELETE", &path, None);
    assert_eq!(closed.status, 200, "{closed:?}");
}

/// `POST /api/drain` with a short window: a second drain changes nothing, new connections
/// are refused, and the server stops by itself once the window is over.
fn drain_stops_the_server_after_the_window(binary: ServerBinary) {
    let mut server = Server::start(binary);
    let admin = admin(&server);
    let _client = server.connect_as("drained");
    let started = Instant::now();
    let drain = http(admin, "POST", "/api/drain?window_ms=1000", None);
    assert_eq!(drain.status, 202, "{drain:?}");
    assert_eq!(drain.json(), json!({"draining": true, "window_ms": 1000}));
    let again = http(admin, "POST", "/api/drain", None);
    assert_eq!((again.status, again.json()["already"].as_bool()), (200, Some(true)));
    assert_eq!(get(admin, "/api/overview").json()["state"], "draining");
    let url = server.url();
    let late = within("a late connection", TIMEOUT, move || block_on(Connection::connect(&url)));
    assert!(late.is_err(), "a draining server takes no new connections");
    let status = server.wait(TIMEOUT);
    assert!(status.success(), "{status:?}\n{}", server.log());
    assert!(started.elapsed() >= Duration::from_millis(1000), "stopped before the window ended");
}

/// The overview's totals and rates follow what clients do.
fn the_overview_moves_with_traffic(binary: ServerBinary) {
    let server = Server::start(binary);
    let admin = admin(&server);
    let before = get(admin, "/api/overview");
    assert_eq!(before.status, 200, "{before:?}");
    let before = before.json();
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(before["state"], "serving");
    assert!(before["node"].as_str().is_some_and(|node| !node.is_empty()));
    assert_eq!(before["totals"]["published"], 0);
    assert_eq!(before["rates"]["published"], 0.0);

    let connection = server.connect_as("publisher");
    block_on(connection.declare_queue("counted", QueueOptions::default())).unwrap();
    assert!(publish(&connection, "counted", 5).is_empty());
    let after = get(admin, "/api/overview").json();
    assert_eq!(after["totals"]["published"], 5, "{after}");
    assert!(after["rates"]["published"].as_f64().unwrap() > 0.0, "{after}");
    assert!(after["rates"]["interval_ms"].as_u64().unwrap() > 0, "{after}");
    assert_eq!((after["connections"].as_u64(), after["queues"].as_u64()), (Some(1), Some(1)));
    assert_eq!(after["messages"]["ready"], 5);
    let syncs = |overview: &serde_json::Value| overview["storage"]["syncs"].as_u64().unwrap();
    assert!(syncs(&after) > syncs(&before), "{after}");
    assert!(after["uptime_ms"].as_u64() >= before["uptime_ms"].as_u64());
    let connections = get(admin, "/api/connections").json();
    assert_eq!(connections[0]["published_total"], 5);
    assert!(connections[0]["rates"]["published"].as_f64().unwrap() > 0.0, "{connections}");
}

/// `POST /api/reload` reads the configuration file again: a valid change is applied and named,
/// a bad file is refused whole (`409`, every problem named) and changes nothing.
fn reload_applies_a_valid_file_and_refuses_a_bad_one(binary: ServerBinary) {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("chute.toml");
    std::fs::write(&file, "version = 1\n").unwrap();
    let server = Server::start_with_args(binary, &["--config", file.to_str().unwrap()]);
    let admin = admin(&server);

    std::fs::write(&file, "[limits]\nconnections_max = 5\n").unwrap();
    let reloaded = http(admin, "POST", "/api/reload", None);
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    let changed = reloaded.json()["changed"].clone();
    assert_eq!(changed.as_array().map(Vec::len), Some(1), "{changed}");
    assert!(
        changed[0].as_str().unwrap().ends_with("limits.connections_max: 10000 -> 5"),
        "{changed}"
    );

    std::fs::write(&file, "[limits]\nconnections_max = \"many\"\n").unwrap();
    let refused = http(admin, "POST", "/api/reload", None);
    expect_error(&refused, 409, "config-refused");
    let problems = refused.json()["problems"].clone();
    assert!(problems[0].as_str().unwrap().contains("limits.connections_max"), "{problems}");
    std::fs::write(&file, "[limits]\nconnections_max = 5\n").unwrap();
    let unchanged = http(admin, "POST", "/api/reload", None);
    assert_eq!(unchanged.json()["changed"], json!([]), "the refused reload changed nothing");

    let wrong = http(admin, "GET", "/api/reload", None);
    expect_error(&wrong, 405, "method-not-allowed");
    assert_eq!(wrong.header("allow"), Some("POST"));
}
