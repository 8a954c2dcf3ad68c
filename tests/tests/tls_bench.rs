//! What TLS costs the server, measured with what the server side has (the client's TLS comes
//! later): W1-like durable publishing (docs/BENCHMARKS.md: 200,000 × 256 B to one durable
//! queue, one producer keeping up to 1,000 publishes unconfirmed, one consumer with credit
//! 1,000 acking as it goes), the producer sending frames of 100 messages, by raw frames over
//! plain TCP and over TLS (rustls, ring, as the server), each run on a fresh server with both
//! listeners, plain and TLS runs alternating back to back. Prints each run and the medians.
//!
//! Not a test: run it against the release build,
//! `cargo build --release -p chute-server-tokio -p chute-server-smol && cargo test --release
//! -p chute-tests --test tls_bench -- --ignored --nocapture`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chute_tests::tls::{client_config, connect, Ca, RawSession, TlsFiles};
use chute_tests::{http, metric, Server, ServerBinary};

const MESSAGES: u64 = 200_000;
const PAYLOAD_BYTES: usize = 256;
const BATCH: usize = 100;
const UNCONFIRMED_MAX: u64 = 1_000;
const RUNS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

struct Run {
    msgs_per_s: f64,
    server_cpu_us_per_msg: f64,
}

/// One W1-like run on a fresh server, both sides over `transport`.
fn run(binary: ServerBinary, transport: Transport) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path());
    let ca = Ca::new("bench CA");
    files.write_server(&ca.server((2099, 1, 1)));
    files.write_client_ca(&ca);
    let config = format!(
        "[server]\nlisten = LISTEN\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n\
         [tls]\nlisten = TLS_LISTEN\n{}reload_poll_ms = 0\n",
        files.config_lines()
    );
    let (server, _) = Server::start_with_config(binary, &config);
    let cpu = || {
        let page = http::get(server.admin_addr.unwrap(), "/metrics").body;
        metric(&page, "chute_process_cpu_seconds_total").expect("the server's CPU time")
    };
    let tls_config = client_config(&[&ca], None);
    let (plain_addr, tls_addr) = (server.addr, server.tls_addr.unwrap());
    let open = move || -> Box<dyn Stream> {
        match transport {
            Transport::Plain => {
                let socket = TcpStream::connect(plain_addr).unwrap();
                socket.set_nodelay(true).unwrap();
                Box::new(socket)
            }
            Transport::Tls => {
                let stream = connect(tls_addr, tls_config.clone()).unwrap();
                stream.sock.set_nodelay(true).unwrap();
                Box::new(stream)
            }
        }
    };
    let (mut producer, _) = RawSession::open(open(), "producer").unwrap();
    producer.declare("w1").unwrap();
    let (mut consumer, _) = RawSession::open(open(), "consumer").unwrap();
    consumer.subscribe("w1", UNCONFIRMED_MAX as u32).unwrap();

    let cpu_before = cpu();
    let started = Instant::now();
    let consuming = std::thread::spawn(move || consumer.consume(MESSAGES).unwrap());
    let payload = Bytes::from(vec![0xAB; PAYLOAD_BYTES]);
    while producer.published() < MESSAGES {
        let window = (producer.published() + BATCH as u64).saturating_sub(UNCONFIRMED_MAX);
        producer.wait_confirmed(window).unwrap();
        producer.publish("w1", &payload, BATCH).unwrap();
    }
    producer.wait_confirms().unwrap();
    consuming.join().unwrap();
    let elapsed = started.elapsed();
    let cpu_s = cpu() - cpu_before;
    assert!(server.stop().success());
    Run {
        msgs_per_s: MESSAGES as f64 / elapsed.as_secs_f64(),
        server_cpu_us_per_msg: cpu_s * 1e6 / MESSAGES as f64,
    }
}

trait Stream: Read + Write + Send {}
impl<S: Read + Write + Send> Stream for S {}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
#[ignore = "a measurement: run against the release build with --ignored --nocapture"]
fn tls_cost_w1_like() {
    for binary in ServerBinary::ALL {
        let mut results: Vec<(Transport, Run)> = Vec::new();
        for round in 0..RUNS {
            for transport in [Transport::Plain, Transport::Tls] {
                let result = run(binary, transport);
                println!(
                    "{} run {round} {transport:?}: {:.0} msg/s, server {:.2} µs CPU/msg",
                    binary.name(),
                    result.msgs_per_s,
                    result.server_cpu_us_per_msg
                );
                results.push((transport, result));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let medians = |transport: Transport| {
            let runs = results.iter().filter(|(t, _)| *t == transport).map(|(_, r)| r);
            let (rates, cpus): (Vec<f64>, Vec<f64>) =
                runs.map(|r| (r.msgs_per_s, r.server_cpu_us_per_msg)).unzip();
            (median(rates), median(cpus))
        };
        let (plain, plain_cpu) = medians(Transport::Plain);
        let (tls, tls_cpu) = medians(Transport::Tls);
        println!(
            "{}: medians plain {plain:.0} msg/s ({plain_cpu:.2} µs CPU/msg), TLS {tls:.0} msg/s ({tls_cpu:.2} µs CPU/msg): TLS/plain throughput {:.3}, CPU {:.3}",
            binary.name(),
            tls / plain,
            tls_cpu / plain_cpu
        );
    }
}
