//! Dead-letter queues seen from outside: list and inspect their entries without consuming
//! them, and redrive entries to the queues they came from.

use chute_protocol::{
    push_to_ranges, DeadLetter, DeadLetterSummary, DlqInspect, DlqInspectOk, DlqList, DlqListOk,
    DlqRedrive, Done, ErrorCode, FrameKind,
};

use bytes::Bytes;

use super::admin::page_size;
use super::payloads::PendingRead;
use super::storage::{SyncNeed, SEQ_RANGES_PER_RECORD_MAX};
use super::Broker;
use crate::auth::AuditKind;
use crate::ids::{ConnId, MessageSeq, QueueId};
use crate::queue::{Message, RecordAt};
use crate::storage::failure::OsError;
use crate::storage::read::payload_in;
use crate::storage::records::{Record, Redriven};

impl Broker {
    pub(super) fn handle_dlq_list(&mut self, conn: ConnId, list: DlqList) {
        let request_id = list.request_id;
        let Some(queue) = self.lookup_queue(conn, request_id, &list.queue) else { return };
        let limit = page_size(list.limit);
        let after = list.after.unwrap_or(0);
        let mut entries: Vec<&Message> =
            self.queues[&queue].held().filter(|m| m.dead().is_some() && m.seq.0 > after).collect();
        entries.sort_by_key(|m| m.seq);
        debug_assert!(
            entries.windows(2).all(|pair| pair[0].seq < pair[1].seq),
            "a dead letter twice"
        );
        let more = entries.len() > limit;
        let entries = entries.into_iter().take(limit).map(|m| self.summary(m)).collect();
        self.reply(conn, FrameKind::DlqListOk, &DlqListOk { request_id, entries, more });
    }

    pub(super) fn handle_dlq_inspect(&mut self, conn: ConnId, inspect: DlqInspect) {
        let request_id = inspect.request_id;
        let Some(queue) = self.lookup_queue(conn, request_id, &inspect.queue) else { return };
        let found =
            self.queues[&queue].held().find(|m| m.seq.0 == inspect.dead_id && m.dead().is_some());
        let Some(message) = found else {
            let text = format!("no dead letter {} in {:?}", inspect.dead_id, inspect.queue);
            return self.reply_error(conn, request_id, ErrorCode::NO_SUCH_DEAD_LETTER, text);
        };
        // The cache never evicts a dead letter's payload, but a message may reach the
        // dead-letter queue with its payload on disk (expired in a backlog, or recovered
        // beyond the cache): then the answer waits for its record to be read back.
        let Some(payload) = message.payload.held().cloned() else {
            let (seq, segment, at) = (message.seq, message.segment, message.record);
            if !self.read_for_inspection((conn, request_id), queue, seq, segment, at) {
                let text = format!(
                    "dead letter {}'s payload is on disk and the broker has {} reads in \
                     flight, its most; try again",
                    inspect.dead_id,
                    super::payloads::READS_IN_FLIGHT_MAX
                );
                self.reply_error(conn, request_id, ErrorCode::RESOURCE_LIMIT, text);
            }
            return;
        };
        let entry = self.dead_letter(message, payload);
        self.reply(conn, FrameKind::DlqInspectOk, &DlqInspectOk { request_id, entry });
    }

    /// The answer to an inspection that read the dead letter's record back. The dead letter
    /// may have left meanwhile (consumed, redriven): then it is no longer there to inspect. A
    /// record that did not read back whole halts the broker, as any failed read does.
    pub(super) fn answer_inspection(
        &mut self,
        read: &PendingRead,
        (conn, request_id): (ConnId, u32),
        seq: MessageSeq,
        at: RecordAt,
        result: Result<Bytes, OsError>,
    ) {
        if self.inspected(read.queue, seq, at).is_none() {
            if self.connections.contains_key(&conn) {
                let text = format!("no dead letter {} in that queue any more", seq.0);
                self.reply_error(conn, request_id, ErrorCode::NO_SUCH_DEAD_LETTER, text);
            }
            return;
        }
        let parsed = result.map_err(|error| read.failed(read.offset, error)).and_then(|bytes| {
            let keys = self.read_keys(read).map_err(|e| read.damaged(e))?;
            payload_in(&bytes, read.offset, read.base_lsn, seq.0, at, keys)
                .map_err(|reason| read.damaged((read.offset, reason)))
        });
        let payload = match parsed {
            Ok(payload) => payload,
            Err(failure) => return self.halt(failure),
        };
        if self.connections.contains_key(&conn) {
            let message = self.inspected(read.queue, seq, at).expect("found above");
            let entry = self.dead_letter(message, payload);
            self.reply(conn, FrameKind::DlqInspectOk, &DlqInspectOk { request_id, entry });
        }
    }

    /// Dead letter `seq` of `queue`, if it is still there with its record at `at`.
    fn inspected(&self, queue: QueueId, seq: MessageSeq, at: RecordAt) -> Option<&Message> {
        let queue = self.queues.get(&queue)?;
        queue.held().find(|m| m.seq == seq && m.dead().is_some() && m.record == at)
    }

    fn dead_letter(&self, message: &Message, payload: Bytes) -> DeadLetter {
        DeadLetter {
            summary: self.summary(message),
            headers: message.extras.as_deref().map(|e| e.headers.clone()).unwrap_or_default(),
            payload,
        }
    }

    fn summary(&self, message: &Message) -> DeadLetterSummary {
        let dead = message.dead().expect("a dead letter");
        DeadLetterSummary {
            dead_id: message.seq.0,
            message_id: message.id().map(str::to_string),
            source_queue: self
                .queues
                .get(&dead.source)
                .map_or_else(|| "(deleted)".to_string(), |q| q.name.clone()),
            reason: dead.reason,
            dead_unix_ms: dead.dead_unix_ms,
            published_unix_ms: message.published_unix_ms,
            payload_len: message.payload_len() as u32,
            history: message.history().to_vec(),
        }
    }

    /// Moves entries back to their source queues with attempts reset (the history is kept). Entries
    /// whose source queue is gone, or that no longer exist, are skipped; `Done.count` says how
    /// many moved.
    pub(super) fn handle_dlq_redrive(&mut self, conn: ConnId, redrive: DlqRedrive) {
        let request_id = redrive.request_id;
        let Some(dlq) = self.lookup_queue(conn, request_id, &redrive.queue) else { return };
        let moved = self.redrive(dlq, &redrive.dead_ids);
        self.audit_done(AuditKind::Redriven, conn, redrive.queue);
        self.reply_durable(conn, FrameKind::Done, &Done { request_id, count: moved });
    }

    fn redrive(&mut self, dlq: QueueId, dead_ids: &[u64]) -> u64 {
        let sources: std::collections::BTreeSet<QueueId> = self.queues.keys().copied().collect();
        let ids: std::collections::BTreeSet<u64> = dead_ids.iter().copied().collect();
        let wanted = |m: &Message| {
            m.dead().is_some_and(|d| sources.contains(&d.source))
                && (ids.is_empty() || ids.contains(&m.seq.0))
        };
        let dlq_before = self.queues[&dlq].messages_len();
        let mut taken = self.queues.get_mut(&dlq).expect("queue exists").extract(wanted);
        taken.sort_by_key(|m| m.seq);
        let mut logged = Vec::new();
        let moved = taken.len() as u64;
        // Forgetting a message that held its group releases the group's next one in the DLQ.
        self.dirty_queues.insert(dlq);
        for mut message in taken {
            self.queues.get_mut(&dlq).expect("queue exists").forget(&message);
            let source = message.dead().expect("a dead letter").source;
            if message.segment.is_some() {
                push_to_ranges(&mut logged, message.seq.0);
            }
            message.attempts = 0;
            message.matches_record = false;
            let ttl_ms = self.queues[&source].options.ttl_ms;
            message.expires_at =
                ttl_ms.map_or(crate::time::Instant::NEVER, |ms| self.now.plus_ms(ms));
            // The history stays: it is the message's life across dead-letter cycles (like
            // RabbitMQ's x-death), and what tells a later delivery it is a redelivery.
            message.edit_extras(|e| e.dead = None);
            self.move_into(source, message);
        }
        // A queue never dead-letters into itself, so nothing moved comes back to the DLQ.
        assert_eq!(self.queues[&dlq].messages_len(), dlq_before - moved, "redrive kept a message");
        let at_unix_ms = self.config.wall_clock().unix_ms(self.now);
        for chunk in logged.chunks(SEQ_RANGES_PER_RECORD_MAX) {
            let record = Redriven { queue: dlq.0, seqs: chunk.to_vec(), at_unix_ms };
            self.append_record(&Record::<&[u8]>::Redriven(record), SyncNeed::Now);
        }
        moved
    }
}
