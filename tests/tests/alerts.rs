//! Built-in alert rules on both servers, against a webhook receiver the test runs (a std
//! `TcpListener` thread that records request bodies): a queue-depth rule with small thresholds
//! fires and resolves, and the receiver hears both in Alertmanager's format; a receiver that is
//! down gets the notification once it comes back, after retries; one that never answers costs
//! the broker nothing; `/api/alerts` and
//! `chute_alerts_firing` agree; a reload that changes the threshold takes effect; a broker-wide
//! rule (the memory alarm) fires with no queue anywhere.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chute_client::{Connection, QueueOptions};
use chute_tests::{fill_config, for_both_servers, http, metric, wait_for, Server, ServerBinary};
use futures::executor::block_on;

const WAIT: Duration = Duration::from_secs(20);

/// A webhook receiver: every request body it was POSTed, as JSON.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    /// Listens on `addr` (port 0: any) until the test ends; answers every request 200.
    fn start(addr: SocketAddr) -> (Receiver, SocketAddr) {
        let listener = TcpListener::bind(addr).expect("bind the receiver");
        let bound = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let bodies = receiver.bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Some(body) = read_request_body(&mut stream) {
                    bodies.lock().unwrap().push(serde_json::from_slice(&body).expect("JSON body"));
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        (receiver, bound)
    }

    /// The `(status, queue)` of each notification about `rule`, in arrival order.
    fn notifications(&self, rule: &str) -> Vec<(String, String)> {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .filter(|body| body["alerts"][0]["labels"]["alertname"] == rule)
            .map(|body| {
                let alert = &body["alerts"][0];
                (
                    alert["status"].as_str().unwrap().to_string(),
                    alert["labels"]["queue"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn body_about(&self, rule: &str, status: &str) -> serde_json::Value {
        let bodies = self.bodies.lock().unwrap();
        bodies
            .iter()
            .find(|b| b["alerts"][0]["labels"]["alertname"] == rule && b["status"] == status)
            .cloned()
            .unwrap()
    }
}

/// Reads one HTTP/1.1 request and returns its body (by `Content-Length`).
fn read_request_body(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// A port nothing listens on (bound, then let go).
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn config(receiver: SocketAddr, threshold: u64) -> String {
    format!(
        "version = 1\n[server]\nlisten = LISTEN\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n\
         [alerts]\nevaluation_interval_ms = 50\n\
         [[alerts.rules]]\nname = \"queue_depth_high\"\nthreshold = {threshold}\nfor_ms = 300\n\
         labels = {{ team = \"tests\" }}\n\
         [[alerts.receivers]]\nname = \"test\"\nurl = \"http://{receiver}/hook\"\ntimeout_ms = 1000\n\
         backoff = {{ base_ms = 50, factor_percent = 200, max_ms = 200, jitter = true }}\n\
         breaker = {{ failures_max = 3, open_ms = 300 }}\n"
    )
}

fn publish(connection: &Connection, count: usize) {
    for k in 0..count {
        block_on(async { connection.publish("jobs", format!("m-{k}")).await.unwrap().await })
            .expect("confirmed");
    }
}

fn admin(server: &Server) -> SocketAddr {
    server.admin_addr.unwrap()
}

/// The states `/api/alerts` shows for the depth rule on `jobs`.
fn depth_alert(server: &Server) -> Option<serde_json::Value> {
    let answer = http::get(admin(server), "/api/alerts");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "queue_depth_high" && a["queue"] == "jobs")
        .cloned()
}

fn firing_gauge(server: &Server) -> Option<f64> {
    let page = http::get(admin(server), "/metrics").body;
    metric(&page, "chute_alerts_firing{rule=\"queue_depth_high\",queue=\"jobs\"}")
}

fn firing_then_resolved_reach_the_receiver(binary: ServerBinary) {
    let (receiver, receiver_addr) = Receiver::start("127.0.0.1:0".parse().unwrap());
    let (server, _path) = Server::start_with_config(binary, &config(receiver_addr, 2));
    let connection = block_on(Connection::connect(&server.url())).unwrap();
    block_on(connection.declare_queue("jobs", QueueOptions::default())).unwrap();
    publish(&connection, 3);

    wait_for("the alert pending", WAIT, || {
        depth_alert(&server).is_some_and(|a| a["state"] == "pending" || a["state"] == "firing")
    });
    wait_for("the firing notification", WAIT, || {
        !receiver.notifications("queue_depth_high").is_empty()
    });
    assert_eq!(
        receiver.notifications("queue_depth_high"),
        [("firing".to_string(), "jobs".to_string())]
    );
    let firing = receiver.body_about("queue_depth_high", "firing");
    assert_eq!(
        (firing["version"].as_str(), firing["receiver"].as_str()),
        (Some("4"), Some("test"))
    );
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["team"], "tests");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    // /api/alerts and the gauge agree.
    let shown = depth_alert(&server).unwrap();
    assert_eq!(
        (shown["state"].as_str(), shown["value"].as_u64(), shown["threshold"].as_u64()),
        (Some("firing"), Some(3), Some(2))
    );
    assert_eq!(firing_gauge(&server), Some(1.0));
    let page = http::get(admin(&server), "/metrics").body;
    let age = metric(&page, "chute_queue_oldest_ready_age_seconds{queue=\"jobs\"}").unwrap();
    assert!(age >= 0.3, "the head has waited at least for_ms: {age}");
    server.wait_for_log("alert firing");

    let purged = http::http(admin(&server), "POST", "/api/queues/jobs/purge", None);
    assert_eq!(purged.status, 200, "{}", purged.body);
    wait_for("the resolved notification", WAIT, || {
        receiver.notifications("queue_depth_high").len() == 2
    });
    assert_eq!(
        receiver.notifications("queue_depth_high")[1],
        ("resolved".to_string(), "jobs".to_string())
    );
    let resolved = receiver.body_about("queue_depth_high", "resolved");
    assert_eq!(resolved["alerts"][0]["startsAt"], alert["startsAt"]);
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"]);
    assert_eq!(depth_alert(&server).unwrap()["state"], "resolved");
    assert_eq!(firing_gauge(&server), Some(0.0), "the gauge agrees with /api/alerts");
    wait_for("both deliveries counted", WAIT, || {
        let page = http::get(admin(&server), "/metrics").body;
        let delivered = "chute_alert_notifications_total{receiver=\"test\",outcome=\"delivered\"}";
        metric(&page, delivered) == Some(2.0)
    });
    server.wait_for_log("alert resolved");
    drop(connection);
    assert!(server.stop().success());
}

fn a_receiver_that_comes_back_gets_the_notification(binary: ServerBinary) {
    let receiver_addr = free_port();
    let (server, _path) = Server::start_with_config(binary, &config(receiver_addr, 2));
    let connection = block_on(Connection::connect(&server.url())).unwrap();
    block_on(connection.declare_queue("jobs", QueueOptions::default())).unwrap();
    publish(&connection, 3);
    let retried = |server: &Server| {
        let page = http::get(admin(server), "/metrics").body;
        metric(&page, "chute_alert_notifications_total{receiver=\"test\",outcome=\"retried\"}")
            .unwrap_or(0.0)
    };
    wait_for("failed attempts", WAIT, || retried(&server) >= 2.0);
    let (receiver, _) = Receiver::start(receiver_addr);
    wait_for("the notification after the receiver came back", WAIT, || {
        !receiver.notifications("queue_depth_high").is_empty()
    });
    assert_eq!(receiver.notifications("queue_depth_high")[0].0, "firing");
    server.wait_for_log("alert notification failed; retrying");
    drop(connection);
    assert!(server.stop().success());
}

/// A receiver that accepts connections and never answers: each attempt runs into the
/// timeout, the notification is given up after `attempts_max`, and meanwhile the broker
/// serves as fast as ever.
fn a_receiver_that_never_answers_does_not_slow_the_broker(binary: ServerBinary) {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let text =
        config(silent_addr, 2).replace("timeout_ms = 1000", "timeout_ms = 200\nattempts_max = 2");
    let (server, _path) = Server::start_with_config(binary, &text);
    let connection = block_on(Connection::connect(&server.url())).unwrap();
    block_on(connection.declare_queue("jobs", QueueOptions::default())).unwrap();
    publish(&connection, 3);
    let outcome = |server: &Server, outcome: &str| {
        let page = http::get(admin(server), "/metrics").body;
        let series =
            format!("chute_alert_notifications_total{{receiver=\"test\",outcome=\"{outcome}\"}}");
        metric(&page, &series).unwrap_or(0.0)
    };
    wait_for("the first attempt to time out", WAIT, || outcome(&server, "retried") >= 1.0);
    let started = std::time::Instant::now();
    publish(&connection, 200);
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "200 confirmed publishes took {elapsed:?}");
    wait_for("the notification given up", WAIT, || outcome(&server, "failed") == 1.0);
    assert_eq!(outcome(&server, "delivered"), 0.0);
    server.wait_for_log("no answer within 200 ms");
    drop(connection);
    assert!(server.stop().success());
}

fn rewrite(path: &Path, server: &Server, text: &str) {
    std::fs::write(path, fill_config(text, &server.data_dir)).unwrap();
}

fn a_reload_changing_the_threshold_takes_effect(binary: ServerBinary) {
    let (receiver, receiver_addr) = Receiver::start("127.0.0.1:0".parse().unwrap());
    let (server, path) = Server::start_with_config(binary, &config(receiver_addr, 5));
    let connection = block_on(Connection::connect(&server.url())).unwrap();
    block_on(connection.declare_queue("jobs", QueueOptions::default())).unwrap();
    publish(&connection, 3);
    // Several evaluations with 3 ready against a threshold of 5: nothing.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(depth_alert(&server), None);
    assert!(receiver.notifications("queue_depth_high").is_empty());

    rewrite(&path, &server, &config(receiver_addr, 2));
    let reloaded = http::http(admin(&server), "POST", "/api/reload", None);
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    wait_for("firing under the new threshold", WAIT, || {
        !receiver.notifications("queue_depth_high").is_empty()
    });
    let firing = depth_alert(&server).unwrap();
    assert_eq!((firing["state"].as_str(), firing["threshold"].as_u64()), (Some("firing"), Some(2)));

    // A reload that leaves the rule alone keeps its alert as it was: still firing since the
    // same instant, and nobody is told again.
    let slower = config(receiver_addr, 2)
        .replace("evaluation_interval_ms = 50", "evaluation_interval_ms = 60");
    rewrite(&path, &server, &slower);
    let reloaded = http::http(admin(&server), "POST", "/api/reload", None);
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert!(reloaded.body.contains("alerts.evaluation_interval_ms"), "{}", reloaded.body);
    std::thread::sleep(Duration::from_millis(500));
    let kept = depth_alert(&server).unwrap();
    assert_eq!((kept["state"].as_str(), &kept["fired_at"]), (Some("firing"), &firing["fired_at"]));
    let told = receiver.notifications("queue_depth_high");
    assert_eq!(told, [("firing".to_string(), "jobs".to_string())]);
    drop(connection);
    assert!(server.stop().success());
}

/// A broker-wide rule (the memory alarm, raised at once by a threshold below any RSS) fires
/// with no queue: none in the notification's labels, `null` in `/api/alerts`, and no empty
/// `queue` field in its log line.
fn a_broker_wide_alert_has_no_queue(binary: ServerBinary) {
    let (receiver, receiver_addr) = Receiver::start("127.0.0.1:0".parse().unwrap());
    let text = config(receiver_addr, 5).replace(
        "[alerts]\n",
        "[alarms]\nmemory_high_bytes = 1048576\ncheck_interval_ms = 50\n[alerts]\n",
    );
    let (server, _path) = Server::start_with_config(binary, &text);
    wait_for("the memory alarm's alert", WAIT, || {
        !receiver.notifications("memory_alarm_active").is_empty()
    });
    let firing = receiver.body_about("memory_alarm_active", "firing");
    let labels = &firing["alerts"][0]["labels"];
    assert_eq!((labels["severity"].as_str(), labels.get("queue")), (Some("critical"), None));
    let shown = http::get(admin(&server), "/api/alerts").json();
    let alert = shown["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "memory_alarm_active")
        .cloned()
        .unwrap();
    assert_eq!(
        (alert["state"].as_str(), &alert["queue"]),
        (Some("firing"), &serde_json::Value::Null)
    );
    server.wait_for_log("rule=memory_alarm_active");
    let log = server.log();
    let line = log.lines().find(|l| l.contains("rule=memory_alarm_active")).unwrap();
    assert!(!line.contains("queue="), "a broker-wide alert's line names no queue: {line}");
    assert!(server.stop().success());
}

for_both_servers!(
    firing_then_resolved_reach_the_receiver,
    a_receiver_that_comes_back_gets_the_notification,
    a_receiver_that_never_answers_does_not_slow_the_broker,
    a_reload_changing_the_threshold_takes_effect,
    a_broker_wide_alert_has_no_queue
);
