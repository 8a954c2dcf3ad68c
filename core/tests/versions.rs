//! Version negotiation: a client offering version 2 gets it; version 2's frames are refused on
//! a connection that negotiated version 1.

mod support;

use bytes::{Bytes, BytesMut};
use chute_protocol::{
    AuthStart, Credentials, ErrorCode, Frame, Hello, PREFACE, PROTOCOL_VERSION_MAX,
};
use support::Net;

fn hello(version_max: u16) -> Bytes {
    let mut bytes = BytesMut::from(&PREFACE[..]);
    let hello = Hello {
        version_min: 1,
        version_max,
        client_name: "raw".into(),
        credentials: Credentials::Anonymous,
        heartbeat_ms: 0,
    };
    Frame::Hello(hello).encode(&mut bytes, 1 << 20).unwrap();
    bytes.freeze()
}

fn auth_start() -> Frame {
    Frame::AuthStart(AuthStart { mechanism: "SCRAM-SHA-256".into(), data: Bytes::new() })
}

/// The server picks the highest version both speak.
#[test]
fn a_client_offering_version_two_gets_it() {
    assert_eq!(PROTOCOL_VERSION_MAX, 2);
    let mut net = Net::new();
    for (offered, chosen) in [(1, 1), (2, 2), (7, 2)] {
        let conn = net.connect_without_handshake();
        net.send_raw(conn, &hello(offered));
        match &net.raw_frames(conn)[..] {
            [Frame::HelloOk(ok)] => assert_eq!(ok.version, chosen),
            other => panic!("{other:?}"),
        }
    }
}

/// A version-2 frame on a version-1 connection is `unexpected-frame`, however well formed.
#[test]
fn version_two_frames_are_refused_on_version_one() {
    let mut net = Net::new();
    let conn = net.connect_without_handshake();
    net.send_raw(conn, &hello(1));
    net.raw_frames(conn);
    net.send_frames(conn, &[auth_start()]);
    let frames = net.raw_frames(conn);
    assert!(
        matches!(&frames[..], [Frame::Error(e), Frame::Close(_)]
            if e.code == ErrorCode::UNEXPECTED_FRAME && e.message.contains("version 1")),
        "{frames:?}"
    );
}

/// On version 2, an authentication message when none was asked for is refused too.
#[test]
fn an_unasked_authentication_is_refused() {
    let mut net = Net::new();
    let conn = net.connect_without_handshake();
    net.send_raw(conn, &hello(2));
    net.raw_frames(conn);
    net.send_frames(conn, &[auth_start()]);
    let frames = net.raw_frames(conn);
    assert!(
        matches!(&frames[..], [Frame::Error(e), Frame::Close(_)] if e.code == ErrorCode::UNEXPECTED_FRAME),
        "{frames:?}"
    );
}
