//! Delivering ready messages to consumers with credit, round robin, in batches.

use chute_protocol::{
    push_to_ranges, DeadReason, Deliver, Durability, FrameKind, BATCH_FRAME_BYTES_TARGET,
    DELIVER_BATCH_MAX,
};

use super::connection::InFlight;
use super::leases::lease_ms;
use super::outbound::Gate;
use super::storage::{SyncNeed, LAZY_SYNC_MS};
use super::Broker;
use crate::ids::{ConnId, QueueId};
use crate::queue::Take;
use crate::storage::records::{Record, Seqs};
use crate::time::Instant;

/// One delivery chosen during a dispatch pass, encoded after the pass.
struct Chosen {
    conn: ConnId,
    subscription: u32,
    tag: u64,
    seq: u64,
    lease_deadline: Instant,
}

impl Broker {
    pub(super) fn dispatch_dirty_queues(&mut self) {
        while let Some(queue) = self.dirty_queues.pop_first() {
            self.dispatch(queue);
        }
    }

    /// Hands ready messages to consumers in turn while any has credit, room, a closed (or
    /// half-open) breaker and rate to spare. Each delivery starts its lease.
    fn dispatch(&mut self, queue_id: QueueId) {
        let now = self.now;
        let outbound_bytes_max = self.config.limits.connection_outbound_bytes_max;
        let (mut chosen, mut expired) = (Vec::new(), Vec::new());
        let mut needs_payload = false;
        let Some(queue) = self.queues.get_mut(&queue_id) else { return };
        let lease_ms_default = queue.options.lease_ms;
        while queue.has_ready() {
            let next = queue.consumers_in_turn().find(|(_, key)| {
                let connection = &self.connections[&key.conn];
                connection.can_take_deliveries(outbound_bytes_max)
                    && connection.subscriptions[&key.subscription].may_deliver(now)
            });
            let Some((index, key)) = next else { break };
            let in_flight_before = queue.in_flight;
            let mut message = match queue.take_next(now, &mut expired) {
                Take::Message(message) => message,
                Take::NeedsPayload => {
                    // A consumer has credit for it: read it back (no credit, no reads).
                    needs_payload = true;
                    break;
                }
                Take::Empty => break,
            };
            assert_eq!(queue.in_flight, in_flight_before + 1, "a delivery counts in flight once");
            queue.advance_turn(index);
            message.attempts += 1;
            message.matches_record = false;
            let seq = message.seq.0;
            let connection = self.connections.get_mut(&key.conn).expect("consumer's connection");
            connection.outbound.chosen_bytes += message.delivery_size_estimate() as u64;
            let subscription = connection
                .subscriptions
                .get_mut(&key.subscription)
                .expect("consumer's subscription");
            subscription.on_delivery(now);
            let lease_ms = lease_ms(None, subscription.lease_ms, lease_ms_default);
            let lease_deadline = now.plus_ms(lease_ms.into());
            assert!(lease_deadline > now, "a lease that runs out as it starts");
            let tag = connection.next_tag;
            connection.next_tag += 1;
            connection.delivered_total += 1;
            let in_flight = InFlight {
                queue: queue_id,
                subscription: key.subscription,
                message,
                lease_deadline,
            };
            connection.in_flight.insert(tag, in_flight);
            let subscription = key.subscription;
            chosen.push(Chosen { conn: key.conn, subscription, tag, seq, lease_deadline });
        }
        for c in &chosen {
            self.arm_lease_timer(c.conn, c.lease_deadline);
        }
        for message in expired {
            self.dispose(queue_id, message, DeadReason::Expired);
        }
        let gate = self.log_delivered(queue_id, &chosen);
        self.encode_deliveries(chosen, gate);
        if needs_payload {
            self.read_payloads(queue_id);
        }
        self.arm_queue_timer(queue_id);
    }

    /// Writes the `Delivered` record that makes these attempts count after a crash. Returns what
    /// the deliveries must wait for: on queues that limit attempts, the record must be as
    /// durable as the queue promises (synced for `Always`, written for `Interval`), so a crash
    /// can never forget an attempt a consumer saw; elsewhere nothing, and the record is synced
    /// lazily.
    fn log_delivered(&mut self, queue_id: QueueId, chosen: &[Chosen]) -> Gate {
        let options = &self.queues[&queue_id].options;
        if chosen.is_empty() || options.durability == Durability::None {
            return Gate::default();
        }
        let (limited, durability) = (options.attempts_max.is_some(), options.durability);
        debug_assert!(
            chosen.iter().all(|c| self.connections[&c.conn].in_flight.get(c.tag).is_some()),
            "a delivery logged that is not in flight"
        );
        let mut seqs = Vec::new();
        for c in chosen {
            push_to_ranges(&mut seqs, c.seq);
        }
        let record = Record::<&[u8]>::Delivered(Seqs { queue: queue_id.0, seqs });
        match durability {
            Durability::Always if limited => {
                Gate::synced(self.append_record(&record, SyncNeed::Now))
            }
            Durability::Interval { .. } if limited => {
                Gate::written(self.append_record(&record, SyncNeed::Within(LAZY_SYNC_MS)))
            }
            _ => {
                self.append_record(&record, SyncNeed::Within(LAZY_SYNC_MS));
                Gate::default()
            }
        }
    }

    /// Groups the chosen deliveries by connection and subscription into `Deliver` frames that
    /// respect the batch and frame size limits.
    fn encode_deliveries(&mut self, mut chosen: Vec<Chosen>, gate: Gate) {
        // Stable sort by connection only: a connection's tags must reach it in increasing
        // order, so deliveries to its subscriptions are framed in runs, in tag order.
        chosen.sort_by_key(|c| c.conn);
        let mut rest = chosen.as_slice();
        while let Some(first) = rest.first() {
            let (conn, subscription) = (first.conn, first.subscription);
            let run = rest
                .iter()
                .take_while(|c| c.conn == conn && c.subscription == subscription)
                .count();
            assert!(run > 0, "a run holds at least its first delivery");
            debug_assert!(
                rest[..run].windows(2).all(|pair| pair[0].tag < pair[1].tag),
                "{conn}: deliveries framed out of tag order"
            );
            let connection = self.connections.get_mut(&conn).expect("consumer's connection");
            connection.outbound.chosen_bytes = 0;
            connection.outbound.raise_gate(gate);
            let mut deliveries = Vec::with_capacity(run.min(DELIVER_BATCH_MAX));
            let mut frame_bytes = 16;
            let frame_bytes_max =
                (connection.limits.frame_size_max as usize).min(BATCH_FRAME_BYTES_TARGET);
            for c in &rest[..run] {
                let message =
                    &connection.in_flight.get(c.tag).expect("chosen, so in flight").message;
                let delivery_bytes = message.delivery_size_estimate();
                let delivery = message.to_delivery(c.tag);
                let full = deliveries.len() == DELIVER_BATCH_MAX
                    || frame_bytes + delivery_bytes > frame_bytes_max;
                if full && !deliveries.is_empty() {
                    let batch =
                        Deliver { subscription, deliveries: std::mem::take(&mut deliveries) };
                    connection
                        .send(FrameKind::Deliver, &batch)
                        .expect("batches close below the frame limit by over-estimate");
                    frame_bytes = 16;
                }
                frame_bytes += delivery_bytes;
                deliveries.push(delivery);
            }
            connection
                .send(FrameKind::Deliver, &Deliver { subscription, deliveries })
                .expect("batches close below the frame limit by over-estimate");
            self.mark_dirty(conn);
            rest = &rest[run..];
        }
    }
}
