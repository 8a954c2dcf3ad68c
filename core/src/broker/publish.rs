//! Publishing: validating each message, placing it in its queue, confirming it.

use chute_protocol::{
    Destination, Durability, ErrorCode, FrameKind, Publish, PublishFailure, PublishMessage,
    PublishRejected, GROUP_KEY_LEN_MAX, MESSAGE_ID_LEN_MAX, NAME_LEN_MAX, PRIORITY_MAX,
};

use super::outbound::Gate;
use super::storage::{stored, SyncNeed};
use super::Broker;
use crate::ids::{ConnId, MessageSeq, QueueId};
use crate::queue::{Message, MessageExtras};
use crate::storage::records::Record;

/// Why one message of a batch was refused.
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Broker {
    pub(super) fn handle_publish(&mut self, conn: ConnId, publish: Publish) {
        let batch_max = self.config.limits.publish_batch_max as usize;
        let connection = self.connection_mut(conn);
        let first_seq = connection.next_publish_seq;
        connection.next_publish_seq += publish.messages.len() as u64;
        if publish.messages.len() > batch_max {
            let refusal = Refusal {
                code: ErrorCode::INVALID_ARGUMENT,
                message: format!(
                    "{} messages in one Publish; the limit is {batch_max}",
                    publish.messages.len()
                ),
            };
            return self.refuse_all(conn, first_seq, publish.messages.len(), &refusal);
        }
        let target = match self.resolve_destination(&publish.destination) {
            Ok(target) => target,
            Err(refusal) => {
                return self.refuse_all(conn, first_seq, publish.messages.len(), &refusal)
            }
        };
        let mut failures = Vec::new();
        for (seq, message) in (first_seq..).zip(publish.messages) {
            match self.accept_message(target, message) {
                Ok(gate) => self.connection_mut(conn).confirm(seq, gate),
                Err(refusal) => failures.push(failure(seq, &refusal)),
            }
        }
        self.dirty_queues.insert(target);
        if !failures.is_empty() {
            self.reply(conn, FrameKind::PublishRejected, &PublishRejected { failures });
        }
    }

    fn resolve_destination(&self, destination: &Destination) -> Result<QueueId, Refusal> {
        let (Destination::Queue(name) | Destination::Topic(name)) = destination;
        if name.len() > NAME_LEN_MAX {
            return Err(Refusal {
                code: ErrorCode::INVALID_ARGUMENT,
                message: format!("destination name is longer than {NAME_LEN_MAX} bytes"),
            });
        }
        match destination {
            Destination::Queue(name) => self.queue_ids.get(name).copied().ok_or_else(|| Refusal {
                code: ErrorCode::NO_SUCH_QUEUE,
                message: format!("queue {name:?} does not exist"),
            }),
            Destination::Topic(topic) => Err(Refusal {
                code: ErrorCode::UNROUTABLE,
                message: format!("topic {topic:?} matches no binding"),
            }),
        }
    }

    /// Stores a message in its queue (and in the log, if the queue is durable); returns what
    /// its confirm must wait for.
    fn accept_message(
        &mut self,
        target: QueueId,
        message: PublishMessage,
    ) -> Result<Gate, Refusal> {
        self.check_message(&message)?;
        self.check_room(target, message.payload.len() as u64)?;
        let seq = MessageSeq(self.next_message_seq);
        self.next_message_seq += 1;
        let extras = MessageExtras {
            id: message.id,
            headers: message.headers,
            group: message.group,
            topic: None,
        };
        let mut message = Message {
            seq,
            payload: message.payload,
            published_unix_ms: self.config.wall_clock().unix_ms(self.now),
            attempts: 0,
            priority: message.priority,
            segment: None,
            extras: extras.boxed_if_any(),
        };
        let gate = self.log_published(target, &mut message);
        let queue = self.queues.get_mut(&target).expect("destination resolved");
        queue.enqueue(message, gate);
        if queue.has_pending() {
            self.pending_queues.insert(target);
        }
        Ok(gate)
    }

    /// Writes the `Published` record of a message to a logged queue; returns what the message
    /// (its confirm and its first delivery) must wait for.
    fn log_published(&mut self, target: QueueId, message: &mut Message) -> Gate {
        let (need, gate_for): (SyncNeed, fn(u64) -> Gate) =
            match self.queues[&target].options.durability {
                Durability::None => return Gate::default(),
                Durability::Always => (SyncNeed::Now, Gate::synced),
                Durability::Interval { sync_interval_ms } => {
                    (SyncNeed::Within(sync_interval_ms.into()), Gate::written)
                }
            };
        let record = Record::Published { queue: target.0, message: stored(message) };
        let end = self.append_record(&record, need);
        let segment = self.log.active_base();
        message.segment = Some(segment);
        self.log.add_live(segment, message.payload_len());
        gate_for(end)
    }

    /// Refuses a message its queue has no room for.
    fn check_room(&self, target: QueueId, payload_len: u64) -> Result<(), Refusal> {
        let queue_messages_max = self.config.limits.queue_messages_max;
        let queue = &self.queues[&target];
        let messages_max =
            queue.options.messages_max.unwrap_or(queue_messages_max).min(queue_messages_max);
        if queue.messages_len() >= messages_max {
            return Err(Refusal {
                code: ErrorCode::QUEUE_FULL,
                message: format!("queue {:?} is full ({messages_max} messages)", queue.name),
            });
        }
        if let Some(bytes_max) = queue.options.bytes_max {
            if queue.bytes + payload_len > bytes_max {
                return Err(Refusal {
                    code: ErrorCode::QUEUE_FULL,
                    message: format!("queue {:?} is full ({bytes_max} bytes)", queue.name),
                });
            }
        }
        Ok(())
    }

    /// Rules every message must follow, whatever its queue.
    fn check_message(&self, message: &PublishMessage) -> Result<(), Refusal> {
        let payload_max = self.config.limits.payload_size_max as usize;
        if message.payload.len() > payload_max {
            return Err(Refusal {
                code: ErrorCode::MESSAGE_TOO_LARGE,
                message: format!(
                    "payload of {} bytes exceeds {payload_max}",
                    message.payload.len()
                ),
            });
        }
        let invalid = |message: String| Err(Refusal { code: ErrorCode::INVALID_ARGUMENT, message });
        if message.priority > PRIORITY_MAX {
            return invalid(format!("priority {} is above {PRIORITY_MAX}", message.priority));
        }
        if message.id.as_ref().is_some_and(|id| id.len() > MESSAGE_ID_LEN_MAX) {
            return invalid(format!("message id is longer than {MESSAGE_ID_LEN_MAX} bytes"));
        }
        if message.group.as_ref().is_some_and(|g| g.len() > GROUP_KEY_LEN_MAX) {
            return invalid(format!("group key is longer than {GROUP_KEY_LEN_MAX} bytes"));
        }
        if message.headers.iter().any(|h| h.name.len() > NAME_LEN_MAX) {
            return invalid(format!("a header name is longer than {NAME_LEN_MAX} bytes"));
        }
        Ok(())
    }

    fn refuse_all(&mut self, conn: ConnId, first_seq: u64, count: usize, refusal: &Refusal) {
        if count == 0 {
            return;
        }
        let failures =
            (first_seq..first_seq + count as u64).map(|seq| failure(seq, refusal)).collect();
        self.reply(conn, FrameKind::PublishRejected, &PublishRejected { failures });
    }
}

fn failure(seq: u64, refusal: &Refusal) -> PublishFailure {
    PublishFailure { seq, code: refusal.code, retry_after_ms: 0, message: refusal.message.clone() }
}
