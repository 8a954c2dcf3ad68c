//! What an idle connection costs the server in memory. A busy server has most of its
//! connections idle at any moment; each holds its buffers, so their size is what thousands of
//! connections cost (docs/BENCHMARKS.md, "Connection churn soak").

use chute_protocol::Credentials;
use chute_tests::raw::RawConn;
use chute_tests::{for_both_servers, Server, ServerBinary};

/// Connections opened for the measurement: enough that a few KiB each stand out of the noise
/// of the allocator and the runtime.
const CONNECTIONS: usize = 400;
/// The most an idle connection may add to the server's resident memory. Its read buffer alone
/// was 64 KiB before it started small.
const IDLE_CONNECTION_BYTES_MAX: u64 = 24 * 1024;

fn an_idle_connection_costs_a_few_kib(binary: ServerBinary) {
    let server = Server::start(binary);
    // One connection first, so that what every connection shares is counted in the baseline.
    let mut first = RawConn::hello(server.addr, 2, Credentials::Anonymous);
    first.next().expect("HelloOk");
    let before = server.memory_bytes("VmRSS");
    let idle: Vec<RawConn> = (0..CONNECTIONS)
        .map(|_| {
            let mut connection = RawConn::hello(server.addr, 2, Credentials::Anonymous);
            connection.next().expect("HelloOk");
            connection
        })
        .collect();
    let per_connection = server.memory_bytes("VmRSS").saturating_sub(before) / CONNECTIONS as u64;
    assert!(
        per_connection <= IDLE_CONNECTION_BYTES_MAX,
        "{per_connection} bytes of resident memory per idle connection"
    );
    drop(idle);
}

for_both_servers!(an_idle_connection_costs_a_few_kib);
