//! A queue: its messages in delivery order, its consumers, its counters.
//!
//! The queue knows nothing of connections or frames; the broker moves messages between the
//! queue and the connections that hold them in flight.

mod message;

pub use message::{Message, MessageExtras};

use std::collections::VecDeque;

use chute_protocol::{QueueCounters, QueueOptions};

use crate::ids::{ConnId, QueueId};

/// A consumer as the queue sees it: a subscription on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConsumerKey {
    pub conn: ConnId,
    pub subscription: u32,
}

#[derive(Debug)]
pub struct Queue {
    pub id: QueueId,
    pub name: String,
    pub options: QueueOptions,
    ready: VecDeque<Message>,
    /// Messages delivered and not yet settled.
    pub in_flight: u64,
    /// Payload bytes of ready and in-flight messages.
    pub bytes: u64,
    consumers: Vec<ConsumerKey>,
    /// Index of the consumer that gets the next delivery (round robin).
    next_consumer: usize,
    pub counters: QueueCounters,
}

impl Queue {
    pub fn new(id: QueueId, name: String, options: QueueOptions) -> Queue {
        Queue {
            id,
            name,
            options,
            ready: VecDeque::new(),
            in_flight: 0,
            bytes: 0,
            consumers: Vec::new(),
            next_consumer: 0,
            counters: QueueCounters::default(),
        }
    }

    // ---- getters ----

    pub fn ready_len(&self) -> u64 {
        self.ready.len() as u64
    }

    /// Every message the queue is responsible for: ready and in flight.
    pub fn messages_len(&self) -> u64 {
        self.ready_len() + self.in_flight
    }

    pub fn consumers(&self) -> &[ConsumerKey] {
        &self.consumers
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    // ---- messages ----

    /// A newly published message joins the back.
    pub fn enqueue(&mut self, message: Message) {
        self.bytes += message.payload_len();
        self.counters.published += 1;
        self.ready.push_back(message);
    }

    /// Takes the next message for delivery; it is now in flight.
    pub fn take_next(&mut self) -> Option<Message> {
        let message = self.ready.pop_front()?;
        self.in_flight += 1;
        self.counters.delivered += 1;
        if message.attempts > 0 {
            self.counters.redelivered += 1;
        }
        Some(message)
    }

    /// An in-flight message was acked: it is gone.
    pub fn settle_acked(&mut self, message: &Message) {
        self.release_in_flight(message);
        self.counters.acked += 1;
    }

    /// An in-flight message returns to the front, ahead of messages never delivered, so a
    /// requeued message is not starved by new publishes.
    pub fn requeue_front(&mut self, message: Message) {
        assert!(
            self.in_flight > 0,
            "requeue of a message that is not in flight"
        );
        self.in_flight -= 1;
        self.ready.push_front(message);
    }

    fn release_in_flight(&mut self, message: &Message) {
        assert!(
            self.in_flight > 0,
            "settle of a message that is not in flight"
        );
        self.in_flight -= 1;
        self.bytes -= message.payload_len();
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&mut self) -> u64 {
        let purged = self.ready.len() as u64;
        let purged_bytes: u64 = self.ready.iter().map(Message::payload_len).sum();
        self.ready.clear();
        self.bytes -= purged_bytes;
        purged
    }

    // ---- consumers ----

    pub fn add_consumer(&mut self, consumer: ConsumerKey) {
        debug_assert!(!self.consumers.contains(&consumer));
        self.consumers.push(consumer);
    }

    pub fn remove_consumer(&mut self, consumer: ConsumerKey) {
        if let Some(index) = self.consumers.iter().position(|c| *c == consumer) {
            self.consumers.remove(index);
            if self.next_consumer > index {
                self.next_consumer -= 1;
            }
        }
    }

    /// Consumers in round-robin order starting with the one whose turn it is.
    pub fn consumers_in_turn(&self) -> impl Iterator<Item = (usize, ConsumerKey)> + '_ {
        let len = self.consumers.len();
        (0..len).map(move |i| {
            let index = (self.next_consumer + i) % len;
            (index, self.consumers[index])
        })
    }

    /// The consumer at `index` got a delivery; the next one's turn comes.
    pub fn advance_turn(&mut self, index: usize) {
        self.next_consumer = (index + 1) % self.consumers.len().max(1);
    }
}
