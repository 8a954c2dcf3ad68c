//! `chute bench` against both servers: a small custom run completes, checks every message
//! off, reads the broker's figures from its admin endpoint, and ends its output with one JSON
//! object holding the figures.

use std::time::Duration;

use chute_tests::{chute, stderr, stdout, within, Server, ServerBinary};

fn small_run_reports_json(binary: ServerBinary) {
    let server = Server::start(binary);
    let admin = server.admin_addr.expect("the test servers have an admin endpoint");
    let admin_url = format!("http://{admin}");
    let url = server.url();
    let output = within("chute bench", Duration::from_secs(120), move || {
        let args = ["bench", "--messages", "2000", "--json", "--admin-url", &admin_url];
        chute_tests::chute_at(&url, &args, None)
    });
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let last = text.lines().last().expect("output");
    let figures: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(figures["messages"], 2000, "{last}");
    assert_eq!(figures["duplicates"], 0, "{last}");
    assert_eq!(figures["workload"], "custom", "{last}");
    assert_eq!((figures["size"].as_u64(), figures["durable"].as_bool()), (Some(256), Some(true)));
    assert!(figures["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0), "{last}");
    assert!(figures["e2e_p50_us"].as_u64().is_some_and(|us| us > 0), "{last}");
    // A durable run fsyncs, costs the broker CPU, and the broker has a peak RSS.
    assert!(figures["broker_fsyncs"].as_u64().is_some_and(|n| n > 0), "{last}");
    assert!(figures["msgs_per_fsync"].as_f64().is_some_and(|n| n > 0.0), "{last}");
    assert!(figures["broker_cpu_us_per_msg"].as_f64().is_some(), "{last}");
    assert!(figures["broker_peak_rss_bytes"].as_u64().is_some_and(|n| n > 0), "{last}");
    assert!(!stderr(&output).contains("other traffic"), "{}", stderr(&output));
    assert!(text.contains("throughput"), "a human summary comes first:\n{text}");

    // The fresh queue is gone afterwards.
    let list = chute(&server, &["queue", "list", "--json"], None);
    assert!(!stdout(&list).contains("chute-bench-"), "{}", stdout(&list));
    assert!(server.stop().success());
}

#[test]
fn small_run_reports_json_tokio() {
    small_run_reports_json(ServerBinary::Tokio);
}

#[test]
fn small_run_reports_json_smol() {
    small_run_reports_json(ServerBinary::Smol);
}
