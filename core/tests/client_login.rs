//! The client machine logging in to the real broker (PROTOCOL.md §5.3, §5.8): SCRAM-SHA-256
//! with the server proving itself, a token, a client certificate, and the refusals.

mod support;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use chute_core::auth::scram::ScramKeys;
use chute_core::auth::{PermissionRules, Permissions, TokenHash, User, Users};
use chute_core::client::{
    Client, ClientConfig, ClientEvent, ClientInput, ClientOutput, CloseReason, Response,
};
use chute_core::{BrokerConfig, ConnId, PeerInfo};
use chute_protocol::{
    Credentials, ErrorCode, Frame, FrameReader, QueueOptions, FRAME_SIZE_CEILING, PREFACE,
};
use support::Net;

const DELAY_MS: u64 = 500;

fn alice() -> User {
    let rules = PermissionRules {
        configure: vec!["{user}.*".into()],
        write: vec!["{user}.*".into()],
        read: vec!["{user}.*".into()],
        admin: false,
    };
    User {
        name: "alice".into(),
        scram: Some(ScramKeys::derive("alice-pw", b"sixteen-byte-slt", 4096)),
        tokens: vec![TokenHash::of("alice-token")],
        permissions: Permissions::new(&rules, "alice").unwrap(),
    }
}

fn net_with_alice() -> Net {
    let mut config = BrokerConfig::default();
    config.auth.failure_delay_ms = DELAY_MS as u32;
    let mut net = Net::with_config(config);
    let now = net.now;
    net.broker.set_users(now, Some(Users::new([alice()]).unwrap()));
    net.pump();
    net
}

fn peer(tls: bool, certificate_user: Option<&str>) -> PeerInfo {
    PeerInfo {
        addr: Some(SocketAddr::from(([10, 0, 0, 1], 40_000))),
        tls,
        certificate_user: certificate_user.map(str::to_string),
    }
}

fn with_credentials(credentials: Credentials) -> ClientConfig {
    ClientConfig { credentials, auth_nonce: *b"eighteen-bytes-nnc", ..ClientConfig::default() }
}

fn password(username: &str, password: &str) -> ClientConfig {
    let credentials =
        Credentials::Password { username: username.into(), password: password.into() };
    with_credentials(credentials)
}

fn user_of(net: &Net, conn: ConnId) -> Option<String> {
    net.broker.connections().into_iter().find(|c| c.id == conn)?.user
}

/// SCRAM over plain TCP: the password is proven, not sent; the connection is alice's, and a
/// declaration issued before the login finished waits for it (the broker accepts nothing but
/// the exchange until `AuthOk`: sent at once, it would end the connection).
#[test]
fn scram_login_over_plain_tcp() {
    let mut net = net_with_alice();
    let conn = net.accept(peer(false, None));
    let mut client = Client::new(password("alice", "alice-pw"), net.now);
    let declared = client.declare_queue("alice.jobs", QueueOptions::default(), false).unwrap();
    net.clients.insert(conn, client);
    net.pump();
    assert!(net.clients[&conn].is_open(), "{:?}", net.events[&conn]);
    assert_eq!(net.clients[&conn].server().unwrap().version, 2);
    assert_eq!(user_of(&net, conn).as_deref(), Some("alice"));
    assert!(matches!(net.response(conn, declared), Response::Declared(_)));
}

/// A wrong password: the broker's refusal after its delay ends the connection with
/// authentication-failed, which the client reports as it came.
#[test]
fn wrong_password_is_refused() {
    let mut net = net_with_alice();
    let conn = net.connect_with(peer(false, None), password("alice", "wrong"));
    assert!(!net.clients[&conn].is_open());
    assert_eq!(net.closed_event(conn), None, "refused only after the delay");
    net.advance(DELAY_MS);
    let (code, message) = net.closed_event(conn).expect("closed");
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::AUTHENTICATION_FAILED, "authentication failed")
    );
}

/// A token goes in `Hello` (the driver sends it only over TLS, which the broker requires).
#[test]
fn token_login_over_tls() {
    let mut net = net_with_alice();
    let token = Credentials::Token { token: "alice-token".into() };
    let conn = net.connect_with(peer(true, None), with_credentials(token));
    assert!(net.clients[&conn].is_open(), "{:?}", net.events[&conn]);
    assert_eq!(user_of(&net, conn).as_deref(), Some("alice"));
}

/// A client certificate naming alice: `Anonymous` in `Hello` is enough, with no exchange.
#[test]
fn client_certificate_login() {
    let mut net = net_with_alice();
    let config = ClientConfig { client_certificate: true, ..ClientConfig::default() };
    let conn = net.connect_with(peer(true, Some("alice")), config);
    assert!(net.clients[&conn].is_open(), "{:?}", net.events[&conn]);
    assert_eq!(user_of(&net, conn).as_deref(), Some("alice"));
}

/// A client without credentials meets a server that requires a login: it ends the connection
/// itself, saying what the server wanted, rather than waiting to be refused.
#[test]
fn no_credentials_for_the_offered_mechanisms() {
    let mut net = net_with_alice();
    let conn = net.connect_with(peer(false, None), ClientConfig::default());
    let (code, message) = net.closed_event(conn).expect("closed at once");
    assert_eq!(code, ErrorCode::AUTHENTICATION_FAILED);
    assert!(message.contains("requires a login by SCRAM-SHA-256"), "{message}");
    assert!(message.contains("no credentials"), "{message}");
}

/// Without users the broker answers `HelloOk` at once, without `AuthOk`: a client holding a
/// password or token ends that connection (nobody checked who it is), unless told to accept
/// it.
#[test]
fn a_server_that_checks_nothing_is_refused_by_a_client_with_a_secret() {
    let token = with_credentials(Credentials::Token { token: "alice-token".into() });
    for config in [password("alice", "anything"), token] {
        let mut net = Net::new();
        let conn = net.connect_with(PeerInfo::default(), config.clone());
        assert!(!net.clients[&conn].is_open());
        let (code, message) = net.closed_event(conn).expect("closed at once");
        assert_eq!(code, ErrorCode::AUTHENTICATION_FAILED);
        assert!(message.contains("admitted this connection without checking its credentials"));

        let mut net = Net::new();
        let config = ClientConfig { accept_unchecked_credentials: true, ..config };
        let conn = net.connect_with(PeerInfo::default(), config);
        assert!(net.clients[&conn].is_open(), "{:?}", net.events[&conn]);
    }
    let mut net = Net::new();
    let conn = net.connect_with(PeerInfo::default(), ClientConfig::default());
    assert!(net.clients[&conn].is_open(), "without credentials, nothing to be checked");
}

/// A server that answers a password client's `Hello` with `HelloOk` at once (one that lets
/// anonymous clients in and skips the exchange, as version-2 servers did before ANONYMOUS)
/// is refused: the connection would be the anonymous user's, not alice's.
#[test]
fn a_password_client_let_in_without_auth_ok_ends_the_connection() {
    let mut net = net_with_alice();
    let conn = net.accept(peer(false, None));
    let mut client = Client::new(password("alice", "alice-pw"), net.now);
    let hello_ok = chute_protocol::HelloOk {
        version: 2,
        server_name: "skips-logins".into(),
        connection_id: 1,
        heartbeat_ms: 1_000,
        limits: chute_protocol::ServerLimits {
            frame_size_max: 1 << 20,
            payload_size_max: 1 << 20,
            publish_batch_max: 100,
            unconfirmed_max: 1_000,
            credit_max: 1_000,
            subscriptions_max: 10,
        },
    };
    let events = relay(&mut net, conn, &mut client, |frame| match frame {
        Frame::AuthRequired(_) => Frame::HelloOk(hello_ok.clone()),
        other => other,
    });
    assert!(!client.is_open());
    let closed = events.iter().find_map(|e| match e {
        ClientEvent::Closed { reason } => Some(reason.clone()),
        _ => None,
    });
    let Some(CloseReason::Code { code, message }) = closed else { panic!("{events:?}") };
    assert_eq!(code, ErrorCode::AUTHENTICATION_FAILED);
    assert!(message.contains("without checking its credentials"), "{message}");
}

/// A client without credentials, offered `ANONYMOUS` by a server with users that lets
/// anonymous clients in, takes it: it is the anonymous user, and the declaration it issued
/// before the login waited for it.
#[test]
fn an_anonymous_client_chooses_anonymous() {
    let mut config = BrokerConfig::default();
    config.auth.allow_anonymous = true;
    let mut net = Net::with_config(config);
    let now = net.now;
    net.broker.set_users(now, Some(Users::new([alice()]).unwrap()));
    net.pump();
    let conn = net.accept(peer(false, None));
    let mut client = Client::new(ClientConfig::default(), net.now);
    let declared = client.declare_queue("alice.q", QueueOptions::default(), false).unwrap();
    net.clients.insert(conn, client);
    net.pump();
    assert!(net.clients[&conn].is_open(), "{:?}", net.events[&conn]);
    assert_eq!(user_of(&net, conn).as_deref(), Some("anonymous"));
    let Response::Failed(error) = net.response(conn, declared) else { panic!("declared") };
    assert_eq!(error.code, ErrorCode::NOT_AUTHORIZED);
}

/// The frames in `bytes` (without the preface).
fn frames_in(bytes: &[u8]) -> Vec<Frame> {
    let bytes = bytes.strip_prefix(&PREFACE[..]).unwrap_or(bytes);
    let mut reader = FrameReader::new(FRAME_SIZE_CEILING);
    reader.feed(Bytes::copy_from_slice(bytes));
    std::iter::from_fn(|| reader.next_frame().unwrap()).collect()
}

fn encode(frames: &[Frame]) -> Bytes {
    let mut bytes = BytesMut::new();
    for frame in frames {
        frame.encode(&mut bytes, FRAME_SIZE_CEILING).unwrap();
    }
    bytes.freeze()
}

/// Moves the client's bytes to the broker and the broker's back, through `tamper`; the
/// client's events.
fn relay(
    net: &mut Net,
    conn: ConnId,
    client: &mut Client,
    tamper: impl Fn(Frame) -> Frame,
) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    for _ in 0..10 {
        let mut sent = false;
        while let Some(output) = client.poll_output() {
            match output {
                ClientOutput::Send(bytes) => {
                    net.send_raw(conn, &bytes);
                    sent = true;
                }
                ClientOutput::Event(event) => events.push(event),
                ClientOutput::Close => {}
            }
        }
        let answers: Vec<Frame> = net.raw_frames(conn).into_iter().map(&tamper).collect();
        if !answers.is_empty() {
            client.handle_input(net.now, ClientInput::Received(encode(&answers)));
        }
        if !sent && answers.is_empty() {
            break;
        }
    }
    events
}

/// A server that cannot prove it knows alice's keys (here, the real one's `AuthOk` with its
/// signature altered on the way, as an impostor's would be) is refused by the client, with a
/// message saying so, even though `HelloOk` follows.
#[test]
fn a_server_with_a_wrong_signature_is_refused() {
    let mut net = net_with_alice();
    let conn = net.accept(peer(false, None));
    let mut client = Client::new(password("alice", "alice-pw"), net.now);
    let events = relay(&mut net, conn, &mut client, |frame| match frame {
        Frame::AuthOk(mut ok) => {
            let mut data = ok.data.to_vec();
            let last = data.len() - 2; // before the base64 padding
            data[last] = if data[last] == b'A' { b'B' } else { b'A' };
            ok.data = data.into();
            Frame::AuthOk(ok)
        }
        other => other,
    });
    assert!(!client.is_open());
    assert!(!events.iter().any(|e| matches!(e, ClientEvent::Connected(_))), "{events:?}");
    let closed = events.iter().find_map(|e| match e {
        ClientEvent::Closed { reason } => Some(reason.clone()),
        _ => None,
    });
    let Some(CloseReason::Code { code, message }) = closed else { panic!("{events:?}") };
    assert_eq!(code, ErrorCode::AUTHENTICATION_FAILED);
    assert!(message.contains("did not prove it knows the password"), "{message}");
}

/// The same relay without tampering logs in: the test above fails for the signature alone.
#[test]
fn the_relay_itself_logs_in() {
    let mut net = net_with_alice();
    let conn = net.accept(peer(false, None));
    let mut client = Client::new(password("alice", "alice-pw"), net.now);
    relay(&mut net, conn, &mut client, |frame| frame);
    assert!(client.is_open());
}

/// Before the exchange finishes the client sends nothing but it: the frames of a held
/// declaration follow `HelloOk`, never `Hello`.
#[test]
fn commands_wait_for_the_login() {
    let mut net = net_with_alice();
    let conn = net.accept(peer(false, None));
    let mut client = Client::new(password("alice", "alice-pw"), net.now);
    client.declare_queue("alice.q", QueueOptions::default(), false).unwrap();
    let mut first = BytesMut::new();
    while let Some(ClientOutput::Send(bytes)) = client.poll_output() {
        first.extend_from_slice(&bytes);
    }
    let kinds: Vec<_> = frames_in(&first).iter().map(Frame::kind).collect();
    assert_eq!(kinds, [chute_protocol::FrameKind::Hello]);
    net.send_raw(conn, &first);
    assert!(matches!(&net.raw_frames(conn)[..], [Frame::AuthRequired(_)]));
}

/// Once logged in, a client's `Close` goes out behind what it batched before (a publish, an
/// ack), not ahead of it: a publish made just before closing is carried out.
#[test]
fn close_after_login_follows_what_was_batched() {
    let mut net = net_with_alice();
    let conn = net.connect_with(peer(false, None), password("alice", "alice-pw"));
    assert!(matches!(net.declare(conn, "alice.q", QueueOptions::default()), Response::Declared(_)));
    let message = chute_protocol::PublishMessage::new(Bytes::from_static(b"last words"));
    let destination = chute_protocol::Destination::Queue("alice.q".into());
    net.client(conn).publish(&destination, false, message).unwrap();
    net.client(conn).close();
    net.pump();
    assert_eq!(net.broker.queue_depth("alice.q"), Some(1));
}

/// A client's `Debug` (its configuration, and the exchange under way) shows no password or
/// token, so a logged client or `Hello` gives no secret away.
#[test]
fn debug_output_hides_secrets() {
    let mut net = net_with_alice();
    let conn = net.accept(peer(false, None));
    let mut client = Client::new(password("alice", "alice-pw"), net.now);
    while let Some(ClientOutput::Send(bytes)) = client.poll_output() {
        net.send_raw(conn, &bytes);
    }
    let required = encode(&net.raw_frames(conn));
    client.handle_input(net.now, ClientInput::Received(required));
    let shown = format!("{client:?}");
    assert!(shown.contains("ScramStarted"), "mid-exchange: {shown}");
    assert!(!shown.contains("alice-pw"), "{shown}");
    let token = with_credentials(Credentials::Token { token: "alice-token".into() });
    assert!(!format!("{token:?}").contains("alice-token"));
}
