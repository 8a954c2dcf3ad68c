//! Proptest strategies for every v1 frame, shared by the protocol's property tests.
//!
//! `frame_of_kind` matches on `FrameKind` without a wildcard, so a kind added to the `frames!`
//! list fails to compile here until it has a strategy; `any_frame` picks uniformly among all
//! of them. Every enum inside a body has a strategy over all its variants, with a `*_label`
//! function (again an exhaustive match) that the coverage tests use to check that sampling
//! reaches each variant.
//!
//! Values are valid as far as the encoder is concerned, and stay far below the sequence limits
//! of `limits.rs` (0..4 elements, short strings, payloads under 64 bytes) to keep the tests
//! fast. Integers are biased towards varint boundaries, where encodings change length.

// Each test file includes this module and uses a different part of it.
#![allow(dead_code)]

use bytes::Bytes;
use chute_protocol::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union, ValueTree};
use proptest::test_runner::{FileFailurePersistence, TestRunner};

// ---- scalars ----------------------------------------------------------------------------

/// A `u16` around the varint length boundaries, small, or anywhere.
pub fn u16s() -> impl Strategy<Value = u16> {
    prop_oneof![
        prop::sample::select(vec![0, 1, 127, 128, 16_383, 16_384, u16::MAX]),
        0..300u16,
        any::<u16>(),
    ]
}

/// A `u32` around the varint length boundaries, small, or anywhere.
pub fn u32s() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![0, 1, 127, 128, 16_383, 16_384, 1 << 21, 1 << 28, u32::MAX]),
        0..300u32,
        any::<u32>(),
    ]
}

/// A `u64` around the varint length boundaries, small, or anywhere.
pub fn u64s() -> impl Strategy<Value = u64> {
    prop_oneof![
        prop::sample::select(vec![0, 1, 127, 128, 1 << 35, 1 << 63, u64::MAX]),
        0..300u64,
        any::<u64>(),
    ]
}

/// A queue name, topic or pattern, or free text with non-ASCII characters.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9.*#_-]{0,12}", "\\PC{0,6}"]
}

/// Payload bytes, built from a `Vec<u8>` as a peer's application would.
pub fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

/// Known codes and codes a newer server might send.
pub fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![prop::sample::select(ErrorCode::ALL.to_vec()), any::<u16>().prop_map(ErrorCode),]
}

pub fn priority() -> impl Strategy<Value = u8> {
    0..=PRIORITY_MAX
}

pub fn range() -> impl Strategy<Value = Range> {
    (u64s(), 1..=u32::MAX).prop_map(|(first, count)| Range { first, count })
}

pub fn ranges() -> impl Strategy<Value = Vec<Range>> {
    vec(range(), 0..4)
}

// ---- enums, each with the label of its variant --------------------------------------------

pub fn credentials() -> impl Strategy<Value = Credentials> {
    prop_oneof![
        Just(Credentials::Anonymous),
        (text(), text())
            .prop_map(|(username, password)| Credentials::Password { username, password }),
        text().prop_map(|token| Credentials::Token { token }),
    ]
}

pub fn credentials_label(value: &Credentials) -> &'static str {
    match value {
        Credentials::Anonymous => "anonymous",
        Credentials::Password { .. } => "password",
        Credentials::Token { .. } => "token",
    }
}

pub fn destination() -> impl Strategy<Value = Destination> {
    prop_oneof![text().prop_map(Destination::Queue), text().prop_map(Destination::Topic),]
}

pub fn destination_label(value: &Destination) -> &'static str {
    match value {
        Destination::Queue(_) => "queue",
        Destination::Topic(_) => "topic",
    }
}

pub fn schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![u64s().prop_map(Schedule::DelayMs), u64s().prop_map(Schedule::AtUnixMs),]
}

pub fn schedule_label(value: &Schedule) -> &'static str {
    match value {
        Schedule::DelayMs(_) => "delay",
        Schedule::AtUnixMs(_) => "at",
    }
}

pub fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![
        Just(Durability::Always),
        u32s().prop_map(|sync_interval_ms| Durability::Interval { sync_interval_ms }),
        Just(Durability::None),
    ]
}

pub fn durability_label(value: &Durability) -> &'static str {
    match value {
        Durability::Always => "always",
        Durability::Interval { .. } => "interval",
        Durability::None => "none",
    }
}

pub fn overflow_policy() -> impl Strategy<Value = OverflowPolicy> {
    prop_oneof![Just(OverflowPolicy::RejectPublish), Just(OverflowPolicy::DropHead)]
}

pub fn overflow_policy_label(value: &OverflowPolicy) -> &'static str {
    match value {
        OverflowPolicy::RejectPublish => "reject-publish",
        OverflowPolicy::DropHead => "drop-head",
    }
}

pub fn expiry_policy() -> impl Strategy<Value = ExpiryPolicy> {
    prop_oneof![Just(ExpiryPolicy::DeadLetter), Just(ExpiryPolicy::Drop)]
}

pub fn expiry_policy_label(value: &ExpiryPolicy) -> &'static str {
    match value {
        ExpiryPolicy::DeadLetter => "dead-letter",
        ExpiryPolicy::Drop => "drop",
    }
}

pub fn rate_limit_policy() -> impl Strategy<Value = RateLimitPolicy> {
    prop_oneof![Just(RateLimitPolicy::Pause), Just(RateLimitPolicy::Reject)]
}

pub fn rate_limit_policy_label(value: &RateLimitPolicy) -> &'static str {
    match value {
        RateLimitPolicy::Pause => "pause",
        RateLimitPolicy::Reject => "reject",
    }
}

pub fn breaker_state() -> impl Strategy<Value = BreakerState> {
    prop_oneof![
        Just(BreakerState::Closed),
        u64s().prop_map(|until_unix_ms| BreakerState::Open { until_unix_ms }),
        Just(BreakerState::HalfOpen),
    ]
}

pub fn breaker_state_label(value: &BreakerState) -> &'static str {
    match value {
        BreakerState::Closed => "closed",
        BreakerState::Open { .. } => "open",
        BreakerState::HalfOpen => "half-open",
    }
}

pub fn attempt_outcome() -> impl Strategy<Value = AttemptOutcome> {
    prop_oneof![
        Just(AttemptOutcome::Nack),
        Just(AttemptOutcome::Timeout),
        Just(AttemptOutcome::Disconnect),
        Just(AttemptOutcome::Reject),
    ]
}

pub fn attempt_outcome_label(value: &AttemptOutcome) -> &'static str {
    match value {
        AttemptOutcome::Nack => "nack",
        AttemptOutcome::Timeout => "timeout",
        AttemptOutcome::Disconnect => "disconnect",
        AttemptOutcome::Reject => "reject",
    }
}

pub fn dead_reason() -> impl Strategy<Value = DeadReason> {
    prop_oneof![
        Just(DeadReason::MaxAttempts),
        Just(DeadReason::Rejected),
        Just(DeadReason::Expired),
        Just(DeadReason::Overflow),
    ]
}

pub fn dead_reason_label(value: &DeadReason) -> &'static str {
    match value {
        DeadReason::MaxAttempts => "max-attempts",
        DeadReason::Rejected => "rejected",
        DeadReason::Expired => "expired",
        DeadReason::Overflow => "overflow",
    }
}

// ---- queue options ------------------------------------------------------------------------

pub fn backoff_policy() -> impl Strategy<Value = BackoffPolicy> {
    (u32s(), u32s(), u32s(), any::<bool>()).prop_map(|(base_ms, factor_percent, max_ms, jitter)| {
        BackoffPolicy { base_ms, factor_percent, max_ms, jitter }
    })
}

pub fn rate_limit() -> impl Strategy<Value = RateLimit> {
    (u32s(), u32s(), rate_limit_policy()).prop_map(|(per_second, burst, policy)| RateLimit {
        per_second,
        burst,
        policy,
    })
}

pub fn breaker_policy() -> impl Strategy<Value = BreakerPolicy> {
    (u32s(), u32s()).prop_map(|(failures_max, open_ms)| BreakerPolicy { failures_max, open_ms })
}

pub fn queue_options() -> impl Strategy<Value = QueueOptions> {
    let limits = (
        durability(),
        option::of(u64s()),
        option::of(u64s()),
        overflow_policy(),
        option::of(u64s()),
        expiry_policy(),
        option::of(text()),
    );
    let delivery = (
        option::of(u32s()),
        backoff_policy(),
        u32s(),
        option::of(u64s()),
        option::of(rate_limit()),
        option::of(breaker_policy()),
    );
    (limits, delivery).prop_map(
        |(
            (durability, messages_max, bytes_max, overflow, ttl_ms, expiry, dead_letter),
            (attempts_max, backoff, lease_ms, dedup_window_ms, publish_rate, breaker),
        )| QueueOptions {
            durability,
            messages_max,
            bytes_max,
            overflow,
            ttl_ms,
            expiry,
            dead_letter,
            attempts_max,
            backoff,
            lease_ms,
            dedup_window_ms,
            publish_rate,
            breaker,
        },
    )
}

// ---- messages -------------------------------------------------------------------------------

pub fn header() -> impl Strategy<Value = Header> {
    (text(), payload()).prop_map(|(name, value)| Header { name, value })
}

pub fn headers() -> impl Strategy<Value = Vec<Header>> {
    vec(header(), 0..4)
}

pub fn publish_message() -> impl Strategy<Value = PublishMessage> {
    (
        option::of(text()),
        headers(),
        payload(),
        option::of(schedule()),
        option::of(u64s()),
        priority(),
        option::of(text()),
    )
        .prop_map(|(id, headers, payload, schedule, ttl_ms, priority, group)| PublishMessage {
            id,
            headers,
            payload,
            schedule,
            ttl_ms,
            priority,
            group,
        })
}

pub fn delivery() -> impl Strategy<Value = Delivery> {
    (
        (u64s(), u32s(), any::<bool>(), option::of(text())),
        (headers(), payload(), u64s()),
        (priority(), option::of(text()), option::of(text())),
    )
        .prop_map(
            |(
                (tag, attempt, redelivered, id),
                (headers, payload, published_unix_ms),
                (priority, group, topic),
            )| Delivery {
                tag,
                attempt,
                redelivered,
                id,
                headers,
                payload,
                published_unix_ms,
                priority,
                group,
                topic,
            },
        )
}

pub fn attempt_record() -> impl Strategy<Value = AttemptRecord> {
    (u64s(), attempt_outcome(), option::of(text()))
        .prop_map(|(at_unix_ms, outcome, reason)| AttemptRecord { at_unix_ms, outcome, reason })
}

pub fn dead_letter_summary() -> impl Strategy<Value = DeadLetterSummary> {
    (
        (u64s(), option::of(text()), text(), dead_reason()),
        (u64s(), u64s(), u32s(), vec(attempt_record(), 0..4)),
    )
        .prop_map(
            |(
                (dead_id, message_id, source_queue, reason),
                (dead_unix_ms, published_unix_ms, payload_len, history),
            )| DeadLetterSummary {
                dead_id,
                message_id,
                source_queue,
                reason,
                dead_unix_ms,
                published_unix_ms,
                payload_len,
                history,
            },
        )
}

pub fn dead_letter() -> impl Strategy<Value = DeadLetter> {
    (dead_letter_summary(), headers(), payload())
        .prop_map(|(summary, headers, payload)| DeadLetter { summary, headers, payload })
}

// ---- bodies ---------------------------------------------------------------------------------

pub fn hello() -> impl Strategy<Value = Hello> {
    (u16s(), u16s(), text(), credentials(), u32s()).prop_map(
        |(version_min, version_max, client_name, credentials, heartbeat_ms)| Hello {
            version_min,
            version_max,
            client_name,
            credentials,
            heartbeat_ms,
        },
    )
}

pub fn server_limits() -> impl Strategy<Value = ServerLimits> {
    (u32s(), u32s(), u32s(), u32s(), u32s(), u32s()).prop_map(
        |(
            frame_size_max,
            payload_size_max,
            publish_batch_max,
            unconfirmed_max,
            credit_max,
            subscriptions_max,
        )| ServerLimits {
            frame_size_max,
            payload_size_max,
            publish_batch_max,
            unconfirmed_max,
            credit_max,
            subscriptions_max,
        },
    )
}

pub fn hello_ok() -> impl Strategy<Value = HelloOk> {
    (u16s(), text(), u64s(), u32s(), server_limits()).prop_map(
        |(version, server_name, connection_id, heartbeat_ms, limits)| HelloOk {
            version,
            server_name,
            connection_id,
            heartbeat_ms,
            limits,
        },
    )
}

pub fn queue_summary() -> impl Strategy<Value = QueueSummary> {
    (text(), u64s(), u64s(), u32s()).prop_map(|(name, ready, in_flight, consumers)| QueueSummary {
        name,
        ready,
        in_flight,
        consumers,
    })
}

pub fn consumer_info() -> impl Strategy<Value = ConsumerInfo> {
    (u64s(), u32s(), u32s(), u32s(), breaker_state()).prop_map(
        |(connection_id, subscription, credit, in_flight, breaker)| ConsumerInfo {
            connection_id,
            subscription,
            credit,
            in_flight,
            breaker,
        },
    )
}

pub fn queue_counters() -> impl Strategy<Value = QueueCounters> {
    vec(u64s(), 11).prop_map(|c| QueueCounters {
        published: c[0],
        delivered: c[1],
        acked: c[2],
        nacked: c[3],
        rejected: c[4],
        redelivered: c[5],
        timed_out: c[6],
        expired: c[7],
        dead_lettered: c[8],
        deduplicated: c[9],
        dropped: c[10],
    })
}

pub fn queue_stats() -> impl Strategy<Value = QueueStats> {
    (
        (text(), queue_options()),
        vec(u64s(), 6),
        queue_counters(),
        vec(consumer_info(), 0..4),
        vec(text(), 0..4),
    )
        .prop_map(|((name, options), n, counters, consumers, bindings)| QueueStats {
            name,
            options,
            ready: n[0],
            delayed: n[1],
            in_flight: n[2],
            group_blocked: n[3],
            bytes: n[4],
            dead_letters: n[5],
            counters,
            consumers,
            bindings,
        })
}

pub fn publish() -> impl Strategy<Value = Publish> {
    (destination(), any::<bool>(), vec(publish_message(), 0..4))
        .prop_map(|(destination, mandatory, messages)| Publish { destination, mandatory, messages })
}

pub fn deliver() -> impl Strategy<Value = Deliver> {
    (u32s(), vec(delivery(), 0..4))
        .prop_map(|(subscription, deliveries)| Deliver { subscription, deliveries })
}

pub fn dlq_inspect_ok() -> impl Strategy<Value = DlqInspectOk> {
    (u32s(), dead_letter()).prop_map(|(request_id, entry)| DlqInspectOk { request_id, entry })
}

pub fn publish_failure() -> impl Strategy<Value = PublishFailure> {
    (u64s(), error_code(), u64s(), text()).prop_map(|(seq, code, retry_after_ms, message)| {
        PublishFailure { seq, code, retry_after_ms, message }
    })
}

pub fn subscribe() -> impl Strategy<Value = Subscribe> {
    (u32s(), u32s(), text(), u32s(), option::of(u32s()), option::of(rate_limit())).prop_map(
        |(request_id, subscription, queue, credit, lease_ms, rate)| Subscribe {
            request_id,
            subscription,
            queue,
            credit,
            lease_ms,
            rate,
        },
    )
}

pub fn binding() -> impl Strategy<Value = Binding> {
    (u32s(), text(), text()).prop_map(|(request_id, queue, pattern)| Binding {
        request_id,
        queue,
        pattern,
    })
}

/// An authentication exchange's opaque message.
pub fn auth_data() -> impl Strategy<Value = bytes::Bytes> {
    vec(any::<u8>(), 0..64).prop_map(bytes::Bytes::from)
}

// ---- frames -------------------------------------------------------------------------------

/// Arbitrary valid frames of exactly this kind.
pub fn frame_of_kind(kind: FrameKind) -> BoxedStrategy<Frame> {
    // No wildcard arm: a new kind must get a strategy before this compiles.
    match kind {
        FrameKind::Hello => hello().prop_map(Frame::Hello).boxed(),
        FrameKind::HelloOk => hello_ok().prop_map(Frame::HelloOk).boxed(),
        FrameKind::Heartbeat => Just(Frame::Heartbeat(Heartbeat)).boxed(),
        FrameKind::GoingAway => (u32s(), text())
            .prop_map(|(reconnect_after_ms, message)| {
                Frame::GoingAway(GoingAway { reconnect_after_ms, message })
            })
            .boxed(),
        FrameKind::Close => (error_code(), text())
            .prop_map(|(code, message)| Frame::Close(Close { code, message }))
            .boxed(),
        FrameKind::Error => (u32s(), error_code(), any::<bool>(), u64s(), text())
            .prop_map(|(request_id, code, retriable, retry_after_ms, message)| {
                Frame::Error(ErrorFrame { request_id, code, retriable, retry_after_ms, message })
            })
            .boxed(),
        FrameKind::Done => (u32s(), u64s())
            .prop_map(|(request_id, count)| Frame::Done(Done { request_id, count }))
            .boxed(),
        FrameKind::AuthRequired => (any::<u16>(), vec(text(), 0..4))
            .prop_map(|(version, mechanisms)| {
                Frame::AuthRequired(AuthRequired { version, mechanisms })
            })
            .boxed(),
        FrameKind::AuthStart => (text(), auth_data())
            .prop_map(|(mechanism, data)| Frame::AuthStart(AuthStart { mechanism, data }))
            .boxed(),
        FrameKind::AuthChallenge => {
            auth_data().prop_map(|data| Frame::AuthChallenge(AuthChallenge { data })).boxed()
        }
        FrameKind::AuthResponse => {
            auth_data().prop_map(|data| Frame::AuthResponse(AuthResponse { data })).boxed()
        }
        FrameKind::AuthOk => (text(), auth_data())
            .prop_map(|(user, data)| Frame::AuthOk(AuthOk { user, data }))
            .boxed(),
        FrameKind::Blocked => text().prop_map(|reason| Frame::Blocked(Blocked { reason })).boxed(),
        FrameKind::Unblocked => Just(Frame::Unblocked(Unblocked)).boxed(),
        FrameKind::QueueDeclare => (u32s(), text(), queue_options(), any::<bool>())
            .prop_map(|(request_id, name, options, passive)| {
                Frame::QueueDeclare(QueueDeclare { request_id, name, options, passive })
            })
            .boxed(),
        FrameKind::QueueDeclareOk => (u32s(), any::<bool>(), queue_options())
            .prop_map(|(request_id, created, options)| {
                Frame::QueueDeclareOk(QueueDeclareOk { request_id, created, options })
            })
            .boxed(),
        FrameKind::QueueDelete => (u32s(), text(), any::<bool>(), any::<bool>())
            .prop_map(|(request_id, name, if_empty, if_unused)| {
                Frame::QueueDelete(QueueDelete { request_id, name, if_empty, if_unused })
            })
            .boxed(),
        FrameKind::QueuePurge => (u32s(), text())
            .prop_map(|(request_id, name)| Frame::QueuePurge(QueuePurge { request_id, name }))
            .boxed(),
        FrameKind::Bind => binding().prop_map(Frame::Bind).boxed(),
        FrameKind::Unbind => binding().prop_map(Frame::Unbind).boxed(),
        FrameKind::QueueList => (u32s(), option::of(text()), u32s())
            .prop_map(|(request_id, after, limit)| {
                Frame::QueueList(QueueList { request_id, after, limit })
            })
            .boxed(),
        FrameKind::QueueListOk => (u32s(), vec(queue_summary(), 0..4), any::<bool>())
            .prop_map(|(request_id, queues, more)| {
                Frame::QueueListOk(QueueListOk { request_id, queues, more })
            })
            .boxed(),
        FrameKind::QueueStats => (u32s(), text())
            .prop_map(|(request_id, name)| {
                Frame::QueueStats(QueueStatsRequest { request_id, name })
            })
            .boxed(),
        FrameKind::QueueStatsOk => (u32s(), queue_stats())
            .prop_map(|(request_id, stats)| Frame::QueueStatsOk(QueueStatsOk { request_id, stats }))
            .boxed(),
        FrameKind::Publish => publish().prop_map(Frame::Publish).boxed(),
        FrameKind::Confirm => {
            ranges().prop_map(|ranges| Frame::Confirm(Confirm { ranges })).boxed()
        }
        FrameKind::PublishRejected => vec(publish_failure(), 0..4)
            .prop_map(|failures| Frame::PublishRejected(PublishRejected { failures }))
            .boxed(),
        FrameKind::Subscribe => subscribe().prop_map(Frame::Subscribe).boxed(),
        FrameKind::Credit => (u32s(), u32s())
            .prop_map(|(subscription, credit)| Frame::Credit(Credit { subscription, credit }))
            .boxed(),
        FrameKind::Unsubscribe => (u32s(), u32s())
            .prop_map(|(request_id, subscription)| {
                Frame::Unsubscribe(Unsubscribe { request_id, subscription })
            })
            .boxed(),
        FrameKind::Deliver => deliver().prop_map(Frame::Deliver).boxed(),
        FrameKind::SubscriptionCancelled => (u32s(), error_code(), text())
            .prop_map(|(subscription, code, message)| {
                Frame::SubscriptionCancelled(SubscriptionCancelled { subscription, code, message })
            })
            .boxed(),
        FrameKind::Ack => (u32s(), ranges())
            .prop_map(|(request_id, ranges)| Frame::Ack(Ack { request_id, ranges }))
            .boxed(),
        FrameKind::Nack => (u32s(), ranges(), option::of(u64s()), option::of(text()))
            .prop_map(|(request_id, ranges, delay_ms, reason)| {
                Frame::Nack(Nack { request_id, ranges, delay_ms, reason })
            })
            .boxed(),
        FrameKind::Reject => (u32s(), ranges(), text())
            .prop_map(|(request_id, ranges, reason)| {
                Frame::Reject(Reject { request_id, ranges, reason })
            })
            .boxed(),
        FrameKind::Touch => (u32s(), ranges(), option::of(u32s()))
            .prop_map(|(request_id, ranges, lease_ms)| {
                Frame::Touch(Touch { request_id, ranges, lease_ms })
            })
            .boxed(),
        FrameKind::DlqList => (u32s(), text(), option::of(u64s()), u32s())
            .prop_map(|(request_id, queue, after, limit)| {
                Frame::DlqList(DlqList { request_id, queue, after, limit })
            })
            .boxed(),
        FrameKind::DlqListOk => (u32s(), vec(dead_letter_summary(), 0..4), any::<bool>())
            .prop_map(|(request_id, entries, more)| {
                Frame::DlqListOk(DlqListOk { request_id, entries, more })
            })
            .boxed(),
        FrameKind::DlqInspect => (u32s(), text(), u64s())
            .prop_map(|(request_id, queue, dead_id)| {
                Frame::DlqInspect(DlqInspect { request_id, queue, dead_id })
            })
            .boxed(),
        FrameKind::DlqInspectOk => dlq_inspect_ok().prop_map(Frame::DlqInspectOk).boxed(),
        FrameKind::DlqRedrive => (u32s(), text(), vec(u64s(), 0..4))
            .prop_map(|(request_id, queue, dead_ids)| {
                Frame::DlqRedrive(DlqRedrive { request_id, queue, dead_ids })
            })
            .boxed(),
    }
}

/// An arbitrary valid frame; every kind in `FrameKind::ALL` is equally likely.
pub fn any_frame() -> impl Strategy<Value = Frame> {
    Union::new(FrameKind::ALL.iter().map(|&kind| frame_of_kind(kind)))
}

// ---- helpers ------------------------------------------------------------------------------

/// A proptest configuration running `cases` cases. Failures are saved next to the test file
/// (`tests/<name>.proptest-regressions`) and replayed first on later runs; this is where the
/// default setting ends up for integration tests anyway, minus its warning about `lib.rs`.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

/// `count` values drawn from `strategy` with a fixed seed, for coverage checks outside
/// `proptest!`.
pub fn sample<S: Strategy>(strategy: S, count: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..count)
        .map(|_| strategy.new_tree(&mut runner).expect("strategies here never reject").current())
        .collect()
}

/// The wire bytes of one frame.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    frame
        .encode(&mut out, FRAME_SIZE_MAX_DEFAULT)
        .expect("strategy frames are far below the frame limit");
    out.to_vec()
}

/// The payload and header values of a frame that carries message bytes (the kinds the decoder
/// shares with the received buffer), or nothing for other kinds.
pub fn payload_slices(frame: &Frame) -> Vec<Bytes> {
    fn with_headers(out: &mut Vec<Bytes>, headers: &[Header], payload: &Bytes) {
        out.extend(headers.iter().map(|h| h.value.clone()));
        out.push(payload.clone());
    }
    let mut out = Vec::new();
    match frame {
        Frame::Publish(publish) => {
            for m in &publish.messages {
                with_headers(&mut out, &m.headers, &m.payload);
            }
        }
        Frame::Deliver(deliver) => {
            for d in &deliver.deliveries {
                with_headers(&mut out, &d.headers, &d.payload);
            }
        }
        Frame::DlqInspectOk(ok) => with_headers(&mut out, &ok.entry.headers, &ok.entry.payload),
        _ => {}
    }
    out
}
