//! Authentication and authorization in the core: who gets in with which credentials, what a
//! failure costs, and what each user may do once in.

mod support;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use chute_core::auth::scram::{ScramClient, ScramKeys};
use chute_core::auth::{AuditKind, PermissionRules, Permissions, TokenHash, User, Users};
use chute_core::{BrokerConfig, ConnId, Output, PeerInfo};
use chute_protocol::{
    AuthResponse, AuthStart, Binding, Credentials, Destination, ErrorCode, Frame, Hello, Publish,
    PublishMessage, QueueDeclare, QueueList, QueueOptions, Subscribe, PREFACE,
};
use support::Net;

const DELAY_MS: u64 = 500;

fn rules(configure: &[&str], write: &[&str], read: &[&str]) -> PermissionRules {
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    PermissionRules {
        configure: owned(configure),
        write: owned(write),
        read: owned(read),
        admin: false,
    }
}

fn user(name: &str, password: &str, rules: PermissionRules) -> User {
    User {
        name: name.into(),
        scram: Some(ScramKeys::derive(password, b"sixteen-byte-slt", 4096)),
        tokens: vec![TokenHash::of(&format!("token-of-{name}"))],
        permissions: Permissions::new(&rules, name).unwrap(),
    }
}

/// alice owns `alice.*` and may publish to topics `events.*`; bob owns `bob.*`.
fn users() -> Users {
    Users::new([
        user("alice", "alice-pw", rules(&["{user}.*"], &["{user}.*", "events.*"], &["{user}.*"])),
        user("bob", "bob-pw", rules(&["{user}.*"], &["{user}.*"], &["{user}.*"])),
    ])
    .unwrap()
}

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.auth.failure_delay_ms = DELAY_MS as u32;
    config.auth.failed_logins_burst = 3;
    config.auth.failed_login_refill_ms = 10_000;
    config.audit = true;
    config
}

fn net_with_users() -> Net {
    let mut net = Net::with_config(config());
    let now = net.now;
    net.broker.set_users(now, Some(users()));
    net.pump();
    net
}

fn peer(ip: [u8; 4], tls: bool) -> PeerInfo {
    PeerInfo { addr: Some(SocketAddr::from((ip, 40_000))), tls, certificate_user: None }
}

fn hello(version_max: u16, credentials: Credentials) -> Bytes {
    let mut bytes = BytesMut::from(&PREFACE[..]);
    let hello = Hello {
        version_min: 1,
        version_max,
        client_name: "t".into(),
        credentials,
        heartbeat_ms: 0,
    };
    Frame::Hello(hello).encode(&mut bytes, 1 << 20).unwrap();
    bytes.freeze()
}

fn password(username: &str, password: &str) -> Credentials {
    Credentials::Password { username: username.into(), password: password.into() }
}

/// Sends `Hello` from a new connection; the frames that came back at once.
fn say_hello(
    net: &mut Net,
    from: PeerInfo,
    version_max: u16,
    credentials: Credentials,
) -> (ConnId, Vec<Frame>) {
    let conn = net.accept(from);
    net.send_raw(conn, &hello(version_max, credentials));
    let frames = net.raw_frames(conn);
    (conn, frames)
}

fn is_open(frames: &[Frame]) -> bool {
    matches!(frames.last(), Some(Frame::HelloOk(_)))
}

/// The frames a refused login gets: nothing until the delay has passed, then the error.
fn refusal_after_delay(net: &mut Net, conn: ConnId, frames_at_once: Vec<Frame>) -> String {
    assert!(frames_at_once.is_empty(), "answered before the delay: {frames_at_once:?}");
    net.advance(DELAY_MS - 1);
    assert!(net.raw_frames(conn).is_empty(), "answered before the delay");
    net.advance(1);
    match &net.raw_frames(conn)[..] {
        [Frame::Error(error), Frame::Close(close)] => {
            assert_eq!(error.code, ErrorCode::AUTHENTICATION_FAILED);
            assert_eq!(close.code, ErrorCode::AUTHENTICATION_FAILED);
            assert!(net.closed_by_broker.contains(&conn));
            error.message.clone()
        }
        other => panic!("{other:?}"),
    }
}

/// Runs SCRAM on a version-2 connection; the frames of the end of the exchange.
fn scram(net: &mut Net, from: PeerInfo, username: &str, pw: &str) -> (ConnId, Vec<Frame>) {
    let (conn, frames) = say_hello(net, from, 2, Credentials::Anonymous);
    assert!(
        matches!(&frames[..], [Frame::AuthRequired(r)] if r.mechanisms == ["SCRAM-SHA-256"]),
        "{frames:?}"
    );
    let (client, first) = ScramClient::start(username, pw, "client-nonce-1234");
    let start = AuthStart { mechanism: "SCRAM-SHA-256".into(), data: first.into() };
    net.send_frames(conn, &[Frame::AuthStart(start)]);
    let challenge = match &net.raw_frames(conn)[..] {
        [Frame::AuthChallenge(challenge)] => challenge.data.clone(),
        other => panic!("{other:?}"),
    };
    let (client, last) = client.answer(&challenge).unwrap();
    net.send_frames(conn, &[Frame::AuthResponse(AuthResponse { data: last.into() })]);
    let frames = net.raw_frames(conn);
    if let Some(Frame::AuthOk(ok)) = frames.first() {
        assert_eq!(ok.user, username);
        client.verify(&ok.data).expect("the server proves it knows the keys");
    }
    (conn, frames)
}

fn declare(name: &str) -> Frame {
    Frame::QueueDeclare(QueueDeclare {
        request_id: 1,
        name: name.into(),
        options: QueueOptions::default(),
        passive: false,
    })
}

fn error_code(frames: &[Frame]) -> Option<ErrorCode> {
    frames.iter().find_map(|f| match f {
        Frame::Error(e) => Some(e.code),
        _ => None,
    })
}

fn audits(net: &Net, kind: AuditKind) -> Vec<chute_core::auth::AuditEvent> {
    net.broker_log
        .iter()
        .filter_map(|o| match o {
            Output::Audit(e) if e.kind == kind => Some(e.clone()),
            _ => None,
        })
        .collect()
}

// ---- authentication ----

/// SCRAM-SHA-256 end to end: AuthRequired, the challenge, AuthOk with the server's proof,
/// then HelloOk; the connection is alice's.
#[test]
fn scram_logs_in_and_the_server_proves_itself() {
    let mut net = net_with_users();
    let (conn, frames) = scram(&mut net, peer([10, 0, 0, 1], false), "alice", "alice-pw");
    assert!(matches!(&frames[..], [Frame::AuthOk(_), Frame::HelloOk(_)]), "{frames:?}");
    assert_eq!(
        net.broker.connections().iter().find(|c| c.id == conn).unwrap().user.as_deref(),
        Some("alice")
    );
    let succeeded = audits(&net, AuditKind::AuthenticationSucceeded);
    assert_eq!(succeeded.len(), 1);
    assert_eq!(succeeded[0].user.as_deref(), Some("alice"));
    assert_eq!(succeeded[0].detail, "SCRAM-SHA-256");
}

/// A wrong password and an unknown user fail alike: same delay, same words.
#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let mut net = net_with_users();
    let (conn, frames) = scram(&mut net, peer([10, 0, 0, 1], false), "alice", "wrong");
    let wrong_password = refusal_after_delay(&mut net, conn, frames);
    let (conn, frames) = scram(&mut net, peer([10, 0, 0, 2], false), "mallory", "whatever");
    let unknown_user = refusal_after_delay(&mut net, conn, frames);
    assert_eq!(wrong_password, "authentication failed");
    assert_eq!(unknown_user, wrong_password);
    let failed = audits(&net, AuditKind::AuthenticationFailed);
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1].user.as_deref(), Some("mallory"), "the audit log names the claimed user");
    assert!(
        failed.iter().all(|e| !e.detail.contains("wrong") || e.detail.contains("proof")),
        "no secret in the log"
    );
}

/// The server's first message for an unknown user looks like a real user's: a salt and the
/// default iterations, the same salt each time for one name.
#[test]
fn an_unknown_user_gets_a_stable_decoy_salt() {
    let mut net = net_with_users();
    let mut salts = Vec::new();
    for _ in 0..2 {
        let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
        let (_, first) = ScramClient::start("mallory", "pw", "client-nonce");
        net.send_frames(
            conn,
            &[Frame::AuthStart(AuthStart {
                mechanism: "SCRAM-SHA-256".into(),
                data: first.into(),
            })],
        );
        let Frame::AuthChallenge(challenge) = net.raw_frames(conn).remove(0) else { panic!() };
        let text = String::from_utf8(challenge.data.to_vec()).unwrap();
        let salt = text.split(',').find(|a| a.starts_with("s=")).unwrap().to_string();
        assert!(text.ends_with(",i=4096"), "{text}");
        salts.push(salt);
    }
    assert_eq!(salts[0], salts[1]);
}

/// A final message recorded from one exchange does not log in another.
#[test]
fn a_replayed_scram_final_message_is_refused() {
    let mut net = net_with_users();
    // Record alice's final message.
    let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    let (client, first) = ScramClient::start("alice", "alice-pw", "client-nonce");
    net.send_frames(
        conn,
        &[Frame::AuthStart(AuthStart {
            mechanism: "SCRAM-SHA-256".into(),
            data: first.clone().into(),
        })],
    );
    let Frame::AuthChallenge(challenge) = net.raw_frames(conn).remove(0) else { panic!() };
    let (_, recorded) = client.answer(&challenge.data).unwrap();
    // Replay it, with the same first message, on a new connection.
    let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 9], false), 2, Credentials::Anonymous);
    net.send_frames(
        conn,
        &[Frame::AuthStart(AuthStart { mechanism: "SCRAM-SHA-256".into(), data: first.into() })],
    );
    assert!(matches!(net.raw_frames(conn)[..], [Frame::AuthChallenge(_)]));
    net.send_frames(conn, &[Frame::AuthResponse(AuthResponse { data: recorded.into() })]);
    let frames = net.raw_frames(conn);
    assert_eq!(refusal_after_delay(&mut net, conn, frames), "authentication failed");
}

/// Until the exchange completes, requests are a connection error and are not carried out.
#[test]
fn frames_before_authentication_are_refused_and_not_carried_out() {
    let mut net = net_with_users();
    let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    net.send_frames(conn, &[declare("alice.q")]);
    let frames = net.raw_frames(conn);
    assert!(
        matches!(&frames[..], [Frame::Error(e), Frame::Close(_)] if e.code == ErrorCode::UNEXPECTED_FRAME),
        "{frames:?}"
    );
    assert!(net.broker.queue_depth("alice.q").is_none());
}

/// A client may give up in the middle of the exchange with `Close`.
#[test]
fn a_close_during_the_exchange_ends_it() {
    let mut net = net_with_users();
    let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    let close = chute_protocol::Close { code: ErrorCode::NORMAL_CLOSE, message: "bye".into() };
    net.send_frames(conn, &[Frame::Close(close)]);
    assert!(net.closed_by_broker.contains(&conn));
    assert!(net.broker.connections().is_empty());
}

/// Requests pipelined behind a `Hello` whose credentials fail are never carried out.
#[test]
fn requests_pipelined_behind_a_failed_hello_are_dropped() {
    let mut net = net_with_users();
    let conn = net.accept(peer([10, 0, 0, 1], true));
    let mut bytes = BytesMut::from(&hello(1, password("alice", "wrong"))[..]);
    declare("alice.q").encode(&mut bytes, 1 << 20).unwrap();
    net.send_raw(conn, &bytes);
    let frames = net.raw_frames(conn);
    refusal_after_delay(&mut net, conn, frames);
    assert!(net.broker.queue_depth("alice.q").is_none());
}

/// A password in `Hello` is checked over TLS and refused outright without it.
#[test]
fn a_password_in_hello_needs_tls() {
    let mut net = net_with_users();
    let (_, frames) =
        say_hello(&mut net, peer([10, 0, 0, 1], true), 1, password("alice", "alice-pw"));
    assert!(is_open(&frames), "{frames:?}");
    let (conn, frames) =
        say_hello(&mut net, peer([10, 0, 0, 1], false), 1, password("alice", "alice-pw"));
    let message = refusal_after_delay(&mut net, conn, frames);
    assert!(message.contains("only over TLS"), "{message}");
    let (conn, frames) =
        say_hello(&mut net, peer([10, 0, 0, 2], true), 1, password("alice", "nope"));
    assert_eq!(refusal_after_delay(&mut net, conn, frames), "authentication failed");
}

#[test]
fn a_token_logs_in_its_user_over_tls() {
    let mut net = net_with_users();
    let token = Credentials::Token { token: "token-of-bob".into() };
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], true), 1, token.clone());
    assert!(is_open(&frames));
    assert_eq!(
        net.broker.connections().iter().find(|c| c.id == conn).unwrap().user.as_deref(),
        Some("bob")
    );
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], false), 1, token);
    assert!(refusal_after_delay(&mut net, conn, frames).contains("only over TLS"));
    let wrong = Credentials::Token { token: "token-of-nobody".into() };
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], true), 1, wrong);
    assert_eq!(refusal_after_delay(&mut net, conn, frames), "authentication failed");
}

/// A verified client certificate is its user (EXTERNAL); one mapped to nobody is refused.
#[test]
fn a_client_certificate_logs_in_its_user() {
    let mut net = net_with_users();
    let with_cert =
        |name: &str| PeerInfo { certificate_user: Some(name.into()), ..peer([10, 0, 0, 1], true) };
    let (conn, frames) = say_hello(&mut net, with_cert("bob"), 1, Credentials::Anonymous);
    assert!(is_open(&frames));
    assert_eq!(
        net.broker.connections().iter().find(|c| c.id == conn).unwrap().user.as_deref(),
        Some("bob")
    );
    let (conn, frames) = say_hello(&mut net, with_cert("carol"), 1, Credentials::Anonymous);
    assert_eq!(refusal_after_delay(&mut net, conn, frames), "authentication failed");
}

/// A version-1 client without credentials is told what the server wants.
#[test]
fn version_one_without_credentials_is_told_what_is_required() {
    let mut net = net_with_users();
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], false), 1, Credentials::Anonymous);
    let message = refusal_after_delay(&mut net, conn, frames);
    assert!(
        message.contains("requires credentials") && message.contains("SCRAM-SHA-256"),
        "{message}"
    );
}

/// With `allow_anonymous`, clients without credentials get in as the anonymous user, with
/// that user's rights: none unless the users file gives it some.
#[test]
fn anonymous_clients_get_the_anonymous_users_rights() {
    let mut config = config();
    config.auth.allow_anonymous = true;
    let mut net = Net::with_config(config);
    let now = net.now;
    net.broker.set_users(now, Some(users()));
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], false), 1, Credentials::Anonymous);
    assert!(is_open(&frames));
    net.send_frames(conn, &[declare("anything")]);
    assert_eq!(error_code(&net.raw_frames(conn)), Some(ErrorCode::NOT_AUTHORIZED));

    let mut table: Vec<User> = users().iter().map(|u| (**u).clone()).collect();
    table.push(user("anonymous", "x", rules(&["public.*"], &[], &[])));
    net.broker.set_users(now, Some(Users::new(table).unwrap()));
    let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 1], false), 1, Credentials::Anonymous);
    net.send_frames(conn, &[declare("public.q")]);
    assert!(matches!(net.raw_frames(conn)[..], [Frame::QueueDeclareOk(_)]));
}

fn net_with_users_and_anonymous(allow_anonymous: bool) -> Net {
    let mut config = config();
    config.auth.allow_anonymous = allow_anonymous;
    let mut net = Net::with_config(config);
    let now = net.now;
    net.broker.set_users(now, Some(users()));
    net
}

fn auth_start(mechanism: &str, data: &[u8]) -> Frame {
    Frame::AuthStart(AuthStart { mechanism: mechanism.into(), data: Bytes::copy_from_slice(data) })
}

/// A version-2 `Anonymous` `Hello` to a server with users is always answered by
/// `AuthRequired`, even when anonymous clients are allowed (a client holding a password would
/// otherwise be let in as the anonymous user without noticing): `ANONYMOUS` is offered then,
/// and chosen, it logs the client in as the anonymous user, confirmed by `AuthOk`.
#[test]
fn version_two_anonymous_hello_chooses_anonymous_when_offered() {
    let mut net = net_with_users_and_anonymous(true);
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    assert!(
        matches!(&frames[..], [Frame::AuthRequired(r)] if r.mechanisms == ["SCRAM-SHA-256", "ANONYMOUS"]),
        "{frames:?}"
    );
    net.send_frames(conn, &[auth_start("ANONYMOUS", b"sensor-7")]);
    let frames = net.raw_frames(conn);
    assert!(
        matches!(&frames[..], [Frame::AuthOk(ok), Frame::HelloOk(_)] if ok.user == "anonymous" && ok.data.is_empty()),
        "{frames:?}"
    );
    assert_eq!(
        net.broker.connections().iter().find(|c| c.id == conn).unwrap().user.as_deref(),
        Some("anonymous")
    );
    net.send_frames(conn, &[declare("anything")]);
    assert_eq!(error_code(&net.raw_frames(conn)), Some(ErrorCode::NOT_AUTHORIZED));
}

/// Without `allow_anonymous`, `ANONYMOUS` is neither offered nor accepted.
#[test]
fn anonymous_mechanism_is_refused_unless_allowed() {
    let mut net = net_with_users_and_anonymous(false);
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    assert!(
        matches!(&frames[..], [Frame::AuthRequired(r)] if r.mechanisms == ["SCRAM-SHA-256"]),
        "{frames:?}"
    );
    net.send_frames(conn, &[auth_start("ANONYMOUS", b"")]);
    let frames = net.raw_frames(conn);
    let message = refusal_after_delay(&mut net, conn, frames);
    assert!(message.starts_with("authentication failed"), "{message}");
}

/// An `ANONYMOUS` trace is bounded (RFC 4505: 255 characters of UTF-8).
#[test]
fn an_anonymous_trace_too_long_is_refused() {
    let mut net = net_with_users_and_anonymous(true);
    let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    net.send_frames(conn, &[auth_start("ANONYMOUS", &[b'x'; 256])]);
    let frames = net.raw_frames(conn);
    assert!(refusal_after_delay(&mut net, conn, frames).contains("at most 255"));
    let (conn, _) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    net.send_frames(conn, &[auth_start("ANONYMOUS", "é".repeat(255).as_bytes())]);
    assert!(is_open(&net.raw_frames(conn)), "255 characters fit, whatever their bytes");
}

/// With anonymous clients allowed, a password client still gets its own user by SCRAM.
#[test]
fn scram_still_logs_in_its_user_when_anonymous_is_allowed() {
    let mut net = net_with_users_and_anonymous(true);
    let (conn, frames) = say_hello(&mut net, peer([10, 0, 0, 1], false), 2, Credentials::Anonymous);
    assert!(matches!(&frames[..], [Frame::AuthRequired(_)]), "{frames:?}");
    let (client, first) = ScramClient::start("alice", "alice-pw", "client-nonce-1234");
    net.send_frames(conn, &[auth_start("SCRAM-SHA-256", &first)]);
    let challenge = match &net.raw_frames(conn)[..] {
        [Frame::AuthChallenge(challenge)] => challenge.data.clone(),
        other => panic!("{other:?}"),
    };
    let (_, last) = client.answer(&challenge).unwrap();
    net.send_frames(conn, &[Frame::AuthResponse(AuthResponse { data: last.into() })]);
    let frames = net.raw_frames(conn);
    assert!(matches!(&frames[..], [Frame::AuthOk(ok), Frame::HelloOk(_)] if ok.user == "alice"));
    net.send_frames(conn, &[declare("alice.q")]);
    assert!(matches!(net.raw_frames(conn)[..], [Frame::QueueDeclareOk(_)]));
}

/// In version 2 a token checked in `Hello` is confirmed by `AuthOk` before `HelloOk`; in
/// version 1, which has no `AuthOk`, `HelloOk` alone.
#[test]
fn a_token_checked_in_hello_is_confirmed_in_version_two() {
    let mut net = net_with_users();
    let token = Credentials::Token { token: "token-of-bob".into() };
    let (_, frames) = say_hello(&mut net, peer([10, 0, 0, 1], true), 2, token.clone());
    assert!(
        matches!(&frames[..], [Frame::AuthOk(ok), Frame::HelloOk(_)] if ok.user == "bob" && ok.data.is_empty()),
        "{frames:?}"
    );
    let (_, frames) = say_hello(&mut net, peer([10, 0, 0, 1], true), 1, token);
    assert!(matches!(&frames[..], [Frame::HelloOk(_)]), "{frames:?}");
}

/// Past the burst of failures, a source is refused before its credentials are read, until
/// its budget refills; other sources are not.
#[test]
fn a_source_that_failed_too_often_is_refused_at_once() {
    let mut net = net_with_users();
    let attacker = peer([10, 6, 6, 6], true);
    for _ in 0..3 {
        let (conn, frames) = say_hello(&mut net, attacker.clone(), 1, password("alice", "guess"));
        refusal_after_delay(&mut net, conn, frames);
    }
    let (_, frames) = say_hello(&mut net, attacker.clone(), 1, password("alice", "alice-pw"));
    assert!(
        matches!(&frames[..], [Frame::Error(e), Frame::Close(_)] if e.message.contains("too many failed logins")),
        "refused at once, even with the right password: {frames:?}"
    );
    let (_, frames) =
        say_hello(&mut net, peer([10, 0, 0, 7], true), 1, password("alice", "alice-pw"));
    assert!(is_open(&frames), "another source is not blocked");
    net.advance(10_000);
    let (_, frames) = say_hello(&mut net, attacker, 1, password("alice", "alice-pw"));
    assert!(is_open(&frames), "the budget refilled");
}

/// Replacing the users applies to open connections: a removed user is disconnected.
#[test]
fn a_removed_user_is_disconnected() {
    let mut net = net_with_users();
    let (alice, _) = scram(&mut net, peer([10, 0, 0, 1], false), "alice", "alice-pw");
    let (bob, _) = scram(&mut net, peer([10, 0, 0, 2], false), "bob", "bob-pw");
    let only_bob: Vec<User> =
        users().iter().filter(|u| u.name == "bob").map(|u| (**u).clone()).collect();
    let now = net.now;
    net.broker.set_users(now, Some(Users::new(only_bob).unwrap()));
    let frames = net.raw_frames(alice);
    assert!(
        matches!(&frames[..], [Frame::Error(e), ..] if e.code == ErrorCode::CLOSED_BY_OPERATOR && e.message.contains("alice")),
        "{frames:?}"
    );
    assert!(!net.closed_by_broker.contains(&bob));
}

/// Turning authentication on closes the connections nobody authenticated.
#[test]
fn turning_authentication_on_closes_unauthenticated_connections() {
    let mut net = Net::with_config(config());
    let conn = net.open_raw();
    let now = net.now;
    net.broker.set_users(now, Some(users()));
    net.pump();
    assert!(net.closed_by_broker.contains(&conn));
}

// ---- authorization ----

fn logged_in(net: &mut Net, name: &str) -> ConnId {
    let (conn, frames) = scram(net, peer([10, 0, 0, 1], false), name, &format!("{name}-pw"));
    assert!(is_open(&frames), "{frames:?}");
    conn
}

/// A refused request gets `not-authorized` and the connection stays open.
#[test]
fn a_declare_outside_ones_patterns_is_refused_and_the_connection_stays() {
    let mut net = net_with_users();
    let alice = logged_in(&mut net, "alice");
    net.send_frames(alice, &[declare("bob.jobs")]);
    let frames = net.raw_frames(alice);
    assert!(
        matches!(&frames[..], [Frame::Error(e)] if e.code == ErrorCode::NOT_AUTHORIZED && e.request_id == 1 && e.message.contains("configure")),
        "{frames:?}"
    );
    assert!(net.broker.queue_depth("bob.jobs").is_none());
    net.send_frames(alice, &[declare("alice.jobs")]);
    assert!(matches!(net.raw_frames(alice)[..], [Frame::QueueDeclareOk(_)]));
    let denied = audits(&net, AuditKind::PermissionDenied);
    assert_eq!(denied[0].resource.as_deref(), Some("bob.jobs"));
    assert_eq!(audits(&net, AuditKind::QueueDeclared)[0].resource.as_deref(), Some("alice.jobs"));
}

/// Declaring with a dead-letter queue one may not configure is refused: it would create it.
#[test]
fn a_dead_letter_queue_outside_ones_patterns_is_refused() {
    let mut net = net_with_users();
    let alice = logged_in(&mut net, "alice");
    let options = QueueOptions { dead_letter: Some("bob.dlq".into()), ..QueueOptions::default() };
    let frame = Frame::QueueDeclare(QueueDeclare {
        request_id: 1,
        name: "alice.q".into(),
        options,
        passive: false,
    });
    net.send_frames(alice, &[frame]);
    assert_eq!(error_code(&net.raw_frames(alice)), Some(ErrorCode::NOT_AUTHORIZED));
    assert!(net.broker.queue_depth("bob.dlq").is_none());
}

#[test]
fn reading_and_writing_anothers_queue_are_refused() {
    let mut net = net_with_users();
    let bob = logged_in(&mut net, "bob");
    net.send_frames(bob, &[declare("bob.jobs")]);
    net.raw_frames(bob);
    let alice = logged_in(&mut net, "alice");
    let publish = Publish {
        destination: Destination::Queue("bob.jobs".into()),
        mandatory: false,
        messages: vec![PublishMessage::new(Bytes::from_static(b"x"))],
    };
    net.send_frames(alice, &[Frame::Publish(publish)]);
    let frames = net.raw_frames(alice);
    assert!(
        matches!(&frames[..], [Frame::PublishRejected(r)] if r.failures[0].code == ErrorCode::NOT_AUTHORIZED),
        "{frames:?}"
    );
    assert_eq!(net.broker.queue_depth("bob.jobs"), Some(0));
    let subscribe = Subscribe {
        request_id: 2,
        subscription: 1,
        queue: "bob.jobs".into(),
        credit: 10,
        lease_ms: None,
        rate: None,
    };
    net.send_frames(alice, &[Frame::Subscribe(subscribe)]);
    assert_eq!(error_code(&net.raw_frames(alice)), Some(ErrorCode::NOT_AUTHORIZED));
    for frame in [
        Frame::DlqList(chute_protocol::DlqList {
            request_id: 3,
            queue: "bob.jobs".into(),
            after: None,
            limit: 0,
        }),
        Frame::DlqRedrive(chute_protocol::DlqRedrive {
            request_id: 4,
            queue: "bob.jobs".into(),
            dead_ids: vec![1],
        }),
        Frame::QueuePurge(chute_protocol::QueuePurge { request_id: 5, name: "bob.jobs".into() }),
    ] {
        net.send_frames(alice, &[frame]);
        assert_eq!(error_code(&net.raw_frames(alice)), Some(ErrorCode::NOT_AUTHORIZED));
    }
}

/// Binding another user's queue to a topic one may write would let one publish into it.
#[test]
fn binding_anothers_queue_is_refused() {
    let mut net = net_with_users();
    let bob = logged_in(&mut net, "bob");
    net.send_frames(bob, &[declare("bob.inbox")]);
    net.raw_frames(bob);
    let alice = logged_in(&mut net, "alice");
    let bind = Binding { request_id: 7, queue: "bob.inbox".into(), pattern: "events.#".into() };
    net.send_frames(alice, &[Frame::Bind(bind)]);
    assert_eq!(error_code(&net.raw_frames(alice)), Some(ErrorCode::NOT_AUTHORIZED));
}

/// A listing shows only the queues the user has some permission on.
#[test]
fn a_listing_shows_ones_own_queues_only() {
    let mut net = net_with_users();
    for name in ["alice", "bob"] {
        let conn = logged_in(&mut net, name);
        net.send_frames(conn, &[declare(&format!("{name}.q"))]);
        net.raw_frames(conn);
    }
    let alice = logged_in(&mut net, "alice");
    net.send_frames(alice, &[Frame::QueueList(QueueList { request_id: 9, after: None, limit: 0 })]);
    let Frame::QueueListOk(list) = net.raw_frames(alice).remove(0) else { panic!() };
    let names: Vec<&str> = list.queues.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["alice.q"]);
}

/// A topic publish needs write on the topic, and reaches a queue only while its binding's
/// owner may configure it.
#[test]
fn topic_publishes_follow_topic_and_binding_owner_permissions() {
    let mut net = net_with_users();
    let alice = logged_in(&mut net, "alice");
    net.send_frames(alice, &[declare("alice.events")]);
    let bind = Binding { request_id: 2, queue: "alice.events".into(), pattern: "events.#".into() };
    net.send_frames(alice, &[Frame::Bind(bind)]);
    net.raw_frames(alice);
    let publish = |topic: &str| {
        Frame::Publish(Publish {
            destination: Destination::Topic(topic.into()),
            mandatory: true,
            messages: vec![PublishMessage::new(Bytes::from_static(b"e"))],
        })
    };
    net.send_frames(alice, &[publish("events.a")]);
    assert!(matches!(net.raw_frames(alice)[..], [Frame::Confirm(_)]));
    assert_eq!(net.broker.queue_depth("alice.events"), Some(1));
    let bob = logged_in(&mut net, "bob");
    net.send_frames(bob, &[publish("events.b")]);
    assert!(
        matches!(&net.raw_frames(bob)[..], [Frame::PublishRejected(r)] if r.failures[0].code == ErrorCode::NOT_AUTHORIZED)
    );

    // alice loses configure on her queue: her binding no longer routes.
    let mut table: Vec<User> =
        users().iter().filter(|u| u.name != "alice").map(|u| (**u).clone()).collect();
    table.push(user("alice", "alice-pw", rules(&[], &["events.*"], &["alice.*"])));
    let now = net.now;
    net.broker.set_users(now, Some(Users::new(table).unwrap()));
    let alice = logged_in(&mut net, "alice");
    net.send_frames(alice, &[publish("events.c")]);
    assert!(
        matches!(&net.raw_frames(alice)[..], [Frame::PublishRejected(r)] if r.failures[0].code == ErrorCode::UNROUTABLE)
    );
    assert_eq!(net.broker.queue_depth("alice.events"), Some(1));
    net.broker.set_users(now, Some(users()));
    let alice = logged_in(&mut net, "alice");
    net.send_frames(alice, &[publish("events.d")]);
    assert!(matches!(net.raw_frames(alice)[..], [Frame::Confirm(_)]));
    assert_eq!(net.broker.queue_depth("alice.events"), Some(2));
}

/// A binding's owner survives a restart (and a checkpoint): after recovery the owner rule
/// still applies to it.
#[test]
fn binding_owners_survive_recovery() {
    let mut net = net_with_users();
    let alice = logged_in(&mut net, "alice");
    net.send_frames(alice, &[declare("alice.events")]);
    let bind = Binding { request_id: 2, queue: "alice.events".into(), pattern: "events.#".into() };
    net.send_frames(alice, &[Frame::Bind(bind)]);
    net.raw_frames(alice);

    let files = net.disk.after_process_crash();
    let (mut net, _) = Net::recovered(config(), &files);
    let mut table: Vec<User> =
        users().iter().filter(|u| u.name != "alice").map(|u| (**u).clone()).collect();
    table.push(user("alice", "alice-pw", rules(&[], &["events.*"], &["alice.*"])));
    let now = net.now;
    net.broker.set_users(now, Some(Users::new(table).unwrap()));
    let alice = logged_in(&mut net, "alice");
    let publish = Publish {
        destination: Destination::Topic("events.x".into()),
        mandatory: true,
        messages: vec![PublishMessage::new(Bytes::from_static(b"e"))],
    };
    net.send_frames(alice, &[Frame::Publish(publish)]);
    assert!(
        matches!(&net.raw_frames(alice)[..], [Frame::PublishRejected(r)] if r.failures[0].code == ErrorCode::UNROUTABLE)
    );
}
