//! Resource alarms on both servers, with real readings against thresholds set around them: a
//! memory threshold of 1 byte (every RSS is above it) raises the alarm, a reload back to a
//! threshold no RSS reaches clears it; a free-space threshold larger than any disk raises the
//! disk alarm at the start. Publishers are blocked (not confirmed, told `Blocked`) while a
//! consumer on another connection drains the queue; after the reload the confirm arrives and
//! `Unblocked` is seen.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use chute_client::{Connection, ConnectionEvent, QueueOptions};
use chute_tests::{fill_config, for_both_servers, http, metric, wait_for, Server};
use chute_tests::{within, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;

const SERVED: &str =
    "version = 1\n[server]\nlisten = LISTEN\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n";

/// RSS never reaches this: the memory alarm stays clear.
const MEMORY_UNREACHABLE: &str = "memory_high_bytes = 1099511627776\n";
/// Every RSS is above this: the memory alarm is raised at the next reading.
const MEMORY_EXCEEDED: &str = "memory_high_bytes = 1\n";

fn config(alarms: &str) -> String {
    format!("{SERVED}[alarms]\ncheck_interval_ms = 50\n{alarms}")
}

fn rewrite(path: &Path, server: &Server, text: &str) {
    std::fs::write(path, fill_config(text, &server.data_dir)).unwrap();
}

fn reload(server: &Server) {
    let answer = http::http(server.admin_addr.unwrap(), "POST", "/api/reload", None);
    assert_eq!(answer.status, 200, "{}", answer.body);
}

fn metrics(server: &Server) -> String {
    http::get(server.admin_addr.unwrap(), "/metrics").body
}

fn alarm_active(server: &Server, resource: &str) -> f64 {
    let series = format!("chute_alarm_active{{resource=\"{resource}\"}}");
    metric(&metrics(server), &series).unwrap_or_else(|| panic!("no {series}"))
}

fn a_publisher_is_blocked_while_a_consumer_drains(binary: ServerBinary) {
    let (server, path) = Server::start_with_config(binary, &config(MEMORY_UNREACHABLE));
    let publisher = block_on(Connection::connect(&server.url())).unwrap();
    let consumer = block_on(Connection::connect(&server.url())).unwrap();
    block_on(publisher.declare_queue("jobs", QueueOptions::default())).unwrap();
    for k in 0..20 {
        block_on(async { publisher.publish("jobs", format!("before-{k}")).await.unwrap().await })
            .expect("confirmed before the alarm");
    }
    let mut events = publisher.events();

    rewrite(&path, &server, &config(MEMORY_EXCEEDED));
    reload(&server);
    wait_for("the memory alarm", Duration::from_secs(10), || {
        alarm_active(&server, "memory") == 1.0
    });
    assert_eq!(http::get(server.admin_addr.unwrap(), "/readyz").status, 200, "still ready");
    let (events_tx, events_rx) = mpsc::channel();
    std::thread::spawn(move || {
        block_on(async {
            while let Some(event) = events.next().await {
                let _ = events_tx.send(event);
            }
        })
    });
    let block_event = |what: &str| loop {
        let event =
            events_rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("no {what}"));
        if matches!(event, ConnectionEvent::Blocked { .. } | ConnectionEvent::Unblocked) {
            return event;
        }
    };
    assert_eq!(block_event("Blocked"), ConnectionEvent::Blocked { reason: "memory".into() });

    let confirmation = block_on(publisher.publish("jobs", "held")).unwrap();
    let (confirmed_tx, confirmed_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = confirmed_tx.send(block_on(confirmation));
    });
    wait_for("the publisher to be blocked", Duration::from_secs(10), || {
        metric(&metrics(&server), "chute_connections_blocked") == Some(1.0)
    });
    let connections = http::get(server.admin_addr.unwrap(), "/api/connections").json();
    let blocked: Vec<bool> =
        connections.as_array().unwrap().iter().map(|c| c["blocked"].as_bool().unwrap()).collect();
    assert_eq!(blocked.iter().filter(|b| **b).count(), 1, "{connections}");

    // The consumer drains the backlog and acks it while the publisher is blocked.
    let drained = within("draining", Duration::from_secs(20), {
        let consumer = consumer.clone();
        move || {
            block_on(async {
                let mut subscription = consumer.subscribe("jobs", 5).await.unwrap();
                let mut payloads = Vec::new();
                while payloads.len() < 20 {
                    let delivery = subscription.next().await.expect("a delivery");
                    payloads.push(String::from_utf8(delivery.payload().to_vec()).unwrap());
                    delivery.ack().unwrap();
                }
                payloads
            })
        }
    });
    assert_eq!(drained, (0..20).map(|k| format!("before-{k}")).collect::<Vec<_>>());
    wait_for("the acks", Duration::from_secs(10), || {
        block_on(consumer.queue_stats("jobs")).unwrap().in_flight == 0
    });
    assert!(
        confirmed_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "a publish was confirmed while its publisher was blocked"
    );

    rewrite(&path, &server, &config(MEMORY_UNREACHABLE));
    reload(&server);
    assert_eq!(block_event("Unblocked"), ConnectionEvent::Unblocked);
    let confirmed = confirmed_rx.recv_timeout(Duration::from_secs(10)).expect("the confirm");
    assert!(confirmed.is_ok(), "{confirmed:?}");
    assert_eq!(alarm_active(&server, "memory"), 0.0);
    let log = server.log();
    assert!(log.contains("memory alarm raised") && log.contains("memory alarm cleared"), "{log}");
    drop((publisher, consumer));
    assert!(server.stop().success());
}

/// Free space below the threshold at the start: the server comes up with the disk alarm raised
/// (the first reading comes before the first connection), still ready. `chute publish` says it
/// is blocked, and finishes once a reload turns the disk alarm off.
fn a_server_short_of_disk_starts_blocked(binary: ServerBinary) {
    let (server, path) =
        Server::start_with_config(binary, &config("disk_free_low_bytes = 4611686018427387904\n"));
    assert_eq!(alarm_active(&server, "disk"), 1.0, "raised before serving");
    assert_eq!(http::get(server.admin_addr.unwrap(), "/readyz").status, 200, "still ready");
    let admin = block_on(Connection::connect(&server.url())).unwrap();
    block_on(admin.declare_queue("jobs", QueueOptions::default())).expect("admin goes on");

    let mut publish = std::process::Command::new(chute_tests::binary_path("chute"))
        .args(["--url", &server.url(), "publish", "jobs", "hello"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run chute");
    let stderr = publish.stderr.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let _ = lines_tx.send(line.unwrap());
        }
    });
    let first = lines_rx.recv_timeout(Duration::from_secs(10)).expect("a line on stderr");
    assert!(first.starts_with("blocked: the server's disk alarm is raised"), "{first}");
    assert_eq!(block_on(admin.queue_stats("jobs")).unwrap().ready, 0, "nothing was accepted");

    rewrite(&path, &server, &config("disk_free_low_bytes = 0\n"));
    reload(&server);
    let status = chute_tests::within("chute publish", Duration::from_secs(10), move || {
        publish.wait().unwrap()
    });
    let rest: Vec<String> = lines_rx.try_iter().collect();
    assert!(status.success(), "{rest:?}");
    assert_eq!(rest.first().map(String::as_str), Some("unblocked: publishing again"), "{rest:?}");
    assert_eq!(block_on(admin.queue_stats("jobs")).unwrap().ready, 1);
    server.wait_for_log("disk alarm raised");
    drop(admin);
    assert!(server.stop().success());
}

for_both_servers!(
    a_publisher_is_blocked_while_a_consumer_drains,
    a_server_short_of_disk_starts_blocked
);
