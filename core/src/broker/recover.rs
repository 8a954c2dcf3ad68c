//! Starting a broker from what the log holds.

use super::Broker;
use crate::config::BrokerConfig;
use crate::ids::{MessageSeq, QueueId};
use crate::queue::{Message, MessageExtras, Queue};
use crate::storage::log::Log;
use crate::storage::recovery::{recover_log, RecoveryError, SegmentFile, Truncation};
use crate::time::Instant;

/// What recovery found, for the driver's log line and for the torn tail it must cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub queues: u64,
    pub messages: u64,
    pub segments: u64,
    pub records: u64,
    /// Cut the newest segment here before appending anything (before handing the broker's
    /// first storage request to the worker).
    pub truncation: Option<Truncation>,
}

impl Broker {
    /// A broker rebuilt from segment files (oldest first; an empty list is a new broker). Every
    /// message that was not acked is ready again; a message that was delivered before the
    /// crash has that attempt counted.
    pub fn recover(
        config: BrokerConfig,
        now: Instant,
        files: &[SegmentFile],
    ) -> Result<(Broker, RecoveryReport), RecoveryError> {
        let recovered = recover_log(files)?;
        let Some(last_segment) = recovered.last_segment else {
            let report = RecoveryReport {
                queues: 0,
                messages: 0,
                segments: 0,
                records: 0,
                truncation: recovered.truncation,
            };
            return Ok((Broker::new_at(config, now, recovered.end_lsn), report));
        };
        let log = Log::resume(
            config.storage.clone(),
            recovered.segments.clone(),
            last_segment,
            recovered.end_lsn,
        );
        let mut broker = Broker::with_log(config, now, log);
        broker.next_queue_id = recovered.counters.next_queue_id;
        broker.next_message_seq = recovered.counters.next_message_seq;
        let mut messages = 0;
        for (id, recovered_queue) in recovered.queues {
            let id = QueueId(id);
            let mut queue = Queue::new(id, recovered_queue.name.clone(), recovered_queue.options);
            for (segment, stored) in recovered_queue.messages.into_values() {
                queue.restore(message_from(stored, segment));
                messages += 1;
            }
            broker.queue_ids.insert(recovered_queue.name, id);
            broker.queues.insert(id, queue);
        }
        // The segment we resume may lack a checkpoint (a crash right after it was created):
        // write one so older segments can always be deleted safely.
        broker.write_checkpoint();
        let report = RecoveryReport {
            queues: broker.queues.len() as u64,
            messages,
            segments: broker.log.segments().len() as u64,
            records: recovered.records,
            truncation: recovered.truncation,
        };
        Ok((broker, report))
    }

    /// A new broker whose log starts at `base_lsn` (after a previous log that held nothing).
    pub(super) fn new_at(config: BrokerConfig, now: Instant, base_lsn: u64) -> Broker {
        let log = Log::create(config.storage.clone(), base_lsn);
        let mut broker = Broker::with_log(config, now, log);
        broker.write_checkpoint();
        broker
    }
}

fn message_from(stored: crate::storage::records::StoredMessage, segment: u64) -> Message {
    let extras = MessageExtras {
        id: stored.id,
        headers: stored.headers,
        group: stored.group,
        topic: stored.topic,
    };
    Message {
        seq: MessageSeq(stored.seq),
        payload: stored.payload,
        published_unix_ms: stored.published_unix_ms,
        attempts: stored.attempts,
        priority: stored.priority,
        segment: Some(segment),
        extras: extras.boxed_if_any(),
    }
}
