//! Messages ready for delivery: one FIFO per priority level, highest level first. A stretch of
//! a level whose messages are only in the log is held as a cold run (`cold.rs`), not message by
//! message.

use std::collections::VecDeque;

use chute_protocol::PRIORITY_MAX;

use super::cold::ColdRun;
use super::Message;
use crate::ids::MessageSeq;
use crate::storage::read::WalkEnd;

const LEVELS: usize = PRIORITY_MAX as usize + 1;

/// An eviction walk passes over at most this many messages in a row whose payload may not
/// leave yet (not durable yet, not logged, dead letters), so that its cost stays bounded.
const EVICT_SKIP_MAX: usize = 64;

/// A place in a level's line: one message, or a cold run of them. A run is boxed so that a
/// slot is no larger than a message: most slots are messages.
#[derive(Debug)]
pub(super) enum Slot {
    Hot(Message),
    Cold(Box<ColdRun>),
}

/// A slot of the line as readers see it: a message, or a cold run with its priority level.
#[derive(Debug)]
pub enum SlotRef<'a> {
    Hot(&'a Message),
    Cold(u8, &'a ColdRun),
}

/// What is at the front of the line.
#[derive(Debug)]
pub enum Front<'a> {
    Hot(&'a mut Message),
    /// A cold run: its first messages must be read back first.
    Cold,
}

#[derive(Debug, Default)]
pub struct Ready {
    levels: [VecDeque<Slot>; LEVELS],
    /// Messages, cold ones included.
    len: usize,
}

fn level(message: &Message) -> usize {
    usize::from(message.priority.min(PRIORITY_MAX))
}

/// Adds `message` at the back of `line`: into the cold run there if it may go cold and follows
/// it, as a new run if it may go cold, else as itself.
fn push_back_folding(line: &mut VecDeque<Slot>, message: Message, may_go_cold: bool) {
    if !may_go_cold || !ColdRun::can_hold(&message) {
        return line.push_back(Slot::Hot(message));
    }
    match line.back_mut() {
        Some(Slot::Cold(run)) if run.follows(&message) => run.push(&message),
        _ => line.push_back(Slot::Cold(Box::new(ColdRun::new(&message)))),
    }
}

impl Ready {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A message delivered for the first time joins the back of its level, into a cold run
    /// if `may_go_cold` and it qualifies (a recovered message whose payload stayed on disk).
    pub fn push_back(&mut self, message: Message, may_go_cold: bool) {
        self.len += 1;
        push_back_folding(&mut self.levels[level(&message)], message, may_go_cold);
    }

    /// A message that was already next in line (a retry, a group's next) goes to the front.
    pub fn push_front(&mut self, message: Message) {
        self.len += 1;
        self.levels[level(&message)].push_front(Slot::Hot(message));
    }

    /// The highest non-empty level.
    fn front_level(&self) -> Option<usize> {
        (0..LEVELS).rev().find(|&l| !self.levels[l].is_empty())
    }

    /// The next message to deliver, if the front of the highest non-empty level is one (not a
    /// cold run).
    pub fn pop_front(&mut self) -> Option<Message> {
        let level = self.front_level()?;
        self.pop_hot(level)
    }

    /// The front of `level`, if it is a message (not a cold run).
    fn pop_hot(&mut self, level: usize) -> Option<Message> {
        let line = &mut self.levels[level];
        let Some(Slot::Hot(_)) = line.front() else { return None };
        self.len -= 1;
        match line.pop_front() {
            Some(Slot::Hot(message)) => Some(message),
            _ => unreachable!("the front was a message"),
        }
    }

    /// What `pop_front` would take, or that a cold run comes first.
    pub fn front_mut(&mut self) -> Option<Front<'_>> {
        let level = self.front_level()?;
        match self.levels[level].front_mut()? {
            Slot::Hot(message) => Some(Front::Hot(message)),
            Slot::Cold(_) => Some(Front::Cold),
        }
    }

    /// Evicts payloads until `bytes` are freed (or no more may go); returns the bytes freed.
    /// The messages delivered last go first: the lowest level first, each level from its back
    /// towards its head, which keeps its payload (it is delivered next). A level's walk ends at
    /// the first payload already evicted or cold run: the walk before this one got there, so
    /// what lies ahead of it was kept on purpose, and the walk costs only what arrived since.
    /// With `may_go_cold`, the messages evicted then fold into cold runs.
    pub fn evict(
        &mut self,
        bytes: u64,
        evictable: impl Fn(&Message) -> bool,
        may_go_cold: bool,
    ) -> u64 {
        let mut freed = 0;
        for line in self.levels.iter_mut() {
            let mut skipped = 0;
            let mut reached = line.len();
            for (index, slot) in line.iter_mut().enumerate().skip(1).rev() {
                let Slot::Hot(message) = slot else { break };
                if freed >= bytes || skipped == EVICT_SKIP_MAX || !message.payload.is_held() {
                    break;
                }
                reached = index;
                if !evictable(message) {
                    skipped += 1;
                    continue;
                }
                freed += message.payload_len();
                message.evict_payload();
            }
            if may_go_cold && reached < line.len() {
                // The slot before the walk's end may be a run the evicted messages continue.
                fold(line, reached - 1);
            }
            if freed >= bytes {
                break;
            }
        }
        freed
    }

    /// The sequence number `pop_oldest` would take.
    pub fn oldest_seq(&self) -> Option<MessageSeq> {
        self.levels.iter().filter_map(|line| line.front().map(slot_seq)).min()
    }

    /// When the head of the line was published (Unix ms): the earliest among the fronts of the
    /// levels. A level is in publish order (a retry goes back to the front it left) except for
    /// messages that join at the back with an older publish time: delayed publishes when they
    /// come due, dead letters and redriven messages. For those the head may be younger than a
    /// message behind it; an exact oldest would cost an index kept on every move, and the head
    /// is what holds the line up. One peek per level: nothing on the paths that move messages.
    pub fn oldest_published_unix_ms(&self) -> Option<u64> {
        let published = |slot: &Slot| match slot {
            Slot::Hot(message) => message.published_unix_ms,
            Slot::Cold(run) => run.first_published_unix_ms,
        };
        self.levels.iter().filter_map(|line| line.front().map(published)).min()
    }

    /// The message published earliest among the fronts of the levels: what `drop-head`
    /// overflow removes. `None` when that is a cold run's: dropping it to a dead-letter queue
    /// needs it read back first. (Queues with `drop-head` keep no cold runs; see `Queue`.)
    pub fn pop_oldest(&mut self) -> Option<Message> {
        let level = (0..LEVELS)
            .filter_map(|i| self.levels[i].front().map(|slot| (slot_seq(slot), i)))
            .min()
            .map(|(_, i)| i)?;
        self.pop_hot(level)
    }

    /// Keeps the messages for which `take` is false; returns the others, in delivery order.
    /// Cold runs are kept whole: their messages are not in memory to be judged. (They are
    /// plain ready messages without a TTL, which is all any caller takes but `take_cold`.)
    pub fn extract(&mut self, mut take: impl FnMut(&Message) -> bool) -> Vec<Message> {
        let mut taken = Vec::new();
        for line in self.levels.iter_mut().rev() {
            let matches = |slot: &Slot| matches!(slot, Slot::Hot(m) if take(m));
            if !line.iter().any(matches) {
                continue;
            }
            let mut kept = VecDeque::with_capacity(line.len());
            for slot in line.drain(..) {
                match slot {
                    Slot::Hot(message) if take(&message) => taken.push(message),
                    slot => kept.push_back(slot),
                }
            }
            *line = kept;
        }
        self.len -= taken.len();
        taken
    }

    /// Removes every cold run and returns them (a purge).
    pub fn take_cold(&mut self) -> Vec<ColdRun> {
        let mut runs = Vec::new();
        for line in self.levels.iter_mut() {
            if !line.iter().any(|slot| matches!(slot, Slot::Cold(_))) {
                continue;
            }
            let mut kept = VecDeque::with_capacity(line.len());
            for slot in line.drain(..) {
                match slot {
                    Slot::Cold(run) => runs.push(*run),
                    hot => kept.push_back(hot),
                }
            }
            *line = kept;
        }
        self.len -= runs.iter().map(|run| run.message_count() as usize).sum::<usize>();
        runs
    }

    /// The messages in memory, in delivery order.
    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.slots_in_order().filter_map(|slot| match slot {
            SlotRef::Hot(message) => Some(message),
            SlotRef::Cold(..) => None,
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Message> {
        self.levels.iter_mut().rev().flatten().filter_map(|slot| match slot {
            Slot::Hot(message) => Some(message),
            Slot::Cold(_) => None,
        })
    }

    /// The cold runs, in delivery order, each with its priority level.
    pub fn cold_runs(&self) -> impl Iterator<Item = (u8, &ColdRun)> {
        self.slots_in_order().filter_map(|slot| match slot {
            SlotRef::Cold(level, run) => Some((level, run)),
            SlotRef::Hot(_) => None,
        })
    }

    /// The cold run of `level` whose first member is `first`, if it is still there.
    pub fn cold_run(&self, level: u8, first: MessageSeq) -> Option<&ColdRun> {
        let line = self.levels.get(usize::from(level))?;
        match &line[run_index(line, first)?] {
            Slot::Cold(run) => Some(run),
            Slot::Hot(_) => unreachable!("run_index finds runs"),
        }
    }

    pub(super) fn cold_run_mut(&mut self, level: u8, first: MessageSeq) -> Option<&mut ColdRun> {
        let line = self.levels.get_mut(usize::from(level))?;
        let at = run_index(line, first)?;
        match &mut line[at] {
            Slot::Cold(run) => Some(run),
            Slot::Hot(_) => unreachable!("run_index finds runs"),
        }
    }

    /// Every slot, in delivery order.
    pub fn slots_in_order(&self) -> impl Iterator<Item = SlotRef<'_>> {
        self.levels.iter().enumerate().rev().flat_map(|(level, line)| {
            let level = u8::try_from(level).expect("levels fit a u8");
            line.iter().map(move |slot| match slot {
                Slot::Hot(message) => SlotRef::Hot(message),
                Slot::Cold(run) => SlotRef::Cold(level, run),
            })
        })
    }

    /// Messages read back from the front of the cold run of `level` that starts at `first`:
    /// they take its place before what is left of it (nothing, if they were all of it). The
    /// run's next read starts where the read's walk ended. Returns whether the run led its
    /// level (nothing read back earlier still waits before it), or `None`, changing nothing, if
    /// no such run is there any more (purged meanwhile: the read is stale).
    pub fn thaw(
        &mut self,
        level: u8,
        first: MessageSeq,
        messages: Vec<Message>,
        end: WalkEnd,
    ) -> Option<bool> {
        let line = self.levels.get_mut(usize::from(level))?;
        let at = run_index(line, first)?;
        let Slot::Cold(run) = &mut line[at] else { unreachable!("run_index finds runs") };
        let mut emptied = false;
        for message in &messages {
            assert!(!emptied, "more messages read back than the run held");
            assert_eq!(run.first_seq(), message.seq, "read back out of order");
            emptied = run.pop_front(message.payload_len(), message.record.end());
        }
        run.offset = run.offset.max(end.next_offset);
        run.next_record_len = end.next_record_len;
        run.reading = false;
        // The next member was published no earlier than the last one read (a line is in
        // publish order but for the exceptions `oldest_published_unix_ms` names).
        if let Some(last) = messages.last() {
            run.first_published_unix_ms = run.first_published_unix_ms.max(last.published_unix_ms);
        }
        if emptied {
            line.remove(at);
        }
        // Put in front of the run (usually at the front of the line, with a long line behind
        // it): what lies before it moves aside and back, so the cost is what is read back plus
        // what precedes the run, never the line behind it.
        let before: Vec<Slot> = line.drain(..at).collect();
        for slot in messages.into_iter().map(Slot::Hot).rev().chain(before.into_iter().rev()) {
            line.push_front(slot);
        }
        Some(at == 0)
    }
}

/// Where in `line` the cold run whose first member is `first` is.
fn run_index(line: &VecDeque<Slot>, first: MessageSeq) -> Option<usize> {
    line.iter().position(|slot| matches!(slot, Slot::Cold(run) if run.first_seq() == first))
}

fn slot_seq(slot: &Slot) -> MessageSeq {
    match slot {
        Slot::Hot(message) => message.seq,
        Slot::Cold(run) => run.first_seq(),
    }
}

/// Folds the evicted messages from `from` to the back of `line` into cold runs (continuing a
/// run at `from` if there is one), keeping the others as they are.
fn fold(line: &mut VecDeque<Slot>, from: usize) {
    let tail: Vec<Slot> = line.drain(from..).collect();
    for slot in tail {
        match slot {
            Slot::Hot(message) => push_back_folding(line, message, true),
            cold => line.push_back(cold),
        }
    }
}
