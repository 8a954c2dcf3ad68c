//! The `chute` CLI against both servers: the newcomer's path from the README.

use chute_tests::{chute, chute_at, stderr, stdout, Server, ServerBinary};

/// declare, publish (argument, stdin, generated), list, stats, consume with and without JSON.
fn publish_and_consume(binary: ServerBinary) {
    let server = Server::start(binary);
    let declared = chute(&server, &["queue", "declare", "jobs"], None);
    assert!(declared.status.success(), "{}", stderr(&declared));
    assert_eq!(stdout(&declared).trim(), "created jobs");

    assert!(chute(&server, &["publish", "jobs", "hello"], None).status.success());
    assert!(chute(&server, &["publish", "jobs"], Some("line one\nline two\n")).status.success());
    let generated = chute(&server, &["publish", "jobs", "--count", "100", "--size", "64"], None);
    assert!(generated.status.success(), "{}", stderr(&generated));
    assert!(stderr(&generated).contains("published 100 messages"));

    let list = chute(&server, &["queue", "list", "--json"], None);
    let line = stdout(&list);
    assert!(line.contains(r#""name":"jobs""#) && line.contains(r#""ready":103"#), "{line}");

    let consumed = chute(&server, &["consume", "jobs", "--count", "3"], None);
    assert!(consumed.status.success(), "{}", stderr(&consumed));
    assert_eq!(stdout(&consumed), "hello\nline one\nline two\n");

    let json = chute(&server, &["consume", "jobs", "--count", "2", "--json"], None);
    let lines: Vec<String> = stdout(&json).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with('{') && lines[0].contains(r#""attempt":1"#), "{}", lines[0]);
    assert!(lines[0].contains(&format!("{:>12} ", 0)), "generated payloads carry their index");

    let stats = chute(&server, &["queue", "stats", "jobs", "--json"], None);
    let stats = stdout(&stats);
    assert!(stats.contains(r#""ready":98"#) && stats.contains(r#""acked":5"#), "{stats}");
    assert!(server.stop().success());
}

#[test]
fn publish_and_consume_tokio() {
    publish_and_consume(ServerBinary::Tokio);
}

#[test]
fn publish_and_consume_smol() {
    publish_and_consume(ServerBinary::Smol);
}

/// A refused line of stdin does not stop the others: one too large for the server (1 MiB
/// payloads) and one too large for a frame (4 MiB, refused by the client before sending) are
/// named with their reasons, every other line is stored exactly once, and the command exits 1.
fn publish_accounts_for_refused_lines(binary: ServerBinary) {
    let server = Server::start(binary);
    assert!(chute(&server, &["queue", "declare", "jobs"], None).status.success());
    let over_payload_max = "p".repeat(1_100_000);
    let over_frame_max = "f".repeat(5_000_000);
    let input = format!("one\ntwo\n{over_payload_max}\nfour\n{over_frame_max}\nsix\n");
    let publish = chute(&server, &["publish", "jobs"], Some(&input));
    assert_eq!(publish.status.code(), Some(1));
    let account: Vec<String> = stderr(&publish).lines().map(String::from).collect();
    assert_eq!(account.len(), 3, "{account:?}");
    assert_eq!(
        account[0],
        "chute: line 3 refused (message-too-large(33)): payload of 1100000 bytes exceeds payload_size_max (1048576)"
    );
    assert!(account[1].starts_with("chute: line 5 refused: message of about 5000"), "{account:?}");
    assert_eq!(
        account[2],
        "chute: published 6 messages to jobs: 4 confirmed, 2 refused (lines 3, 5)"
    );

    let consumed = chute(&server, &["consume", "jobs", "--count", "4"], None);
    assert_eq!(stdout(&consumed), "one\ntwo\nfour\nsix\n");
    let stats = stdout(&chute(&server, &["queue", "stats", "jobs", "--json"], None));
    assert!(stats.contains(r#""ready":0"#) && stats.contains(r#""published":4"#), "{stats}");
    assert!(server.stop().success());
}

#[test]
fn publish_accounts_for_refused_lines_tokio() {
    publish_accounts_for_refused_lines(ServerBinary::Tokio);
}

#[test]
fn publish_accounts_for_refused_lines_smol() {
    publish_accounts_for_refused_lines(ServerBinary::Smol);
}

/// Failures exit non-zero with one line saying why.
fn failures_exit_nonzero_with_reason(binary: ServerBinary) {
    let server = Server::start(binary);
    let missing = chute(&server, &["consume", "nowhere", "--count", "1"], None);
    assert_eq!(missing.status.code(), Some(1));
    let message = stderr(&missing);
    assert!(message.starts_with("chute: ") && message.contains("no-such-queue"), "{message}");
    assert_eq!(message.lines().count(), 1);

    let publish = chute(&server, &["publish", "nowhere", "x"], None);
    assert_eq!(publish.status.code(), Some(1));
    assert!(stderr(&publish).contains("no-such-queue"));
    assert!(server.stop().success());
}

#[test]
fn failures_exit_nonzero_with_reason_tokio() {
    failures_exit_nonzero_with_reason(ServerBinary::Tokio);
}

#[test]
fn failures_exit_nonzero_with_reason_smol() {
    failures_exit_nonzero_with_reason(ServerBinary::Smol);
}

#[test]
fn unreachable_server_is_a_clear_error() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let output = chute_at(&format!("chute://127.0.0.1:{port}"), &["queue", "list"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot connect to 127.0.0.1"), "{}", stderr(&output));
}

/// A wrong command line exits 2 with one line: clap's reason and where to read the command's
/// help; no usage dump. Nothing is sent to a server.
#[test]
fn usage_errors_exit_2_with_one_line() {
    let nowhere = "chute://127.0.0.1:1";
    let cases: [(&[&str], &str); 5] = [
        (
            &["publish", "jobs", "--foo"],
            "unexpected argument '--foo' found (see 'chute publish --help')",
        ),
        (
            &["queue", "declare"],
            "the following required arguments were not provided: <NAME> \
             (see 'chute queue declare --help')",
        ),
        (&["queue"], "'chute queue' needs a subcommand (see 'chute queue --help')"),
        (
            &["queue", "declare", "jobs", "--overflow", "sideways"],
            "invalid value 'sideways' for '--overflow <OVERFLOW>' \
             [possible values: reject-publish, drop-head] (see 'chute queue declare --help')",
        ),
        (&["bogus"], "unrecognized subcommand 'bogus' (see 'chute --help')"),
    ];
    for (args, reason) in cases {
        let output = chute_at(nowhere, args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&output), format!("chute: error: {reason}\n"), "{args:?}");
        assert_eq!(stdout(&output), "", "{args:?}");
    }
}

/// `--help` and `--version` answer on stdout and exit 0.
#[test]
fn help_and_version_go_to_stdout() {
    let nowhere = "chute://127.0.0.1:1";
    let help = chute_at(nowhere, &["queue", "declare", "--help"], None);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("--max-attempts"), "{}", stdout(&help));
    assert_eq!(stderr(&help), "");
    let version = chute_at(nowhere, &["--version"], None);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(stdout(&version), format!("chute {}\n", env!("CARGO_PKG_VERSION")));
}
