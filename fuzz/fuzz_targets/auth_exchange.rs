//! Logins on arbitrary input: the broker's side of every credential kind and of the SCRAM
//! exchange, and the client's SCRAM on arbitrary server messages.
//!
//! Input layout: `[selector, rest...]`. `selector` picks the peer (TLS or not, a certificate
//! user or none) and the path; `rest` is split at its first 0xff byte into two messages (the
//! client-first and client-final of SCRAM, a username and a password, a token...).
//!
//! Properties: nothing panics; a connection opens only for the one real credential (never for
//! fuzzed bytes, which cannot forge a SCRAM proof or a token); ANONYMOUS opens a connection
//! only where anonymous clients are allowed, with a trace of at most 255 characters, and only
//! as the anonymous user; a client never accepts a server message it cannot verify.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use chute_core::auth::scram::{ScramClient, ScramKeys};
use chute_core::auth::{PermissionRules, Permissions, TokenHash, User, Users};
use chute_core::{Broker, BrokerConfig, ConnId, Input, Instant, Output, PeerInfo};
use chute_protocol::{
    AuthResponse, AuthStart, Credentials, Frame, FrameReader, Hello, FRAME_SIZE_CEILING, PREFACE,
};
use libfuzzer_sys::fuzz_target;

const CONN: ConnId = ConnId(1);

/// One derivation for the whole run: PBKDF2 is slow on purpose.
fn users() -> &'static Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| {
        let rules = PermissionRules { read: vec!["*".into()], ..PermissionRules::default() };
        let user = User {
            name: "alice".into(),
            scram: Some(ScramKeys::derive("pencil", b"sixteen-byte-slt", 4096)),
            tokens: vec![TokenHash::of("the-token")],
            permissions: Permissions::new(&rules, "alice").unwrap(),
        };
        Users::new([user]).unwrap()
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, rest)) = input.split_first() else { return };
    let (first, second) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    match selector % 5 {
        0 => scram_on_broker(selector, first, second),
        1 => hello_credentials(selector, first, second),
        2 => external_on_broker(selector, first),
        3 => anonymous_on_broker(selector, first),
        _ => client_on_server_messages(first, second),
    }
});

fn broker(peer: PeerInfo) -> Broker {
    broker_allowing_anonymous(peer, false)
}

fn broker_allowing_anonymous(peer: PeerInfo, allow_anonymous: bool) -> Broker {
    let mut config = BrokerConfig::default();
    config.auth.failure_delay_ms = 0;
    config.auth.allow_anonymous = allow_anonymous;
    let mut broker = Broker::new(config, Instant::ZERO);
    broker.set_users(Instant::ZERO, Some(users().clone()));
    broker.handle_input(Instant::ZERO, Input::Accepted { conn: CONN, peer });
    broker
}

fn peer(selector: u8) -> PeerInfo {
    PeerInfo {
        addr: Some(SocketAddr::from(([10, 0, 0, selector], 5000))),
        tls: selector & 8 != 0,
        certificate_user: (selector & 16 != 0).then(|| "alice".to_string()),
    }
}

/// Sends frames and collects what the broker answers; panics on a frame it must not send.
fn exchange(broker: &mut Broker, frames: &[Frame]) -> Vec<Frame> {
    let mut bytes = BytesMut::new();
    for frame in frames {
        if frame.encode(&mut bytes, FRAME_SIZE_CEILING).is_err() {
            return Vec::new();
        }
    }
    broker.handle_input(Instant::ZERO, Input::Received { conn: CONN, bytes: bytes.freeze() });
    let mut reader = FrameReader::new(FRAME_SIZE_CEILING);
    while let Some(output) = broker.poll_output() {
        if let Output::Send { bytes, .. } = output {
            reader.feed(bytes);
        }
    }
    let mut answers = Vec::new();
    while let Ok(Some(frame)) = reader.next_frame() {
        answers.push(frame);
    }
    answers
}

fn hello(version_max: u16, credentials: Credentials) -> Vec<u8> {
    let hello = Hello {
        version_min: 1,
        version_max,
        client_name: "fuzz".into(),
        credentials,
        heartbeat_ms: 0,
    };
    let mut bytes = BytesMut::from(&PREFACE[..]);
    Frame::Hello(hello).encode(&mut bytes, FRAME_SIZE_CEILING).unwrap();
    bytes.to_vec()
}

fn opened(answers: &[Frame]) -> bool {
    answers.iter().any(|frame| matches!(frame, Frame::HelloOk(_)))
}

fn raw(broker: &mut Broker, bytes: Vec<u8>) -> Vec<Frame> {
    broker.handle_input(Instant::ZERO, Input::Received { conn: CONN, bytes: Bytes::from(bytes) });
    exchange(broker, &[])
}

fn scram_on_broker(selector: u8, client_first: &[u8], client_final: &[u8]) {
    let mut broker = broker(PeerInfo { certificate_user: None, ..peer(selector) });
    let mut answers = raw(&mut broker, hello(2, Credentials::Anonymous));
    let start =
        AuthStart { mechanism: "SCRAM-SHA-256".into(), data: Bytes::copy_from_slice(client_first) };
    answers.extend(exchange(&mut broker, &[Frame::AuthStart(start)]));
    let response = AuthResponse { data: Bytes::copy_from_slice(client_final) };
    answers.extend(exchange(&mut broker, &[Frame::AuthResponse(response)]));
    assert!(!opened(&answers), "fuzzed SCRAM messages logged in: {answers:?}");
}

fn hello_credentials(selector: u8, first: &[u8], second: &[u8]) {
    let mut broker = broker(PeerInfo { certificate_user: None, ..peer(selector) });
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let credentials = match selector & 32 {
        0 => Credentials::Password { username: text(first), password: text(second) },
        _ => Credentials::Token { token: text(first) },
    };
    let real = matches!(&credentials,
        Credentials::Password { username, password } if username == "alice" && password == "pencil")
        || matches!(&credentials, Credentials::Token { token } if token == "the-token");
    let answers = raw(&mut broker, hello(1 + u16::from(selector & 64 != 0), credentials));
    let tls = selector & 8 != 0;
    assert_eq!(opened(&answers), real && tls, "{answers:?}");
}

fn external_on_broker(selector: u8, asked: &[u8]) {
    let peer = peer(selector);
    let has_certificate = peer.certificate_user.is_some();
    let mut broker = broker(peer);
    let mut answers = raw(&mut broker, hello(2, Credentials::Anonymous));
    if !opened(&answers) {
        let start = AuthStart { mechanism: "EXTERNAL".into(), data: Bytes::copy_from_slice(asked) };
        answers.extend(exchange(&mut broker, &[Frame::AuthStart(start)]));
    }
    assert!(!opened(&answers) || has_certificate, "EXTERNAL without a certificate: {answers:?}");
}

fn anonymous_on_broker(selector: u8, trace: &[u8]) {
    let allowed = selector & 32 != 0;
    let mut broker =
        broker_allowing_anonymous(PeerInfo { certificate_user: None, ..peer(selector) }, allowed);
    let mut answers = raw(&mut broker, hello(2, Credentials::Anonymous));
    assert!(!opened(&answers), "a version-2 anonymous Hello opened at once: {answers:?}");
    let start = AuthStart { mechanism: "ANONYMOUS".into(), data: Bytes::copy_from_slice(trace) };
    answers.extend(exchange(&mut broker, &[Frame::AuthStart(start)]));
    let trace_fits = std::str::from_utf8(trace).is_ok_and(|t| t.chars().count() <= 255);
    assert_eq!(opened(&answers), allowed && trace_fits, "{answers:?}");
    let users: Vec<&str> = answers
        .iter()
        .filter_map(|frame| match frame {
            Frame::AuthOk(ok) => Some(ok.user.as_str()),
            _ => None,
        })
        .collect();
    assert!(users.iter().all(|user| *user == "anonymous"), "{answers:?}");
}

fn client_on_server_messages(server_first: &[u8], server_final: &[u8]) {
    let (client, _) = ScramClient::start("alice", "pencil", "fuzz-client-nonce");
    if let Ok((client, _)) = client.answer(server_first) {
        assert!(client.verify(server_final).is_err(), "a forged server signature was accepted");
    }
}
