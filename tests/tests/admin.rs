//! The admin HTTP endpoint of both binaries: health, readiness, Prometheus metrics and the
//! queue list, spoken to over a plain TCP socket as a scraper would.
//!
//! These tests start the binaries themselves rather than through `Server`: they need the
//! second stdout line (`… admin on ADDR`), which the shared helper does not keep.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use chute_client::{Connection, QueueOptions};
use chute_tests::{binary_path, within, ServerBinary};
use futures::executor::block_on;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A server started with its admin endpoint on an ephemeral port (unless `off`).
struct AdminServer {
    child: Child,
    binary: ServerBinary,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    stdout: Option<BufReader<ChildStdout>>,
    scratch: tempfile::TempDir,
}

impl AdminServer {
    fn start(binary: ServerBinary) -> AdminServer {
        AdminServer::start_with(binary, "127.0.0.1:0")
    }

    fn start_with(binary: ServerBinary, admin_listen: &str) -> AdminServer {
        let scratch = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(scratch.path().join("server.log")).unwrap();
        let child = Command::new(binary_path(binary.name()))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", admin_listen, "--data-dir"])
            .arg(scratch.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        // Killed on drop from here on, even if the announcement is not what it should be.
        let mut server = AdminServer {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin: None,
            stdout: None,
            child,
            binary,
            scratch,
        };
        let mut stdout = BufReader::new(server.child.stdout.take().unwrap());
        server.addr = server.announced(&mut stdout, "listening on");
        if admin_listen != "off" {
            server.admin = Some(server.announced(&mut stdout, "admin on"));
        }
        server.stdout = Some(stdout);
        server
    }

    /// Reads the next stdout line, `{binary} {what} {addr}`, and returns the address.
    fn announced(&self, stdout: &mut BufReader<ChildStdout>, what: &str) -> SocketAddr {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let prefix = format!("{} {what} ", self.binary.name());
        match line.trim().strip_prefix(&prefix).and_then(|addr| addr.parse().ok()) {
            Some(addr) => addr,
            None => panic!("expected {prefix:?}ADDR on stdout, got {line:?}:\n{}", self.log()),
        }
    }

    fn admin(&self) -> SocketAddr {
        self.admin.expect("admin endpoint on")
    }

    fn url(&self) -> String {
        format!("chute://{}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("server.log")).unwrap_or_default()
    }

    /// SIGTERM, then what the server printed on stdout after its announcement, up to its exit.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut rest = String::new();
        self.stdout.take().expect("started").read_to_string(&mut rest).unwrap();
        assert!(self.child.wait().unwrap().success(), "{}", self.log());
        rest
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let answer = chute_tests::http::http(addr, method, path, None);
    (answer.status, answer.body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path)
}

/// The value of an unlabelled series on a metrics page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

fn publish(server: &AdminServer, queue: &str, count: usize) {
    let url = server.url();
    let queue = queue.to_string();
    within("publishing", TIMEOUT, move || {
        block_on(async {
            let connection = Connection::connect(&url).await.unwrap();
            connection.declare_queue(&queue, QueueOptions::default()).await.unwrap();
            for i in 0..count {
                let confirmation = connection.publish(&queue, format!("m{i}")).await.unwrap();
                confirmation.await.unwrap();
            }
        })
    });
}

/// Confirmed publishes show in the message counter, and the group commits behind the confirms
/// in the storage counters.
fn metrics_count_publishes_and_syncs(binary: ServerBinary) {
    let server = AdminServer::start(binary);
    publish(&server, "metrics", 5);
    let (status, page) = get(server.admin(), "/metrics");
    assert_eq!(status, 200, "{page}");
    assert_eq!(metric(&page, "chute_messages_published_total"), 5.0);
    assert!(metric(&page, "chute_storage_syncs_total") > 0.0, "{page}");
    assert!(metric(&page, "chute_storage_appends_total") > 0.0, "{page}");
    assert!(metric(&page, "chute_storage_sync_seconds_count") > 0.0, "{page}");
    assert_eq!(metric(&page, "chute_queues"), 1.0);
    assert_eq!(metric(&page, "chute_up"), 1.0);
    assert!(page.contains("chute_queue_messages{queue=\"metrics\",state=\"ready\"} 5"), "{page}");
    assert!(metric(&page, "chute_process_resident_memory_bytes") > 0.0, "{page}");
    assert!(server.stop().is_empty());
}

#[test]
fn metrics_count_publishes_and_syncs_tokio() {
    metrics_count_publishes_and_syncs(ServerBinary::Tokio);
}

#[test]
fn metrics_count_publishes_and_syncs_smol() {
    metrics_count_publishes_and_syncs(ServerBinary::Smol);
}

/// Health, readiness, the queue list, and 404 for anything else.
fn endpoints_answer(binary: ServerBinary) {
    let server = AdminServer::start(binary);
    publish(&server, "listed", 2);
    let admin = server.admin();
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".to_string()));
    let (status, queues) = get(admin, "/api/queues");
    assert_eq!(status, 200);
    assert!(queues.starts_with('['), "{queues}");
    assert!(queues.contains("\"name\":\"listed\""), "{queues}");
    assert!(queues.contains("\"ready\":2"), "{queues}");
    assert_eq!(get(admin, "/nope").0, 404);
    assert_eq!(get(admin, "/metrics/extra").0, 404);
    assert_eq!(http(admin, "POST", "/metrics").0, 405);
    server.stop();
}

#[test]
fn endpoints_answer_tokio() {
    endpoints_answer(ServerBinary::Tokio);
}

#[test]
fn endpoints_answer_smol() {
    endpoints_answer(ServerBinary::Smol);
}

/// A client that opens admin connections and sends half a request holds up neither other
/// admin requests nor the broker.
fn stalled_admin_clients_block_nothing(binary: ServerBinary) {
    let server = AdminServer::start(binary);
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(server.admin()).unwrap();
            stream.write_all(b"GET /metr").unwrap();
            stream
        })
        .collect();
    let admin = server.admin();
    let (status, _) =
        within("a request beside stalled ones", TIMEOUT, move || get(admin, "/healthz"));
    assert_eq!(status, 200);
    publish(&server, "busy", 1);
    drop(stalled);
    server.stop();
}

#[test]
fn stalled_admin_clients_block_nothing_tokio() {
    stalled_admin_clients_block_nothing(ServerBinary::Tokio);
}

#[test]
fn stalled_admin_clients_block_nothing_smol() {
    stalled_admin_clients_block_nothing(ServerBinary::Smol);
}

/// `--admin-listen off`: no admin line on stdout, nothing else printed.
#[test]
fn admin_endpoint_can_be_turned_off() {
    for binary in ServerBinary::ALL {
        let server = AdminServer::start_with(binary, "off");
        publish(&server, "quiet", 1);
        assert_eq!(server.stop(), "", "{}", binary.name());
    }
}

/// A busy admin port stops startup with a message naming the address and the flag.
#[test]
fn admin_port_in_use_is_reported() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    for binary in ServerBinary::ALL {
        let data = tempfile::tempdir().unwrap();
        let output = Command::new(binary_path(binary.name()))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", &taken_addr, "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(&format!("cannot listen on {taken_addr}")), "{message}");
        assert!(message.contains("admin endpoint"), "{message}");
        assert!(message.contains("--admin-listen"), "{message}");
        assert!(output.stdout.is_empty(), "nothing announced: {message}");
    }
}
