//! The client machine on its own, fed server frames by hand.

use bytes::{Bytes, BytesMut};
use chute_protocol::{
    Ack, Close, Deliver, Delivery, Destination, ErrorCode, Frame, FrameReader, HelloOk,
    PublishMessage, ServerLimits, FRAME_SIZE_CEILING, PREFACE,
};

use super::*;

/// A server's `HelloOk`: heartbeats every second, roomy limits (the session's tests use it
/// too).
/// `hello_ok` from a server that chose `version` (2: Blocked, Unblocked and the login frames).
pub(super) fn hello_ok_version(version: u16, unconfirmed_max: u32) -> Frame {
    let Frame::HelloOk(hello_ok) = hello_ok(unconfirmed_max) else { unreachable!() };
    Frame::HelloOk(HelloOk { version, ..hello_ok })
}

pub(super) fn hello_ok(unconfirmed_max: u32) -> Frame {
    Frame::HelloOk(HelloOk {
        version: 1,
        server_name: "test".into(),
        connection_id: 1,
        heartbeat_ms: 1_000,
        limits: ServerLimits {
            frame_size_max: 1 << 20,
            payload_size_max: 1 << 16,
            publish_batch_max: 100,
            unconfirmed_max,
            credit_max: 1000,
            subscriptions_max: 10,
        },
    })
}

fn bytes_of(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out, 1 << 20).unwrap();
    }
    out.freeze()
}

/// A client that completed its handshake, with the preface and Hello drained.
fn connected(unconfirmed_max: u32) -> Client {
    let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    drain(&mut client);
    client
        .handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[hello_ok(unconfirmed_max)])));
    drain(&mut client);
    assert!(client.is_open());
    client
}

/// Every frame the client sent, and every event.
fn drain(client: &mut Client) -> (Vec<Frame>, Vec<ClientEvent>) {
    let mut reader = FrameReader::new(FRAME_SIZE_CEILING);
    let (mut frames, mut events) = (Vec::new(), Vec::new());
    while let Some(output) = client.poll_output() {
        match output {
            ClientOutput::Send(mut bytes) => {
                if bytes.starts_with(&PREFACE) {
                    bytes = bytes.slice(PREFACE.len()..);
                }
                reader.feed(bytes);
                while let Some(frame) = reader.next_frame().unwrap() {
                    frames.push(frame);
                }
            }
            ClientOutput::Event(event) => events.push(event),
            ClientOutput::Close => {}
        }
    }
    (frames, events)
}

fn message() -> PublishMessage {
    PublishMessage::new(Bytes::from_static(b"x"))
}

/// The client starts with the preface and a Hello offering versions 1 and 2.
#[test]
fn opens_with_preface_and_hello() {
    let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    let Some(ClientOutput::Send(bytes)) = client.poll_output() else { panic!() };
    assert!(bytes.starts_with(&PREFACE));
    let mut reader = FrameReader::new(FRAME_SIZE_CEILING);
    reader.feed(bytes.slice(PREFACE.len()..));
    let Some(Frame::Hello(hello)) = reader.next_frame().unwrap() else { panic!() };
    assert_eq!((hello.version_min, hello.version_max), (1, 2));
}

/// `Blocked` and `Unblocked` from the server become events.
#[test]
fn blocked_and_unblocked_become_events() {
    let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    drain(&mut client);
    let hello_ok = hello_ok_version(2, 10);
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[hello_ok])));
    drain(&mut client);
    let frames = [
        Frame::Blocked(chute_protocol::Blocked { reason: "disk".into() }),
        Frame::Unblocked(chute_protocol::Unblocked),
    ];
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&frames)));
    let (_, events) = drain(&mut client);
    assert_eq!(events, [ClientEvent::Blocked { reason: "disk".into() }, ClientEvent::Unblocked]);
}

/// A server that sends a frame the client has no use for once open (here the authentication
/// exchange's `AuthOk`) ends the connection with `unexpected-frame`; it does not panic the
/// client.
#[test]
fn an_authentication_frame_after_hello_ok_closes_without_a_panic() {
    let mut client = connected(10);
    let auth_ok = Frame::AuthOk(chute_protocol::AuthOk { user: "x".into(), data: Bytes::new() });
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[auth_ok])));
    let (_, events) = drain(&mut client);
    let closed = events.iter().find_map(|e| match e {
        ClientEvent::Closed { reason } => reason.code(),
        _ => None,
    });
    assert_eq!(closed, Some(chute_protocol::ErrorCode::UNEXPECTED_FRAME), "{events:?}");
}

/// A server asking for the authentication exchange from a client with no credentials ends the
/// handshake with `authentication-failed`, naming the mechanisms it offered.
#[test]
fn auth_required_ends_the_handshake() {
    let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    drain(&mut client);
    let required = Frame::AuthRequired(chute_protocol::AuthRequired {
        version: 2,
        mechanisms: vec!["SCRAM-SHA-256".into()],
    });
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[required])));
    let (_, events) = drain(&mut client);
    let Some(ClientEvent::Closed { reason: CloseReason::Code { code, message } }) = events.last()
    else {
        panic!("{events:?}")
    };
    assert_eq!(*code, chute_protocol::ErrorCode::AUTHENTICATION_FAILED);
    assert!(message.contains("SCRAM-SHA-256"), "{message}");
}

/// Publishing past the server's unconfirmed window is refused until confirms arrive.
#[test]
fn window_full_until_confirmed() {
    let mut client = connected(2);
    let queue = Destination::Queue("q".into());
    assert_eq!(client.publish(&queue, false, message()), Ok(1));
    assert_eq!(client.publish(&queue, false, message()), Ok(2));
    assert_eq!(
        client.publish(&queue, false, message()),
        Err(CommandError::WindowFull { unconfirmed: 2 })
    );
    let confirm =
        Frame::Confirm(chute_protocol::Confirm { ranges: vec![Range { first: 1, count: 2 }] });
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[confirm])));
    let (_, events) = drain(&mut client);
    assert_eq!(events, vec![ClientEvent::Confirmed(Range { first: 1, count: 2 })]);
    assert_eq!(client.publish(&queue, false, message()), Ok(3));
}

/// Publishes queued together go out in frames of about `BATCH_FRAME_BYTES_TARGET`, so a
/// receiver can slice most of them out of one read; a message larger than that gets a frame
/// of its own.
#[test]
fn publish_batches_close_near_the_frame_target() {
    let mut client = connected(1000);
    let queue = Destination::Queue("q".into());
    let payload = Bytes::from(vec![7u8; 1000]);
    for _ in 0..100 {
        client.publish(&queue, false, PublishMessage::new(payload.clone())).unwrap();
    }
    let big = Bytes::from(vec![8u8; 2 * chute_protocol::BATCH_FRAME_BYTES_TARGET]);
    client.publish(&queue, false, PublishMessage::new(big)).unwrap();
    let (frames, _) = drain(&mut client);
    let sizes: Vec<usize> = frames
        .iter()
        .map(|frame| match frame {
            Frame::Publish(publish) => publish.messages.iter().map(|m| m.payload.len()).sum(),
            other => panic!("expected only publishes, got {other:?}"),
        })
        .collect();
    let batches = &sizes[..sizes.len() - 1];
    assert_eq!(batches.iter().sum::<usize>(), 100 * 1000);
    assert!(batches.len() >= 4, "{sizes:?}");
    assert!(
        batches.iter().all(|&bytes| bytes <= chute_protocol::BATCH_FRAME_BYTES_TARGET),
        "{sizes:?}"
    );
    assert_eq!(sizes.last(), Some(&(2 * chute_protocol::BATCH_FRAME_BYTES_TARGET)));
}

/// Acks coalesce into ranges in one frame; credit owed is granted in one frame.
#[test]
fn acks_coalesce_and_auto_credit_follows() {
    let mut client = connected(10);
    let (_, subscription) = client.subscribe("q", 3, None, true).unwrap();
    drain(&mut client);
    let deliveries = (1..=3).map(delivery).collect();
    let deliver = Frame::Deliver(Deliver { subscription, deliveries });
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[deliver])));
    drain(&mut client);
    for tag in [1, 2, 3] {
        client.ack(tag).unwrap();
    }
    let (frames, _) = drain(&mut client);
    assert_eq!(
        frames,
        vec![
            Frame::Ack(Ack { request_id: 0, ranges: vec![Range { first: 1, count: 3 }] }),
            Frame::Credit(chute_protocol::Credit { subscription, credit: 3 }),
        ]
    );
    assert_eq!(client.ack(2), Err(CommandError::UnknownTag(2)), "an ack twice is caught locally");
}

pub(super) fn delivery(tag: u64) -> Delivery {
    Delivery {
        tag,
        attempt: 1,
        redelivered: false,
        id: None,
        headers: Vec::new(),
        payload: Bytes::from_static(b"x"),
        published_unix_ms: 0,
        priority: 0,
        group: None,
        topic: None,
    }
}

/// A message the server's decoder would refuse is refused here instead.
#[test]
fn invalid_messages_are_refused_locally() {
    let mut client = connected(10);
    let queue = Destination::Queue("q".into());
    let mut loud = message();
    loud.priority = 10;
    assert!(matches!(client.publish(&queue, false, loud), Err(CommandError::InvalidMessage(_))));
    let huge = PublishMessage::new(Bytes::from(vec![0; 2 << 20]));
    assert!(matches!(client.publish(&queue, false, huge), Err(CommandError::TooLarge { .. })));
}

/// The server's Close ends the connection with its code; commands fail afterwards.
#[test]
fn server_close_ends_the_connection() {
    let mut client = connected(10);
    let close = Frame::Close(Close { code: ErrorCode::SHUTTING_DOWN, message: "bye".into() });
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[close])));
    let (_, events) = drain(&mut client);
    assert_eq!(
        events,
        vec![ClientEvent::Closed {
            reason: CloseReason::Code { code: ErrorCode::SHUTTING_DOWN, message: "bye".into() }
        }]
    );
    assert_eq!(
        client.publish(&Destination::Queue("q".into()), false, message()),
        Err(CommandError::Closed)
    );
}

/// The transport failing under an open connection is its own reason, with no protocol code
/// (`internal` would blame the server); commands fail afterwards, and a second report of the
/// same loss adds nothing.
#[test]
fn transport_loss_is_not_a_protocol_close() {
    let mut client = connected(10);
    client.publish(&Destination::Queue("q".into()), false, message()).unwrap();
    client.handle_input(Instant::ZERO, ClientInput::Closed);
    let (_, events) = drain(&mut client);
    assert_eq!(events, vec![ClientEvent::Closed { reason: CloseReason::TransportLost }]);
    assert_eq!(CloseReason::TransportLost.code(), None);
    assert!(client.is_closed());
    client.handle_input(Instant::ZERO, ClientInput::Closed);
    assert_eq!(drain(&mut client).1, vec![]);
}

/// No HelloOk in time: the client gives up.
#[test]
fn handshake_timeout() {
    let mut client = Client::new(ClientConfig::default(), Instant::ZERO);
    drain(&mut client);
    let deadline = client.poll_timeout().unwrap();
    client.handle_input(deadline, ClientInput::Timeout);
    let (_, events) = drain(&mut client);
    assert!(matches!(
        events[..],
        [ClientEvent::Closed {
            reason: CloseReason::Code { code: ErrorCode::HANDSHAKE_TIMEOUT, .. }
        }]
    ));
}

/// An idle client sends heartbeats, and gives up on a silent server after three intervals.
#[test]
fn heartbeats_and_silent_server() {
    let mut client = connected(10);
    let at = client.poll_timeout().unwrap();
    assert_eq!(at, Instant::from_millis(1_000));
    client.handle_input(at, ClientInput::Timeout);
    let (frames, _) = drain(&mut client);
    assert_eq!(frames, vec![Frame::Heartbeat(chute_protocol::Heartbeat)]);
    client.handle_input(Instant::from_millis(3_000), ClientInput::Timeout);
    let (_, events) = drain(&mut client);
    assert!(matches!(
        events[..],
        [ClientEvent::Closed {
            reason: CloseReason::Code { code: ErrorCode::HEARTBEAT_TIMEOUT, .. }
        }]
    ));
}

/// A batch is encoded message by message as each is published; the frame must be the very
/// bytes postcard writes for the whole `Publish`, or the server would refuse it.
#[test]
fn a_batch_encoded_message_by_message_is_the_publish_frame() {
    let mut client = connected(100);
    let topic = Destination::Topic("orders.eu".into());
    let mut messages = Vec::new();
    for i in 0..5u8 {
        let mut message = PublishMessage::new(Bytes::from(vec![i; 300 * usize::from(i)]));
        message.id = Some(format!("m{i}"));
        message.group = (i % 2 == 0).then(|| "g".to_string());
        message.priority = i;
        client.publish_ref(&topic, true, &message).unwrap();
        messages.push(message);
    }
    let mut sent = BytesMut::new();
    while let Some(output) = client.poll_output() {
        if let ClientOutput::Send(bytes) = output {
            sent.extend_from_slice(&bytes);
        }
    }
    let mut expected = BytesMut::new();
    let publish = chute_protocol::Publish { destination: topic, mandatory: true, messages };
    encode_body(FrameKind::Publish, &publish, &mut expected, 1 << 20).unwrap();
    assert_eq!(sent, expected);
}

/// After the server says it is going away, settling a delivery grants no credit back.
#[test]
fn withheld_credit_is_not_granted() {
    let mut client = connected(10);
    let (_, subscription) = client.subscribe("q", 2, None, true).unwrap();
    drain(&mut client);
    let deliver = Frame::Deliver(Deliver { subscription, deliveries: vec![delivery(1)] });
    client.handle_input(Instant::ZERO, ClientInput::Received(bytes_of(&[deliver])));
    drain(&mut client);
    client.withhold_credit();
    client.ack(1).unwrap();
    let (frames, _) = drain(&mut client);
    assert_eq!(frames, vec![Frame::Ack(Ack { request_id: 0, ranges: vec![Range::one(1)] })]);
    assert_eq!(client.unsettled_by_subscription().len(), 0);
}

/// Frames the driver decoded do what their bytes do, and the error its reader stopped at ends
/// the connection as bad bytes would, after the frames before it.
#[test]
fn decoded_frames_act_as_their_bytes() {
    let mut client = connected(10);
    let (_, subscription) = client.subscribe("q", 3, None, true).unwrap();
    drain(&mut client);
    let deliver = Frame::Deliver(Deliver { subscription, deliveries: vec![delivery(1)] });
    let error = chute_protocol::DecodeError::BadPreface;
    let frames = vec![deliver.clone()];
    client.handle_input(Instant::ZERO, ClientInput::Frames { frames, error: None });
    let (_, events) = drain(&mut client);
    assert!(
        matches!(&events[..], [ClientEvent::Deliveries { deliveries, .. }] if deliveries.len() == 1)
    );
    assert_eq!(client.unsettled_len(), 1);
    let frames = vec![Frame::Deliver(Deliver { subscription, deliveries: vec![delivery(2)] })];
    client.handle_input(Instant::ZERO, ClientInput::Frames { frames, error: Some(error.clone()) });
    let (_, events) = drain(&mut client);
    assert!(matches!(events[0], ClientEvent::Deliveries { .. }), "{events:?}");
    let closed = ClientEvent::Closed {
        reason: CloseReason::Code {
            code: error.error_code(),
            message: format!("server sent bad bytes: {error}"),
        },
    };
    assert_eq!(events.last(), Some(&closed));
    assert!(client.is_closed());
}
