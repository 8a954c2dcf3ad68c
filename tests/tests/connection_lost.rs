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

/// A server that sends bytes no frame decodes from, right behind frames that do (a whole
/// `Deliver`'s worth arriving in one read with them): the frames before take effect and the
/// connection ends with the decoding error's code, as the client's own reader would have it
/// (the driver cuts and decodes what it reads before handing it to the session).
#[test]
fn undecodable_bytes_from_a_server_end_the_connection() {
    use std::io::{Read, Write};

    use chute_protocol::{Frame, FrameReader, HelloOk, ServerLimits, FRAME_SIZE_CEILING};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let garbage: &[u8] = b"\x00\x00\x00\x04\xEEgarbage";
    let fake = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut hello = [0u8; 256];
        let _ = socket.read(&mut hello).unwrap();
        let hello_ok = Frame::HelloOk(HelloOk {
            version: 1,
            server_name: "fake".into(),
            connection_id: 1,
            heartbeat_ms: 10_000,
            limits: ServerLimits {
                frame_size_max: 1 << 20,
                payload_size_max: 1 << 16,
                publish_batch_max: 100,
                unconfirmed_max: 100,
                credit_max: 1000,
                subscriptions_max: 10,
            },
        });
        let mut out = bytes::BytesMut::new();
        hello_ok.encode(&mut out, 1 << 20).unwrap();
        socket.write_all(&out).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut out = bytes::BytesMut::new();
        Frame::Heartbeat(chute_protocol::Heartbeat).encode(&mut out, 1 << 20).unwrap();
        out.extend_from_slice(garbage);
        socket.write_all(&out).unwrap();
        // Held open: the client must end the connection on the bytes alone.
        std::thread::sleep(Duration::from_secs(5));
    });
    let mut reader = FrameReader::new(FRAME_SIZE_CEILING);
    reader.feed(bytes::Bytes::from_static(garbage));
    let expected = reader.next_frame().expect_err("the bytes do not decode").error_code();

    let url = format!("chute://{addr}");
    let options = ConnectOptions::without_reconnect();
    let connection = block_on(Connection::connect_with(&url, options)).unwrap();
    let reason = within("the connection to end", Duration::from_secs(4), move || loop {
        if let Some(reason) = connection.closed_reason() {
            return reason;
        }
        std::thread::sleep(Duration::from_millis(10));
    });
    assert_eq!(reason.code(), Some(expected), "{reason}");
    drop(fake);
}
