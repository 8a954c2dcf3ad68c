//! The session on its own: the test plays the driver and the server, moving time by hand.

use bytes::{Bytes, BytesMut};
use chute_protocol::{
    BackoffPolicy, BreakerPolicy, Confirm, Deliver, Done, ErrorCode, ErrorFrame, Frame,
    FrameReader, GoingAway, PublishFailure, PublishRejected, QueueDeclareOk, Range,
    FRAME_SIZE_CEILING, PREFACE,
};

use super::*;
use crate::client::tests::{delivery, hello_ok_version};

/// What `hello_ok` announces.
const HEARTBEAT_MS: u32 = 1_000;

fn queue() -> Destination {
    Destination::Queue("jobs".into())
}

fn message(text: &'static str) -> PublishMessage {
    PublishMessage::new(Bytes::from_static(text.as_bytes()))
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// Reconnects without jitter, so delays can be asserted: 100, 200, 400, ... up to 1,000 ms.
fn config() -> SessionConfig {
    let mut config = SessionConfig::default();
    config.reconnect.backoff =
        BackoffPolicy { base_ms: 100, factor_percent: 200, max_ms: 1_000, jitter: false };
    config.retry.backoff =
        BackoffPolicy { base_ms: 50, factor_percent: 200, max_ms: 1_000, jitter: false };
    config
}

/// What the session put out since the last look.
#[derive(Debug, Default)]
struct Seen {
    frames: Vec<Frame>,
    events: Vec<SessionEvent>,
    connects: Vec<usize>,
    closes: usize,
}

/// The driver and the server: answers `Connect`, decodes what the session sends (a fresh
/// decoder per connection), and feeds it the server's frames.
struct Harness {
    session: Session,
    now: Instant,
    reader: FrameReader,
}

impl Harness {
    fn new(config: SessionConfig) -> Harness {
        let session = Session::new(config, Instant::ZERO);
        Harness { session, now: Instant::ZERO, reader: FrameReader::new(FRAME_SIZE_CEILING) }
    }

    /// A session with its first connection open, the handshake's outputs looked at.
    fn connected(config: SessionConfig) -> Harness {
        let mut harness = Harness::new(config);
        let seen = harness.drain();
        assert_eq!(seen.connects, vec![0]);
        harness.open(100);
        harness
    }

    fn input(&mut self, input: SessionInput) {
        self.session.handle_input(self.now, input);
    }

    /// Answers the pending `Connect` and the handshake.
    fn open(&mut self, unconfirmed_max: u32) -> Seen {
        self.input(SessionInput::TransportUp);
        self.reader = FrameReader::new(FRAME_SIZE_CEILING);
        let hello = self.drain();
        assert!(matches!(hello.frames[..], [Frame::Hello(_)]), "{hello:?}");
        // The session offers version 2, and a server of today answers with it.
        self.server(&[hello_ok_version(2, unconfirmed_max)]);
        self.drain()
    }

    fn server(&mut self, frames: &[Frame]) {
        let mut out = BytesMut::new();
        for frame in frames {
            frame.encode(&mut out, 1 << 20).unwrap();
        }
        self.input(SessionInput::Received(out.freeze()));
    }

    fn drain(&mut self) -> Seen {
        let mut seen = Seen::default();
        while let Some(output) = self.session.poll_output() {
            match output {
                SessionOutput::Send(mut bytes) => {
                    if bytes.starts_with(&PREFACE) {
                        bytes = bytes.slice(PREFACE.len()..);
                    }
                    self.reader.feed(bytes);
                    while let Some(frame) = self.reader.next_frame().unwrap() {
                        seen.frames.push(frame);
                    }
                }
                SessionOutput::Event(event) => seen.events.push(event),
                SessionOutput::Connect { address } => seen.connects.push(address),
                SessionOutput::Close => seen.closes += 1,
            }
        }
        seen
    }

    /// Moves time to the session's timer, fires it, and returns what followed.
    fn fire_timer(&mut self) -> Seen {
        self.now = self.now.max(self.session.poll_timeout().expect("a timer"));
        self.input(SessionInput::Timeout);
        self.drain()
    }

    fn advance_to(&mut self, when: Instant) -> Seen {
        self.now = when;
        self.input(SessionInput::Timeout);
        self.drain()
    }

    fn lose_transport(&mut self) -> Seen {
        self.input(SessionInput::TransportClosed { reason: "connection reset".into() });
        self.drain()
    }

    /// Answers the session's passive declarations among `frames` (its probes for a dedup
    /// window) with a queue that has `window`.
    fn answer_probes(&mut self, frames: &[Frame], window: Option<u64>) {
        for frame in frames {
            if let Frame::QueueDeclare(declare) = frame {
                if declare.passive {
                    let options =
                        QueueOptions { dedup_window_ms: window, ..QueueOptions::default() };
                    let ok =
                        QueueDeclareOk { request_id: declare.request_id, created: false, options };
                    self.server(&[Frame::QueueDeclareOk(ok)]);
                    self.drain();
                }
            }
        }
    }

    fn publish(&mut self, text: &'static str) -> u64 {
        self.session.publish(self.now, &queue(), false, message(text)).unwrap()
    }
}

/// The messages of the `Publish` frames, as (payload, id).
fn published(frames: &[Frame]) -> Vec<(String, Option<String>)> {
    frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Publish(publish) => Some(publish.messages.clone()),
            _ => None,
        })
        .flatten()
        .map(|m| (String::from_utf8(m.payload.to_vec()).unwrap(), m.id))
        .collect()
}

fn confirm(first: u64, count: u32) -> Frame {
    Frame::Confirm(Confirm { ranges: vec![Range { first, count }] })
}

fn rejected(seq: u64, code: ErrorCode, retry_after_ms: u64) -> Frame {
    let failure = PublishFailure { seq, code, retry_after_ms, message: "no".into() };
    Frame::PublishRejected(PublishRejected { failures: vec![failure] })
}

fn confirmed_ranges(events: &[SessionEvent]) -> Vec<Range> {
    events
        .iter()
        .filter_map(|event| match event {
            SessionEvent::Confirmed(range) => Some(*range),
            _ => None,
        })
        .collect()
}

// ---- reconnecting ----

/// A lost transport: the session backs off, reconnects, and sends every unconfirmed publish
/// again, in order, with the ids it gave them, before anything published since; confirms on
/// the new connection come back under the session's own numbers.
#[test]
fn a_lost_connection_is_reopened_and_unconfirmed_publishes_are_sent_again_in_order() {
    let mut h = Harness::connected(config());
    for text in ["a", "b", "c"] {
        h.publish(text);
    }
    let first = published(&h.drain().frames);
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|(_, id)| id.is_some()), "ids are generated");
    h.server(&[confirm(1, 1)]);
    assert_eq!(confirmed_ranges(&h.drain().events), vec![Range::one(1)]);

    let lost = h.lose_transport();
    assert!(
        matches!(
            &lost.events[..],
            [
                SessionEvent::Disconnected { error: LinkError::TransportLost { reason }, .. },
                SessionEvent::Reconnecting { attempt: 1, delay_ms: 100, address: 0 },
            ] if reason == "connection reset"
        ),
        "{lost:?}"
    );
    h.publish("d"); // while disconnected: waits its turn
    assert_eq!(h.drain().frames, vec![]);
    assert_eq!(h.fire_timer().connects, vec![0]);
    assert_eq!(h.now, at(100));
    let reopened = h.open(100);
    let again = published(&reopened.frames);
    assert_eq!((again[0].clone(), again[1].clone()), (first[1].clone(), first[2].clone()));
    assert!(again[2].1.is_some() && again[2].0 == "d");
    assert!(reopened
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Reconnected { republished: 2, .. })));
    h.server(&[confirm(1, 3)]);
    assert_eq!(confirmed_ranges(&h.drain().events), vec![Range { first: 2, count: 3 }]);
    assert_eq!(h.session.unconfirmed(), 0);
    assert_eq!(h.session.stats().republished, 2);
}

/// Attempts back off exponentially, and the session gives up after `attempts_max` in a row.
#[test]
fn attempts_back_off_and_the_session_gives_up_after_attempts_max() {
    let mut config = config();
    config.reconnect.attempts_max = Some(4);
    let mut h = Harness::connected(config);
    h.lose_transport();
    let mut delays = Vec::new();
    for _ in 0..3 {
        assert_eq!(h.fire_timer().connects, vec![0]);
        h.input(SessionInput::ConnectFailed { reason: "refused".into() });
        for event in h.drain().events {
            if let SessionEvent::Reconnecting { delay_ms, .. } = event {
                delays.push(delay_ms);
            }
        }
    }
    assert_eq!(delays, [200, 400, 800]);
    h.fire_timer();
    h.input(SessionInput::ConnectFailed { reason: "refused".into() });
    let ended = h.drain().events;
    assert!(matches!(
        ended.last(),
        Some(SessionEvent::Closed { reason: SessionEnd::GaveUp { attempts: 4, .. } })
    ));
    assert!(h.session.is_ended());
    assert_eq!(h.session.poll_timeout(), None);
}

/// Without reconnecting, the first loss ends the session, as a bare client would.
#[test]
fn with_reconnect_off_a_loss_ends_the_session() {
    let mut config = config();
    config.reconnect.enabled = false;
    let mut h = Harness::connected(config);
    let events = h.lose_transport().events;
    assert!(matches!(
        events.last(),
        Some(SessionEvent::Closed { reason: SessionEnd::Lost(LinkError::TransportLost { .. }) })
    ));
}

/// A first connection that fails on every address fails fast (a wrong address should not
/// hang the caller), trying each address once.
#[test]
fn a_first_connection_tries_each_address_once() {
    let mut config = config();
    config.addresses = 2;
    let mut h = Harness::new(config);
    assert_eq!(h.drain().connects, vec![0]);
    h.input(SessionInput::ConnectFailed { reason: "refused".into() });
    assert_eq!(h.fire_timer().connects, vec![1]);
    h.input(SessionInput::ConnectFailed { reason: "refused".into() });
    let events = h.drain().events;
    assert!(matches!(
        events.last(),
        Some(SessionEvent::Closed { reason: SessionEnd::GaveUp { attempts: 2, .. } })
    ));
}

/// A server that refuses the client itself (bad credentials) would refuse it again: no
/// reconnect loop.
#[test]
fn a_refusal_that_would_repeat_ends_the_session() {
    let mut h = Harness::new(config());
    h.drain();
    h.input(SessionInput::TransportUp);
    h.drain();
    let error = ErrorFrame {
        request_id: 0,
        code: ErrorCode::AUTHENTICATION_FAILED,
        retriable: false,
        retry_after_ms: 0,
        message: "who are you".into(),
    };
    h.server(&[Frame::Error(error)]);
    let events = h.drain().events;
    assert!(matches!(
        events.last(),
        Some(SessionEvent::Closed { reason: SessionEnd::Lost(LinkError::Closed { code, .. }) })
            if *code == ErrorCode::AUTHENTICATION_FAILED
    ));
}

/// A silent server (no heartbeat for three intervals) is taken for dead: the session closes
/// the connection and reconnects.
#[test]
fn a_heartbeat_timeout_reconnects() {
    let mut h = Harness::connected(config());
    let seen = h.advance_to(at(3 * u64::from(HEARTBEAT_MS)));
    assert_eq!(seen.closes, 1);
    assert!(seen.events.iter().any(|e| matches!(
        e,
        SessionEvent::Disconnected { error: LinkError::Closed { code, .. }, .. }
            if *code == ErrorCode::HEARTBEAT_TIMEOUT
    )));
    assert!(seen.events.iter().any(|e| matches!(e, SessionEvent::Reconnecting { .. })));
    assert_eq!(h.fire_timer().connects, vec![0]);
}

// ---- Blocked ----

/// `Blocked` and `Unblocked` reach the application; a connection lost while blocked ends its
/// block (`Unblocked` before `Disconnected`), since the next connection starts unblocked.
#[test]
fn blocked_and_unblocked_reach_the_application() {
    let mut h = Harness::connected(config());
    let blocked = Frame::Blocked(chute_protocol::Blocked { reason: "memory".into() });
    h.server(&[blocked.clone(), Frame::Unblocked(chute_protocol::Unblocked)]);
    let events = h.drain().events;
    assert!(
        matches!(
            &events[..],
            [SessionEvent::Blocked { reason }, SessionEvent::Unblocked] if reason == "memory"
        ),
        "{events:?}"
    );
    h.server(&[blocked]);
    h.drain();
    let events = h.lose_transport().events;
    let unblocked = events.iter().position(|e| matches!(e, SessionEvent::Unblocked));
    let disconnected = events.iter().position(|e| matches!(e, SessionEvent::Disconnected { .. }));
    assert!(unblocked.is_some() && unblocked < disconnected, "{events:?}");
}

// ---- GoingAway ----

/// GoingAway with a second address: nothing new goes out on the old connection, the session
/// waits for the answers to what it sent, closes, and connects to the other address at once.
#[test]
fn going_away_finishes_what_was_sent_then_moves_to_the_next_address() {
    let mut config = config();
    config.addresses = 2;
    let mut h = Harness::connected(config);
    h.publish("before");
    let frames = h.drain().frames;
    h.answer_probes(&frames, None);
    let going = GoingAway { reconnect_after_ms: 5_000, message: "lame duck".into() };
    h.server(&[Frame::GoingAway(going)]);
    let seen = h.drain();
    assert_eq!(seen.closes, 0, "the publish on the wire is still unanswered");
    h.publish("after");
    assert_eq!(published(&h.drain().frames), vec![], "no new work for a server going away");

    h.server(&[confirm(1, 1)]);
    let seen = h.drain();
    assert_eq!(seen.closes, 1);
    assert!(seen.events.iter().any(|e| matches!(
        e,
        SessionEvent::Disconnected { error: LinkError::GoingAway { .. }, address: 0 }
    )));
    assert!(seen
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Reconnecting { delay_ms: 0, address: 1, .. })));
    assert_eq!(h.fire_timer().connects, vec![1]);
    let reopened = h.open(100);
    assert_eq!(published(&reopened.frames).len(), 1, "the held publish goes to the new server");
}

/// With one address there is nowhere to move: the connection serves on (new publishes
/// included) until the server closes it, and GoingAway's delay is honoured before
/// reconnecting to it.
#[test]
fn going_away_with_one_address_serves_on_then_waits_for_its_delay() {
    let mut h = Harness::connected(config());
    let going = GoingAway { reconnect_after_ms: 2_000, message: "restart".into() };
    h.server(&[Frame::GoingAway(going)]);
    let seen = h.drain();
    assert_eq!(seen.closes, 0, "the server decides when this connection ends");
    h.publish("still");
    assert_eq!(published(&h.drain().frames).len(), 1);

    let close = chute_protocol::Close {
        code: ErrorCode::SHUTTING_DOWN,
        message: "server shutting down".into(),
    };
    h.server(&[Frame::Close(close)]);
    let seen = h.drain();
    assert!(seen
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Reconnecting { delay_ms: 2_000, address: 0, .. })));
    assert_eq!(h.fire_timer().connects, vec![0]);
    assert_eq!(h.now, at(2_000));
}

/// GoingAway with another address: the move waits until the application has settled the
/// deliveries it holds, so a lame-duck window lets a consumer finish its work.
#[test]
fn going_away_moves_only_once_held_deliveries_are_settled() {
    let mut config = config();
    config.addresses = 2;
    let mut h = Harness::connected(config);
    let manual = SubscriptionOptions { credit: 5, lease_ms: None, rate: None, auto_credit: false };
    h.session.subscribe(h.now, "jobs", manual).unwrap();
    h.drain();
    h.server(&[done(1)]);
    let deliver =
        Frame::Deliver(Deliver { subscription: 1, deliveries: (1..=2).map(delivery).collect() });
    h.server(&[deliver]);
    h.drain();
    let epoch = h.session.epoch();
    let going = GoingAway { reconnect_after_ms: 5_000, message: "lame duck".into() };
    h.server(&[Frame::GoingAway(going)]);
    assert_eq!(h.drain().closes, 0, "two deliveries are held");
    assert_eq!(h.session.ack(epoch, 1), Ok(Settled::Sent));
    assert_eq!(h.drain().closes, 0, "one delivery is still held");
    assert_eq!(h.session.ack(epoch, 2), Ok(Settled::Sent));
    let seen = h.drain();
    assert!(
        seen.frames.iter().any(|f| matches!(f, Frame::Ack(_))),
        "the acks go out before the close: {:?}",
        seen.frames
    );
    assert_eq!(seen.closes, 1);
}

// ---- timeouts ----

/// A publish unanswered for `confirm_ms` means the connection is stuck: it is closed, and the
/// publish goes out again, same id, on the next one.
#[test]
fn a_confirm_timeout_closes_the_connection_and_publishes_again() {
    let mut config = config();
    config.timeouts.confirm_ms = Some(1_500);
    let mut h = Harness::connected(config);
    h.now = at(200);
    h.publish("stuck");
    let first = published(&h.drain().frames);
    // Heartbeats keep the connection alive meanwhile.
    h.now = at(900);
    h.server(&[Frame::Heartbeat(chute_protocol::Heartbeat)]);
    h.drain();
    let seen = h.fire_timer();
    assert_eq!(h.now, at(1_000), "the heartbeat to send comes first");
    assert_eq!(seen.closes, 0);
    h.server(&[Frame::Heartbeat(chute_protocol::Heartbeat)]);
    let seen = h.fire_timer();
    assert_eq!(h.now, at(1_700));
    assert_eq!(seen.closes, 1);
    assert!(seen.events.iter().any(|e| matches!(
        e,
        SessionEvent::Disconnected { error: LinkError::ConfirmTimeout { after_ms: 1_500 }, .. }
    )));
    h.fire_timer();
    let again = published(&h.open(100).frames);
    assert_eq!(again, first);
}

/// While the server says it holds the publishes (`Blocked`), their confirms are not late: the
/// connection is kept however long the block lasts, and the wait counts again from
/// `Unblocked`.
#[test]
fn a_blocked_connection_is_not_closed_for_late_confirms() {
    let mut config = config();
    config.timeouts.confirm_ms = Some(1_500);
    let mut h = Harness::connected(config);
    h.now = at(200);
    h.publish("held");
    h.drain();
    h.server(&[Frame::Blocked(chute_protocol::Blocked { reason: "disk".into() })]);
    h.drain();
    for _ in 0..10 {
        h.server(&[Frame::Heartbeat(chute_protocol::Heartbeat)]);
        let seen = h.fire_timer();
        assert_eq!(seen.closes, 0, "closed while blocked at {:?}", h.now);
    }
    let unblocked_at = h.now;
    h.server(&[Frame::Unblocked(chute_protocol::Unblocked)]);
    h.drain();
    let mut closed_at = None;
    while closed_at.is_none() {
        h.server(&[Frame::Heartbeat(chute_protocol::Heartbeat)]);
        if h.fire_timer().closes > 0 {
            closed_at = Some(h.now);
        }
    }
    assert_eq!(closed_at, Some(unblocked_at.plus_ms(1_500)), "counted from Unblocked");
}

/// A publish with no outcome by its deadline is given up: unknown if it was sent, deadline
/// passed if it never could be.
#[test]
fn publish_deadlines_report_unknown_outcome_or_never_sent() {
    let mut config = config();
    config.timeouts.publish_ms = Some(5_000);
    config.timeouts.confirm_ms = None;
    let mut h = Harness::connected(config);
    let sent = h.publish("sent");
    h.drain();
    h.lose_transport();
    h.input(SessionInput::Timeout);
    h.drain();
    // Reconnecting keeps failing from here on.
    h.now = at(1_000);
    let never = h.publish("never");
    let mut events = Vec::new();
    for _ in 0..100 {
        if h.now >= at(7_000) {
            break;
        }
        let seen = h.fire_timer();
        events.extend(seen.events);
        if !seen.connects.is_empty() {
            h.input(SessionInput::ConnectFailed { reason: "refused".into() });
            events.extend(h.drain().events);
        }
    }
    let outcome = |seq| {
        events.iter().find_map(|event| match event {
            SessionEvent::NotConfirmed { seq: s, error } if *s == seq => Some(error.clone()),
            _ => None,
        })
    };
    assert_eq!(outcome(sent), Some(NotConfirmed::UnknownOutcome { sends: 1 }));
    assert_eq!(outcome(never), Some(NotConfirmed::DeadlinePassed));
    assert_eq!(h.session.unconfirmed(), 0);
}

/// A request with no answer in time fails with `TimedOut`; its late answer is dropped.
#[test]
fn a_request_times_out() {
    let mut config = config();
    config.timeouts.request_ms = 2_000;
    let mut h = Harness::connected(config);
    let id = h.session.queue_stats(h.now, "jobs").unwrap();
    h.drain();
    h.server(&[Frame::Heartbeat(chute_protocol::Heartbeat)]);
    let events = h.advance_to(at(2_000)).events;
    assert!(events.contains(&SessionEvent::RequestFailed {
        request_id: id,
        error: RequestError::TimedOut { after_ms: 2_000 }
    }));
}

// ---- refusals and retries ----

/// `rate-limited` is retried on the same connection after the server's hint, same id, and
/// confirmed under the original number; a refusal that would repeat is reported at once.
#[test]
fn retriable_refusals_are_retried_after_the_hint_and_others_reported() {
    let mut h = Harness::connected(config());
    let limited = h.publish("limited");
    let missing = h.publish("missing");
    let first = published(&h.drain().frames);
    h.server(&[
        rejected(1, ErrorCode::RATE_LIMITED, 700),
        rejected(2, ErrorCode::NO_SUCH_QUEUE, 0),
    ]);
    let seen = h.drain();
    assert_eq!(
        seen.events,
        vec![SessionEvent::NotConfirmed {
            seq: missing,
            error: NotConfirmed::Refused {
                code: ErrorCode::NO_SUCH_QUEUE,
                message: "no".into(),
                retry_after_ms: 0
            }
        }]
    );
    let retried = h.fire_timer();
    assert_eq!(h.now, at(700));
    assert_eq!(published(&retried.frames), vec![first[0].clone()]);
    h.server(&[confirm(3, 1)]);
    assert_eq!(confirmed_ranges(&h.drain().events), vec![Range::one(limited)]);
    assert_eq!(h.session.stats().retries, 1);
}

/// `shutting-down` means "elsewhere": the publish waits for the next connection.
#[test]
fn a_stopping_server_refusal_waits_for_the_next_connection() {
    let mut h = Harness::connected(config());
    h.publish("x");
    let first = published(&h.drain().frames);
    h.server(&[rejected(1, ErrorCode::SHUTTING_DOWN, 0)]);
    let seen = h.drain();
    assert!(seen.events.is_empty(), "{seen:?}");
    h.lose_transport();
    h.fire_timer();
    assert_eq!(published(&h.open(100).frames), first);
}

// ---- the breaker ----

/// Failures in a row open the breaker: publishes fail at once; after the open period one
/// trial goes through, and its confirm closes it.
#[test]
fn the_breaker_opens_on_failures_fails_fast_and_closes_after_a_trial() {
    let mut config = config();
    config.breaker = Some(BreakerPolicy { failures_max: 3, open_ms: 1_000 });
    let mut h = Harness::connected(config);
    h.lose_transport(); // failure 1
    h.fire_timer();
    h.input(SessionInput::ConnectFailed { reason: "refused".into() }); // 2
    h.drain();
    h.fire_timer();
    h.input(SessionInput::ConnectFailed { reason: "refused".into() }); // 3
    let opened_at = h.now;
    let seen = h.drain();
    assert!(seen
        .events
        .iter()
        .any(|e| *e == SessionEvent::BreakerOpened { until: opened_at.plus_ms(1_000) }));
    assert_eq!(
        h.session.publish(h.now, &queue(), false, message("x")),
        Err(CommandError::CircuitOpen { retry_in_ms: 1_000 })
    );
    assert_eq!(h.session.stats().breaker_rejections, 1);

    h.now = opened_at.plus_ms(1_000);
    let trial = h.publish("trial");
    assert!(matches!(
        h.session.publish(h.now, &queue(), false, message("y")),
        Err(CommandError::CircuitOpen { .. })
    ));
    while h.fire_timer().connects.is_empty() {}
    // The breaker is half-open: a reconnect counts as success only then.
    let reopened = h.open(100);
    assert_eq!(published(&reopened.frames).len(), 1);
    assert!(reopened.events.contains(&SessionEvent::BreakerClosed));
    h.server(&[confirm(1, 1)]);
    assert_eq!(confirmed_ranges(&h.drain().events), vec![Range::one(trial)]);
    assert_eq!(h.session.breaker_state(h.now), Some(BreakerView::Closed));
}

// ---- restoring state ----

fn declare_ok(request_id: u32) -> Frame {
    Frame::QueueDeclareOk(QueueDeclareOk {
        request_id,
        created: true,
        options: QueueOptions::default(),
    })
}

fn done(request_id: u32) -> Frame {
    Frame::Done(Done { request_id, count: 0 })
}

/// After a reconnect, the declared queue (same options), its binding and the subscription
/// come back before the publishes; the subscription is granted the credit it had unused plus
/// what its unsettled deliveries held; an ack of a delivery from the old connection is void.
#[test]
fn a_new_connection_restores_queues_bindings_and_subscriptions_with_their_credit() {
    let mut h = Harness::connected(config());
    let options = QueueOptions { dedup_window_ms: Some(60_000), ..QueueOptions::default() };
    h.session.declare_queue(h.now, "jobs", options.clone(), false).unwrap();
    h.session.bind(h.now, "jobs", "jobs.#").unwrap();
    let manual = SubscriptionOptions { credit: 5, lease_ms: None, rate: None, auto_credit: false };
    let (_, subscription) = h.session.subscribe(h.now, "jobs", manual).unwrap();
    h.drain();
    h.server(&[declare_ok(1), done(2), done(3)]);
    h.drain();
    let deliver =
        Frame::Deliver(Deliver { subscription: 1, deliveries: (1..=3).map(delivery).collect() });
    h.server(&[deliver]);
    let epoch = h.session.epoch();
    assert!(h.drain().events.iter().any(|e| matches!(
        e,
        SessionEvent::Deliveries { subscription: s, epoch: 1, deliveries } if *s == subscription && deliveries.len() == 3
    )));
    assert_eq!(h.session.ack(epoch, 1), Ok(Settled::Sent));
    h.publish("p");
    h.drain();

    h.lose_transport();
    assert_eq!(h.session.ack(epoch, 2), Ok(Settled::Void));
    h.fire_timer();
    let frames = h.open(100).frames;
    let kinds: Vec<_> = frames.iter().map(Frame::kind).collect();
    use chute_protocol::FrameKind;
    assert_eq!(
        kinds,
        [FrameKind::QueueDeclare, FrameKind::Bind, FrameKind::Subscribe, FrameKind::Publish]
    );
    let Frame::QueueDeclare(declare) = &frames[0] else { unreachable!() };
    assert_eq!(
        (declare.name.as_str(), &declare.options, declare.passive),
        ("jobs", &options, false)
    );
    let Frame::Subscribe(subscribe) = &frames[2] else { unreachable!() };
    // 5 granted, 3 delivered: 2 unused; 2 of the 3 were unsettled and come again.
    assert_eq!(subscribe.credit, 4);
    assert_eq!(h.session.ack(epoch, 3), Ok(Settled::Void));
    assert_eq!(h.drain().frames, vec![], "a void ack sends nothing");
    assert_eq!(h.session.stats().void_settles, 2);
}

/// Deliveries on a new connection come under the session's subscription id, whatever id the
/// connection gave it.
#[test]
fn subscription_ids_stay_the_same_over_reconnects() {
    let mut h = Harness::connected(config());
    let options = SubscriptionOptions { credit: 10, lease_ms: None, rate: None, auto_credit: true };
    let (_, first) = h.session.subscribe(h.now, "a", options).unwrap();
    let (_, second) = h.session.subscribe(h.now, "b", options).unwrap();
    h.drain();
    h.server(&[done(1), done(2)]);
    h.session.unsubscribe(h.now, first).unwrap();
    h.drain();
    h.lose_transport();
    h.fire_timer();
    let frames = h.open(100).frames;
    let Some(Frame::Subscribe(subscribe)) = frames.first() else { panic!("{frames:?}") };
    assert_eq!((subscribe.queue.as_str(), subscribe.credit), ("b", 10));
    let deliver = Frame::Deliver(Deliver {
        subscription: subscribe.subscription,
        deliveries: vec![delivery(1)],
    });
    h.server(&[deliver]);
    assert!(h.drain().events.iter().any(|e| matches!(
        e,
        SessionEvent::Deliveries { subscription, epoch: 2, .. } if *subscription == second
    )));
}

/// A queue that can no longer be declared as it was is reported, and not tried again.
#[test]
fn a_refused_restore_is_reported_and_dropped() {
    let mut h = Harness::connected(config());
    h.session.declare_queue(h.now, "jobs", QueueOptions::default(), false).unwrap();
    h.drain();
    h.server(&[declare_ok(1)]);
    h.drain();
    h.lose_transport();
    h.fire_timer();
    let frames = h.open(100).frames;
    let Some(Frame::QueueDeclare(declare)) = frames.first() else { panic!("{frames:?}") };
    let refusal = ErrorFrame {
        request_id: declare.request_id,
        code: ErrorCode::QUEUE_OPTIONS_MISMATCH,
        retriable: false,
        retry_after_ms: 0,
        message: "different".into(),
    };
    h.server(&[Frame::Error(refusal)]);
    assert!(h.drain().events.iter().any(|e| matches!(
        e,
        SessionEvent::RestoreFailed { what, code, .. }
            if what == "queue jobs" && *code == ErrorCode::QUEUE_OPTIONS_MISMATCH
    )));
    h.lose_transport();
    h.fire_timer();
    assert!(h.open(100).frames.is_empty());
}

/// Requests unanswered at a loss: those harmless to repeat are sent again and answered; one
/// that changes state has an unknown outcome.
#[test]
fn unanswered_requests_are_sent_again_unless_they_change_state() {
    let mut h = Harness::connected(config());
    let stats = h.session.queue_stats(h.now, "jobs").unwrap();
    let purge = h.session.purge_queue(h.now, "jobs").unwrap();
    h.drain();
    let events = h.lose_transport().events;
    assert!(events.contains(&SessionEvent::RequestFailed {
        request_id: purge,
        error: RequestError::UnknownOutcome
    }));
    h.fire_timer();
    let frames = h.open(100).frames;
    let [Frame::QueueStats(request)] = &frames[..] else { panic!("{frames:?}") };
    let error = ErrorFrame {
        request_id: request.request_id,
        code: ErrorCode::NO_SUCH_QUEUE,
        retriable: false,
        retry_after_ms: 0,
        message: "none".into(),
    };
    h.server(&[Frame::Error(error.clone())]);
    assert_eq!(
        h.drain().events,
        vec![SessionEvent::Response { request_id: stats, response: Response::Failed(error) }]
    );
}

// ---- ids ----

/// Ids are generated only for messages without one, and not at all when turned off.
#[test]
fn ids_are_generated_unless_given_or_turned_off() {
    let mut h = Harness::connected(config());
    let mut own = message("own");
    own.id = Some("mine".into());
    h.session.publish(h.now, &queue(), false, own).unwrap();
    h.publish("a");
    h.publish("b");
    let ids: Vec<_> = published(&h.drain().frames).into_iter().map(|(_, id)| id.unwrap()).collect();
    assert_eq!(ids[0], "mine");
    assert_ne!(ids[1], ids[2]);
    assert_eq!(ids[1].split('.').next(), ids[2].split('.').next(), "one prefix per session");

    let mut config = config();
    config.generate_ids = false;
    let mut h = Harness::connected(config);
    h.publish("a");
    assert_eq!(published(&h.drain().frames), vec![("a".into(), None)]);
}

/// Ids cost every message; they serve only queues with a dedup window. A publish to a queue
/// the session knows nothing of gets one and asks the server (a passive declaration, once);
/// without a window, later messages get none; with one, they all do.
#[test]
fn ids_go_to_queues_that_may_have_a_dedup_window() {
    let ids = |frames: &[Frame]| -> Vec<bool> {
        published(frames).into_iter().map(|(_, id)| id.is_some()).collect()
    };
    let probes = |frames: &[Frame]| {
        frames.iter().filter(|f| matches!(f, Frame::QueueDeclare(d) if d.passive)).count()
    };
    let mut h = Harness::connected(config());
    h.publish("first");
    h.publish("second");
    let frames = h.drain().frames;
    assert_eq!((ids(&frames), probes(&frames)), (vec![true, true], 1));
    h.answer_probes(&frames, None);
    h.publish("third");
    assert_eq!(ids(&h.drain().frames), vec![false]);

    let mut h = Harness::connected(config());
    h.publish("first");
    let frames = h.drain().frames;
    h.answer_probes(&frames, Some(60_000));
    h.publish("second");
    let frames = h.drain().frames;
    assert_eq!((ids(&frames), probes(&frames)), (vec![true], 0));
}

/// The session keeps no more unconfirmed publishes than a connection may carry.
#[test]
fn the_window_holds_while_disconnected() {
    let mut h = Harness::new(config());
    h.drain();
    h.open(2);
    h.lose_transport();
    h.publish("a");
    h.publish("b");
    assert!(h.session.window_full());
    assert_eq!(
        h.session.publish(h.now, &queue(), false, message("c")),
        Err(CommandError::WindowFull { unconfirmed: 2 })
    );
}

/// Closing ends the session once the connection's last bytes are out.
#[test]
fn close_ends_the_session_after_the_connection() {
    let mut h = Harness::connected(config());
    h.publish("a");
    h.session.close();
    let seen = h.drain();
    assert_eq!(seen.closes, 1);
    assert!(matches!(
        seen.events.last(),
        Some(SessionEvent::Closed { reason: SessionEnd::Closed })
    ));
    assert_eq!(h.session.publish(h.now, &queue(), false, message("b")), Err(CommandError::Closed));
}

/// Without reconnecting there is nowhere to move: after GoingAway the connection keeps
/// serving (new publishes included) until the server closes it.
#[test]
fn going_away_without_reconnect_keeps_serving() {
    let mut config = config();
    config.reconnect.enabled = false;
    let mut h = Harness::connected(config);
    let going = GoingAway { reconnect_after_ms: 0, message: "stopping".into() };
    h.server(&[Frame::GoingAway(going)]);
    let seen = h.drain();
    assert_eq!(seen.closes, 0);
    h.publish("still");
    assert_eq!(published(&h.drain().frames).len(), 1);
}

/// Asked to reconnect, the session closes the connection and opens the next at once, with no
/// backoff and nothing counted as a failure; what was unanswered goes out again.
#[test]
fn reconnect_now_moves_at_once() {
    let mut h = Harness::connected(config());
    h.publish("a");
    let first = published(&h.drain().frames);
    h.session.reconnect_now();
    let seen = h.drain();
    assert_eq!(seen.closes, 1);
    assert!(seen
        .events
        .iter()
        .any(|e| matches!(e, SessionEvent::Disconnected { error: LinkError::Requested, .. })));
    assert_eq!(h.session.poll_timeout(), Some(h.now));
    assert_eq!(h.fire_timer().connects, vec![0]);
    assert_eq!(published(&h.open(100).frames), first);
}

/// Publishes to several destinations are sent again each to its own, in order.
#[test]
fn publishes_go_again_to_their_own_destinations() {
    let mut config = config();
    config.generate_ids = false;
    let mut h = Harness::connected(config);
    let to = |name: &str| Destination::Queue(name.into());
    for (queue, text) in [("a", "1"), ("b", "2"), ("b", "3"), ("a", "4")] {
        h.session.publish(h.now, &to(queue), false, message(text)).unwrap();
    }
    h.drain();
    h.server(&[confirm(2, 1)]);
    h.drain();
    h.lose_transport();
    h.fire_timer();
    let sent: Vec<(String, String)> = h
        .open(100)
        .frames
        .iter()
        .filter_map(|frame| match frame {
            Frame::Publish(publish) => Some(publish),
            _ => None,
        })
        .flat_map(|publish| {
            let Destination::Queue(queue) = &publish.destination else { unreachable!() };
            publish
                .messages
                .iter()
                .map(move |m| (queue.clone(), String::from_utf8(m.payload.to_vec()).unwrap()))
        })
        .collect();
    let expected = [("a", "1"), ("b", "3"), ("a", "4")];
    assert_eq!(sent, expected.map(|(q, t)| (q.to_string(), t.to_string())));
}

/// A request refused with `resource-limit` is sent again after the server's hint, and its
/// answer goes to the caller under the original id.
#[test]
fn a_request_refused_for_now_is_retried_after_the_hint() {
    let mut h = Harness::connected(config());
    let id = h.session.declare_queue(h.now, "jobs", QueueOptions::default(), false).unwrap();
    let frames = h.drain().frames;
    let [Frame::QueueDeclare(first)] = &frames[..] else { panic!("{frames:?}") };
    let busy = ErrorFrame {
        request_id: first.request_id,
        code: ErrorCode::RESOURCE_LIMIT,
        retriable: true,
        retry_after_ms: 800,
        message: "too many queues for now".into(),
    };
    h.server(&[Frame::Error(busy)]);
    assert_eq!(h.drain().events, vec![]);
    let again = h.fire_timer();
    assert_eq!(h.now, at(800), "the server's hint, longer than the backoff");
    let [Frame::QueueDeclare(second)] = &again.frames[..] else { panic!("{again:?}") };
    h.server(&[declare_ok(second.request_id)]);
    assert!(matches!(
        &h.drain().events[..],
        [SessionEvent::Response { request_id, response: Response::Declared(_) }] if *request_id == id
    ));
}

// ---- logging in ----

/// The SCRAM nonce of each connection's AuthStart: fresh for every connection (a reused one
/// would make two exchanges alike), and the same for the same seed (a simulation replays).
#[test]
fn every_connection_logs_in_with_a_fresh_nonce() {
    let nonces = |seed: u64| -> Vec<String> {
        let mut config = config();
        config.seed = seed;
        config.client.credentials =
            chute_protocol::Credentials::Password { username: "u".into(), password: "p".into() };
        config.reconnect.retry_first_connect = true;
        let mut h = Harness::new(config);
        let mut nonces = Vec::new();
        assert_eq!(h.drain().connects.len(), 1);
        for _ in 0..2 {
            h.input(SessionInput::TransportUp);
            h.reader = FrameReader::new(FRAME_SIZE_CEILING);
            assert!(matches!(h.drain().frames[..], [Frame::Hello(_)]));
            let required = chute_protocol::AuthRequired {
                version: 2,
                mechanisms: vec!["SCRAM-SHA-256".into()],
            };
            h.server(&[Frame::AuthRequired(required)]);
            let Some(Frame::AuthStart(start)) = h.drain().frames.pop() else { panic!() };
            let first = String::from_utf8(start.data.to_vec()).unwrap();
            nonces.push(first.rsplit_once("r=").unwrap().1.to_string());
            h.lose_transport();
            assert_eq!(h.fire_timer().connects.len(), 1);
        }
        nonces
    };
    let first_run = nonces(7);
    assert_ne!(first_run[0], first_run[1], "a fresh nonce per connection");
    assert_eq!(first_run, nonces(7), "the same seed, the same nonces");
    assert_ne!(first_run, nonces(8));
}
