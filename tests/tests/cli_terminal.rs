//! What the CLI tells a person at a terminal, and keeps out of pipes: the progress bar of a
//! long `chute publish`, the hint of a `chute consume` that waits, and what a topic publish
//! that reached no queue did. A terminal is `script`'s pseudo-terminal (util-linux).

use std::process::{Command, Stdio};
use std::time::Duration;

use chute_tests::{binary_path, chute, stderr, Server, ServerBinary};

/// Runs `chute --url URL ARGS` on a pseudo-terminal for at most `seconds` and returns what it
/// wrote there (stdout and stderr together).
fn on_terminal(server: &Server, args: &str, seconds: u32) -> String {
    let command = format!(
        "timeout {seconds} {} --url {} {args}",
        binary_path("chute").display(),
        server.url()
    );
    let output = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux) for a pseudo-terminal");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `--count` on a terminal draws a progress bar; `--quiet` and a pipe do not.
#[test]
fn publish_draws_progress_on_a_terminal_only() {
    let server = Server::start(ServerBinary::Tokio);
    assert!(chute(&server, &["queue", "declare", "jobs"], None).status.success());
    let drawn = on_terminal(&server, "publish jobs --count 20000 --size 64", 60);
    assert!(drawn.contains("publishing ["), "{drawn:?}");
    assert!(drawn.contains("/20000"), "{drawn:?}");
    assert!(drawn.contains("published 20000 messages to jobs (all confirmed)"), "{drawn:?}");

    let quiet = on_terminal(&server, "publish jobs --count 20000 --size 64 --quiet", 60);
    assert!(!quiet.contains("publishing ["), "{quiet:?}");
    assert!(quiet.contains("published 20000 messages"), "{quiet:?}");

    let piped = chute(&server, &["publish", "jobs", "--count", "20000", "--size", "64"], None);
    assert!(piped.status.success());
    assert_eq!(stderr(&piped), "published 20000 messages to jobs (all confirmed)\n");
}

/// A consumer of an empty queue says it is waiting, on a terminal; in a pipe it stays quiet.
#[test]
fn consume_says_it_is_waiting_on_a_terminal_only() {
    let server = Server::start(ServerBinary::Tokio);
    assert!(chute(&server, &["queue", "declare", "empty"], None).status.success());
    let told = on_terminal(&server, "consume empty --count 1", 3);
    assert!(told.contains("waiting for messages (Ctrl-C to stop)"), "{told:?}");

    let mut piped = Command::new(binary_path("chute"))
        .args(["--url", &server.url(), "consume", "empty", "--count", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    piped.kill().unwrap();
    let output = piped.wait_with_output().unwrap();
    assert_eq!(stderr(&output), "", "no hint in a pipe");
}

/// A topic publish that matches no binding reached no queue: said so (not "confirmed"),
/// singular, and no failure without `--mandatory`.
#[test]
fn a_topic_publish_to_no_queue_says_so() {
    let server = Server::start(ServerBinary::Smol);
    let nowhere = chute(&server, &["publish", "--topic", "orders.eu.created", "order 18"], None);
    assert!(nowhere.status.success(), "{}", stderr(&nowhere));
    assert_eq!(
        stderr(&nowhere),
        "published 1 message to topic orders.eu.created: routed to no queue (no binding matches; \
         with --mandatory that is an error)\n"
    );
    assert!(chute(&server, &["queue", "declare", "orders"], None).status.success());
    assert!(chute(&server, &["queue", "bind", "orders", "orders.eu.*"], None).status.success());
    let routed = chute(&server, &["publish", "--topic", "orders.eu.created", "order 19"], None);
    assert_eq!(stderr(&routed), "published 1 message to topic orders.eu.created (confirmed)\n");
    let mandatory = chute(
        &server,
        &["publish", "--topic", "orders.us.created", "order 20", "--mandatory"],
        None,
    );
    assert_eq!(mandatory.status.code(), Some(1));
    assert!(stderr(&mandatory).contains("refused (unroutable(32))"), "{}", stderr(&mandatory));
}

/// `dlq redrive` takes the dead letter's id as an argument (and still as `--id`).
#[test]
fn dlq_redrive_takes_ids_as_arguments() {
    let server = Server::start(ServerBinary::Tokio);
    let declare =
        ["queue", "declare", "orders", "--max-attempts", "1", "--dead-letter", "orders.dead"];
    assert!(chute(&server, &declare, None).status.success());
    assert!(chute(&server, &["publish", "orders", "a"], None).status.success());
    assert!(chute(&server, &["publish", "orders", "b"], None).status.success());
    let nacked = chute(&server, &["consume", "orders", "--count", "2", "--nack"], None);
    assert!(nacked.status.success(), "{}", stderr(&nacked));
    let listed = chute(&server, &["dlq", "list", "orders", "--json"], None);
    let ids: Vec<String> = chute_tests::stdout(&listed)
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            entry["dead_id"].to_string()
        })
        .collect();
    assert_eq!(ids.len(), 2);
    let one = chute(&server, &["dlq", "redrive", "orders", &ids[0]], None);
    assert_eq!(chute_tests::stdout(&one), "redriven 1 message from orders.dead\n");
    let other = chute(&server, &["dlq", "redrive", "orders", "--id", &ids[1]], None);
    assert_eq!(chute_tests::stdout(&other), "redriven 1 message from orders.dead\n");
}
