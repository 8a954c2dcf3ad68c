//! `chute bench` against both servers: a small custom run completes, checks every message
//! off, reads the broker's figures from its admin endpoint, and ends its output with one JSON
//! object holding the figures; a paced run keeps its rate; a run that misses a message fails;
//! W5 runs 64 queues and reports their fairness, and a message on the wrong queue fails the
//! run; W6 reports MB/s and its share of the disk's write rate.

use std::time::Duration;

use std::process::Output;

use chute_tests::{chute, stderr, stdout, within, Server, ServerBinary};

/// Runs `chute bench ARGS --json` against `server`, reading the broker's figures from its admin
/// endpoint, within 180 s; it must succeed. Returns its output and the last line of stdout,
/// parsed.
fn bench_json(server: &Server, args: &[&str]) -> (Output, serde_json::Value) {
    let admin = server.admin_addr.expect("the test servers have an admin endpoint");
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--json".into(), "--admin-url".into(), format!("http://{admin}")]);
    let url = server.url();
    let output = within("chute bench", Duration::from_secs(180), move || {
        let args: Vec<&str> =
            std::iter::once("bench").chain(args.iter().map(String::as_str)).collect();
        chute_tests::chute_at(&url, &args, None)
    });
    let figures = last_json(&output);
    (output, figures)
}

/// The last line of a successful `chute bench --json`, parsed.
fn last_json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    let text = stdout(output);
    let last = text.lines().last().expect("output");
    serde_json::from_str(last).expect("the last line is JSON")
}

fn small_run_reports_json(binary: ServerBinary) {
    let server = Server::start(binary);
    let (output, figures) = bench_json(&server, &["--messages", "2000"]);
    let text = stdout(&output);
    let last = figures.to_string();
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
    let (_, figures) = bench_json(&server, &["--messages", "300", "--rate", "2000"]);
    let last = figures.to_string();
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

/// W5 with 10 messages per queue: 64 queues, each with its own producer and consumer; every
/// message arrives once (on its own queue, or the run fails), the fairness figure is in (0, 1],
/// and the 64 queues the run made are gone afterwards.
fn w5_runs_64_queues_and_reports_fairness(binary: ServerBinary) {
    let server = Server::start(binary);
    let (output, figures) = bench_json(&server, &["--workload", "W5", "--messages", "640"]);
    assert_eq!(figures["queues"], 64, "{figures}");
    assert_eq!(
        (figures["producers"].clone(), figures["consumers"].clone()),
        (64.into(), 64.into())
    );
    assert_eq!(
        (figures["messages"].clone(), figures["duplicates"].clone()),
        (640.into(), 0.into())
    );
    assert_eq!(figures["durable"], true, "{figures}");
    let fairness = figures["fairness_min_over_mean"].as_f64().expect("a fairness figure");
    assert!(fairness > 0.0 && fairness <= 1.0, "fairness {fairness}");
    assert!(stdout(&output).contains("on 64 queues"), "{}", stdout(&output));
    // The broker accepted exactly the run's messages.
    assert!(!stderr(&output).contains("other traffic"), "{}", stderr(&output));
    let list = chute(&server, &["queue", "list", "--json"], None);
    assert!(!stdout(&list).contains("chute-bench-"), "{}", stdout(&list));
    assert!(server.stop().success());
}

#[test]
fn w5_runs_64_queues_and_reports_fairness_tokio() {
    w5_runs_64_queues_and_reports_fairness(ServerBinary::Tokio);
}

#[test]
fn w5_runs_64_queues_and_reports_fairness_smol() {
    w5_runs_64_queues_and_reports_fairness(ServerBinary::Smol);
}

/// A message that arrives on a queue it was not published to fails the run: here a bench
/// payload carrying sequence number 300 (one of queue `mix-1`'s, 200..400) is slipped into
/// `mix-0` while a paced two-queue run is under way.
#[test]
fn a_message_on_the_wrong_queue_fails_the_run() {
    use futures::executor::block_on;

    let server = Server::start(ServerBinary::Tokio);
    let url = server.url();
    let forger = block_on(chute_client::Connection::connect(&url)).expect("connect");
    for name in ["mix-0", "mix-1"] {
        block_on(forger.declare_queue(name, chute_client::QueueOptions::default()))
            .expect("declare");
    }
    let bench = std::thread::spawn(move || {
        let args = [
            "bench",
            "--queue",
            "mix",
            "--queues",
            "2",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--messages",
            "400",
            "--rate",
            "200",
            "--timeout-s",
            "30",
            "--admin-url",
            "off",
        ];
        chute_tests::chute_at(&url, &args, None)
    });
    chute_tests::wait_for("the bench's consumer on mix-0", Duration::from_secs(30), || {
        let stats = block_on(forger.queue_stats("mix-0")).expect("stats");
        !stats.consumers.is_empty()
    });
    let mut forged = Vec::with_capacity(256);
    forged.extend_from_slice(&0u64.to_le_bytes());
    forged.extend_from_slice(&300u64.to_le_bytes());
    forged.resize(256, 0xAB);
    let confirmation = block_on(forger.publish("mix-0", forged)).expect("publish");
    block_on(confirmation).expect("confirmed");
    let output = within("the bench", Duration::from_secs(60), move || bench.join().unwrap());
    assert!(!output.status.success(), "the run passed:\n{}", stdout(&output));
    let reason = stderr(&output);
    assert!(reason.contains("300, which was published to another queue"), "{reason}");
    block_on(forger.close());
    assert!(server.stop().success());
}

/// W6 with 30 messages of 64 KiB: MB/s from the payload size, and with --disk-dir the disk's
/// sequential write rate measured in the data directory (the probe file removed after) and the
/// run's share of it. Without --disk-dir the disk figures are null and stderr says how to get
/// them; a --disk-dir that does not exist is refused before anything runs.
#[test]
fn w6_reports_megabytes_per_second_and_the_disk_fraction() {
    let server = Server::start(ServerBinary::Tokio);
    let data_dir = server.data_dir.to_string_lossy().into_owned();
    let args =
        ["--workload", "W6", "--messages", "30", "--disk-dir", &data_dir, "--disk-probe-mib", "8"];
    let (_, figures) = bench_json(&server, &args);
    assert_eq!((figures["size"].clone(), figures["messages"].clone()), (65_536.into(), 30.into()));
    let msgs_per_s = figures["msgs_per_s"].as_f64().expect("msgs/s");
    let mb_per_s = figures["mb_per_s"].as_f64().expect("MB/s");
    assert!((mb_per_s - msgs_per_s * 65_536.0 / 1e6).abs() < 0.01, "{figures}");
    let disk = figures["disk_write_mb_per_s"].as_f64().expect("the disk's rate");
    let fraction = figures["disk_fraction"].as_f64().expect("the disk fraction");
    assert!(disk > 0.0 && fraction > 0.0, "{figures}");
    assert!((fraction - mb_per_s / disk).abs() <= 0.001 + 0.01 * fraction, "{figures}");
    let leftovers: Vec<_> = std::fs::read_dir(&server.data_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains("disk-probe"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let (without, figures) = bench_json(&server, &["--workload", "W6", "--messages", "10"]);
    assert!(figures["disk_write_mb_per_s"].is_null() && figures["disk_fraction"].is_null());
    assert!(stderr(&without).contains("--disk-dir"), "{}", stderr(&without));

    let missing =
        chute(&server, &["bench", "--workload", "W6", "--disk-dir", "/nonexistent/x"], None);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("--disk-dir /nonexistent/x: "), "{}", stderr(&missing));
    assert!(server.stop().success());
}
