//! An operator's reload: new limits apply from now on, and nothing accepted before is dropped.

mod support;

use chute_core::{BrokerConfig, Output};
use chute_protocol::{ErrorCode, QueueOptions, RateLimit};
use support::Net;

fn reload(net: &mut Net, edit: impl FnOnce(&mut BrokerConfig)) {
    let mut config = net.broker.config().clone();
    edit(&mut config);
    let now = net.now;
    net.broker.reconfigure(now, config).expect("a valid config");
    net.pump();
}

/// A lowered `connections_max` refuses the next connection; the open ones stay.
#[test]
fn a_lower_connection_limit_refuses_new_connections_only() {
    let mut net = Net::new();
    let first = net.connect();
    let second = net.connect();
    reload(&mut net, |c| c.limits.connections_max = 1);
    let third = net.connect_without_handshake();
    assert!(net.broker_log.contains(&Output::Close { conn: third }));
    assert!(!net.broker_log.contains(&Output::Close { conn: first }));
    assert!(!net.broker_log.contains(&Output::Close { conn: second }));
    net.declare(first, "jobs", QueueOptions::default());
    net.publish(second, "jobs", &["still served"]);
    assert_eq!(net.confirmed(second), vec![1]);
}

/// A connection keeps the limits its `HelloOk` announced; a later one is told the new ones.
#[test]
fn open_connections_keep_the_limits_they_were_told() {
    let mut net = Net::new();
    let old = net.connect();
    net.declare(old, "jobs", QueueOptions::default());
    reload(&mut net, |c| {
        c.limits.frame_size_max = 64 * 1024;
        c.limits.payload_size_max = 1024;
    });
    let new = net.connect();
    assert_eq!(net.clients[&new].server().unwrap().limits.payload_size_max, 1024);
    let big = "x".repeat(10_000);
    net.publish(old, "jobs", &[big.as_str()]);
    assert_eq!(net.confirmed(old), vec![1], "the old connection was promised 1 MiB payloads");
    net.publish(new, "jobs", &[big.as_str()]);
    let refused = net.events[&new].iter().any(|e| {
        matches!(e,
        chute_core::client::ClientEvent::PublishFailed(f) if f.code == ErrorCode::MESSAGE_TOO_LARGE)
    });
    assert!(refused, "{:?}", net.events[&new]);
}

/// A new per-connection publish rate applies to connections already open.
#[test]
fn a_new_connection_rate_applies_to_open_connections() {
    let mut net = Net::new();
    let conn = net.connect();
    net.declare(conn, "jobs", QueueOptions::default());
    let rate =
        RateLimit { per_second: 1, burst: 1, policy: chute_protocol::RateLimitPolicy::Reject };
    reload(&mut net, |c| c.limits.connection_publish_rate = Some(rate));
    net.publish(conn, "jobs", &["a", "b"]);
    assert_eq!(net.confirmed(conn), vec![1]);
    let failed = net.events[&conn].iter().any(|e| {
        matches!(e,
        chute_core::client::ClientEvent::PublishFailed(f) if f.code == ErrorCode::RATE_LIMITED)
    });
    assert!(failed, "{:?}", net.events[&conn]);
}

/// An invalid configuration is refused whole: nothing changes.
#[test]
fn an_invalid_config_changes_nothing() {
    let mut net = Net::new();
    let before = net.broker.config().clone();
    let mut config = before.clone();
    config.limits.connections_max = 5;
    config.limits.frame_size_max = 1;
    let err = net.broker.reconfigure(net.now, config).unwrap_err();
    assert!(err.to_string().contains("limits.frame_size_max"), "{err}");
    assert_eq!(net.broker.config(), &before);
}

/// A raised partial-frame budget reads the connections paused for the old one again.
#[test]
fn a_raised_partial_frame_budget_resumes_paused_senders() {
    let mut config = BrokerConfig::default();
    config.limits.frame_size_max = 1024 * 1024;
    config.limits.payload_size_max = 512 * 1024;
    config.limits.partial_frames_bytes_max = 1024 * 1024;
    let mut net = Net::with_config(config);
    let hogs: Vec<_> = (0..3).map(|_| net.open_raw()).collect();
    for hog in &hogs {
        let mut bytes = 900_000u32.to_be_bytes().to_vec();
        bytes.extend([chute_protocol::FrameKind::Publish as u8, 0]);
        bytes.resize(500_006, 0);
        net.send_raw(*hog, &bytes);
    }
    assert!(net.broker_log.contains(&Output::PauseRead { conn: hogs[2] }));
    reload(&mut net, |c| c.limits.partial_frames_bytes_max = 64 * 1024 * 1024);
    assert!(net.broker_log.contains(&Output::ResumeRead { conn: hogs[2] }));
}
