//! After many connections close, the server returns free heap memory to the system
//! (server.memory_trim_interval_ms; docs/BENCHMARKS.md "Connection churn soak" has the figures).
//! What RSS does is the allocator's business and too noisy for a test; this checks that the
//! trim happens when it should and not when it is turned off.

use std::net::TcpStream;
use std::time::Duration;

use chute_tests::{for_both_servers, http, metric, wait_for, Server, ServerBinary};

const TRIMMED: &str = "returned free heap memory to the system";

/// Opens `count` connections, waits until the server has them all, then closes them.
fn churn(server: &Server, count: usize) {
    let connections: Vec<_> =
        (0..count).map(|_| TcpStream::connect(server.addr).expect("connect")).collect();
    let open = || {
        let page = http::get(server.admin_addr.expect("admin endpoint"), "/metrics").body;
        metric(&page, "chute_connections")
    };
    wait_for("the server to adopt them", Duration::from_secs(10), || open() == Some(count as f64));
    drop(connections);
}

fn trims_after_many_connections_closed(binary: ServerBinary) {
    let server = Server::start_with_args(
        binary,
        &["--set", "server.memory_trim_interval_ms=100", "--set", "alarms.check_interval_ms=50"],
    );
    churn(&server, 150);
    server.wait_for_log(TRIMMED);
}

fn never_trims_when_turned_off(binary: ServerBinary) {
    let server = Server::start_with_args(
        binary,
        &["--set", "server.memory_trim_interval_ms=0", "--set", "alarms.check_interval_ms=50"],
    );
    churn(&server, 150);
    // Enough ticks for a trim to have been logged, had one been due: the other test sees one
    // within a few.
    std::thread::sleep(Duration::from_secs(1));
    assert!(!server.log().contains(TRIMMED), "{}", server.log());
}

for_both_servers!(trims_after_many_connections_closed, never_trims_when_turned_off);
