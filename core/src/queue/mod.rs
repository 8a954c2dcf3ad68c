//! A queue: its messages in delivery order, its consumers, its counters.
//!
//! The queue knows nothing of connections or frames; the broker moves messages between the
//! queue and the connections that hold them in flight.

mod message;

pub use message::{Message, MessageExtras};

use std::collections::VecDeque;

use chute_protocol::{QueueCounters, QueueOptions};

use crate::ids::{ConnId, QueueId};
use crate::storage::gate::Gate;

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
    /// Published messages waiting for the log before they may be delivered, in log order.
    pending: VecDeque<(Gate, Message)>,
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
            pending: VecDeque::new(),
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

    /// Every message the queue is responsible for: waiting for the log, ready, in flight.
    pub fn messages_len(&self) -> u64 {
        self.pending.len() as u64 + self.ready_len() + self.in_flight
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn consumers(&self) -> &[ConsumerKey] {
        &self.consumers
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    // ---- messages ----

    /// A newly published message joins the back, deliverable once the log passes `gate`.
    pub fn enqueue(&mut self, message: Message, gate: Gate) {
        self.bytes += message.payload_len();
        self.counters.published += 1;
        if gate == Gate::default() && self.pending.is_empty() {
            self.ready.push_back(message);
        } else {
            self.pending.push_back((gate, message));
        }
    }

    /// A message recovered from the log joins the back, deliverable at once.
    pub fn restore(&mut self, message: Message) {
        self.bytes += message.payload_len();
        self.ready.push_back(message);
    }

    /// Makes deliverable the messages whose gate is open, in order; returns how many.
    pub fn release_pending(&mut self, is_open: impl Fn(Gate) -> bool) -> usize {
        let mut released = 0;
        while self.pending.front().is_some_and(|(gate, _)| is_open(*gate)) {
            let (_, message) = self.pending.pop_front().expect("front exists");
            self.ready.push_back(message);
            released += 1;
        }
        released
    }

    /// Visits every message the queue itself holds (waiting and ready, not in flight).
    pub fn for_each_message_mut(&mut self, mut visit: impl FnMut(&mut Message)) {
        self.pending.iter_mut().for_each(|(_, message)| visit(message));
        self.ready.iter_mut().for_each(visit);
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
        assert!(self.in_flight > 0, "requeue of a message that is not in flight");
        self.in_flight -= 1;
        self.ready.push_front(message);
    }

    fn release_in_flight(&mut self, message: &Message) {
        assert!(self.in_flight > 0, "settle of a message that is not in flight");
        self.in_flight -= 1;
        self.bytes -= message.payload_len();
    }

    /// Removes every message not in flight (ready, and waiting for the log) and returns them.
    pub fn purge(&mut self) -> Vec<Message> {
        let mut purged: Vec<Message> = self.pending.drain(..).map(|(_, message)| message).collect();
        purged.extend(self.ready.drain(..));
        self.bytes -= purged.iter().map(Message::payload_len).sum::<u64>();
        purged
    }

    /// Every message it holds, for deleting the queue; in-flight ones are with connections.
    pub fn drain_all(&mut self) -> Vec<Message> {
        self.purge()
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
