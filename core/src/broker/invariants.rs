//! What must hold between any two inputs. Debug builds check the cheap part at the end of every
//! input; the simulator checks all of it after every step, so a failing seed points at the
//! input that broke the state rather than at the oracle noticing much later.

use std::collections::BTreeMap;

use super::connection::{ConnState, PauseReason};
use super::Broker;
use crate::ids::{Lsn, QueueId};
use crate::queue::{ConsumerKey, SegmentRef};
use crate::storage::format::SEGMENT_HEADER_LEN;

impl Broker {
    /// Checks every invariant, including the ones that walk every message (segment liveness).
    /// Panics naming the first one broken. Meant for tests and the simulator: it costs a walk
    /// over everything the broker holds.
    pub fn check_invariants(&self) {
        self.check_connection_invariants();
        self.check_liveness_counts();
        for queue in self.queues.values() {
            queue.check_evicted_bytes();
        }
        self.check_cold_runs();
    }

    /// Every cold run is well formed and lies in a segment the log still has.
    fn check_cold_runs(&self) {
        for queue in self.queues.values() {
            for (_, run) in queue.cold_runs() {
                let base = run.segment.get().expect("a cold run's records are logged");
                let segment = self.log.segments().get(&base).expect("a cold run's segment exists");
                run.check(SEGMENT_HEADER_LEN as u64 + segment.end_lsn.bytes_since(base));
            }
        }
    }

    /// The invariants that cost a walk over connections, queues and deliveries in flight
    /// (which credit bounds), not over queued messages.
    pub(super) fn check_connection_invariants(&self) {
        let log = &self.log;
        assert!(log.synced_lsn() <= log.end_lsn(), "synced past the end of the log");
        assert!(log.written_lsn() <= log.end_lsn(), "written past the end of the log");
        let mut in_flight: BTreeMap<QueueId, u64> = BTreeMap::new();
        let mut partial_held = 0;
        for (conn, connection) in &self.connections {
            partial_held += connection.partial_held_bytes;
            let closing = connection.state == ConnState::Closing;
            assert!(
                !closing || connection.subscriptions.is_empty() && connection.in_flight.is_empty(),
                "{conn} is closing but still consumes"
            );
            for (id, subscription) in &connection.subscriptions {
                let credit_max = connection.limits.credit_max;
                assert!(subscription.credit <= credit_max, "{conn}/{id}: credit above credit_max");
                let key = ConsumerKey { conn: *conn, subscription: *id };
                let queue = self.queues.get(&subscription.queue);
                assert!(
                    queue.is_some_and(|q| q.consumers().contains(&key)),
                    "{conn}/{id} consumes from a queue that does not list it"
                );
            }
            for (_, delivery) in connection.in_flight.iter() {
                *in_flight.entry(delivery.queue).or_default() += 1;
            }
            let reasons = connection.pause_reasons();
            assert_eq!(
                reasons.contains(PauseReason::Alarm),
                connection.held_publish.is_some(),
                "{conn}: alarm pause out of step with its held publish"
            );
            assert!(
                connection.held_publish.is_none() || self.alarms.any() || self.shutting_down,
                "{conn}: a publish held with no alarm raised"
            );
            assert_eq!(
                reasons.contains(PauseReason::PartialFrames),
                self.partial.paused.contains(conn),
                "{conn}: partial-frame pause out of step with the broker's list"
            );
        }
        assert_eq!(partial_held, self.partial.held_bytes, "partial frame bytes out of step");
        for (id, queue) in &self.queues {
            assert_eq!(queue.id, *id, "queue filed under another id");
            assert_eq!(self.queue_ids.get(&queue.name), Some(id), "queue {id:?} not found by name");
            assert_eq!(
                queue.in_flight,
                in_flight.get(id).copied().unwrap_or(0),
                "queue {:?} counts deliveries in flight that no connection holds, or misses some",
                queue.name
            );
            for key in queue.consumers() {
                let subscription = self
                    .connections
                    .get(&key.conn)
                    .and_then(|c| c.subscriptions.get(&key.subscription));
                assert!(
                    subscription.is_some_and(|s| s.queue == *id),
                    "queue {:?} lists a consumer that is not subscribed to it",
                    queue.name
                );
            }
            assert_eq!(
                queue.has_pending(),
                self.pending_queues.contains(id),
                "queue {:?}: waiting for the log, but not in the pending list (or the reverse)",
                queue.name
            );
        }
        assert_eq!(self.queue_ids.len(), self.queues.len(), "queue names out of step with ids");
    }

    /// Every logged message the broker holds is counted live in its segment, and nothing else.
    fn check_liveness_counts(&self) {
        let mut live: BTreeMap<Lsn, (u64, u64)> = BTreeMap::new();
        let mut count = |segment: SegmentRef, messages: u64, bytes: u64| {
            if let Some(segment) = segment.get() {
                let entry = live.entry(segment).or_default();
                entry.0 += messages;
                entry.1 += bytes;
            }
        };
        for queue in self.queues.values() {
            queue.held().for_each(|m| count(m.segment, 1, m.payload_len()));
            for (_, run) in queue.cold_runs() {
                assert!(run.segment.is_some(), "a cold run's records are logged");
                count(run.segment, run.message_count(), run.payload_bytes);
            }
        }
        for connection in self.connections.values() {
            for in_flight in connection.in_flight.values() {
                count(in_flight.message.segment, 1, in_flight.message.payload_len());
            }
        }
        for (base, segment) in self.log.segments() {
            let (messages, bytes) = live.remove(base).unwrap_or_default();
            assert_eq!(
                (segment.live_messages, segment.live_bytes),
                (messages, bytes),
                "segment {base}: live messages and bytes out of step with the queues"
            );
        }
        assert!(live.is_empty(), "messages live in segments the log does not know: {live:?}");
    }
}
