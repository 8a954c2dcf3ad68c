//! Each queue's one timer: the earliest moment something in it comes due by itself (a delayed
//! message or retry, an expiry, a dedup window closing) or a consumer blocked by its breaker
//! or delivery rate may take deliveries again.

use chute_protocol::DeadReason;

use super::timers::TimerKey;
use super::Broker;
use crate::ids::QueueId;

impl Broker {
    /// (Re-)arms a queue's single timer for the earliest moment something in it changes by
    /// itself, or a blocked consumer may take deliveries again.
    pub(super) fn arm_queue_timer(&mut self, queue_id: QueueId) {
        let now = self.now;
        let Some(queue) = self.queues.get(&queue_id) else { return };
        let mut deadline = queue.next_deadline();
        if queue.has_ready() {
            let unblocked = queue
                .consumers()
                .iter()
                .filter_map(|key| {
                    self.connections.get(&key.conn)?.subscriptions.get(&key.subscription)
                })
                .filter_map(|subscription| subscription.unblocks_at(now))
                .min();
            deadline = deadline.into_iter().chain(unblocked).min();
        }
        let queue = self.queues.get_mut(&queue_id).expect("queue exists");
        self.timers.set(&mut queue.timer_at, deadline, TimerKey::Queue(queue_id));
    }

    pub(super) fn fire_queue_timer(&mut self, queue_id: QueueId) {
        let now = self.now;
        let Some(queue) = self.queues.get_mut(&queue_id) else { return };
        queue.timer_at = None;
        queue.release_due(now);
        queue.dedup.expire(now);
        let expired = queue.take_expired(now);
        debug_assert!(expired.iter().all(|m| m.is_expired(now)), "took a message still alive");
        for message in expired {
            self.dispose(queue_id, message, DeadReason::Expired);
        }
        self.dirty_queues.insert(queue_id);
        self.arm_queue_timer(queue_id);
    }
}
