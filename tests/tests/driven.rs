//! Connections whose I/O the caller drives (`Connection::connect_driven`), or that
//! `Connection::connect` puts on the caller's tokio runtime: the same broker conversation with
//! no thread of the connection's own.

use std::time::Duration;

use chute_client::{
    ClientConfig, ConnectOptions, Connection, IoPlacement, PublishError, QueueOptions,
};
use chute_tests::{within, Server, ServerBinary};
use futures::StreamExt;

const MESSAGES: u64 = 3_000;

fn options() -> ConnectOptions {
    ConnectOptions::default()
}

/// One task drives a publisher's and a consumer's connection: every message is confirmed, and
/// arrives once and in order.
fn one_task_publishes_and_consumes(binary: ServerBinary) {
    let server = Server::start(binary);
    let url = server.url();
    let received = within("the driven round trip", Duration::from_secs(60), move || {
        async_io::block_on(async {
            let (publisher, mut publisher_io) =
                Connection::connect_driven(&url, options()).await.unwrap();
            let (consumer, mut consumer_io) =
                Connection::connect_driven(&url, options()).await.unwrap();
            let work = async {
                publisher.declare_queue("driven", QueueOptions::default()).await.unwrap();
                let mut deliveries = consumer.subscribe("driven", 200).await.unwrap();
                let mut confirmations = Vec::new();
                for seq in 0..MESSAGES {
                    confirmations.push(publisher.publish("driven", seq.to_string()).await.unwrap());
                }
                for confirmation in confirmations {
                    confirmation.await.expect("confirmed");
                }
                let mut received = Vec::new();
                while (received.len() as u64) < MESSAGES {
                    let delivery = deliveries.next().await.expect("a delivery");
                    received.push(std::str::from_utf8(delivery.payload()).unwrap().to_string());
                    delivery.ack().unwrap();
                }
                drop(deliveries);
                consumer.close().await;
                publisher.close().await;
                received
            };
            publisher_io.run_until(consumer_io.run_until(work)).await
        })
    });
    let expected: Vec<String> = (0..MESSAGES).map(|seq| seq.to_string()).collect();
    assert_eq!(received, expected);
    assert!(server.stop().success());
}

#[test]
fn one_task_publishes_and_consumes_tokio() {
    one_task_publishes_and_consumes(ServerBinary::Tokio);
}

#[test]
fn one_task_publishes_and_consumes_smol() {
    one_task_publishes_and_consumes(ServerBinary::Smol);
}

/// Dropping the driver ends the connection: what was waiting fails at once, rather than
/// waiting for I/O that will never happen.
#[test]
fn dropping_the_driver_fails_what_is_pending() {
    let server = Server::start(ServerBinary::Tokio);
    let url = server.url();
    within("a publish after the driver is gone", Duration::from_secs(20), move || {
        futures::executor::block_on(async {
            let (connection, mut io) = Connection::connect_driven(&url, options()).await.unwrap();
            io.run_until(connection.declare_queue("gone", QueueOptions::default())).await.unwrap();
            let confirmation = connection.publish("gone", "never sent").await.unwrap();
            drop(io);
            match confirmation.await {
                Err(PublishError::ConnectionLost { io_error: Some(how), .. }) => {
                    assert!(how.contains("driver was dropped"), "{how}")
                }
                other => panic!("expected a lost connection, got {other:?}"),
            }
            assert!(connection.closed_reason().is_some());
            connection.close().await;
        })
    });
    assert!(server.stop().success());
}

/// A driven connection that is idle for ten heartbeat intervals keeps itself alive: its timer
/// fires again and again (the server closes a connection silent for three intervals). The
/// interval is long enough (250 ms) that a loaded CI machine's scheduling hiccups do not count
/// as silence.
#[test]
fn an_idle_driven_connection_keeps_its_heartbeat() {
    let server = Server::start(ServerBinary::Tokio);
    let url = server.url();
    within("an idle driven connection", Duration::from_secs(20), move || {
        async_io::block_on(async {
            let client = ClientConfig { heartbeat_ms: 250, ..ClientConfig::default() };
            let options = ConnectOptions { client, ..ConnectOptions::default() };
            let (connection, mut io) = Connection::connect_driven(&url, options).await.unwrap();
            assert_eq!(connection.server().heartbeat_ms, 250);
            io.run_until(async_io::Timer::after(Duration::from_millis(2_500))).await;
            let declared = io.run_until(connection.declare_queue("idle", QueueOptions::default()));
            declared.await.expect("the connection is still open after ten intervals of silence");
            io.run_until(connection.close()).await;
        })
    });
    assert!(server.stop().success());
}

/// Under tokio, `Connection::connect` runs the connection's I/O as a task on the caller's
/// runtime (`IoPlacement::Auto`): a publisher and a consumer on a one-thread runtime get every
/// message through, and the connections end with that runtime, as its own sockets would.
#[test]
fn under_tokio_connect_runs_on_the_callers_runtime() {
    let server = Server::start(ServerBinary::Tokio);
    let url = server.url();
    let (publisher, received) =
        within("a round trip on tokio", Duration::from_secs(60), move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let publisher = runtime.block_on(Connection::connect(&url)).unwrap();
            let consumer = runtime.block_on(Connection::connect(&url)).unwrap();
            let received = runtime.block_on(round_trip(&publisher, &consumer, "on-tokio"));
            drop(runtime);
            (publisher, received)
        });
    let expected: Vec<String> = (0..200).map(|seq| seq.to_string()).collect();
    assert_eq!(received, expected);
    let reason = publisher.closed_reason().expect("the connection ended with its runtime");
    assert!(reason.to_string().contains("driver was dropped"), "{reason}");
    assert!(server.stop().success());
}

/// `IoPlacement::OwnThread` keeps the connection's I/O on a thread of its own, so it outlives
/// the tokio runtime it was made in.
#[test]
fn an_own_thread_connection_outlives_its_runtime() {
    let server = Server::start(ServerBinary::Tokio);
    let url = server.url();
    within("a connection after its runtime", Duration::from_secs(60), move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let options = ConnectOptions { io: IoPlacement::OwnThread, ..options() };
        let publisher = runtime.block_on(Connection::connect_with(&url, options.clone())).unwrap();
        let consumer = runtime.block_on(Connection::connect_with(&url, options)).unwrap();
        drop(runtime);
        let received = futures::executor::block_on(round_trip(&publisher, &consumer, "own"));
        assert_eq!(received.len(), 200);
        assert!(publisher.closed_reason().is_none());
    });
    assert!(server.stop().success());
}

/// Publishes 200 messages to `queue`, awaits each confirm, and consumes them with an ack each.
async fn round_trip(publisher: &Connection, consumer: &Connection, queue: &str) -> Vec<String> {
    publisher.declare_queue(queue, QueueOptions::default()).await.unwrap();
    let mut deliveries = consumer.subscribe(queue, 50).await.unwrap();
    for seq in 0..200u32 {
        let confirmation = publisher.publish(queue, seq.to_string()).await.unwrap();
        confirmation.await.expect("confirmed");
    }
    let mut received = Vec::new();
    while received.len() < 200 {
        let delivery = deliveries.next().await.expect("a delivery");
        received.push(std::str::from_utf8(delivery.payload()).unwrap().to_string());
        delivery.ack().unwrap();
    }
    received
}
