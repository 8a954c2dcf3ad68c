//! A reference model of the queue semantics, and a property test that drives the real broker
//! (through the in-memory `Net`, with real client machines) and the model with the same random
//! operations, comparing everything a client can observe after every step.
//!
//! # Scope
//!
//! Two queues: `dlq` (declared first, so it is `QueueId(1)`) and `q`, whose dead-letter queue
//! is `dlq` in most cases. Each case draws both queues' options from a small set, so that
//! every outcome is exact and deterministic: backoff without jitter (base 0 or 100 ms, factor
//! 100 % or 200 %, cap 400 ms), attempts_max unset or 1..=4, a short lease, TTL unset or short,
//! expiry dead-letter or drop, messages_max unset or 2..=5 with reject-publish or drop-head,
//! a dedup window or none, and any durability (the `Net`'s disk is instant, so whatever the
//! durability a client must see the same between steps). Breakers, rate limits, bindings, byte
//! limits, purge, delete and restarts are out of scope: they have their own tests.
//!
//! One publisher connection publishes batches of 1..=3 messages (priority, group key from a
//! set of two, delay, TTL, message id) to either queue and asks for stats. Three consumer slots
//! connect, subscribe to either queue (at most one subscription each), take credit, ack, nack
//! (with or without a delay and a reason), reject, touch (with or without a lease), unsubscribe,
//! disconnect and reconnect. Time moves by random amounts and exactly to (or 1 ms around) the
//! model's next deadline. Dead letters are redriven, all or one.
//!
//! After every step the test compares: each consumer's deliveries (tag, payload, attempt,
//! redelivered, id, priority, group, publish time) in order; each publish's outcome (confirmed,
//! or refused with which code); both queues' stats (ready, delayed, in flight, group-blocked,
//! depth, bytes, dead letters, every counter, and each consumer's credit and in-flight count);
//! and the dead-letter list of `dlq` (ids, message ids, source, reason, times, history).
//!
//! # Rules the model follows
//!
//! These are the documented semantics (docs/PROTOCOL.md §7-§8, §12). Where the documents
//! leave a choice to the broker (which consumer, which of several simultaneous events first)
//! the model follows the broker's own rule, as its code comments state it, rather than
//! comparing aggregates: the rules are deterministic, so any difference is a finding.
//!
//! - Ready line: one FIFO per priority, higher priorities first. New publishes, dead letters
//!   and redriven messages join the back of their level; a retry (nack, timeout, disconnect)
//!   with no delay and a group's next message go to the front.
//! - Dispatch, after every input: while a message is ready and a consumer has credit, the
//!   consumer whose turn it is (round robin over the queue's consumers in subscription order,
//!   one message per turn, skipping consumers without credit) gets the front message. A
//!   message found expired on the way is dead-lettered (`expired`); one whose group is held
//!   by another message waits for the group, in order. Each delivery counts an attempt (shown
//!   as `attempt`; `redelivered` is `attempt > 1` or a history of failed attempts, so a dead
//!   letter's first delivery from its DLQ, and the first after a redrive, are marked
//!   redelivered) and starts a lease of the subscription's lease or the queue's.
//! - Settling: ack removes the message; nack, lease timeout and disconnect fail the attempt
//!   (recorded in the history with the consumer's reason); reject dead-letters at once
//!   (`rejected`). A failed attempt dead-letters with `max-attempts` once attempts reach
//!   `attempts_max`, else with `expired` if the TTL ran out meanwhile, else retries after the
//!   nack's delay or the backoff `min(max, base * factor^(attempt-1))`. A disconnect fails the
//!   connection's deliveries newest first. A settle of a tag the broker no longer holds (its
//!   lease ran out) changes nothing. Touch restarts the lease (touch's, else subscription's,
//!   else queue's) from now.
//! - A retry keeps its group: the group's next message is released (to the front) only when
//!   the holder is acked or leaves the queue.
//! - Time: at each instant where something is due, lease expiries fire first (by connection,
//!   then tag), then each queue (in id order) releases due messages (retries to the front in
//!   the order they came due, delayed publishes to the back) and dead-letters held messages
//!   whose TTL ran out (ready line first, then delayed by due time, then group-blocked by group
//!   key), then dispatch runs.
//! - Dead letters: into the queue's dead-letter queue with attempts reset, the history kept,
//!   the DLQ's TTL from now (from an in-memory queue into a logged DLQ, after its new record is
//!   synced: behind what the instant's first dispatch hands out); dropped (counted) without one, or for `expired` under the drop
//!   policy.
//! - Limits: a publish to a queue holding `messages_max` messages (in flight included) is
//!   refused with `queue-full` (reject-publish), or makes room by dead-lettering the oldest
//!   ready message (`overflow`; among the fronts of the priority levels, the lowest sequence
//!   number); with nothing ready to drop it is refused too.
//! - Dedup: a publish whose id was stored within the window is confirmed and not stored.
//! - Redrive moves dead letters that are not in flight back to their source queue in id order,
//!   at the back of the line, with attempts reset, the history kept and the source's TTL from
//!   now.
//!
//! # Bugs it found
//!
//! `regressions.rs` keeps a short reproduction of each core bug this test found.
//!
//! `CHUTE_MODEL_CASES=20000 cargo test -p chute-core --test model` runs a longer search.

mod support;

use std::collections::BTreeMap;

use bytes::Bytes;
use chute_core::client::{ClientEvent, Response};
use chute_core::ConnId;
use chute_protocol::{
    AttemptOutcome, AttemptRecord, BackoffPolicy, DeadLetterSummary, DeadReason, Delivery,
    Destination, Durability, ErrorCode, ExpiryPolicy, OverflowPolicy, PublishMessage,
    QueueCounters, QueueOptions, QueueStats, Schedule, ATTEMPT_HISTORY_MAX, PRIORITY_MAX,
};
use proptest::prelude::*;
use proptest::sample::Index;
use support::Net;

/// Queue names by model index; the index is also the order of their ids in the broker.
const QUEUES: [&str; 2] = ["dlq", "q"];
const DLQ: usize = 0;
const LEVELS: usize = PRIORITY_MAX as usize + 1;
const CONSUMERS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct MMessage {
    seq: u64,
    payload: Bytes,
    published_ms: u64,
    attempts: u32,
    priority: u8,
    expires_ms: Option<u64>,
    id: Option<String>,
    group: Option<String>,
    history: Vec<AttemptRecord>,
    /// (source queue, reason, when) once dead-lettered.
    dead: Option<(usize, DeadReason, u64)>,
}

impl MMessage {
    fn is_expired(&self, now: u64) -> bool {
        self.expires_ms.is_some_and(|at| at <= now)
    }

    fn len(&self) -> u64 {
        self.payload.len() as u64
    }

    fn level(&self) -> usize {
        usize::from(self.priority)
    }
}

#[derive(Debug)]
struct MQueue {
    options: QueueOptions,
    /// One line per priority; index 0 of each is the front.
    ready: Vec<Vec<MMessage>>,
    /// Not yet due: (due, message).
    delayed: Vec<(u64, MMessage)>,
    /// Waiting for their group, in the order they reached the front.
    blocked: Vec<MMessage>,
    /// Group key → sequence number of the message holding it.
    holders: BTreeMap<String, u64>,
    in_flight: u64,
    bytes: u64,
    /// (connection, subscription), in subscription order.
    consumers: Vec<(u64, u32)>,
    next_consumer: usize,
    /// Message id → when its window closes.
    dedup: BTreeMap<String, u64>,
    counters: QueueCounters,
}

impl MQueue {
    fn new(options: QueueOptions) -> MQueue {
        MQueue {
            options,
            ready: vec![Vec::new(); LEVELS],
            delayed: Vec::new(),
            blocked: Vec::new(),
            holders: BTreeMap::new(),
            in_flight: 0,
            bytes: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            dedup: BTreeMap::new(),
            counters: QueueCounters::default(),
        }
    }

    fn ready_len(&self) -> usize {
        self.ready.iter().map(Vec::len).sum()
    }

    /// Every message the queue holds or has in flight.
    fn depth(&self) -> u64 {
        (self.ready_len() + self.delayed.len() + self.blocked.len()) as u64 + self.in_flight
    }

    fn held(&self) -> impl Iterator<Item = &MMessage> {
        self.ready
            .iter()
            .flatten()
            .chain(self.delayed.iter().map(|(_, m)| m))
            .chain(self.blocked.iter())
    }

    fn push_back(&mut self, message: MMessage) {
        self.ready[message.level()].push(message);
    }

    fn push_front(&mut self, message: MMessage) {
        self.ready[message.level()].insert(0, message);
    }

    /// The front of the highest non-empty level.
    fn pop_front(&mut self) -> Option<MMessage> {
        let level = (0..LEVELS).rev().find(|&l| !self.ready[l].is_empty())?;
        Some(self.ready[level].remove(0))
    }

    /// The front with the lowest sequence number: what drop-head removes.
    fn pop_oldest(&mut self) -> Option<MMessage> {
        let level = (0..LEVELS)
            .filter(|&l| !self.ready[l].is_empty())
            .min_by_key(|&l| self.ready[l][0].seq)?;
        Some(self.ready[level].remove(0))
    }

    /// Removes the held messages `take` picks: the ready line (highest level first), then the
    /// delayed ones by due time, then the group-blocked ones by group key.
    fn extract_held(&mut self, take: impl Fn(&MMessage) -> bool) -> Vec<MMessage> {
        let mut taken = Vec::new();
        for level in self.ready.iter_mut().rev() {
            let (out, kept): (Vec<_>, Vec<_>) = std::mem::take(level).into_iter().partition(&take);
            taken.extend(out);
            *level = kept;
        }
        self.delayed.sort_by_key(|(at, m)| (*at, m.seq));
        let (out, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.delayed).into_iter().partition(|(_, m)| take(m));
        taken.extend(out.into_iter().map(|(_, m)| m));
        self.delayed = kept;
        let (mut out, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.blocked).into_iter().partition(&take);
        out.sort_by(|a, b| a.group.cmp(&b.group));
        taken.extend(out);
        self.blocked = kept;
        taken
    }

    fn remove_consumer(&mut self, key: (u64, u32)) {
        if let Some(index) = self.consumers.iter().position(|c| *c == key) {
            self.consumers.remove(index);
            if self.next_consumer > index {
                self.next_consumer -= 1;
            }
        }
    }
}

#[derive(Debug)]
struct MSubscription {
    queue: usize,
    credit: u32,
    lease_ms: Option<u32>,
}

#[derive(Debug)]
struct MInFlight {
    queue: usize,
    subscription: u32,
    message: MMessage,
    lease_deadline: u64,
}

#[derive(Debug, Default)]
struct MConnection {
    next_tag: u64,
    subscriptions: BTreeMap<u32, MSubscription>,
    in_flight: BTreeMap<u64, MInFlight>,
}

#[derive(Debug)]
struct Model {
    now: u64,
    next_seq: u64,
    queues: Vec<MQueue>,
    connections: BTreeMap<u64, MConnection>,
    /// Deliveries made since the last `take_deliveries`: (connection, subscription, delivery).
    delivered: Vec<(u64, u32, Delivery)>,
    /// Messages of an in-memory queue moving into a logged one (dead-lettered, redriven): they
    /// wait for their new record to be durable, so they join the target's line after the
    /// step's first dispatch, once the (instant) sync is done.
    awaiting_log: Vec<(usize, MMessage)>,
}

fn backoff_ms(policy: &BackoffPolicy, failed_attempt: u32) -> u64 {
    // Factors are 100 % or 200 % here, so this is exact integer arithmetic.
    let mut delay = u64::from(policy.base_ms);
    for _ in 1..failed_attempt {
        if delay > u64::from(policy.max_ms) {
            break;
        }
        delay = delay * u64::from(policy.factor_percent) / 100;
    }
    delay.min(u64::from(policy.max_ms))
}

impl Model {
    fn new(options: [QueueOptions; 2]) -> Model {
        Model {
            now: 0,
            next_seq: 1,
            queues: options.into_iter().map(MQueue::new).collect(),
            connections: BTreeMap::new(),
            delivered: Vec::new(),
            awaiting_log: Vec::new(),
        }
    }

    fn queue_index(name: &str) -> Option<usize> {
        QUEUES.iter().position(|q| *q == name)
    }

    // ---- operations ----

    fn publish(&mut self, queue: usize, messages: &[PublishMessage]) -> Vec<Result<(), ErrorCode>> {
        let outcomes = messages.iter().map(|m| self.publish_one(queue, m)).collect();
        self.dispatch_all();
        outcomes
    }

    fn publish_one(&mut self, qi: usize, message: &PublishMessage) -> Result<(), ErrorCode> {
        let now = self.now;
        let q = &mut self.queues[qi];
        if let (Some(id), Some(_)) = (&message.id, q.options.dedup_window_ms) {
            if q.dedup.get(id).is_some_and(|closes| *closes > now) {
                q.counters.deduplicated += 1;
                return Ok(());
            }
        }
        loop {
            let q = &mut self.queues[qi];
            let messages_max = q.options.messages_max.unwrap_or(u64::MAX);
            if q.depth() < messages_max {
                break;
            }
            if q.options.overflow == OverflowPolicy::RejectPublish {
                return Err(ErrorCode::QUEUE_FULL);
            }
            let Some(oldest) = q.pop_oldest() else { return Err(ErrorCode::QUEUE_FULL) };
            // Publishes dispatch the queue: a released group does not need the work-around.
            self.dispose(qi, oldest, DeadReason::Overflow);
        }
        let q = &mut self.queues[qi];
        let seq = self.next_seq;
        self.next_seq += 1;
        if let (Some(id), Some(window_ms)) = (&message.id, q.options.dedup_window_ms) {
            q.dedup.insert(id.clone(), now + window_ms);
        }
        let stored = MMessage {
            seq,
            payload: message.payload.clone(),
            published_ms: now,
            attempts: 0,
            priority: message.priority,
            expires_ms: message.ttl_ms.or(q.options.ttl_ms).map(|ttl| now + ttl),
            id: message.id.clone(),
            group: message.group.clone(),
            history: Vec::new(),
            dead: None,
        };
        q.counters.published += 1;
        q.bytes += stored.len();
        match message.schedule {
            Some(Schedule::DelayMs(ms)) if ms > 0 => q.delayed.push((now + ms, stored)),
            _ => q.push_back(stored),
        }
        Ok(())
    }

    fn connect(&mut self, conn: u64) {
        let connection = MConnection { next_tag: 1, ..MConnection::default() };
        assert!(self.connections.insert(conn, connection).is_none());
    }

    fn subscribe(
        &mut self,
        conn: u64,
        subscription: u32,
        queue: usize,
        credit: u32,
        lease: Option<u32>,
    ) {
        let sub = MSubscription { queue, credit, lease_ms: lease };
        self.connections.get_mut(&conn).unwrap().subscriptions.insert(subscription, sub);
        self.queues[queue].consumers.push((conn, subscription));
        self.dispatch_all();
    }

    fn grant_credit(&mut self, conn: u64, subscription: u32, credit: u32) {
        let connection = self.connections.get_mut(&conn).unwrap();
        connection.subscriptions.get_mut(&subscription).unwrap().credit += credit;
        self.dispatch_all();
    }

    fn unsubscribe(&mut self, conn: u64, subscription: u32) {
        let connection = self.connections.get_mut(&conn).unwrap();
        let sub = connection.subscriptions.remove(&subscription).unwrap();
        self.queues[sub.queue].remove_consumer((conn, subscription));
        self.dispatch_all();
    }

    fn ack(&mut self, conn: u64, tag: u64) {
        if let Some(in_flight) = self.connections.get_mut(&conn).unwrap().in_flight.remove(&tag) {
            let qi = in_flight.queue;
            self.queues[qi].in_flight -= 1;
            self.queues[qi].counters.acked += 1;
            self.forget(qi, &in_flight.message);
        }
        self.dispatch_all();
    }

    fn nack(&mut self, conn: u64, tag: u64, delay_ms: Option<u64>, reason: Option<String>) {
        if let Some(in_flight) = self.connections.get_mut(&conn).unwrap().in_flight.remove(&tag) {
            self.fail_attempt(in_flight, AttemptOutcome::Nack, reason, delay_ms);
        }
        self.dispatch_all();
    }

    fn reject(&mut self, conn: u64, tag: u64, reason: String) {
        if let Some(in_flight) = self.connections.get_mut(&conn).unwrap().in_flight.remove(&tag) {
            self.fail_attempt(in_flight, AttemptOutcome::Reject, Some(reason), None);
        }
        self.dispatch_all();
    }

    fn touch(&mut self, conn: u64, tag: u64, lease_ms: Option<u32>) {
        let now = self.now;
        let connection = self.connections.get_mut(&conn).unwrap();
        if let Some(in_flight) = connection.in_flight.get_mut(&tag) {
            let subscription_lease =
                connection.subscriptions.get(&in_flight.subscription).and_then(|s| s.lease_ms);
            let queue_lease = self.queues[in_flight.queue].options.lease_ms;
            let lease = lease_ms.or(subscription_lease).unwrap_or(queue_lease);
            in_flight.lease_deadline = now + u64::from(lease);
        }
        self.dispatch_all();
    }

    fn disconnect(&mut self, conn: u64) {
        let connection = self.connections.remove(&conn).unwrap();
        for (subscription, sub) in &connection.subscriptions {
            self.queues[sub.queue].remove_consumer((conn, *subscription));
        }
        for (_, in_flight) in connection.in_flight.into_iter().rev() {
            self.fail_attempt(in_flight, AttemptOutcome::Disconnect, None, None);
        }
        self.dispatch_all();
    }

    /// Redrives the dead letters of `dlq` named by `ids` (all when empty); returns how many.
    fn redrive(&mut self, ids: &[u64]) -> u64 {
        let now = self.now;
        let wanted = |m: &MMessage| m.dead.is_some() && (ids.is_empty() || ids.contains(&m.seq));
        let mut taken = self.queues[DLQ].extract_held(wanted);
        taken.sort_by_key(|m| m.seq);
        let count = taken.len() as u64;
        for mut message in taken {
            self.forget(DLQ, &message);
            let (source, _, _) = message.dead.take().unwrap();
            message.attempts = 0;
            message.expires_ms = self.queues[source].options.ttl_ms.map(|ttl| now + ttl);
            self.arrive(DLQ, source, message);
        }
        self.dispatch_all();
        count
    }

    /// Moves time on by `ms`, deadline by deadline: at each instant, expired leases fail
    /// first (in connection and tag order), then each queue releases what came due and expires
    /// what it holds, then every queue dispatches.
    fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while let Some(at) = self.next_deadline().filter(|at| *at <= end) {
            self.now = at;
            self.expire_leases();
            for qi in 0..QUEUES.len() {
                self.release_due(qi);
                self.expire_held(qi);
            }
            self.dispatch_all();
        }
        self.now = end;
    }

    fn expire_leases(&mut self) {
        let now = self.now;
        let expired: Vec<(u64, u64)> = self
            .connections
            .iter()
            .flat_map(|(conn, c)| {
                c.in_flight
                    .iter()
                    .filter(|(_, f)| f.lease_deadline <= now)
                    .map(move |(tag, _)| (*conn, *tag))
            })
            .collect();
        for (conn, tag) in expired {
            let in_flight =
                self.connections.get_mut(&conn).unwrap().in_flight.remove(&tag).unwrap();
            self.fail_attempt(in_flight, AttemptOutcome::Timeout, None, None);
        }
    }

    /// The next instant at which something happens by itself.
    fn next_deadline(&self) -> Option<u64> {
        let leases =
            self.connections.values().flat_map(|c| c.in_flight.values().map(|f| f.lease_deadline));
        let queues = self.queues.iter().flat_map(|q| {
            q.delayed.iter().map(|(due, _)| *due).chain(q.held().filter_map(|m| m.expires_ms))
        });
        leases.chain(queues).min()
    }

    // ---- internals ----

    fn release_due(&mut self, qi: usize) {
        let now = self.now;
        let q = &mut self.queues[qi];
        let (mut due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut q.delayed).into_iter().partition(|(at, _)| *at <= now);
        q.delayed = later;
        due.sort_by_key(|(at, m)| (*at, m.seq));
        let mut retries = Vec::new();
        for (_, message) in due {
            if message.attempts > 0 {
                retries.push(message);
            } else {
                q.push_back(message);
            }
        }
        for message in retries.into_iter().rev() {
            q.push_front(message);
        }
    }

    fn expire_held(&mut self, qi: usize) {
        let now = self.now;
        let expired = self.queues[qi].extract_held(|m| m.is_expired(now));
        for message in expired {
            // Expiry runs from the queue's timer or its dispatch, which dispatch it after.
            self.dispose(qi, message, DeadReason::Expired);
        }
    }

    /// A message leaves the queue: its bytes go, and if it held its group, the group's next
    /// message goes to the front of the line. Returns whether a next message was released.
    fn forget(&mut self, qi: usize, message: &MMessage) -> bool {
        let q = &mut self.queues[qi];
        q.bytes -= message.len();
        let Some(group) = &message.group else { return false };
        if q.holders.get(group) != Some(&message.seq) {
            return false;
        }
        q.holders.remove(group);
        let Some(index) = q.blocked.iter().position(|m| m.group.as_ref() == Some(group)) else {
            return false;
        };
        let next = q.blocked.remove(index);
        q.push_front(next);
        true
    }

    fn fail_attempt(
        &mut self,
        in_flight: MInFlight,
        outcome: AttemptOutcome,
        reason: Option<String>,
        delay_ms: Option<u64>,
    ) {
        let now = self.now;
        let MInFlight { queue: qi, mut message, .. } = in_flight;
        if message.history.len() == ATTEMPT_HISTORY_MAX {
            message.history.remove(0);
        }
        message.history.push(AttemptRecord { at_unix_ms: now, outcome, reason });
        let q = &mut self.queues[qi];
        match outcome {
            AttemptOutcome::Nack => q.counters.nacked += 1,
            AttemptOutcome::Timeout => q.counters.timed_out += 1,
            AttemptOutcome::Reject => q.counters.rejected += 1,
            AttemptOutcome::Disconnect => {}
        }
        q.in_flight -= 1;
        let final_reason = if outcome == AttemptOutcome::Reject {
            Some(DeadReason::Rejected)
        } else if q.options.attempts_max.is_some_and(|max| message.attempts >= max) {
            Some(DeadReason::MaxAttempts)
        } else if message.is_expired(now) {
            Some(DeadReason::Expired)
        } else {
            None
        };
        if let Some(reason) = final_reason {
            self.dispose(qi, message, reason);
            return;
        }
        let delay = delay_ms.unwrap_or_else(|| backoff_ms(&q.options.backoff, message.attempts));
        if delay > 0 {
            q.delayed.push((now + delay, message));
        } else {
            q.push_front(message);
        }
    }

    /// A message leaves its queue for good without an ack. Returns whether it released its
    /// group's next message.
    fn dispose(&mut self, qi: usize, mut message: MMessage, reason: DeadReason) -> bool {
        let now = self.now;
        let released = self.forget(qi, &message);
        let q = &mut self.queues[qi];
        if reason == DeadReason::Expired {
            q.counters.expired += 1;
        }
        let drop_expired = reason == DeadReason::Expired && q.options.expiry == ExpiryPolicy::Drop;
        let target = q
            .options
            .dead_letter
            .as_deref()
            .and_then(Model::queue_index)
            .filter(|t| *t != qi && !drop_expired);
        let Some(target) = target else {
            q.counters.dropped += 1;
            return released;
        };
        q.counters.dead_lettered += 1;
        message.attempts = 0;
        message.expires_ms = self.queues[target].options.ttl_ms.map(|ttl| now + ttl);
        message.dead = Some((qi, reason, now));
        self.arrive(qi, target, message);
        released
    }

    /// A message moving from queue `from` joins the back of queue `to`: at once, or after the
    /// sync of its record if it moves from an in-memory queue into a logged one.
    fn arrive(&mut self, from: usize, to: usize, message: MMessage) {
        self.queues[to].bytes += message.len();
        let in_memory = |q: &MQueue| q.options.durability == Durability::None;
        if in_memory(&self.queues[from]) && !in_memory(&self.queues[to]) {
            self.awaiting_log.push((to, message));
        } else {
            self.queues[to].push_back(message);
        }
    }

    fn dispatch_all(&mut self) {
        while (0..QUEUES.len()).map(|qi| self.dispatch(qi)).fold(false, |a, b| a | b) {}
        if !self.awaiting_log.is_empty() {
            for (to, message) in std::mem::take(&mut self.awaiting_log) {
                self.queues[to].push_back(message);
            }
            self.dispatch_all();
        }
    }

    /// Hands out what the queue can hand out; returns whether anything changed.
    fn dispatch(&mut self, qi: usize) -> bool {
        let now = self.now;
        let mut changed = false;
        let mut expired = Vec::new();
        let q = &mut self.queues[qi];
        while q.ready_len() > 0 {
            let n = q.consumers.len();
            let connections = &self.connections;
            let turn = (0..n).map(|i| (q.next_consumer + i) % n).find(|&index| {
                let (conn, sub) = q.consumers[index];
                connections[&conn].subscriptions[&sub].credit > 0
            });
            let Some(index) = turn else { break };
            let mut next = None;
            while let Some(message) = q.pop_front() {
                changed = true;
                if message.is_expired(now) {
                    expired.push(message);
                    continue;
                }
                if let Some(group) = &message.group {
                    match q.holders.get(group) {
                        Some(holder) if *holder != message.seq => {
                            q.blocked.push(message);
                            continue;
                        }
                        _ => {
                            q.holders.insert(group.clone(), message.seq);
                        }
                    }
                }
                next = Some(message);
                break;
            }
            let Some(mut message) = next else { break };
            q.next_consumer = (index + 1) % n;
            q.in_flight += 1;
            q.counters.delivered += 1;
            let redelivered = message.attempts > 0 || !message.history.is_empty();
            if redelivered {
                q.counters.redelivered += 1;
            }
            message.attempts += 1;
            let (conn, subscription) = q.consumers[index];
            let connection = self.connections.get_mut(&conn).unwrap();
            let sub = connection.subscriptions.get_mut(&subscription).unwrap();
            sub.credit -= 1;
            let lease = sub.lease_ms.unwrap_or(q.options.lease_ms);
            let tag = connection.next_tag;
            connection.next_tag += 1;
            let delivery = Delivery {
                tag,
                attempt: message.attempts,
                redelivered,
                id: message.id.clone(),
                headers: Vec::new(),
                payload: message.payload.clone(),
                published_unix_ms: message.published_ms,
                priority: message.priority,
                group: message.group.clone(),
                topic: None,
            };
            self.delivered.push((conn, subscription, delivery));
            let in_flight = MInFlight {
                queue: qi,
                subscription,
                message,
                lease_deadline: now + u64::from(lease),
            };
            connection.in_flight.insert(tag, in_flight);
        }
        for message in expired {
            // Expiry runs from the queue's timer or its dispatch, which dispatch it after.
            self.dispose(qi, message, DeadReason::Expired);
        }
        changed
    }

    // ---- observations ----

    fn stats(&self, qi: usize) -> StatsView {
        let q = &self.queues[qi];
        let consumers = q
            .consumers
            .iter()
            .map(|&(conn, sub)| {
                let connection = &self.connections[&conn];
                let in_flight =
                    connection.in_flight.values().filter(|f| f.subscription == sub).count();
                (conn, sub, connection.subscriptions[&sub].credit, in_flight as u32)
            })
            .collect();
        StatsView {
            depth: q.depth(),
            ready: q.ready_len() as u64,
            delayed: q.delayed.len() as u64,
            in_flight: q.in_flight,
            group_blocked: q.blocked.len() as u64,
            bytes: q.bytes,
            dead_letters: q.held().filter(|m| m.dead.is_some()).count() as u64,
            counters: q.counters.clone(),
            consumers,
        }
    }

    fn dead_letters(&self) -> Vec<DeadLetterSummary> {
        let mut entries: Vec<&MMessage> =
            self.queues[DLQ].held().filter(|m| m.dead.is_some()).collect();
        entries.sort_by_key(|m| m.seq);
        entries
            .into_iter()
            .map(|m| {
                let (source, reason, at) = m.dead.unwrap();
                DeadLetterSummary {
                    dead_id: m.seq,
                    message_id: m.id.clone(),
                    source_queue: QUEUES[source].to_string(),
                    reason,
                    dead_unix_ms: at,
                    published_unix_ms: m.published_ms,
                    payload_len: m.payload.len() as u32,
                    history: m.history.clone(),
                }
            })
            .collect()
    }
}

/// What the test compares of a queue's stats.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StatsView {
    depth: u64,
    ready: u64,
    delayed: u64,
    in_flight: u64,
    group_blocked: u64,
    bytes: u64,
    dead_letters: u64,
    counters: QueueCounters,
    /// (connection, subscription, credit, in flight), in subscription order.
    consumers: Vec<(u64, u32, u32, u32)>,
}

impl StatsView {
    fn from_broker(stats: &QueueStats, depth: u64) -> StatsView {
        StatsView {
            depth,
            ready: stats.ready,
            delayed: stats.delayed,
            in_flight: stats.in_flight,
            group_blocked: stats.group_blocked,
            bytes: stats.bytes,
            dead_letters: stats.dead_letters,
            counters: stats.counters.clone(),
            consumers: stats
                .consumers
                .iter()
                .map(|c| (c.connection_id, c.subscription, c.credit, c.in_flight))
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Operations and their strategies
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct MessageSpec {
    priority: u8,
    group: Option<u8>,
    delay_ms: Option<u64>,
    ttl_ms: Option<u64>,
    id: Option<u8>,
}

#[derive(Clone, Debug)]
enum Op {
    Publish {
        queue: usize,
        messages: Vec<MessageSpec>,
    },
    Connect {
        consumer: usize,
    },
    Subscribe {
        consumer: usize,
        queue: usize,
        credit: u32,
        lease_ms: Option<u32>,
    },
    Credit {
        consumer: usize,
        credit: u32,
    },
    Unsubscribe {
        consumer: usize,
    },
    Ack {
        consumer: usize,
        pick: Index,
    },
    Nack {
        consumer: usize,
        pick: Index,
        delay_ms: Option<u64>,
        reason: Option<u8>,
    },
    Reject {
        consumer: usize,
        pick: Index,
        reason: u8,
    },
    Touch {
        consumer: usize,
        pick: Index,
        lease_ms: Option<u32>,
    },
    Disconnect {
        consumer: usize,
    },
    Advance {
        ms: u64,
    },
    /// To the model's next deadline, plus `offset` ms (-1, 0 or 1).
    AdvanceToDeadline {
        offset: i8,
    },
    /// One dead letter (picked among those listed) or, with `None`, all.
    Redrive {
        pick: Option<Index>,
    },
}

fn queue_options(with_dead_letter: bool) -> impl Strategy<Value = QueueOptions> {
    let durability = prop_oneof![
        Just(Durability::Always),
        Just(Durability::None),
        Just(Durability::Interval { sync_interval_ms: 5 }),
    ];
    let backoff = (prop_oneof![Just(0u32), Just(100)], prop_oneof![Just(100u32), Just(200)])
        .prop_map(|(base_ms, factor_percent)| BackoffPolicy {
            base_ms,
            factor_percent,
            max_ms: 400,
            jitter: false,
        });
    (
        durability,
        prop::option::weighted(0.6, 1u32..=4),
        backoff,
        prop_oneof![Just(300u32), Just(500)],
        prop::option::weighted(0.4, prop_oneof![Just(250u64), Just(700)]),
        prop_oneof![Just(ExpiryPolicy::DeadLetter), Just(ExpiryPolicy::Drop)],
        prop::option::weighted(0.5, 2u64..=5),
        prop_oneof![Just(OverflowPolicy::RejectPublish), Just(OverflowPolicy::DropHead)],
        prop::option::weighted(0.4, prop_oneof![Just(400u64), Just(1_000)]),
        prop::bool::weighted(if with_dead_letter { 0.85 } else { 0.0 }),
    )
        .prop_map(
            |(
                durability,
                attempts_max,
                backoff,
                lease_ms,
                ttl_ms,
                expiry,
                messages_max,
                overflow,
                dedup_window_ms,
                dead_letter,
            )| QueueOptions {
                durability,
                messages_max,
                overflow,
                ttl_ms,
                expiry,
                dead_letter: dead_letter.then(|| QUEUES[DLQ].to_string()),
                attempts_max,
                backoff,
                lease_ms,
                dedup_window_ms,
                ..QueueOptions::default()
            },
        )
}

fn message_spec() -> impl Strategy<Value = MessageSpec> {
    (
        prop_oneof![3 => Just(0u8), 1 => Just(1), 1 => Just(5)],
        prop::option::weighted(0.3, 0u8..2),
        prop::option::weighted(0.2, prop_oneof![Just(100u64), Just(400)]),
        prop::option::weighted(0.2, prop_oneof![Just(150u64), Just(600)]),
        prop::option::weighted(0.3, 0u8..3),
    )
        .prop_map(|(priority, group, delay_ms, ttl_ms, id)| MessageSpec {
            priority,
            group,
            delay_ms,
            ttl_ms,
            id,
        })
}

fn initial_subscription() -> impl Strategy<Value = Option<(usize, u32)>> {
    prop::option::weighted(0.7, (prop_oneof![4 => Just(1usize), 1 => Just(DLQ)], 1u32..=4))
}

fn op() -> impl Strategy<Value = Op> {
    let consumer = 0..CONSUMERS;
    let queue = prop_oneof![4 => Just(1usize), 1 => Just(DLQ)];
    prop_oneof![
        6 => (queue.clone(), prop::collection::vec(message_spec(), 1..=3))
            .prop_map(|(queue, messages)| Op::Publish { queue, messages }),
        1 => consumer.clone().prop_map(|consumer| Op::Connect { consumer }),
        3 => (consumer.clone(), queue, 0u32..=3, prop::option::weighted(0.2, Just(300u32)))
            .prop_map(|(consumer, queue, credit, lease_ms)| Op::Subscribe {
                consumer,
                queue,
                credit,
                lease_ms,
            }),
        4 => (consumer.clone(), 1u32..=4)
            .prop_map(|(consumer, credit)| Op::Credit { consumer, credit }),
        1 => consumer.clone().prop_map(|consumer| Op::Unsubscribe { consumer }),
        4 => (consumer.clone(), any::<Index>())
            .prop_map(|(consumer, pick)| Op::Ack { consumer, pick }),
        3 => (
            consumer.clone(),
            any::<Index>(),
            prop::option::of(prop_oneof![Just(0u64), Just(50), Just(300)]),
            prop::option::of(0u8..3),
        )
            .prop_map(|(consumer, pick, delay_ms, reason)| Op::Nack {
                consumer,
                pick,
                delay_ms,
                reason,
            }),
        1 => (consumer.clone(), any::<Index>(), 0u8..3)
            .prop_map(|(consumer, pick, reason)| Op::Reject { consumer, pick, reason }),
        1 => (
            consumer.clone(),
            any::<Index>(),
            prop::option::of(prop_oneof![Just(100u32), Just(800)]),
        )
            .prop_map(|(consumer, pick, lease_ms)| Op::Touch { consumer, pick, lease_ms }),
        1 => consumer.prop_map(|consumer| Op::Disconnect { consumer }),
        3 => prop_oneof![0u64..=50, 50u64..=2_000].prop_map(|ms| Op::Advance { ms }),
        3 => (-1i8..=1).prop_map(|offset| Op::AdvanceToDeadline { offset }),
        1 => prop::option::of(any::<Index>()).prop_map(|pick| Op::Redrive { pick }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The harness: the same operations against the broker and the model
// ---------------------------------------------------------------------------------------------

/// One consumer slot as the test drives it.
#[derive(Debug, Default)]
struct Slot {
    conn: Option<ConnId>,
    subscription: Option<u32>,
    /// Tags received and not yet settled by this client, in the order received.
    outstanding: Vec<u64>,
}

struct Harness {
    net: Net,
    model: Model,
    publisher: ConnId,
    slots: Vec<Slot>,
    /// Numbers payloads, so that every message is told apart.
    published: u64,
}

impl Harness {
    fn new(options: [QueueOptions; 2]) -> Harness {
        let mut net = Net::new();
        let publisher = net.connect();
        for (name, options) in QUEUES.iter().zip(options.iter()) {
            let response = net.declare(publisher, name, options.clone());
            assert!(matches!(response, Response::Declared(_)), "declare {name}: {response:?}");
        }
        let mut model = Model::new(options);
        model.connect(publisher.0);
        let mut slots = Vec::new();
        for _ in 0..CONSUMERS {
            let conn = net.connect();
            model.connect(conn.0);
            slots.push(Slot { conn: Some(conn), ..Slot::default() });
        }
        Harness { net, model, publisher, slots, published: 0 }
    }

    fn pick_tag(&self, consumer: usize, pick: &Index) -> Option<(ConnId, u64)> {
        let slot = &self.slots[consumer];
        let conn = slot.conn?;
        if slot.outstanding.is_empty() {
            return None;
        }
        Some((conn, slot.outstanding[pick.index(slot.outstanding.len())]))
    }

    fn settle(&mut self, consumer: usize, tag: u64) {
        self.slots[consumer].outstanding.retain(|t| *t != tag);
    }

    /// Runs one operation on both sides. Operations that do not apply in the current state
    /// (a settle with nothing outstanding, a subscribe while subscribed) do nothing.
    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Publish { queue, messages } => self.publish(*queue, messages)?,
            Op::Connect { consumer } => {
                if self.slots[*consumer].conn.is_none() {
                    let conn = self.net.connect();
                    self.model.connect(conn.0);
                    self.slots[*consumer] = Slot { conn: Some(conn), ..Slot::default() };
                }
            }
            Op::Subscribe { consumer, queue, credit, lease_ms } => {
                let slot = &self.slots[*consumer];
                if let (Some(conn), None) = (slot.conn, slot.subscription) {
                    let (request, subscription) = self
                        .net
                        .client(conn)
                        .subscribe(QUEUES[*queue], *credit, *lease_ms, false)
                        .unwrap();
                    self.net.pump();
                    self.model.subscribe(conn.0, subscription, *queue, *credit, *lease_ms);
                    self.slots[*consumer].subscription = Some(subscription);
                    let response = self.net.response(conn, request);
                    prop_assert_eq!(response, Response::Done { count: 0 });
                }
            }
            Op::Credit { consumer, credit } => {
                let slot = &self.slots[*consumer];
                if let (Some(conn), Some(subscription)) = (slot.conn, slot.subscription) {
                    self.net.client(conn).grant_credit(subscription, *credit).unwrap();
                    self.net.pump();
                    self.model.grant_credit(conn.0, subscription, *credit);
                }
            }
            Op::Unsubscribe { consumer } => {
                let slot = &self.slots[*consumer];
                if let (Some(conn), Some(subscription)) = (slot.conn, slot.subscription) {
                    let request = self.net.client(conn).unsubscribe(subscription).unwrap();
                    self.net.pump();
                    self.model.unsubscribe(conn.0, subscription);
                    self.slots[*consumer].subscription = None;
                    let response = self.net.response(conn, request);
                    prop_assert_eq!(response, Response::Done { count: 0 });
                }
            }
            Op::Ack { consumer, pick } => {
                if let Some((conn, tag)) = self.pick_tag(*consumer, pick) {
                    self.net.client(conn).ack(tag).unwrap();
                    self.net.pump();
                    self.model.ack(conn.0, tag);
                    self.settle(*consumer, tag);
                }
            }
            Op::Nack { consumer, pick, delay_ms, reason } => {
                if let Some((conn, tag)) = self.pick_tag(*consumer, pick) {
                    let reason = reason.map(|r| format!("nack-{r}"));
                    self.net.client(conn).nack(tag, *delay_ms, reason.clone()).unwrap();
                    self.net.pump();
                    self.model.nack(conn.0, tag, *delay_ms, reason);
                    self.settle(*consumer, tag);
                }
            }
            Op::Reject { consumer, pick, reason } => {
                if let Some((conn, tag)) = self.pick_tag(*consumer, pick) {
                    let reason = format!("reject-{reason}");
                    self.net.client(conn).reject(tag, reason.clone()).unwrap();
                    self.net.pump();
                    self.model.reject(conn.0, tag, reason);
                    self.settle(*consumer, tag);
                }
            }
            Op::Touch { consumer, pick, lease_ms } => {
                if let Some((conn, tag)) = self.pick_tag(*consumer, pick) {
                    self.net.client(conn).touch(tag, *lease_ms).unwrap();
                    self.net.pump();
                    self.model.touch(conn.0, tag, *lease_ms);
                }
            }
            Op::Disconnect { consumer } => {
                if let Some(conn) = self.slots[*consumer].conn {
                    self.net.client(conn).close();
                    self.net.pump();
                    self.model.disconnect(conn.0);
                    let events = self.net.take_events(conn);
                    let closed = events.iter().any(|e| matches!(e, ClientEvent::Closed { .. }));
                    prop_assert!(closed, "no Closed event after close: {:?}", events);
                    self.slots[*consumer] = Slot::default();
                }
            }
            Op::Advance { ms } => self.advance(*ms),
            Op::AdvanceToDeadline { offset } => {
                let ms = match self.model.next_deadline() {
                    Some(at) => (at - self.model.now).saturating_add_signed((*offset).into()),
                    None => 100,
                };
                self.advance(ms);
            }
            Op::Redrive { pick } => {
                let ids = match pick {
                    None => Vec::new(),
                    Some(pick) => {
                        let entries = self.model.dead_letters();
                        if entries.is_empty() {
                            vec![u64::MAX]
                        } else {
                            vec![entries[pick.index(entries.len())].dead_id]
                        }
                    }
                };
                let request =
                    self.net.client(self.publisher).dlq_redrive("dlq", ids.clone()).unwrap();
                self.net.pump();
                let expected = self.model.redrive(&ids);
                let response = self.net.response(self.publisher, request);
                prop_assert_eq!(response, Response::Done { count: expected }, "redrive {:?}", ids);
            }
        }
        Ok(())
    }

    fn advance(&mut self, ms: u64) {
        self.net.advance(ms);
        self.model.advance(ms);
    }

    fn publish(&mut self, queue: usize, specs: &[MessageSpec]) -> Result<(), TestCaseError> {
        let destination = Destination::Queue(QUEUES[queue].to_string());
        let messages: Vec<PublishMessage> = specs
            .iter()
            .map(|spec| {
                self.published += 1;
                let mut message = PublishMessage::new(Bytes::from(format!("m{}", self.published)));
                message.priority = spec.priority;
                message.group = spec.group.map(|g| format!("g{g}"));
                message.schedule = spec.delay_ms.map(Schedule::DelayMs);
                message.ttl_ms = spec.ttl_ms;
                message.id = spec.id.map(|id| format!("id{id}"));
                message
            })
            .collect();
        let mut seqs = Vec::new();
        for message in &messages {
            let client = self.net.client(self.publisher);
            seqs.push(client.publish(&destination, false, message.clone()).unwrap());
        }
        self.net.pump();
        let expected = self.model.publish(queue, &messages);
        let mut outcomes: BTreeMap<u64, Result<(), ErrorCode>> = BTreeMap::new();
        let events = self.net.take_events(self.publisher);
        for event in events {
            match event {
                ClientEvent::Confirmed(range) => {
                    for seq in range.iter() {
                        prop_assert!(outcomes.insert(seq, Ok(())).is_none(), "seq {} twice", seq);
                    }
                }
                ClientEvent::PublishFailed(failure) => {
                    let previous = outcomes.insert(failure.seq, Err(failure.code));
                    prop_assert!(previous.is_none(), "seq {} twice", failure.seq);
                }
                other => prop_assert!(false, "unexpected publisher event {:?}", other),
            }
        }
        let expected: BTreeMap<u64, Result<(), ErrorCode>> =
            seqs.into_iter().zip(expected).collect();
        prop_assert_eq!(outcomes, expected, "publish outcomes");
        Ok(())
    }

    /// Compares everything observable after a step.
    fn compare(&mut self) -> Result<(), TestCaseError> {
        // Deliveries, per consumer connection, in order.
        let mut expected: BTreeMap<u64, Vec<(u32, Delivery)>> = BTreeMap::new();
        for (conn, subscription, delivery) in std::mem::take(&mut self.model.delivered) {
            expected.entry(conn).or_default().push((subscription, delivery));
        }
        for index in 0..CONSUMERS {
            let Some(conn) = self.slots[index].conn else { continue };
            let mut got = Vec::new();
            for event in self.net.take_events(conn) {
                match event {
                    ClientEvent::Deliveries { subscription, deliveries } => {
                        got.extend(deliveries.into_iter().map(|d| (subscription, d)));
                    }
                    other => prop_assert!(false, "unexpected event on {}: {:?}", conn, other),
                }
            }
            self.slots[index].outstanding.extend(got.iter().map(|(_, d)| d.tag));
            let want = expected.remove(&conn.0).unwrap_or_default();
            prop_assert_eq!(got, want, "deliveries to consumer {} ({})", index, conn);
        }
        prop_assert!(expected.is_empty(), "the model delivered to a closed slot: {:?}", expected);

        // Stats of both queues.
        for (qi, name) in QUEUES.iter().enumerate() {
            let request = self.net.client(self.publisher).queue_stats(name).unwrap();
            let stats = match self.net.response(self.publisher, request) {
                Response::QueueStats(stats) => stats,
                other => return Err(TestCaseError::fail(format!("stats {name}: {other:?}"))),
            };
            let depth = self.net.broker.queue_depth(name).unwrap();
            let got = StatsView::from_broker(&stats, depth);
            prop_assert_eq!(got, self.model.stats(qi), "stats of {}", name);
        }

        // The dead letters, with their histories.
        let request = self.net.client(self.publisher).dlq_list("dlq", None, 1_000).unwrap();
        let entries = match self.net.response(self.publisher, request) {
            Response::DlqList(list) => list.entries,
            other => return Err(TestCaseError::fail(format!("dlq list: {other:?}"))),
        };
        prop_assert_eq!(entries, self.model.dead_letters(), "dead letters");
        let leftover = self.net.take_events(self.publisher);
        prop_assert!(leftover.is_empty(), "unexpected publisher events: {:?}", leftover);
        Ok(())
    }
}

/// 256 cases by default (about a second); `CHUTE_MODEL_CASES=100000` for a long search.
fn cases() -> u32 {
    std::env::var("CHUTE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

fn run(options: [QueueOptions; 2], ops: &[Op]) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(options);
    harness.compare()?;
    for (step, op) in ops.iter().enumerate() {
        harness.apply(op).map_err(|e| TestCaseError::fail(format!("step {step} {op:?}: {e}")))?;
        harness
            .compare()
            .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The broker and the reference model agree on every delivery, publish outcome, queue
    /// statistic and dead letter, after every step of any sequence of operations.
    #[test]
    fn broker_matches_model(
        q in queue_options(true),
        dlq in queue_options(false),
        subscribed in prop::collection::vec(initial_subscription(), CONSUMERS),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        // Consumers start subscribed (most to `q`), so that deliveries flow from the start.
        let subscribe = subscribed.into_iter().enumerate().filter_map(|(consumer, s)| {
            let (queue, credit) = s?;
            Some(Op::Subscribe { consumer, queue, credit, lease_ms: None })
        });
        let ops: Vec<Op> = subscribe.chain(ops).collect();
        run([dlq, q], &ops)?;
    }
}
