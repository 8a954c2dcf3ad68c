//! What the simulator knows to be true, and the invariants checked against it.
//!
//! The oracle learns from three places, each independent of the broker's in-memory state:
//! - the clients: what was published (ids, payloads, destinations), what was confirmed, and what
//!   consumers did with each delivery (ack, nack with its reason, reject with its text);
//! - the broker's outgoing bytes, decoded by the simulator: every `Deliver` entry it emitted,
//!   in emission order, with its attempt number;
//! - the log records the broker handed to the storage worker: which sequence number the broker
//!   gave each message (`Published`), the broker's queue ids (`QueueDeclared`), and the order in
//!   which dispatch passes handed messages out (`Delivered`); and the storage worker's reports
//!   of what is written and synced.
//!
//! The last is needed for FIFO: emission order is dispatch order only per connection (frames
//! for different connections leave in whatever order their sockets drain, and frames held back
//! for a sync are released in connection order), while `Delivered` records are appended in
//! dispatch order, one per pass, naming the messages in the order they were chosen.

use std::collections::BTreeMap;

use bytes::Bytes;
use chute_core::storage::records::{Published, QueueDeclared, Record, Seqs};
use chute_core::Instant;
use chute_protocol::{AttemptOutcome, DeadLetterSummary, DeadReason, Delivery, Durability};

use crate::topology::{QIdx, Topology};

/// A broken invariant: its name and what exactly was seen.
pub type Violation = (&'static str, String);

/// Where a message was published to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    Queue(QIdx),
    /// Index into [`Topology::topics`].
    Topic(u8),
}

/// A message a publisher created. Its id is `m<key>`, where `key` is its index.
#[derive(Clone, Debug)]
pub struct MsgInfo {
    pub dest: Dest,
    /// Every queue it must reach (one, or each queue its topic routes to).
    pub targets: Vec<QIdx>,
    pub group: Option<u8>,
    pub delay_ms: Option<u64>,
    pub ttl_ms: Option<u64>,
    pub priority: u8,
    pub payload_len: u32,
    pub first_publish: Instant,
    pub confirmed: bool,
    /// Published by a prober whose permissions (by the simulator's checker) do not let it
    /// write to `dest`: it must be refused, never stored, delivered or confirmed. Its
    /// `targets` are empty.
    pub unauthorized: bool,
    /// The users table in force when it was handed to the session (see `users.rs`).
    pub users_epoch: usize,
}

/// What is known of one message in one queue (a source queue or its dead-letter queue).
#[derive(Clone, Debug, Default)]
pub struct CopyState {
    /// The broker's sequence number, from its `Published` record.
    pub seq: Option<u64>,
    /// Log position just past that record.
    pub published_end_lsn: u64,
    /// `Deliver` entries the broker emitted for it from this queue, in every incarnation.
    pub emitted: u32,
    /// Times a dispatch pass handed it out (its `Delivered` records), in every incarnation.
    /// More than `emitted` when frames held back for a sync never left (the connection closed
    /// first, or the broker crashed): the broker counts those attempts all the same.
    pub dispatched: u32,
    /// (incarnation, attempt) of the last emitted delivery.
    pub last_attempt: Option<(u64, u32)>,
    /// Incarnation of its last first delivery (attempt 1).
    pub first_delivered_in: Option<u64>,
    /// A consumer acked a delivery of it (from this queue, or from its dead-letter queue).
    pub acked: bool,
    /// A machine crash dropped its `Published` record where the queue's durability allows it.
    pub may_be_lost: bool,
    pub nacks: Vec<Option<String>>,
    pub rejects: Vec<String>,
}

/// Ordering classes: first deliveries are FIFO within each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Ungrouped { priority: u8 },
    Group(u8),
}

#[derive(Debug, Default)]
pub struct Oracle {
    pub epoch_unix_ms: u64,
    /// A sealed run's keys (key id 1), to open the records the broker appends.
    pub keyring: Option<chute_core::storage::seal::Keyring>,
    /// Opens the records after the last seal marker appended.
    pub sealer: Option<chute_core::storage::seal::Sealer>,
    pub messages: Vec<MsgInfo>,
    pub copies: BTreeMap<(QIdx, u32), CopyState>,
    /// Broker queue id → queue.
    queue_ids: BTreeMap<u64, QIdx>,
    /// Broker message seq → message (seqs are unique across queues; a dead letter keeps its
    /// seq).
    seq_keys: BTreeMap<u64, u32>,
    /// Current broker incarnation (restarts so far).
    incarnation: u64,
    /// Dispatch order of this incarnation: (queue, seq) → index of its first dispatch.
    first_dispatch: BTreeMap<(QIdx, u64), u64>,
    dispatch_next: u64,
    /// First deliveries of this incarnation per class: dispatch index → seq.
    fifo: BTreeMap<(QIdx, Class), BTreeMap<u64, u64>>,
    /// End of the latest `Delivered` record naming (queue, seq), this incarnation.
    /// Per (queue, seq), this incarnation: the ends of its `Delivered` records, and how many of
    /// its deliveries were emitted.
    dispatch_ends: BTreeMap<(QIdx, u64), (Vec<u64>, u32)>,
    /// Deliveries emitted (queue, key, attempt), checked once the drain that emitted them is
    /// over (the records they depend on may be handed out after the frame).
    pending: Vec<(QIdx, u32, u32)>,
    /// What the storage worker reported written and synced (everything recovery read counts
    /// as synced).
    written_lsn: u64,
    synced_lsn: u64,
    /// When the broker restarted, for bounds that a restart loosens.
    pub restarts: Vec<Instant>,
    pub fifo_checked: u64,
    pub fifo_unordered: u64,
    pub audited: u64,
    audited_entries: std::collections::BTreeSet<(QIdx, u32)>,
    /// Distinct dead letters audited, by reason (max-attempts, rejected, expired).
    pub audited_reasons: [u64; 3],
}

pub fn message_id(key: u32) -> String {
    format!("m{key}")
}

pub fn parse_id(id: &str) -> Option<u32> {
    id.strip_prefix('m')?.parse().ok()
}

/// The payload of message `key`: its id, then filler derived from the key, so any corruption
/// or mix-up shows.
pub fn payload(key: u32, len: u32) -> Bytes {
    let mut bytes = message_id(key).into_bytes();
    bytes.push(b'|');
    let mut i = 0u32;
    while (bytes.len() as u32) < len {
        bytes.push(b'a' + ((key.wrapping_mul(31).wrapping_add(i)) % 26) as u8);
        i += 1;
    }
    Bytes::from(bytes)
}

impl Oracle {
    pub fn new(epoch_unix_ms: u64) -> Oracle {
        Oracle { epoch_unix_ms, ..Oracle::default() }
    }

    pub fn new_message(&mut self, info: MsgInfo) -> u32 {
        let key = self.messages.len() as u32;
        for q in &info.targets {
            self.copies.insert((*q, key), CopyState::default());
        }
        self.messages.push(info);
        key
    }

    /// The storage worker reported progress to the broker.
    pub fn on_written(&mut self, through: u64) {
        self.written_lsn = self.written_lsn.max(through);
    }

    pub fn on_synced(&mut self, through: u64) {
        self.synced_lsn = through;
        self.written_lsn = self.written_lsn.max(through);
    }

    /// A restarted broker's log ends at `end_lsn`, all of it durable. Messages whose
    /// `Published` record lay beyond it are gone (their seq may be given out again).
    pub fn restarted(&mut self, now: Instant, end_lsn: u64) {
        self.written_lsn = end_lsn;
        self.synced_lsn = end_lsn;
        for copy in self.copies.values_mut() {
            if copy.published_end_lsn > end_lsn {
                copy.seq = None;
                copy.published_end_lsn = 0;
            }
        }
        self.incarnation += 1;
        self.restarts.push(now);
        self.first_dispatch.clear();
        self.dispatch_ends.clear();
        self.dispatch_next = 0;
        self.fifo.clear();
        self.pending.clear();
    }

    fn restarts_since(&self, at: Instant) -> u32 {
        self.restarts.iter().filter(|r| **r > at).count() as u32
    }

    /// Whether `q` may hold message `key`: it is one of its targets, or the dead-letter queue
    /// of one.
    fn may_hold(&self, topology: &Topology, q: QIdx, key: u32) -> bool {
        let targets = &self.messages[key as usize].targets;
        targets.contains(&q) || topology.queue(q).source.is_some_and(|s| targets.contains(&s))
    }

    // ---- the log ----

    /// Reads the records of one `Append` the broker handed to the worker.
    /// Returns the messages it stored, as (queue, key, seq, end of record).
    pub fn on_append(
        &mut self,
        topology: &Topology,
        end_lsn: u64,
        bytes: &Bytes,
    ) -> Result<Vec<(QIdx, u32, u64, u64)>, Violation> {
        let mut stored = Vec::new();
        let start_lsn = end_lsn - bytes.len() as u64;
        let mut pos = 0usize;
        while pos < bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let kind = bytes[pos + 8];
            let end = pos + 8 + len;
            let record_end_lsn = start_lsn + end as u64;
            let lsn = chute_core::ids::Lsn(start_lsn + pos as u64);
            if let (Some(keyring), chute_core::storage::seal::SEAL_KIND) = (&self.keyring, kind) {
                let marker = keyring.open_marker(1, lsn, &bytes[pos + 9..end]);
                let marker =
                    marker.map_err(|e| ("log-record", format!("a bad seal marker: {e}")))?;
                self.sealer = Some(marker);
                pos = end;
                continue;
            }
            if matches!(kind, 2 | 4 | 5) {
                let mut body = bytes.slice(pos + 9..end);
                if self.keyring.is_some() {
                    let sealer = self.sealer.as_ref().ok_or_else(|| {
                        ("log-record", "a sealed record before any seal marker".to_string())
                    })?;
                    // The associated data: the record's len and kind bytes.
                    let mut aad = [kind; 5];
                    aad[..4].copy_from_slice(&bytes[pos..pos + 4]);
                    body = sealer
                        .open(lsn, &aad, &body)
                        .map_err(|e| ("log-record", format!("a sealed record: {e}")))?;
                }
                let record = Record::decode(kind, &body)
                    .map_err(|e| ("log-record", format!("the broker wrote a bad record: {e}")))?;
                if let Some(logged) = self.on_record(topology, record, record_end_lsn)? {
                    stored.push(logged);
                }
            }
            pos = end;
        }
        Ok(stored)
    }

    fn on_record(
        &mut self,
        topology: &Topology,
        record: Record,
        end_lsn: u64,
    ) -> Result<Option<(QIdx, u32, u64, u64)>, Violation> {
        match record {
            Record::QueueDeclared(QueueDeclared { queue, name, .. }) => {
                let Some(q) = topology.by_name.get(&name) else {
                    return Err((
                        "log-record",
                        format!("queue {name:?} declared, never asked for"),
                    ));
                };
                self.queue_ids.insert(queue, *q);
            }
            Record::Published(Published { queue, message }) => {
                let q = self.queue(queue)?;
                self.check_authorized(message.id.as_deref(), "stored")?;
                let key = message.id.as_deref().and_then(parse_id).filter(|k| {
                    (*k as usize) < self.messages.len() && self.may_hold(topology, q, *k)
                });
                let Some(key) = key else {
                    let name = &topology.queue(q).name;
                    return Err((
                        "never-published",
                        format!(
                            "{name} stored message {:?}, which was never published to it",
                            message.id
                        ),
                    ));
                };
                let copy = self.copies.entry((q, key)).or_default();
                // A compaction copy repeats the seq; a new seq is a message published again
                // after a crash lost the first.
                if copy.seq != Some(message.seq) {
                    copy.seq = Some(message.seq);
                    copy.published_end_lsn = end_lsn;
                }
                self.seq_keys.insert(message.seq, key);
                return Ok(Some((q, key, message.seq, end_lsn)));
            }
            Record::Delivered(Seqs { queue, seqs }) => {
                let q = self.queue(queue)?;
                for range in seqs {
                    for seq in range.iter() {
                        if let Some(key) = self.seq_keys.get(&seq) {
                            self.copies.entry((q, *key)).or_default().dispatched += 1;
                        }
                        self.dispatch_ends.entry((q, seq)).or_default().0.push(end_lsn);
                        if let std::collections::btree_map::Entry::Vacant(entry) =
                            self.first_dispatch.entry((q, seq))
                        {
                            entry.insert(self.dispatch_next);
                            self.dispatch_next += 1;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn queue(&self, id: u64) -> Result<QIdx, Violation> {
        self.queue_ids
            .get(&id)
            .copied()
            .ok_or_else(|| ("log-record", format!("record for queue id {id}, never declared")))
    }

    /// A machine crash kept the log up to `kept_end_lsn`: messages on `Interval` queues whose
    /// `Published` record lay beyond it may be gone, confirmed or not (docs/STORAGE.md §8).
    pub fn on_machine_crash(&mut self, topology: &Topology, kept_end_lsn: u64) {
        for ((q, _), copy) in self.copies.iter_mut() {
            let interval =
                matches!(topology.queue(*q).options.durability, Durability::Interval { .. });
            if interval && copy.seq.is_some() && copy.published_end_lsn > kept_end_lsn {
                copy.may_be_lost = true;
            }
        }
    }

    // ---- deliveries the broker emitted ----

    /// A message a prober was not allowed to publish must never get this far.
    fn check_authorized(&self, id: Option<&str>, what: &str) -> Result<(), Violation> {
        let key = id.and_then(parse_id).filter(|key| (*key as usize) < self.messages.len());
        match key {
            Some(key) if self.messages[key as usize].unauthorized => Err((
                "unauthorized-publish",
                format!("m{key} was {what}, but its publisher may not write to its destination"),
            )),
            _ => Ok(()),
        }
    }

    pub fn on_emitted(
        &mut self,
        topology: &Topology,
        q: QIdx,
        delivery: &Delivery,
    ) -> Result<u32, Violation> {
        self.check_authorized(delivery.id.as_deref(), "delivered")?;
        let spec = topology.queue(q);
        let key = delivery
            .id
            .as_deref()
            .and_then(parse_id)
            .filter(|k| (*k as usize) < self.messages.len())
            .ok_or_else(|| {
                ("never-published", format!("{} delivered id {:?}", spec.name, delivery.id))
            })?;
        let message = &self.messages[key as usize];
        if delivery.payload != payload(key, message.payload_len) {
            return Err((
                "payload",
                format!("{} delivered m{key} with a wrong payload", spec.name),
            ));
        }
        if !self.may_hold(topology, q, key) {
            return Err((
                "never-published",
                format!("{} delivered m{key}, which was never published to it", spec.name),
            ));
        }
        let max = spec.options.attempts_max;
        if max.is_some_and(|max| delivery.attempt > max) || delivery.attempt == 0 {
            return Err((
                "attempts-max",
                format!(
                    "{} delivered m{key} as attempt {} (max {max:?})",
                    spec.name, delivery.attempt
                ),
            ));
        }
        let incarnation = self.incarnation;
        let exact = spec.attempts_exact();
        let dedup = spec.options.dedup_window_ms.is_some();
        let copy = self.copies.entry((q, key)).or_default();
        copy.emitted += 1;
        if let Some(max) = exact {
            if copy.emitted > max {
                return Err((
                    "attempts-max",
                    format!(
                        "{} delivered m{key} {} times, more than attempts_max {max}",
                        spec.name, copy.emitted
                    ),
                ));
            }
        }
        if let Some((inc, last)) = copy.last_attempt {
            // Attempts only grow: within one incarnation always, and across restarts where the
            // broker counts them exactly.
            if delivery.attempt <= last && (inc == incarnation || exact.is_some()) {
                return Err((
                    "attempts-grow",
                    format!(
                        "{} delivered m{key} as attempt {} after attempt {last}",
                        spec.name, delivery.attempt
                    ),
                ));
            }
        }
        copy.last_attempt = Some((incarnation, delivery.attempt));
        if delivery.attempt == 1 {
            if dedup && copy.first_delivered_in == Some(incarnation) {
                return Err((
                    "dedup",
                    format!("{} first-delivered m{key} twice in one incarnation", spec.name),
                ));
            }
            copy.first_delivered_in = Some(incarnation);
        }
        if !spec.is_dlq() {
            self.pending.push((q, key, delivery.attempt));
        }
        Ok(key)
    }

    /// Checks the deliveries emitted since the last call against the log: a first delivery
    /// only once its message is as durable as its queue promises, on queues that count attempts
    /// exactly only once the attempt is on disk, and first deliveries in dispatch order.
    pub fn check_emitted(&mut self, topology: &Topology) -> Result<(), Violation> {
        for (q, key, attempt) in std::mem::take(&mut self.pending) {
            let spec = topology.queue(q);
            let name = &spec.name;
            let copy = &self.copies[&(q, key)];
            let Some(seq) = copy.seq else {
                return Err((
                    "never-published",
                    format!("{name} delivered m{key}, whose Published record was never written"),
                ));
            };
            let durable_lsn = match spec.options.durability {
                Durability::Interval { .. } => self.written_lsn,
                _ => self.synced_lsn,
            };
            if attempt == 1 && copy.published_end_lsn > durable_lsn {
                return Err((
                    "deliver-before-durable",
                    format!(
                        "{name} delivered m{key} before its record (ending at {}) was durable \
                         (written {}, synced {})",
                        copy.published_end_lsn, self.written_lsn, self.synced_lsn
                    ),
                ));
            }
            if spec.attempts_exact().is_some() {
                // The frame of a dispatch leaves once its record (and so every earlier one) is
                // synced; a dispatch's frame may never leave (its connection closed first), so
                // the n-th frame emitted needs at least n synced records, not the n-th.
                let synced_lsn = self.synced_lsn;
                let (ends, emitted) = self.dispatch_ends.entry((q, seq)).or_default();
                *emitted += 1;
                let synced = ends.iter().filter(|end| **end <= synced_lsn).count();
                if synced < *emitted as usize {
                    return Err((
                        "deliver-before-durable",
                        format!(
                            "{name} delivered m{key} (attempt {attempt}) for the {emitted}th time \
                             in this incarnation with {synced} of its {} Delivered records synced \
                             (ends {ends:?}, synced {synced_lsn})",
                            ends.len()
                        ),
                    ));
                }
            }
            if attempt == 1 {
                self.check_fifo(topology, q, key, seq)?;
            }
        }
        Ok(())
    }

    /// First deliveries of one class must have been dispatched in seq order.
    fn check_fifo(
        &mut self,
        topology: &Topology,
        q: QIdx,
        key: u32,
        seq: u64,
    ) -> Result<(), Violation> {
        let message = &self.messages[key as usize];
        if message.delay_ms.is_some() {
            return Ok(()); // a delayed message joins the line when it comes due
        }
        let Some(index) = self.first_dispatch.get(&(q, seq)).copied() else {
            self.fifo_unordered += 1;
            return Ok(());
        };
        let class = match message.group {
            Some(group) => Class::Group(group),
            None => Class::Ungrouped { priority: message.priority },
        };
        let line = self.fifo.entry((q, class)).or_default();
        let before = line.range(..index).next_back().map(|(_, s)| *s);
        let after = line.range(index + 1..).next().map(|(_, s)| *s);
        if before.is_some_and(|b| b >= seq) || after.is_some_and(|a| a <= seq) {
            let other = before.filter(|b| *b >= seq).or(after).unwrap_or_default();
            let name = &topology.queue(q).name;
            return Err((
                "fifo",
                format!(
                    "{name} ({class:?}): m{key} (seq {seq}) was first delivered out of order \
                     with seq {other}"
                ),
            ));
        }
        line.insert(index, seq);
        self.fifo_checked += 1;
        Ok(())
    }

    // ---- consumers ----

    pub fn acked(&mut self, topology: &Topology, q: QIdx, key: u32) {
        self.copies.entry((q, key)).or_default().acked = true;
        if let Some(source) = topology.queue(q).source {
            self.copies.entry((source, key)).or_default().acked = true;
        }
    }

    pub fn nacked(&mut self, q: QIdx, key: u32, reason: Option<String>) {
        self.copies.entry((q, key)).or_default().nacks.push(reason);
    }

    pub fn rejected(&mut self, q: QIdx, key: u32, reason: String) {
        self.copies.entry((q, key)).or_default().rejects.push(reason);
    }

    // ---- dead letters ----

    /// Checks one dead-letter queue entry against what really happened to the message.
    pub fn audit(
        &mut self,
        topology: &Topology,
        now: Instant,
        dlq: QIdx,
        entry: &DeadLetterSummary,
    ) -> Result<(), Violation> {
        let dlq_name = &topology.queue(dlq).name;
        let source = topology.queue(dlq).source.expect("audits are of dead-letter queues");
        let spec = topology.queue(source);
        let fail = |what: String| Err(("dead-letter", format!("{dlq_name}: {what}: {entry:?}")));
        let Some(key) = entry.message_id.as_deref().and_then(parse_id) else {
            return fail("an entry with an unknown id".into());
        };
        if key as usize >= self.messages.len()
            || !self.messages[key as usize].targets.contains(&source)
        {
            return fail(format!("m{key} was never published to {}", spec.name));
        }
        if entry.source_queue != spec.name || spec.dlq != Some(dlq) {
            return fail(format!("source queue should be {}", spec.name));
        }
        let message = &self.messages[key as usize];
        let now_unix_ms = self.epoch_unix_ms + now.as_millis();
        let first_unix_ms = self.epoch_unix_ms + message.first_publish.as_millis();
        if entry.published_unix_ms < first_unix_ms
            || entry.dead_unix_ms < entry.published_unix_ms
            || entry.dead_unix_ms > now_unix_ms
        {
            return fail("impossible timestamps".into());
        }
        let restarts = self.restarts_since(message.first_publish);
        let none = CopyState::default();
        let src = self.copies.get(&(source, key)).unwrap_or(&none);
        let in_dlq = self.copies.get(&(dlq, key)).unwrap_or(&none);
        let reason_index = match entry.reason {
            DeadReason::MaxAttempts => 0,
            DeadReason::Rejected => 1,
            _ => 2,
        };
        if self.audited_entries.insert((dlq, key)) {
            self.audited += 1;
            self.audited_reasons[reason_index] += 1;
        }
        match entry.reason {
            DeadReason::Rejected => {
                let rejected = entry.history.iter().any(|h| {
                    h.outcome == AttemptOutcome::Reject
                        && h.reason.as_ref().is_some_and(|r| src.rejects.contains(r))
                });
                if !rejected {
                    return fail("reason rejected, but no matching reject in its history".into());
                }
            }
            DeadReason::Expired => {
                let Some(ttl_ms) = message.ttl_ms.or(spec.options.ttl_ms) else {
                    return fail("reason expired, but it has no TTL".into());
                };
                if entry.dead_unix_ms < entry.published_unix_ms + ttl_ms {
                    return fail(format!("reason expired before its TTL of {ttl_ms} ms ran out"));
                }
            }
            DeadReason::MaxAttempts => {
                let Some(max) = spec.options.attempts_max else {
                    return fail("reason max-attempts on a queue without attempts_max".into());
                };
                // Attempts are counted at dispatch (a frame held back for a sync may never leave),
                // and a restart may count one more that was never dispatched in this run's
                // memory (docs/STORAGE.md §9).
                if src.dispatched + restarts < max {
                    return fail(format!(
                        "reason max-attempts after {} dispatches and {restarts} restarts (max {max})",
                        src.dispatched
                    ));
                }
            }
            DeadReason::Overflow => {
                return fail("reason overflow on a queue without limits".into())
            }
        }
        let mut nacks = 0;
        for record in &entry.history {
            match record.outcome {
                AttemptOutcome::Nack => {
                    nacks += 1;
                    if !src.nacks.contains(&record.reason) && !in_dlq.nacks.contains(&record.reason)
                    {
                        return fail(format!("history has a nack {:?} nobody sent", record.reason));
                    }
                }
                AttemptOutcome::Reject => {
                    if !record.reason.as_ref().is_some_and(|r| src.rejects.contains(r)) {
                        return fail(format!(
                            "history has a reject {:?} nobody sent",
                            record.reason
                        ));
                    }
                }
                AttemptOutcome::Timeout | AttemptOutcome::Disconnect => {}
            }
            if record.at_unix_ms < entry.published_unix_ms || record.at_unix_ms > now_unix_ms {
                return fail("a history entry at an impossible time".into());
            }
        }
        if nacks > src.nacks.len() + in_dlq.nacks.len() {
            return fail(format!("{nacks} nacks in its history, {} sent", src.nacks.len()));
        }
        // Every failed attempt ended a dispatch, or a dispatch a restart interrupted.
        let dispatches = (src.dispatched + in_dlq.dispatched + restarts) as usize;
        if entry.history.len() > dispatches {
            return fail(format!(
                "{} failed attempts in its history, but only {dispatches} dispatches and restarts",
                entry.history.len()
            ));
        }
        Ok(())
    }

    // ---- the end ----

    /// Confirmed messages not accounted for: neither acked (from their queue or its dead-letter
    /// queue) nor lost where their queue's durability allows.
    pub fn unaccounted(&self) -> Vec<(QIdx, u32)> {
        let mut missing = Vec::new();
        for (key, message) in self.messages.iter().enumerate() {
            if !message.confirmed {
                continue;
            }
            for q in &message.targets {
                let copy = &self.copies[&(*q, key as u32)];
                if !copy.acked && !copy.may_be_lost {
                    missing.push((*q, key as u32));
                }
            }
        }
        missing
    }
}
