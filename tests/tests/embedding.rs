//! The core embedded in hand-written event loops (core/examples/): the broker example serves
//! the real `chute` CLI and the client example, and recovers its log after a kill; the client
//! example (the core `Session` on std sockets) publishes and consumes against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use chute_tests::{binary_path, chute_at, stderr, stdout};

/// Where cargo put an example of chute-core for this profile, building the examples first if
/// they are not there (`cargo test --workspace` builds them; `-p chute-tests` alone does not).
fn example_path(name: &str) -> PathBuf {
    let dir = binary_path("chute").parent().expect("profile directory").join("examples");
    static BUILT: OnceLock<()> = OnceLock::new();
    if !dir.join(name).exists() {
        BUILT.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "chute-core", "--examples"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the examples failed");
        });
    }
    dir.join(name)
}

/// The broker example on an ephemeral port; returns it and its `chute://` URL.
fn start_broker(data_dir: &Path) -> (Child, String) {
    let mut child = Command::new(example_path("broker_event_loop"))
        .arg("127.0.0.1:0")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the broker example");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("a listening line").to_string();
    (child, format!("chute://{addr}"))
}

fn ok(url: &str, args: &[&str]) -> String {
    let output = chute_at(url, args, None);
    assert!(output.status.success(), "chute {args:?}: {}", stderr(&output));
    stdout(&output)
}

/// declare, publish, consume with the CLI; the client example's round trip; a kill and a
/// restart that finds every unconsumed message in the files.
#[test]
fn the_event_loop_broker_serves_the_cli_and_the_client_example() {
    let data = tempfile::tempdir().unwrap();
    let (mut broker, url) = start_broker(data.path());
    ok(&url, &["queue", "declare", "jobs"]);
    ok(&url, &["publish", "jobs", "hello"]);
    ok(&url, &["publish", "jobs", "--count", "100", "--size", "32"]);
    let consumed = ok(&url, &["consume", "jobs", "--count", "2"]);
    assert!(consumed.starts_with("hello\n           0 "), "{consumed:?}");

    let addr = url.trim_start_matches("chute://");
    let client = Command::new(example_path("client_event_loop"))
        .args([addr, "round-trip", "500"])
        .output()
        .expect("run the client example");
    assert!(client.status.success(), "{}", String::from_utf8_lossy(&client.stderr));
    assert_eq!(
        String::from_utf8_lossy(&client.stdout),
        "published 500, confirmed 500, consumed 500 on round-trip\n"
    );

    broker.kill().unwrap();
    broker.wait().unwrap();
    let (mut restarted, url) = start_broker(data.path());
    let stats = ok(&url, &["queue", "stats", "jobs", "--json"]);
    assert!(stats.contains(r#""ready":99"#), "{stats}");
    restarted.kill().unwrap();
    restarted.wait().unwrap();
}
