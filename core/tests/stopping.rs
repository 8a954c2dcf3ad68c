//! Stopping gracefully: at once (SIGTERM) or after a lame-duck window (SIGUSR2).

mod support;

use chute_core::client::ClientEvent;
use chute_core::Output;
use chute_protocol::{ErrorCode, QueueOptions};
use support::{payload, Net};

fn going_away(net: &Net, conn: chute_core::ConnId) -> Option<u32> {
    net.events[&conn].iter().find_map(|e| match e {
        ClientEvent::GoingAway(g) => Some(g.reconnect_after_ms),
        _ => None,
    })
}

/// A graceful stop tells every client to go away before it closes them (PROTOCOL.md §5.7).
#[test]
fn shutdown_says_going_away_before_closing() {
    let mut net = Net::new();
    let conn = net.connect();
    let now = net.now;
    net.broker.shutdown(now);
    net.pump();
    assert_eq!(going_away(&net, conn), Some(0));
    let (code, _) = net.closed_event(conn).expect("closed");
    assert_eq!(code, ErrorCode::SHUTTING_DOWN);
    let away = net.events[&conn].iter().position(|e| matches!(e, ClientEvent::GoingAway(_)));
    let closed = net.events[&conn].iter().position(|e| matches!(e, ClientEvent::Closed { .. }));
    assert!(away < closed);
    assert!(net.broker.is_drained());
}

/// Lame duck: clients are told to go away with reconnect delays spread over the window, new
/// connections are refused, a consumer can still settle what it holds, and the broker stops
/// when the window ends.
#[test]
fn a_drain_lets_consumers_settle_then_stops() {
    let mut net = Net::new();
    let producer = net.connect();
    net.declare(producer, "jobs", QueueOptions::default());
    net.publish(producer, "jobs", &["a", "b"]);
    let consumer = net.connect();
    net.subscribe(consumer, "jobs", 10);
    let held = net.deliveries(consumer);
    assert_eq!(held.len(), 2);
    let idle = net.connect();

    let now = net.now;
    net.broker.drain(now, 3_000);
    net.pump();
    assert!(net.broker.stats().draining);
    let mut delays: Vec<u32> =
        [producer, consumer, idle].iter().filter_map(|c| going_away(&net, *c)).collect();
    delays.sort_unstable();
    assert_eq!(delays, [0, 1_000, 2_000]);
    let late = net.connect_without_handshake();
    assert!(net.broker_log.contains(&Output::Close { conn: late }), "refused while draining");

    net.advance(1_000);
    for delivery in &held {
        net.client(consumer).ack(delivery.tag).unwrap();
    }
    net.pump();
    assert_eq!(net.broker.queue_depth("jobs"), Some(0), "settled during the window");
    assert!(net.closed_event(consumer).is_none());
    assert_eq!(payload(&held[0]), "a");

    net.advance(2_000);
    assert!(net.broker.is_drained(), "stopped when the window ended");
    let (code, _) = net.closed_event(idle).expect("closed at the end");
    assert_eq!(code, ErrorCode::SHUTTING_DOWN);
    let told = net.events[&idle].iter().filter(|e| matches!(e, ClientEvent::GoingAway(_))).count();
    assert_eq!(told, 1, "told once, by the drain");
}

/// A graceful stop with a consumer holding a delivery and more messages ready: closing its
/// connection puts the delivery back in the queue, which the stop must leave settled (no
/// queue waiting for a dispatch) rather than trip the end-of-input check.
#[test]
fn shutdown_with_a_consumer_holding_deliveries() {
    let mut net = Net::new();
    let producer = net.connect();
    net.declare(producer, "jobs", QueueOptions::default());
    net.publish(producer, "jobs", &["a", "b"]);
    let consumer = net.connect();
    net.subscribe(consumer, "jobs", 1);
    assert_eq!(net.deliveries(consumer).len(), 1);

    let now = net.now;
    net.broker.shutdown(now);
    net.pump();
    assert!(net.broker.is_drained());
    assert_eq!(net.broker.queue_depth("jobs"), Some(2), "the held delivery is back");
}
