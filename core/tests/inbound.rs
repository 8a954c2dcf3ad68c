//! What a peer can make the broker hold while its frames arrive: a frame must complete within
//! `frame_timeout_ms`, and partial frames of all connections stay within
//! `partial_frames_bytes_max`.

mod support;

use chute_core::{BrokerConfig, ConnId, Output};
use chute_protocol::{ErrorCode, Frame, FrameKind, QueueOptions};
use support::Net;

fn config(frame_timeout_ms: u32, partial_frames_bytes_max: u64) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.limits.frame_size_max = 1024 * 1024;
    config.limits.payload_size_max = 512 * 1024;
    config.limits.partial_frames_bytes_max = partial_frames_bytes_max;
    config.timeouts.frame_timeout_ms = frame_timeout_ms;
    config
}

/// The header of a `Publish` frame announcing `body_len` bytes, and `sent` bytes of its body.
fn partial_publish(body_len: u32, sent: usize) -> Vec<u8> {
    let mut bytes = body_len.to_be_bytes().to_vec();
    bytes.extend([FrameKind::Publish as u8, 0]);
    bytes.resize(bytes.len() + sent, 0);
    bytes
}

fn closed_with(net: &mut Net, conn: ConnId) -> Option<ErrorCode> {
    net.raw_frames(conn).into_iter().find_map(|frame| match frame {
        Frame::Close(close) => Some(close.code),
        _ => None,
    })
}

/// A peer that starts a frame and dribbles the rest is closed with `slow-frame` once the frame
/// has taken `frame_timeout_ms`, however often bytes keep arriving.
#[test]
fn a_frame_that_does_not_complete_in_time_closes_with_slow_frame() {
    let mut net = Net::with_config(config(1_000, 64 * 1024 * 1024));
    let conn = net.open_raw();
    net.send_raw(conn, &partial_publish(100_000, 10_000));
    for _ in 0..4 {
        net.advance(200);
        net.send_raw(conn, &[0]);
    }
    assert_eq!(closed_with(&mut net, conn), None, "closed before the frame timeout");
    net.advance(300);
    assert_eq!(closed_with(&mut net, conn), Some(ErrorCode::SLOW_FRAME));
    assert!(net.broker_log.contains(&Output::Close { conn }));
}

/// The timeout is for one frame: a peer sending many frames slowly, each in time, is served.
#[test]
fn frames_that_each_complete_in_time_are_served() {
    let mut net = Net::with_config(config(1_000, 64 * 1024 * 1024));
    let conn = net.open_raw();
    let mut frame = bytes::BytesMut::new();
    Frame::Heartbeat(chute_protocol::Heartbeat).encode(&mut frame, 1 << 20).unwrap();
    for _ in 0..5 {
        net.send_raw(conn, &frame[..3]);
        net.advance(900);
        net.send_raw(conn, &frame[3..]);
        net.advance(500);
    }
    assert_eq!(closed_with(&mut net, conn), None);
}

/// Over the budget, connections in the middle of large frames stop being read, while a client
/// sending ordinary frames is still served; when a holder goes away, the others are read again.
#[test]
fn partial_frames_over_the_budget_pause_their_senders_only() {
    let mut net = Net::with_config(config(60_000, 1024 * 1024));
    let hogs: Vec<ConnId> = (0..3).map(|_| net.open_raw()).collect();
    for hog in &hogs {
        net.send_raw(*hog, &partial_publish(900_000, 500_000));
    }
    let paused: Vec<ConnId> = hogs
        .iter()
        .copied()
        .filter(|c| net.broker_log.contains(&Output::PauseRead { conn: *c }))
        .collect();
    assert_eq!(paused, hogs[2..], "the sender that took the total over the budget waits");
    let held = net.broker.stats().partial_frames_bytes;
    assert!((3 * 500_006..3 * 600_000).contains(&held), "{held}");

    let good = net.connect();
    net.declare(good, "jobs", QueueOptions::default());
    net.publish(good, "jobs", &["still served"]);
    assert_eq!(net.confirmed(good), vec![1]);

    net.broker.handle_input(net.now, chute_core::Input::Closed { conn: hogs[0] });
    net.pump();
    assert!(net.broker_log.contains(&Output::ResumeRead { conn: hogs[2] }));
    let held = net.broker.stats().partial_frames_bytes;
    assert!((2 * 500_006..2 * 600_000).contains(&held), "{held}");
}
