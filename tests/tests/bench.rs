//! `chute bench` against both servers: a small custom run completes, checks every message
//! off, reads the broker's figures from its admin endpoint, and ends its output with one JSON
//! object holding the figures; a paced run keeps its rate; a run that misses a message fails.

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

/// A paced run (the W3 way) publishes at the rate asked, not faster: 300 messages at 2,000
/// msg/s cannot all be sent in under (300 - 1) / 2,000 s, and every message still arrives.
/// The JSON says the rate and how far sends fell behind schedule.
#[test]
fn a_paced_run_keeps_its_rate() {
    let server = Server::start(ServerBinary::Tokio);
    let admin_url = format!("http://{}", server.admin_addr.expect("an admin endpoint"));
    let url = server.url();
    let output = within("a paced chute bench", Duration::from_secs(120), move || {
        let args =
            ["bench", "--messages", "300", "--rate", "2000", "--json", "--admin-url", &admin_url];
        chute_tests::chute_at(&url, &args, None)
    });
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let last = text.lines().last().expect("output");
    let figures: serde_json::Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(
        (figures["messages"].as_u64(), figures["duplicates"].as_u64()),
        (Some(300), Some(0))
    );
    assert_eq!(figures["rate"].as_f64(), Some(2000.0), "{last}");
    let seconds = figures["seconds"].as_f64().expect("seconds");
    assert!(seconds >= 299.0 / 2000.0, "300 messages at 2,000 msg/s took only {seconds} s");
    assert!(figures["max_send_lag_us"].as_u64().is_some(), "{last}");
    assert!(server.stop().success());
}

/// Every message is checked off by sequence number: a run that does not get one back fails
/// (here another consumer on the same queue takes one), naming how many arrived.
fn a_run_that_loses_a_message_fails(binary: ServerBinary) {
    use futures::executor::block_on;
    use futures::StreamExt;

    let server = Server::start(binary);
    let url = server.url();
    let thief = block_on(chute_client::Connection::connect(&url)).expect("connect");
    block_on(thief.declare_queue("stolen", chute_client::QueueOptions::default()))
        .expect("declare");
    let mut stolen = block_on(thief.subscribe("stolen", 1)).expect("subscribe");
    let took = std::thread::spawn(move || {
        let delivery = block_on(stolen.next()).expect("the thief gets a message");
        delivery.ack().expect("ack");
        block_on(thief.close());
    });
    let output = within("chute bench", Duration::from_secs(60), move || {
        let args = [
            "bench",
            "--queue",
            "stolen",
            "--messages",
            "200",
            "--timeout-s",
            "3",
            "--admin-url",
            "off",
        ];
        chute_tests::chute_at(&url, &args, None)
    });
    took.join().unwrap();
    assert!(!output.status.success(), "a run missing a message passed:\n{}", stdout(&output));
    let reason = stderr(&output);
    assert!(reason.contains("timed out") && reason.contains("of 200 messages"), "{reason}");
    assert!(server.stop().success());
}

#[test]
fn a_run_that_loses_a_message_fails_tokio() {
    a_run_that_loses_a_message_fails(ServerBinary::Tokio);
}

#[test]
fn a_run_that_loses_a_message_fails_smol() {
    a_run_that_loses_a_message_fails(ServerBinary::Smol);
}
