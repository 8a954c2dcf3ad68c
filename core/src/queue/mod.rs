//! A queue: its messages in every state, its consumers, its counters.
//!
//! A message the queue holds is in exactly one place: waiting for the log (`pending`), not yet
//! due (`delayed`), waiting for its group (`groups`), or ready. Messages in flight live with the
//! connection that holds them; the queue only counts them. The queue knows nothing of
//! connections, frames or the log; the broker moves messages between places.

mod cold;
mod dedup;
mod delayed;
mod groups;
mod message;
mod payload_cache;
mod ready;

pub use cold::ColdRun;
pub use dedup::Dedup;
pub use message::{
    own_payload, own_payloads, DeadInfo, Message, MessageExtras, Payload, RecordAt, SegmentRef,
};
pub use payload_cache::{Fetches, Wanted};

use std::collections::{BTreeSet, VecDeque};

use chute_protocol::{Durability, OverflowPolicy, QueueCounters, QueueOptions};

use crate::ids::{ConnId, MessageSeq, QueueId};
use crate::storage::gate::Gate;
use crate::storage::read::WalkEnd;
use crate::time::Instant;
use delayed::Delayed;
use groups::Groups;
use ready::{Front, Ready};

/// What [`Queue::take_next`] found at the front of the line.
#[derive(Debug)]
pub enum Take {
    /// The next message, now in flight.
    Message(Message),
    /// The message at the front waits for its payload to come back from the log.
    NeedsPayload,
    /// Nothing is ready.
    Empty,
}

/// The next read a queue wants, in delivery order (see [`Queue::next_read`]).
#[derive(Debug, PartialEq, Eq)]
pub enum ReadPlan {
    /// Evicted payloads of messages in memory: consecutive records of one segment.
    Payloads { segment: SegmentRef, wanted: Vec<Wanted> },
    /// The first records of a cold run: `len` bytes from file offset `offset` of its segment.
    Cold { level: u8, first: MessageSeq, segment: SegmentRef, offset: u64, len: u64 },
}

/// A consumer as the queue sees it: a subscription on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsumerKey {
    pub conn: ConnId,
    pub subscription: u32,
}

#[derive(Debug)]
pub struct Queue {
    pub id: QueueId,
    pub name: String,
    pub options: QueueOptions,
    /// Published messages waiting for the log, in log order, each with the time it is due.
    pending: VecDeque<(Gate, Option<Instant>, Message)>,
    ready: Ready,
    delayed: Delayed,
    groups: Groups,
    pub dedup: Dedup,
    /// When messages the queue holds expire, for its timer. Entries of messages that left are
    /// dropped when their time comes.
    expiries: BTreeSet<(Instant, u64)>,
    /// Messages delivered and not yet settled.
    pub in_flight: u64,
    /// Payload bytes of every message the queue is responsible for, in flight included.
    pub bytes: u64,
    /// The part of `bytes` whose payloads are not in memory (evicted, only in the log).
    evicted_bytes: u64,
    /// Payloads being read back from the log.
    pub fetches: Fetches,
    consumers: Vec<ConsumerKey>,
    /// Index of the consumer that gets the next delivery (round robin).
    next_consumer: usize,
    pub counters: QueueCounters,
    /// The instant its timer is registered for, if any.
    pub timer_at: Option<Instant>,
    /// The queue's publish rate limit, if its options set one.
    pub publish_rate: Option<crate::policy::token_bucket::TokenBucket>,
    /// Publishes refused, by reason, since the queue was created or recovered.
    pub refusals: PublishRefusals,
}

/// Publishes a queue refused since it was created or recovered (for operators: not on the
/// wire, not in the log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishRefusals {
    /// The queue was full and its overflow policy rejects publishes.
    pub queue_full: u64,
    /// A rate limit with the `reject` policy had no token.
    pub rate_limited: u64,
}

impl Queue {
    pub fn new(id: QueueId, name: String, options: QueueOptions) -> Queue {
        Queue {
            id,
            name,
            options,
            pending: VecDeque::new(),
            ready: Ready::default(),
            delayed: Delayed::default(),
            groups: Groups::default(),
            dedup: Dedup::default(),
            expiries: BTreeSet::new(),
            in_flight: 0,
            bytes: 0,
            evicted_bytes: 0,
            fetches: Fetches::default(),
            consumers: Vec::new(),
            next_consumer: 0,
            counters: QueueCounters::default(),
            timer_at: None,
            publish_rate: None,
            refusals: PublishRefusals::default(),
        }
    }

    // ---- getters ----

    pub fn ready_len(&self) -> u64 {
        self.ready.len() as u64
    }

    pub fn delayed_len(&self) -> u64 {
        (self.delayed.len() + self.pending.iter().filter(|(_, due, _)| due.is_some()).count())
            as u64
    }

    pub fn group_blocked_len(&self) -> u64 {
        self.groups.waiting_len() as u64
    }

    /// Every message the queue is responsible for, in flight included.
    pub fn messages_len(&self) -> u64 {
        self.held_len() + self.in_flight
    }

    /// Messages the queue itself holds (not in flight).
    fn held_len(&self) -> u64 {
        (self.pending.len() + self.ready.len() + self.delayed.len() + self.groups.waiting_len())
            as u64
    }

    /// The payload bytes counted as on disk are those of the messages held on disk (a walk over
    /// every held message: for tests and the simulator).
    pub fn check_evicted_bytes(&self) {
        let on_disk = self.held().filter(|m| !m.payload.is_held()).map(Message::payload_len);
        let cold = self.cold_runs().map(|(_, run)| run.payload_bytes);
        assert_eq!(
            self.evicted_bytes,
            on_disk.sum::<u64>() + cold.sum::<u64>(),
            "{}: evicted bytes out of step",
            self.name
        );
    }

    /// Payload bytes the queue keeps in memory, in flight included.
    pub fn held_payload_bytes(&self) -> u64 {
        self.bytes - self.evicted_bytes
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// When the head of the ready line was published (Unix ms), if any message is ready.
    pub fn oldest_ready_published_unix_ms(&self) -> Option<u64> {
        self.ready.oldest_published_unix_ms()
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    pub fn consumers(&self) -> &[ConsumerKey] {
        &self.consumers
    }

    /// The next instant something in the queue changes by itself: a message comes due, a
    /// message expires, a dedup window closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.delayed.next_due(),
            self.expiries.first().map(|(at, _)| *at),
            self.dedup.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The cold runs of the ready line, each with its priority level: ready messages only in
    /// the log, payload and metadata.
    pub fn cold_runs(&self) -> impl Iterator<Item = (u8, &ColdRun)> {
        self.ready.cold_runs()
    }

    /// The cold run of `level` whose first member is `first`, if it is still there.
    pub fn cold_run(&self, level: u8, first: MessageSeq) -> Option<&ColdRun> {
        self.ready.cold_run(level, first)
    }

    /// Whether evicted ready messages may fold into cold runs. Not in a queue whose overflow
    /// drops its head: dead-lettering the head needs the message, and a cold head would have
    /// to be read back first.
    fn may_go_cold(&self) -> bool {
        self.options.overflow == OverflowPolicy::RejectPublish
            && self.options.durability != Durability::None
    }

    /// Every message the queue holds in memory (not in flight, not in cold runs), in no
    /// particular order.
    pub fn held(&self) -> impl Iterator<Item = &Message> {
        self.pending
            .iter()
            .map(|(_, _, m)| m)
            .chain(self.ready.iter())
            .chain(self.delayed.iter())
            .chain(self.groups.iter())
    }

    // ---- messages arriving ----

    /// A newly published message, deliverable once the log passes `gate` and `due` (if any)
    /// has come.
    pub fn enqueue(&mut self, message: Message, gate: Gate, due: Option<Instant>) {
        self.counters.published += 1;
        self.admit(message, gate, due);
    }

    /// A message that arrives from elsewhere (recovered from the log, dead-lettered into this
    /// queue, redriven back): deliverable once `gate` is open (at once for `Gate::default()`),
    /// at the back of the line unless `due` is later. Messages behind a gate keep their order.
    pub fn admit(&mut self, message: Message, gate: Gate, due: Option<Instant>) {
        self.bytes += message.payload_len();
        if !message.payload.is_held() {
            self.evicted_bytes += message.payload_len();
        }
        if gate == Gate::default() && self.pending.is_empty() {
            self.place(message, due, false);
        } else {
            self.pending.push_back((gate, due, message));
        }
    }

    /// Makes deliverable the published messages whose gate is open, in order; returns how many.
    pub fn release_pending(&mut self, is_open: impl Fn(Gate) -> bool) -> usize {
        let mut released = 0;
        while self.pending.front().is_some_and(|(gate, _, _)| is_open(*gate)) {
            let (_, due, message) = self.pending.pop_front().expect("front exists");
            self.place(message, due, false);
            released += 1;
        }
        released
    }

    fn place(&mut self, message: Message, due: Option<Instant>, front: bool) {
        let may_go_cold = self.may_go_cold();
        if message.expires_at != Instant::NEVER {
            self.expiries.insert((message.expires_at, message.seq.0));
        }
        match due {
            Some(due) => self.delayed.insert(due, message),
            None if front => {
                // MUTANT deliver-out-of-order-after-redelivery: the head goes to the back.
                #[cfg(feature = "mutants")]
                if crate::mutants::active(crate::mutants::Mutant::DeliverOutOfOrderAfterRedelivery)
                {
                    if let Some(head) = self.ready.pop_front() {
                        self.ready.push_back(head, may_go_cold);
                    }
                }
                self.ready.push_front(message)
            }
            None => self.ready.push_back(message, may_go_cold),
        }
    }

    /// Moves messages that came due to the ready line: retries to the front (they were next),
    /// delayed publishes to the back (they join the line when due).
    pub fn release_due(&mut self, now: Instant) -> usize {
        let mut retries = Vec::new();
        let mut released = 0;
        while let Some(mut message) = self.delayed.pop_due(now) {
            message.edit_extras(|e| e.not_before_unix_ms = None);
            released += 1;
            if message.attempts > 0 {
                retries.push(message);
            } else {
                self.place(message, None, false);
            }
        }
        // Pushed to the front newest first, so they keep the order they came due in.
        for message in retries.into_iter().rev() {
            self.place(message, None, true);
        }
        released
    }

    // ---- delivery ----

    /// The next message to deliver, now in flight; or that the message at the front waits
    /// for its payload to be read back. Messages that expired on the way are handed to
    /// `expired`; like every message a `take_*` returns, they stay counted until the caller
    /// `forget`s each.
    pub fn take_next(&mut self, now: Instant, expired: &mut Vec<Message>) -> Take {
        while let Some(front) = self.ready.front_mut() {
            let Front::Hot(front) = front else { return Take::NeedsPayload };
            if front.is_expired(now) {
                expired.push(self.ready.pop_front().expect("front exists"));
                continue;
            }
            if !front.payload.is_held() {
                let Some(payload) = self.fetches.take_arrived(front.seq.0) else {
                    return Take::NeedsPayload;
                };
                assert_eq!(payload.len() as u64, front.payload_len(), "read back whole");
                self.evicted_bytes -= front.payload_len();
                front.payload = Payload::Held(payload);
            }
            let message = self.ready.pop_front().expect("front exists");
            let Some(message) = self.groups.admit(message) else { continue };
            self.in_flight += 1;
            self.counters.delivered += 1;
            if message.attempts > 0 || !message.history().is_empty() {
                self.counters.redelivered += 1;
            }
            return Take::Message(message);
        }
        Take::Empty
    }

    /// Evicts payloads of ready messages (never the head of the line) until `bytes` are
    /// freed or none more may go; returns the bytes freed.
    pub fn evict_payloads(&mut self, bytes: u64, evictable: impl Fn(&Message) -> bool) -> u64 {
        let may_go_cold = self.may_go_cold();
        let freed = self.ready.evict(bytes, evictable, may_go_cold);
        self.evicted_bytes += freed;
        assert!(self.evicted_bytes <= self.bytes, "more evicted than held");
        freed
    }

    /// The next read to ask for, in delivery order: the payloads of messages in memory that
    /// are evicted and not yet asked for (consecutive records of one segment, spanning at most
    /// `span_bytes_max`, or one record if it alone is larger), or the first records of a cold
    /// run no read is in flight for (`span_bytes_max`, or more if its first record is larger).
    pub fn next_read(&self, span_bytes_max: u64) -> Option<ReadPlan> {
        let mut batch: Vec<Wanted> = Vec::new();
        let mut segment = SegmentRef::NONE;
        for message in self.ready.slots_in_order() {
            let message = match message {
                ready::SlotRef::Hot(message) => message,
                ready::SlotRef::Cold(level, run) if batch.is_empty() && !run.reading => {
                    let len = span_bytes_max.max(run.next_record_len).min(run.end - run.offset);
                    let (first, offset) = (run.first_seq(), run.offset);
                    return Some(ReadPlan::Cold {
                        level,
                        first,
                        segment: run.segment,
                        offset,
                        len,
                    });
                }
                ready::SlotRef::Cold(..) if batch.is_empty() => continue,
                ready::SlotRef::Cold(..) => break,
            };
            let fetching = self.fetches.is_fetching(message.seq.0);
            if message.payload.is_held() || fetching {
                if batch.is_empty() {
                    continue;
                }
                break;
            }
            let at = message.record;
            if let Some(&(_, first, _)) = batch.first() {
                let last = batch.last().expect("not empty").1;
                let follows = message.segment == segment && u64::from(at.offset) >= last.end();
                if !follows || at.end() - u64::from(first.offset) > span_bytes_max {
                    break;
                }
            }
            segment = message.segment;
            batch.push((message.seq.0, at, message.payload_len()));
        }
        (!batch.is_empty()).then_some(ReadPlan::Payloads { segment, wanted: batch })
    }

    /// A read of a cold run's first records was asked for.
    pub fn cold_read_started(&mut self, level: u8, first: MessageSeq) {
        let run = self.ready.cold_run_mut(level, first).expect("the run asked for is there");
        run.reading = true;
    }

    /// The records a read brought back from the front of the cold run of `level` starting at
    /// `first`: its first messages, in order (maybe none), and where its next read starts
    /// (`end`). Returns whether the run's next records may be read ahead: nothing read back
    /// before these still waits for delivery, so at most two reads' worth are in memory.
    /// `None` if the run is gone (purged: a stale read); nothing changes then.
    pub fn thaw(
        &mut self,
        level: u8,
        first: MessageSeq,
        messages: Vec<Message>,
        end: WalkEnd,
    ) -> Option<bool> {
        let bytes: u64 = messages.iter().map(Message::payload_len).sum();
        let read_ahead = self.ready.thaw(level, first, messages, end)?;
        self.evicted_bytes -= bytes;
        Some(read_ahead)
    }

    /// Removes every held message whose TTL ran out (in flight ones expire when they return).
    pub fn take_expired(&mut self, now: Instant) -> Vec<Message> {
        if self.expiries.first().is_none_or(|(at, _)| *at > now) {
            return Vec::new();
        }
        while self.expiries.first().is_some_and(|(at, _)| *at <= now) {
            self.expiries.pop_first();
        }
        let expired = |m: &Message| m.is_expired(now);
        let mut taken = self.ready.extract(expired);
        taken.extend(self.delayed.extract(expired));
        taken.extend(self.groups.extract(expired));
        taken
    }

    // ---- messages leaving ----

    /// An in-flight message is settled for good (acked, dead-lettered, dropped): it leaves the
    /// queue, and its group lets the next message through.
    pub fn settle(&mut self, message: &Message) {
        assert!(self.in_flight > 0, "settle of a message that is not in flight");
        self.in_flight -= 1;
        self.forget(message);
    }

    /// A held message (expired, dropped by overflow, dead-lettered) leaves the queue.
    pub fn forget(&mut self, message: &Message) {
        self.bytes -= message.payload_len();
        if !message.payload.is_held() {
            self.evicted_bytes -= message.payload_len();
            self.fetches.forget(message.seq.0);
        }
        if let Some(next) = self.groups.release(message) {
            self.ready.push_front(next);
        }
    }

    /// An in-flight message failed and will be retried: at once (front of the line) or when
    /// `due` comes. Its group stays held by it.
    pub fn retry(&mut self, message: Message, due: Option<Instant>) {
        assert!(self.in_flight > 0, "retry of a message that is not in flight");
        self.in_flight -= 1;
        self.place(message, due, true);
    }

    /// The oldest message not in flight and not delayed, removed to make room (`drop-head`):
    /// the oldest ready one, or one still waiting for the log if that is older.
    pub fn take_oldest(&mut self) -> Option<Message> {
        // A delayed message waiting for the log is not ready either: skip it.
        let pending = self.pending.iter().position(|(_, due, _)| due.is_none());
        let pending_seq = pending.map(|at| self.pending[at].2.seq);
        let ready_seq = self.ready.oldest_seq();
        match (pending, pending_seq, ready_seq) {
            (Some(at), Some(p), r) if r.is_none_or(|r| p < r) => {
                self.pending.remove(at).map(|(_, _, m)| m)
            }
            _ => self.ready.pop_oldest(),
        }
    }

    /// Removes every held message (not in flight) and returns them: those in memory, and the
    /// cold runs.
    pub fn purge(&mut self) -> (Vec<Message>, Vec<ColdRun>) {
        let runs = self.ready.take_cold();
        let cold_bytes: u64 = runs.iter().map(|run| run.payload_bytes).sum();
        self.bytes -= cold_bytes;
        self.evicted_bytes -= cold_bytes;
        let mut purged: Vec<Message> = self.pending.drain(..).map(|(_, _, m)| m).collect();
        purged.extend(self.ready.extract(|_| true));
        purged.extend(self.delayed.extract(|_| true));
        purged.extend(self.groups.extract(|_| true));
        self.bytes -= purged.iter().map(Message::payload_len).sum::<u64>();
        for message in purged.iter().filter(|m| !m.payload.is_held()) {
            self.evicted_bytes -= message.payload_len();
            self.fetches.forget(message.seq.0);
        }
        self.expiries.clear();
        (purged, runs)
    }

    /// Removes the held messages for which `take` is true (to redrive them). Like every
    /// `take_*`, the messages stay counted until the caller `forget`s each.
    pub fn extract(&mut self, mut take: impl FnMut(&Message) -> bool) -> Vec<Message> {
        let mut taken = self.ready.extract(&mut take);
        taken.extend(self.delayed.extract(&mut take));
        taken.extend(self.groups.extract(&mut take));
        taken
    }

    /// Visits every held message (for compaction).
    pub fn for_each_message_mut(&mut self, mut visit: impl FnMut(&mut Message)) {
        self.pending.iter_mut().for_each(|(_, _, m)| visit(m));
        self.ready.iter_mut().for_each(&mut visit);
        self.delayed.iter_mut().for_each(&mut visit);
        self.groups.iter_mut().for_each(&mut visit);
    }

    // ---- consumers ----

    pub fn add_consumer(&mut self, consumer: ConsumerKey) {
        debug_assert!(!self.consumers.contains(&consumer));
        self.consumers.push(consumer);
    }

    pub fn remove_consumer(&mut self, consumer: ConsumerKey) {
        if let Some(index) = self.consumers.iter().position(|c| *c == consumer) {
            self.consumers.remove(index);
            if self.next_consumer > index {
                self.next_consumer -= 1;
            }
        }
    }

    /// Consumers in round-robin order starting with the one whose turn it is.
    pub fn consumers_in_turn(&self) -> impl Iterator<Item = (usize, ConsumerKey)> + '_ {
        let len = self.consumers.len();
        (0..len).map(move |i| {
            let index = (self.next_consumer + i) % len;
            (index, self.consumers[index])
        })
    }

    /// The consumer at `index` got a delivery; the next one's turn comes.
    pub fn advance_turn(&mut self, index: usize) {
        self.next_consumer = (index + 1) % self.consumers.len().max(1);
    }
}
