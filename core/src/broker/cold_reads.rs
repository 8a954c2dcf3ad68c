//! Reading cold runs back (docs/STORAGE.md §18): a read of a run's first records comes back,
//! its `Published` records are walked in file order, and the run's messages among them are
//! rebuilt as recovery builds them and take the run's place at the front of the line.

use bytes::Bytes;
use chute_protocol::PRIORITY_MAX;

use super::payloads::PendingRead;
use super::recover::message_from;
use super::Broker;
use crate::ids::{Lsn, MessageSeq};
use crate::queue::{own_payload, ColdRun, Message, Payload, RecordAt};
use crate::storage::failure::OsError;
use crate::storage::read::{walk_published, WalkEnd};
use crate::storage::records::StoredMessage;
use crate::storage::recovery::RecoveredMessage;
use crate::time::WallClock;

impl Broker {
    /// A read of the cold run of `level` starting at `first` completed: its first messages take
    /// its place, and the next records are asked for ahead of need. Stale (the run was
    /// purged meanwhile) it is dropped, even a failure; otherwise a failure, a record that
    /// fails its checks, or a member missing from the records halts the broker: they were
    /// synced and confirmed.
    pub(super) fn handle_cold_read(
        &mut self,
        read: &PendingRead,
        level: u8,
        first: MessageSeq,
        result: Result<Bytes, OsError>,
    ) {
        let Some(run) = self.queues.get(&read.queue).and_then(|q| q.cold_run(level, first)) else {
            return;
        };
        let thawed = result.map_err(|error| read.failed(read.offset, error)).and_then(|bytes| {
            self.thawed_messages(read, run, level, &bytes).map_err(|e| read.damaged(e))
        });
        let (messages, end) = match thawed {
            Ok(thawed) => thawed,
            Err(failure) => return self.halt(failure),
        };
        let queue = self.queues.get_mut(&read.queue).expect("checked above");
        let read_ahead = queue
            .thaw(level, first, messages, end)
            .expect("the run was there when the read was parsed");
        let consumed = !queue.consumers().is_empty();
        self.dirty_queues.insert(read.queue);
        // The consumers that asked for this read will want what follows: ask for it while they
        // take these, so that a cold drain does not wait for each read.
        if read_ahead && consumed {
            self.read_payloads(read.queue);
        }
    }

    /// The first messages of `run` (of `level`) among the records of a read of it, in order,
    /// and where the next read starts; or the offset of what is wrong and why.
    fn thawed_messages(
        &self,
        read: &PendingRead,
        run: &ColdRun,
        level: u8,
        bytes: &Bytes,
    ) -> Result<(Vec<Message>, WalkEnd), (u64, String)> {
        let keys = self.read_keys(read)?;
        let clock = self.config.wall_clock();
        let mut members = run.seqs().peekable();
        let mut messages = Vec::new();
        let end = walk_published(bytes, read.offset, read.base_lsn, keys, |at, published| {
            let member = members.peek() == Some(&published.message.seq);
            if published.queue == read.queue.0 && member {
                members.next();
                messages.push(thawed(read.base_lsn, at, published.message, clock));
            }
            members.peek().is_some()
        })?;
        if let Some(wrong) = messages.iter().find(|m| m.priority.min(PRIORITY_MAX) != level) {
            let reason =
                format!("message {} has priority {}, not {level}", wrong.seq.0, wrong.priority);
            return Err((u64::from(wrong.record.offset), reason));
        }
        if let Some(missing) = members.next() {
            // The read spans synced records of the run only: the file holds every byte of it.
            if (bytes.len() as u64) < read.len {
                let reason = format!("the read returned {} of {} bytes", bytes.len(), read.len);
                return Err((read.offset, reason));
            }
            if end.next_offset >= run.end {
                let reason = format!("message {missing} is not among its run's records");
                return Err((run.end, reason));
            }
        }
        Ok((messages, end))
    }
}

/// A cold message as its record holds it, its payload and header values copied out of the
/// read's buffer (which they would otherwise keep alive whole). It is ready: a due time it
/// had has passed.
fn thawed(base_lsn: Lsn, at: RecordAt, mut stored: StoredMessage, clock: WallClock) -> Message {
    let payload = own_payload(&stored.payload);
    stored.payload = Bytes::new();
    stored.not_before_unix_ms = None;
    for header in &mut stored.headers {
        header.value = own_payload(&header.value);
    }
    message_from(RecoveredMessage::new(base_lsn, at, Payload::Held(payload), stored), clock)
}
