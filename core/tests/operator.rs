//! Operator commands: what an admin API asks of the broker without a client connection.

mod support;

use chute_core::{BrokerConfig, ConnectionState, QueueAdminError};
use chute_protocol::{Durability, ErrorCode, Frame, QueueOptions};
use support::Net;

/// Altered options apply from now on and survive a restart; durability cannot change.
#[test]
fn alter_changes_options_durably_but_not_durability() {
    let mut net = Net::new();
    let conn = net.connect();
    net.declare(conn, "jobs", QueueOptions::default());
    let altered = QueueOptions {
        messages_max: Some(2),
        dead_letter: Some("jobs.dead".into()),
        ..QueueOptions::default()
    };
    let now = net.now;
    assert_eq!(net.broker.alter_queue(now, "jobs", altered.clone()), Ok(altered.clone()));
    net.pump();
    assert_eq!(net.broker.queue_depth("jobs.dead"), Some(0), "its dead-letter queue is created");
    net.publish(conn, "jobs", &["a", "b", "c"]);
    assert_eq!(net.confirmed(conn), vec![1, 2], "the new messages_max holds");

    let memory = QueueOptions { durability: Durability::None, ..altered.clone() };
    let err = net.broker.alter_queue(now, "jobs", memory).unwrap_err();
    assert!(matches!(err, QueueAdminError::Immutable { option: "durability", .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::INVALID_QUEUE_OPTIONS);

    let files = net.disk.after_machine_crash();
    let (net, _) = Net::recovered(BrokerConfig::default(), &files);
    let stats = net.broker.queue_stats_by_name("jobs").unwrap();
    assert_eq!(stats.options, altered);
}

/// Deleting and purging by an operator follow the same rules as the protocol's requests.
#[test]
fn delete_and_purge_by_name() {
    let mut net = Net::new();
    let conn = net.connect();
    net.declare(conn, "jobs", QueueOptions::default());
    net.publish(conn, "jobs", &["a", "b"]);
    let now = net.now;
    let err = net.broker.delete_queue_at(now, "jobs", true, false).unwrap_err();
    assert_eq!(err.code(), ErrorCode::QUEUE_IN_USE);
    assert_eq!(net.broker.purge_queue_at(now, "jobs"), Ok(2));
    assert_eq!(net.broker.delete_queue_at(now, "jobs", true, false), Ok(0));
    let missing = net.broker.purge_queue_at(now, "jobs").unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NO_SUCH_QUEUE);
}

/// An operator sees every connection and can close one; its client is told why.
#[test]
fn connections_are_listed_and_closed_with_a_reason() {
    let mut net = Net::new();
    let conn = net.connect();
    net.declare(conn, "jobs", QueueOptions::default());
    net.publish(conn, "jobs", &["a"]);
    let raw = net.open_raw();
    let list = net.broker.connections();
    assert_eq!(list.len(), 2);
    let info = list.iter().find(|c| c.id == conn).unwrap();
    assert_eq!((info.state, info.published_total), (ConnectionState::Open, 1));
    let now = net.now;
    assert!(net.broker.close_connection_by_operator(now, raw, "maintenance"));
    let frames = net.raw_frames(raw);
    assert!(
        matches!(&frames[..], [Frame::Error(e), Frame::Close(c)]
            if e.code == ErrorCode::CLOSED_BY_OPERATOR && c.message.contains("maintenance")),
        "{frames:?}"
    );
    assert!(!net.broker.close_connection_by_operator(now, raw, "again"));
    assert_eq!(net.broker.connections().len(), 1);
}

/// A command's records are durable once the synced position reaches the end it left.
#[test]
fn a_command_is_durable_once_the_log_reaches_its_end() {
    let mut net = Net::new();
    net.auto_storage = false;
    let now = net.now;
    net.broker.declare_queue_at(now, "jobs", QueueOptions::default()).unwrap();
    let end = net.broker.log_end_lsn();
    net.pump();
    assert!(net.broker.log_synced_lsn() < end);
    while !net.storage_queue.is_empty() {
        net.run_storage();
    }
    assert!(net.broker.log_synced_lsn() >= end);
}
