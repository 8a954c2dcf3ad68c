//! Every publish a session has not settled: kept, with its message, until the server confirms
//! or refuses it for good, so that a new connection can carry it again in order.
//!
//! Publishes are numbered by the session (`seq`, from 1) and by each connection (`wire`, the
//! protocol's implicit publish sequence number, §7.1): `on_wire` maps one to the other for the
//! current connection. The message moves in once and is encoded from there on each send
//! (`Client::publish_ref`), so keeping it costs no copy.

use std::collections::VecDeque;

use chute_protocol::{Destination, PublishFailure, PublishMessage, Range};

use super::events::{NotConfirmed, SessionEvent, SessionOutput, SessionStats};
use crate::client::{Client, CommandError};
use crate::seq_slots::SeqSlots;
use crate::time::Instant;

/// Where a run of consecutive publishes goes: kept once per run, not per publish, so that
/// publishing to one destination costs no copy of its name.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: Destination,
    pub mandatory: bool,
}

#[derive(Debug)]
struct Unconfirmed {
    message: PublishMessage,
    state: SendState,
    /// When the caller handed it over: its deadline counts from here.
    published_at: Instant,
    /// Times sent, over all connections.
    sends: u32,
    /// Retriable refusals so far, for the retry backoff.
    refusals: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendState {
    /// Waiting for a connection, or for room in its window; sent in `seq` order.
    Unsent,
    /// Refused with "later": sent again from this instant.
    RetryAt(Instant),
    /// Refused with "elsewhere": waits for the next connection.
    NextConnection,
    /// Sent on the current connection, unanswered.
    OnWire { sent_at: Instant },
}

#[derive(Debug, Default)]
pub struct Publishes {
    store: SeqSlots<Unconfirmed>,
    /// Wire sequence number on the current connection → `seq`.
    on_wire: SeqSlots<u64>,
    /// The last `seq` handed out.
    last_seq: u64,
    /// Each run's route, by the `seq` it starts at; a publish goes where the last run that
    /// starts at or before it goes.
    routes: VecDeque<(u64, Route)>,
    /// Publishes in state `Unsent`, and the lowest `seq` one of them may have.
    unsent: usize,
    unsent_from: u64,
    /// The earliest `RetryAt`, if any publish waits for one.
    retry_next: Option<Instant>,
}

impl Publishes {
    /// Publishes without an outcome.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Publishes on the current connection without an answer.
    pub fn on_wire(&self) -> usize {
        self.on_wire.len()
    }

    /// Starts a run at `seq` unless the last one goes to the same place.
    fn note_route(&mut self, seq: u64, destination: &Destination, mandatory: bool) {
        match self.routes.back() {
            Some((_, route))
                if route.destination == *destination && route.mandatory == mandatory => {}
            _ => {
                let route = Route { destination: destination.clone(), mandatory };
                self.routes.push_back((seq, route));
            }
        }
    }

    /// Drops the runs every publish of which is settled.
    fn prune_routes(&mut self) {
        let oldest = self.store.iter().next().map_or(self.last_seq + 1, |(seq, _)| seq);
        while self.routes.len() > 1 && self.routes[1].0 <= oldest {
            self.routes.pop_front();
        }
    }

    /// Takes a new publish and sends it at once on `client` (an open connection) when nothing
    /// older is waiting; otherwise it waits its turn. Returns its `seq`. A message the
    /// connection refuses to encode (too large for its frames) is refused here, unnumbered.
    #[inline]
    pub fn publish(
        &mut self,
        now: Instant,
        client: Option<&mut Client>,
        (destination, mandatory): (&Destination, bool),
        message: PublishMessage,
    ) -> Result<u64, CommandError> {
        let seq = self.last_seq + 1;
        // Encoded from where it lies, then moved once, into the store: a message is a couple
        // of hundred bytes, and copies of it were most of what keeping it cost.
        let sent = match client {
            Some(client) if self.unsent == 0 => {
                match client.publish_ref(destination, mandatory, &message) {
                    Ok(wire) => Some(wire),
                    Err(CommandError::WindowFull { .. } | CommandError::Closed) => None,
                    Err(refused) => return Err(refused),
                }
            }
            _ => None,
        };
        let state = match sent {
            Some(wire) => {
                self.on_wire.insert(wire, seq);
                SendState::OnWire { sent_at: now }
            }
            None => {
                if self.unsent == 0 {
                    self.unsent_from = seq;
                }
                self.unsent += 1;
                SendState::Unsent
            }
        };
        self.note_route(seq, destination, mandatory);
        let sends = u32::from(sent.is_some());
        self.store
            .insert(seq, Unconfirmed { message, state, published_at: now, sends, refusals: 0 });
        self.last_seq = seq;
        Ok(seq)
    }

    /// Sends what waits, in `seq` order, while `client` has room: unsent publishes, and those
    /// whose retry is due. Those the connection cannot encode are given up.
    pub fn send_ready(
        &mut self,
        now: Instant,
        client: &mut Client,
        outputs: &mut VecDeque<SessionOutput>,
        stats: &mut SessionStats,
    ) {
        let retry_due = self.retry_next.is_some_and(|at| at <= now);
        if self.unsent == 0 && !retry_due {
            return;
        }
        let from = if retry_due { 0 } else { self.unsent_from };
        let mut unsendable = Vec::new();
        let Publishes { store, on_wire, unsent, routes, .. } = self;
        for (seq, entry) in store.range_mut(from..=u64::MAX) {
            let due = match entry.state {
                SendState::Unsent => true,
                SendState::RetryAt(at) => at <= now,
                SendState::NextConnection | SendState::OnWire { .. } => false,
            };
            if !due {
                continue;
            }
            if client.window_full() {
                break;
            }
            let run = routes.partition_point(|(first, _)| *first <= seq) - 1;
            let Route { destination, mandatory } = &routes[run].1;
            match client.publish_ref(destination, *mandatory, &entry.message) {
                Ok(wire) => {
                    on_wire.insert(wire, seq);
                    if entry.state == SendState::Unsent {
                        *unsent -= 1;
                    } else {
                        stats.retries += 1;
                    }
                    if entry.sends > 0 && entry.state == SendState::Unsent {
                        stats.republished += 1;
                    }
                    entry.state = SendState::OnWire { sent_at: now };
                    entry.sends += 1;
                }
                Err(CommandError::WindowFull { .. } | CommandError::Closed) => break,
                Err(refused) => unsendable.push((seq, refused)),
            }
        }
        for (seq, refused) in unsendable {
            if let Some(entry) = self.store.remove(seq) {
                if entry.state == SendState::Unsent {
                    self.unsent -= 1;
                }
            }
            let error = NotConfirmed::Unsendable(refused);
            outputs.push_back(SessionOutput::Event(SessionEvent::NotConfirmed { seq, error }));
        }
        self.unsent_from = self.first_unsent().unwrap_or(self.last_seq + 1);
        self.retry_next = self.earliest_retry();
    }

    fn first_unsent(&self) -> Option<u64> {
        let from = self.unsent_from;
        self.store
            .range(from..=u64::MAX)
            .find(|(_, e)| e.state == SendState::Unsent)
            .map(|(s, _)| s)
    }

    fn earliest_retry(&self) -> Option<Instant> {
        self.store
            .values()
            .filter_map(|entry| match entry.state {
                SendState::RetryAt(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// The server confirmed `range` of the connection's publishes: each leaves the store, and
    /// `Confirmed` goes out per run of consecutive `seq`s. Returns how many were confirmed.
    pub fn confirmed(&mut self, range: Range, outputs: &mut VecDeque<SessionOutput>) -> u64 {
        // The server sends no empty or overflowing range; were one to come, it confirms nothing.
        let Some(last) = range.last() else { return 0 };
        let Publishes { store, on_wire, .. } = self;
        // Consecutive wire numbers are mostly consecutive session numbers (one connection,
        // nothing retried): take them off the store a run at a time, not one search each.
        let mut run: Option<(u64, u64)> = None;
        let mut confirmed = 0;
        let mut take = |(first, last): (u64, u64)| {
            // A publish given up at its deadline left the store; its late confirm is news to
            // nobody, so only what is still there is confirmed.
            let mut present: Option<Range> = None;
            store.discard_range(first..=last, |seq| {
                confirmed += 1;
                match &mut present {
                    Some(open) if open.last() == Some(seq - 1) => open.count += 1,
                    _ => {
                        if let Some(done) = present.replace(Range::one(seq)) {
                            outputs.push_back(SessionOutput::Event(SessionEvent::Confirmed(done)));
                        }
                    }
                }
            });
            if let Some(done) = present {
                outputs.push_back(SessionOutput::Event(SessionEvent::Confirmed(done)));
            }
        };
        on_wire.remove_range(range.first..=last, |_, seq| match &mut run {
            // A run stays within a u32 count, as a `Range` must.
            Some((first, end)) if *end + 1 == seq && seq - *first < u64::from(u32::MAX) => {
                *end = seq
            }
            _ => {
                if let Some(done) = run.replace((seq, seq)) {
                    take(done);
                }
            }
        });
        if let Some(done) = run {
            take(done);
        }
        self.prune_routes();
        confirmed
    }

    /// The server refused one of the connection's publishes. `decide` says whether to retry
    /// it, given how often it was refused; otherwise it leaves the store with the refusal.
    /// Returns the refused `seq`, if it was still waiting.
    pub fn refused(
        &mut self,
        failure: PublishFailure,
        outputs: &mut VecDeque<SessionOutput>,
        decide: impl FnOnce(u32, Instant) -> super::retry::Retry,
    ) -> Option<u64> {
        use super::retry::Retry;
        let seq = self.on_wire.remove(failure.seq)?;
        let entry = self.store.get_mut(seq)?;
        entry.refusals += 1;
        match decide(entry.refusals, entry.published_at) {
            Retry::At(at) => {
                entry.state = SendState::RetryAt(at);
                self.retry_next = Some(self.retry_next.map_or(at, |next| next.min(at)));
            }
            Retry::NextConnection => entry.state = SendState::NextConnection,
            Retry::No => {
                self.store.remove(seq);
                let error = NotConfirmed::Refused {
                    code: failure.code,
                    message: failure.message,
                    retry_after_ms: failure.retry_after_ms,
                };
                outputs.push_back(SessionOutput::Event(SessionEvent::NotConfirmed { seq, error }));
            }
        }
        Some(seq)
    }

    /// The connection is gone: every publish it carried, or that waited for another one, is
    /// sent again on the next, in `seq` order.
    pub fn connection_lost(&mut self) {
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::ForgetUnconfirmedOnReconnect) {
            // MUTANT forget-unconfirmed-on-reconnect: what the connection carried is dropped.
            for (_, seq) in self.on_wire.drain() {
                self.store.remove(seq);
            }
        }
        self.on_wire.drain().for_each(drop);
        for entry in self.store.values_mut() {
            if matches!(entry.state, SendState::OnWire { .. } | SendState::NextConnection) {
                entry.state = SendState::Unsent;
            }
        }
        self.unsent = self.store.values().filter(|e| e.state == SendState::Unsent).count();
        self.unsent_from = 0;
        self.unsent_from = self.first_unsent().unwrap_or(self.last_seq + 1);
    }

    /// When the oldest publish on the current connection was sent.
    pub fn oldest_on_wire(&self) -> Option<Instant> {
        self.on_wire.values().find_map(|seq| match self.store.get(*seq)?.state {
            SendState::OnWire { sent_at } => Some(sent_at),
            _ => None,
        })
    }

    /// When the oldest publish was handed over (deadlines grow with `seq`).
    pub fn oldest_published_at(&self) -> Option<Instant> {
        self.store.values().next().map(|entry| entry.published_at)
    }

    pub fn retry_next(&self) -> Option<Instant> {
        self.retry_next
    }

    /// Gives up the publishes whose deadline (`publish_ms` after they were handed over) is
    /// `now` or earlier: unknown outcome if ever sent, deadline passed if never. Returns how
    /// many.
    pub fn expire(
        &mut self,
        now: Instant,
        publish_ms: u64,
        outputs: &mut VecDeque<SessionOutput>,
    ) -> u64 {
        let mut expired = 0;
        loop {
            let Some((seq, entry)) = self.store.iter().next() else { break };
            if entry.published_at.plus_ms(publish_ms) > now {
                break;
            }
            let sends = entry.sends;
            let entry = self.store.remove(seq).expect("just found");
            if entry.state == SendState::Unsent {
                self.unsent -= 1;
            }
            let error = match sends {
                0 => NotConfirmed::DeadlinePassed,
                sends => NotConfirmed::UnknownOutcome { sends },
            };
            outputs.push_back(SessionOutput::Event(SessionEvent::NotConfirmed { seq, error }));
            expired += 1;
        }
        if expired > 0 {
            self.unsent_from = self.first_unsent().unwrap_or(self.last_seq + 1);
            self.retry_next = self.earliest_retry();
            self.prune_routes();
        }
        expired
    }

    /// Forgets everything (the session ended; the caller fails the waiters).
    pub fn clear(&mut self) {
        self.store.drain().for_each(drop);
        self.routes.clear();
        self.on_wire.drain().for_each(drop);
        self.unsent = 0;
        self.retry_next = None;
    }
}
