//! The real binaries on loopback: publish, consume, garbage, graceful stop. Every test runs
//! against both `chuted` (tokio) and `chuted-smol`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use chute_client::{ConnectOptions, Connection, QueueOptions};
use chute_tests::{Server, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;

const MESSAGES_PER_PUBLISHER: u64 = 5_000;

/// Two clients publish 10,000 messages at once with confirms; one consumer receives and acks
/// them all: nothing lost, nothing duplicated, and each publisher's messages in its order.
fn two_publishers_one_consumer(binary: ServerBinary) {
    let server = Server::start(binary);
    let url = server.url();
    block_on(async {
        let admin = Connection::connect(&url).await.unwrap();
        admin.declare_queue("e2e", QueueOptions::default()).await.unwrap();
    });
    let publishers: Vec<_> = (0..2u64)
        .map(|publisher| {
            let url = url.clone();
            std::thread::spawn(move || block_on(publish_all(&url, publisher)))
        })
        .collect();
    let received = block_on(consume(&url, 2 * MESSAGES_PER_PUBLISHER));
    for publisher in publishers {
        publisher.join().unwrap();
    }

    let mut next_expected: BTreeMap<u64, u64> = BTreeMap::new();
    for (publisher, seq) in &received {
        let expected = next_expected.entry(*publisher).or_insert(0);
        assert_eq!(seq, expected, "publisher {publisher}: out of order or duplicated");
        *expected += 1;
    }
    assert_eq!(
        next_expected.values().copied().collect::<Vec<_>>(),
        vec![MESSAGES_PER_PUBLISHER; 2]
    );

    block_on(async {
        let admin = Connection::connect(&url).await.unwrap();
        let stats = admin.queue_stats("e2e").await.unwrap();
        assert_eq!((stats.ready, stats.in_flight), (0, 0));
        assert_eq!(stats.counters.acked, 2 * MESSAGES_PER_PUBLISHER);
    });
    assert!(server.stop().success());
}

async fn publish_all(url: &str, publisher: u64) {
    let connection = Connection::connect(url).await.unwrap();
    let mut confirmations = Vec::new();
    for seq in 0..MESSAGES_PER_PUBLISHER {
        let payload = format!("{publisher}:{seq}");
        confirmations.push(connection.publish("e2e", payload).await.unwrap());
    }
    for confirmation in confirmations {
        confirmation.await.expect("confirmed");
    }
    connection.close().await;
}

/// Receives `count` messages, acking each; returns (publisher, seq) in arrival order.
async fn consume(url: &str, count: u64) -> Vec<(u64, u64)> {
    let connection = Connection::connect(url).await.unwrap();
    let mut deliveries = connection.subscribe("e2e", 500).await.unwrap();
    let mut received = Vec::new();
    while (received.len() as u64) < count {
        let delivery = deliveries.next().await.expect("delivery");
        let text = std::str::from_utf8(delivery.payload()).unwrap();
        let (publisher, seq) = text.split_once(':').unwrap();
        received.push((publisher.parse().unwrap(), seq.parse().unwrap()));
        assert_eq!(delivery.attempt(), 1);
        delivery.ack().unwrap();
    }
    connection.close().await;
    received
}

#[test]
fn two_publishers_one_consumer_tokio() {
    two_publishers_one_consumer(ServerBinary::Tokio);
}

#[test]
fn two_publishers_one_consumer_smol() {
    two_publishers_one_consumer(ServerBinary::Smol);
}

/// A client that sends garbage gets an error frame and is disconnected; a client connected
/// at the same time keeps working.
fn garbage_is_refused_others_unaffected(binary: ServerBinary) {
    let server = Server::start(binary);
    let url = server.url();
    block_on(async {
        let good = Connection::connect(&url).await.unwrap();
        good.declare_queue("steady", QueueOptions::default()).await.unwrap();

        let mut bad = std::net::TcpStream::connect(server.addr).unwrap();
        bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        bad.write_all(&chute_protocol::PREFACE).unwrap();
        bad.write_all(b"\x00\x00\x00\x04\xEEgarbage").unwrap();
        let mut reply = Vec::new();
        bad.read_to_end(&mut reply).expect("server closes the connection");
        assert!(reply.len() > 6, "an error frame before the close");
        assert_eq!(reply[4], chute_protocol::FrameKind::Error as u8);

        good.publish("steady", "still works").await.unwrap().await.unwrap();
        let mut deliveries = good.subscribe("steady", 1).await.unwrap();
        let delivery = deliveries.next().await.unwrap();
        assert_eq!(&delivery.payload()[..], b"still works");
        delivery.ack().unwrap();
    });
    assert!(server.stop().success());
}

#[test]
fn garbage_is_refused_others_unaffected_tokio() {
    garbage_is_refused_others_unaffected(ServerBinary::Tokio);
}

#[test]
fn garbage_is_refused_others_unaffected_smol() {
    garbage_is_refused_others_unaffected(ServerBinary::Smol);
}

/// SIGTERM stops the server gracefully: connected clients are told (`shutting-down`), the
/// process exits 0, and the port is free again. (A client that does not reconnect shows what
/// it was told.)
fn sigterm_stops_gracefully(binary: ServerBinary) {
    let server = Server::start(binary);
    let url = server.url();
    let addr = server.addr;
    let options = ConnectOptions::without_reconnect();
    let connection = block_on(Connection::connect_with(&url, options)).unwrap();
    let status = server.stop();
    assert!(status.success(), "exit status {status:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while connection.closed_reason().is_none() {
        assert!(std::time::Instant::now() < deadline, "client was not told");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        connection.closed_reason().unwrap().code(),
        Some(chute_protocol::ErrorCode::SHUTTING_DOWN)
    );
    std::net::TcpListener::bind(addr).expect("port released");
}

#[test]
fn sigterm_stops_gracefully_tokio() {
    sigterm_stops_gracefully(ServerBinary::Tokio);
}

#[test]
fn sigterm_stops_gracefully_smol() {
    sigterm_stops_gracefully(ServerBinary::Smol);
}

/// A data directory written by one server binary is recovered by the other: the log format is
/// the core's, not the runtime's.
#[test]
fn data_directory_moves_between_runtimes() {
    let data = tempfile::tempdir().unwrap();
    for (writer, reader) in
        [(ServerBinary::Tokio, ServerBinary::Smol), (ServerBinary::Smol, ServerBinary::Tokio)]
    {
        let queue = format!("moved-by-{}", writer.name());
        let server = Server::start_in(writer, data.path(), &[]);
        block_on(async {
            let connection = Connection::connect(&server.url()).await.unwrap();
            connection.declare_queue(&queue, QueueOptions::default()).await.unwrap();
            for i in 0..100 {
                connection.publish(&queue, format!("{i}")).await.unwrap().await.unwrap();
            }
            connection.close().await;
        });
        assert!(server.stop().success());

        let server = Server::start_in(reader, data.path(), &[]);
        block_on(async {
            let connection = Connection::connect(&server.url()).await.unwrap();
            let mut deliveries = connection.subscribe(&queue, 100).await.unwrap();
            for i in 0..100 {
                let delivery = deliveries.next().await.unwrap();
                assert_eq!(delivery.payload(), format!("{i}").as_bytes());
                delivery.ack().unwrap();
            }
            connection.close().await;
        });
        assert!(server.stop().success());
    }
}
