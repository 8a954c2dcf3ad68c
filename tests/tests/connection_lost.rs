//! A server that dies under a connection that does not reconnect: the client reports a lost
//! connection, not a server bug (`internal`), so callers can tell the two apart and retry.
//! (Reconnecting connections are tested in `reconnect.rs`.)

use std::time::Duration;

use chute_client::{ConnectOptions, Connection, Error, PublishError, QueueOptions};
use chute_tests::{within, Server, ServerBinary};
use futures::executor::block_on;

/// SIGKILL while a publish waits for its confirm and a request for its answer (the server is
/// stopped first, so neither can be answered): both fail with `ConnectionLost` naming the
/// server's address and how the socket ended, retriable, with no protocol code; later
/// commands fail the same way.
fn killed_server_is_a_lost_connection(binary: ServerBinary) {
    let mut server = Server::start(binary);
    let (url, addr) = (server.url(), server.addr.to_string());
    let options = ConnectOptions::without_reconnect();
    let connection = block_on(Connection::connect_with(&url, options)).unwrap();
    block_on(connection.declare_queue("jobs", QueueOptions::default())).unwrap();

    server.signal("STOP");
    let confirmation = block_on(connection.publish("jobs", "pending")).unwrap();
    let asking = connection.clone();
    let mut stats = Box::pin(async move { asking.queue_stats("jobs").await });
    // Polled once, the request is registered and sent, and stays unanswered.
    assert!(block_on(async { futures::poll!(stats.as_mut()) }).is_pending());
    server.kill();

    let (published, requested) =
        within("the waiters to fail", Duration::from_secs(20), move || {
            (block_on(confirmation), block_on(stats))
        });
    match published.unwrap_err() {
        error @ PublishError::ConnectionLost { .. } => {
            assert!(error.is_retriable());
            let text = error.to_string();
            assert!(
                text.starts_with(&format!("connection to {addr} was lost before the confirm: "))
            );
        }
        other => panic!("{}: expected a lost connection, got {other:?}", binary.name()),
    }
    let error = requested.unwrap_err();
    let Error::ConnectionLost { addr: lost_addr, io_error: Some(_) } = &error else {
        panic!("{}: expected a lost connection, got {error:?}", binary.name());
    };
    assert_eq!(lost_addr, &addr);
    assert!(error.is_retriable());
    assert_eq!(error.code(), None, "no protocol code, least of all internal");
    assert!(matches!(block_on(connection.list_queues()), Err(Error::ConnectionLost { .. })));
    assert!(matches!(connection.closed_reason(), Some(Error::ConnectionLost { .. })));
}

#[test]
fn killed_server_is_a_lost_connection_tokio() {
    killed_server_is_a_lost_connection(ServerBinary::Tokio);
}

#[test]
fn killed_server_is_a_lost_connection_smol() {
    killed_server_is_a_lost_connection(ServerBinary::Smol);
}
