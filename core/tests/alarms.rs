//! Memory and disk alarms: readings crossing the thresholds hold publishers' publishes (never
//! confirmed while held) and keep consumers served, until the readings come back past the
//! hysteresis gap or a reload moves the threshold.

mod support;

use chute_core::client::ClientEvent;
use chute_core::policy::alarm::{Resource, ResourceReading};
use chute_core::{BrokerConfig, ConnId, Event, Input, Output};
use chute_protocol::{Frame, FrameKind, QueueOptions};
use support::{payload, Net};

const MEMORY_HIGH_BYTES: u64 = 100 << 20;
const DISK_FREE_LOW_BYTES: u64 = 10 << 30;

fn net() -> Net {
    let mut config = BrokerConfig::default();
    config.alarms.memory_high_bytes = Some(MEMORY_HIGH_BYTES);
    config.alarms.disk_free_low_bytes = Some(DISK_FREE_LOW_BYTES);
    let mut net = Net::with_config(config);
    read(&mut net, 0, u64::MAX);
    net
}

/// Feeds a reading of `rss_bytes` and `disk_free_bytes`.
fn read(net: &mut Net, rss_bytes: u64, disk_free_bytes: u64) {
    let reading = ResourceReading { rss_bytes, memory_total_bytes: 0, disk_free_bytes };
    net.broker.handle_input(net.now, Input::Resources(reading));
    net.pump();
}

fn raise_memory(net: &mut Net) {
    read(net, MEMORY_HIGH_BYTES, u64::MAX);
}

fn clear(net: &mut Net) {
    read(net, 0, u64::MAX);
}

fn blocked_events(net: &mut Net, conn: ConnId) -> Vec<ClientEvent> {
    net.pump();
    let events = net.events.get_mut(&conn).unwrap();
    let mut out = Vec::new();
    events.retain(|e| match e {
        ClientEvent::Blocked { .. } | ClientEvent::Unblocked => {
            out.push(e.clone());
            false
        }
        _ => true,
    });
    out
}

fn alarm_events(net: &Net) -> Vec<(bool, Resource, u64, u64)> {
    net.broker_log
        .iter()
        .filter_map(|output| match output {
            Output::Event(Event::AlarmRaised { resource, reading_bytes, threshold_bytes }) => {
                Some((true, *resource, *reading_bytes, *threshold_bytes))
            }
            Output::Event(Event::AlarmCleared { resource, reading_bytes, threshold_bytes }) => {
                Some((false, *resource, *reading_bytes, *threshold_bytes))
            }
            _ => None,
        })
        .collect()
}

/// The whole story: while the memory alarm is raised a publish is held (not confirmed, not
/// delivered) and its publisher told; a consumer on another connection drains the backlog and
/// acks meanwhile; when the reading falls below the gap the publisher is told, the publish is
/// confirmed and delivered.
#[test]
fn a_publisher_is_held_while_a_consumer_drains() {
    let mut net = net();
    let publisher = net.connect();
    let consumer = net.connect();
    net.declare(publisher, "jobs", QueueOptions::default());
    net.publish(publisher, "jobs", &["before-1", "before-2"]);
    assert_eq!(net.confirmed(publisher), vec![1, 2]);

    raise_memory(&mut net);
    assert_eq!(
        blocked_events(&mut net, publisher),
        vec![ClientEvent::Blocked { reason: "memory".into() }],
        "a publisher is told as soon as the alarm is raised"
    );
    net.publish(publisher, "jobs", &["held"]);
    assert_eq!(net.confirmed(publisher), Vec::<u64>::new(), "confirmed while held");
    assert!(net.broker_log.contains(&Output::PauseRead { conn: publisher }));
    let stats = net.broker.stats();
    assert!(stats.alarm_memory && !stats.alarm_disk);
    assert_eq!(stats.connections_blocked, 1);
    let infos = net.broker.connections();
    assert!(infos.iter().find(|c| c.id == publisher).unwrap().blocked);
    assert!(!infos.iter().find(|c| c.id == consumer).unwrap().blocked);

    net.subscribe(consumer, "jobs", 10);
    let drained = net.deliveries(consumer);
    let payloads: Vec<&str> = drained.iter().map(payload).collect();
    assert_eq!(payloads, ["before-1", "before-2"], "consumers drain while the alarm is raised");
    for delivery in &drained {
        net.client(consumer).ack(delivery.tag).unwrap();
    }
    net.pump();
    assert_eq!(net.broker.queue_depth("jobs"), Some(0), "acks are read while the alarm is raised");
    assert!(blocked_events(&mut net, consumer).is_empty(), "a consumer is never told Blocked");

    read(&mut net, MEMORY_HIGH_BYTES / 100 * 96, u64::MAX);
    assert_eq!(net.confirmed(publisher), Vec::<u64>::new(), "within the gap it stays raised");
    clear(&mut net);
    assert_eq!(blocked_events(&mut net, publisher), vec![ClientEvent::Unblocked]);
    assert_eq!(net.confirmed(publisher), vec![3]);
    assert!(net.broker_log.contains(&Output::ResumeRead { conn: publisher }));
    let delivered = net.deliveries(consumer);
    assert_eq!(delivered.iter().map(payload).collect::<Vec<_>>(), ["held"]);
    assert_eq!(net.broker.stats().connections_blocked, 0);
    assert_eq!(
        alarm_events(&net),
        vec![
            (true, Resource::Memory, MEMORY_HIGH_BYTES, MEMORY_HIGH_BYTES),
            (false, Resource::Memory, 0, MEMORY_HIGH_BYTES)
        ]
    );
}

/// The disk alarm: raised below the free-space threshold, kept within the gap above it,
/// cleared past it; a connection that never published is told only when its publish is held.
#[test]
fn the_disk_alarm_holds_publishes_until_free_space_is_back_past_the_gap() {
    let mut net = net();
    let publisher = net.connect();
    net.declare(publisher, "jobs", QueueOptions::default());
    read(&mut net, 0, DISK_FREE_LOW_BYTES - 1);
    assert!(net.broker.stats().alarm_disk);
    assert!(blocked_events(&mut net, publisher).is_empty(), "it has not published yet");
    net.publish(publisher, "jobs", &["held"]);
    assert_eq!(
        blocked_events(&mut net, publisher),
        vec![ClientEvent::Blocked { reason: "disk".into() }]
    );
    read(&mut net, 0, DISK_FREE_LOW_BYTES);
    assert_eq!(net.confirmed(publisher), Vec::<u64>::new(), "at the threshold it stays raised");
    read(&mut net, 0, DISK_FREE_LOW_BYTES + DISK_FREE_LOW_BYTES / 100 * 5);
    assert_eq!(net.confirmed(publisher), vec![1]);
    assert_eq!(blocked_events(&mut net, publisher), vec![ClientEvent::Unblocked]);
    assert!(!net.broker.stats().alarm_disk);
}

/// Both alarms: publishes wait until the last one clears; `Blocked` names what is raised.
#[test]
fn publishes_wait_for_every_alarm_to_clear() {
    let mut net = net();
    let publisher = net.connect();
    net.declare(publisher, "jobs", QueueOptions::default());
    read(&mut net, MEMORY_HIGH_BYTES, 0);
    net.publish(publisher, "jobs", &["held"]);
    assert_eq!(
        blocked_events(&mut net, publisher),
        vec![ClientEvent::Blocked { reason: "memory,disk".into() }]
    );
    read(&mut net, 0, 0);
    assert_eq!(net.confirmed(publisher), Vec::<u64>::new(), "the disk alarm is still raised");
    read(&mut net, 0, u64::MAX);
    assert_eq!(net.confirmed(publisher), vec![1]);
}

/// A connection that both publishes and consumes is held at its publish: what it sent after
/// the publish (an ack here) waits with it, and is handled, in order, once the alarm clears.
/// Frames it sent before the publish are handled at once.
#[test]
fn what_follows_a_held_publish_on_its_connection_waits_with_it() {
    let mut net = net();
    let conn = net.connect();
    net.declare(conn, "jobs", QueueOptions::default());
    net.publish(conn, "jobs", &["one"]);
    assert_eq!(net.confirmed(conn), vec![1]);
    net.subscribe(conn, "jobs", 10);
    let delivered = net.deliveries(conn);
    assert_eq!(delivered.len(), 1);

    raise_memory(&mut net);
    net.publish(conn, "jobs", &["held"]);
    net.client(conn).ack(delivered[0].tag).unwrap();
    net.pump();
    let stats = net.broker.queue_stats_by_name("jobs").unwrap();
    assert_eq!(stats.in_flight, 1, "the ack after the held publish is not read");

    clear(&mut net);
    assert_eq!(net.confirmed(conn), vec![2]);
    let stats = net.broker.queue_stats_by_name("jobs").unwrap();
    assert_eq!(stats.counters.acked, 1, "the ack was read after the publish");
}

/// A version-1 client is held the same way, but never sees `Blocked` or `Unblocked`: they
/// are not part of its protocol.
#[test]
fn a_version_1_client_is_held_without_being_told() {
    let mut net = net();
    let admin = net.connect();
    net.declare(admin, "jobs", QueueOptions::default());
    let raw = net.open_raw();
    net.raw_frames(raw);
    let publish = |seq_payload: &str| {
        Frame::Publish(chute_protocol::Publish {
            destination: chute_protocol::Destination::Queue("jobs".into()),
            mandatory: false,
            messages: vec![chute_protocol::PublishMessage::new(bytes::Bytes::copy_from_slice(
                seq_payload.as_bytes(),
            ))],
        })
    };
    net.send_frames(raw, &[publish("before")]);
    assert!(net.raw_frames(raw).iter().any(|f| f.kind() == FrameKind::Confirm));
    raise_memory(&mut net);
    net.send_frames(raw, &[publish("held")]);
    assert!(net.raw_frames(raw).is_empty(), "no Blocked, no Confirm for a version-1 client");
    assert_eq!(net.broker.stats().connections_blocked, 1);
    clear(&mut net);
    let kinds: Vec<FrameKind> = net.raw_frames(raw).iter().map(Frame::kind).collect();
    assert_eq!(kinds, [FrameKind::Confirm]);
}

/// A reload that raises the threshold above the last reading clears the alarm at once, and
/// one that lowers it below raises it: the last reading is judged again.
#[test]
fn a_reload_judges_the_last_reading_against_the_new_thresholds() {
    let mut net = net();
    let publisher = net.connect();
    net.declare(publisher, "jobs", QueueOptions::default());
    read(&mut net, 50 << 20, u64::MAX);
    let mut config = net.broker.config().clone();
    config.alarms.memory_high_bytes = Some(1 << 20);
    net.broker.reconfigure(net.now, config.clone()).unwrap();
    net.pump();
    assert!(net.broker.stats().alarm_memory);
    net.publish(publisher, "jobs", &["held"]);
    assert_eq!(net.confirmed(publisher), Vec::<u64>::new());
    config.alarms.memory_high_bytes = Some(1 << 30);
    net.broker.reconfigure(net.now, config).unwrap();
    net.pump();
    assert_eq!(net.confirmed(publisher), vec![1]);
    assert_eq!(
        blocked_events(&mut net, publisher),
        vec![ClientEvent::Blocked { reason: "memory".into() }, ClientEvent::Unblocked]
    );
}

/// The memory threshold may be a fraction of the physical memory the driver reports.
#[test]
fn the_default_memory_threshold_is_a_fraction_of_physical_memory() {
    let mut net = Net::new();
    let reading = |rss_bytes| ResourceReading {
        rss_bytes,
        memory_total_bytes: 1000 << 20,
        disk_free_bytes: u64::MAX,
    };
    net.broker.handle_input(net.now, Input::Resources(reading(399 << 20)));
    assert!(!net.broker.stats().alarm_memory);
    net.broker.handle_input(net.now, Input::Resources(reading(400 << 20)));
    assert!(net.broker.stats().alarm_memory, "0.4 of physical memory by default");
}

/// The default disk threshold is the larger of 1 GiB and two segments.
#[test]
fn the_default_disk_threshold_leaves_room_for_two_segments() {
    let mut config = BrokerConfig::default();
    config.storage.segment_bytes_max = 1 << 30;
    let mut net = Net::with_config(config);
    let reading =
        |disk_free_bytes| ResourceReading { rss_bytes: 0, memory_total_bytes: 0, disk_free_bytes };
    net.broker.handle_input(net.now, Input::Resources(reading(2 << 30)));
    assert!(!net.broker.stats().alarm_disk);
    net.broker.handle_input(net.now, Input::Resources(reading((2 << 30) - 1)));
    assert!(net.broker.stats().alarm_disk);
}

/// A publisher that is held keeps its connection: its heartbeats are not read, but the silence
/// is the broker's doing, so it is not timed out.
#[test]
fn a_held_publisher_is_not_timed_out() {
    let mut net = net();
    let publisher = net.connect();
    net.declare(publisher, "jobs", QueueOptions::default());
    raise_memory(&mut net);
    net.publish(publisher, "jobs", &["held"]);
    net.advance(60_000);
    assert_eq!(net.closed_event(publisher), None);
    clear(&mut net);
    assert_eq!(net.confirmed(publisher), vec![1]);
}

/// A graceful stop while a publish is held: the alarm clearing does not accept it (the
/// connections are closing), and it is never confirmed.
#[test]
fn a_stop_drops_held_publishes_unconfirmed() {
    let mut net = net();
    let publisher = net.connect();
    net.declare(publisher, "jobs", QueueOptions::default());
    raise_memory(&mut net);
    net.publish(publisher, "jobs", &["held"]);
    net.broker.shutdown(net.now);
    net.pump();
    clear(&mut net);
    assert_eq!(net.confirmed(publisher), Vec::<u64>::new());
    assert_eq!(net.broker.queue_depth("jobs"), Some(0));
}
