//! The event queue: simulated time jumps from one event to the next. Events at the same instant
//! run in the order they were scheduled (the sequence number breaks ties), which keeps a run
//! deterministic.

use std::collections::BTreeMap;

use chute_core::storage::io::ReadId;
use chute_core::{ConnId, Instant};

use crate::topology::QIdx;

#[derive(Clone, Debug)]
pub enum Event {
    /// The broker's `poll_timeout` is due (stale after a crash: `incarnation` differs).
    BrokerTimer {
        incarnation: u64,
    },
    /// An actor's session timer is due (stale if re-armed earlier since).
    ClientTimer {
        actor: usize,
    },
    /// The next chunk of a direction of a connection reaches its receiver.
    Arrive {
        conn: ConnId,
        up: bool,
    },
    /// The broker's `Close` finished flushing: the client sees the transport close.
    TransportClosed {
        conn: ConnId,
    },
    /// The broker resumed reading: feed it what arrived while it was paused.
    Unpause {
        conn: ConnId,
    },
    /// The storage worker finished its request (stale after a crash: `epoch` differs).
    StorageDone {
        epoch: u64,
    },
    /// The sync running beside the writes finished (stale after a crash: `epoch` differs).
    SyncDone {
        epoch: u64,
    },
    /// A read of evicted payloads completes (stale after a crash: `epoch` differs). Reads are
    /// served apart from the ordered requests, as the server's read thread serves them.
    ReadDone {
        epoch: u64,
        id: ReadId,
    },
    Wake {
        actor: usize,
        wake: Wake,
    },
    Fault(FaultKind),
    PartitionEnd {
        conn: ConnId,
    },
    /// The resource alarm raised by a fault clears: a reading below the threshold.
    AlarmEnd,
    Crash {
        machine: bool,
    },
    Restart,
    LivenessStart,
    /// Liveness phase: has everything drained yet?
    Check,
    /// The liveness phase is over.
    End,
    /// A run that never got going (setup never finished).
    Deadline,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Crash,
    Reset,
    Partition,
    Stall,
    Alarm,
    /// The users file is reloaded (narrower permissions, or a user removed).
    Reload,
}

/// Something an actor does at a chosen time.
#[derive(Clone, Debug)]
pub enum Wake {
    /// The actor's session starts.
    Start,
    Publish,
    /// A publisher hands over what its breaker refused.
    RetryPublish,
    Audit,
    /// A consumer settles (or touches, or drops the connection with) a delivery it got on
    /// its session's connection `epoch`; void if the session has another connection by then.
    Settle {
        epoch: u64,
        tag: u64,
        queue: QIdx,
        key: u32,
        action: Action,
    },
}

#[derive(Clone, Debug)]
pub enum Action {
    Ack,
    Nack {
        delay_ms: Option<u64>,
        reason: Option<String>,
    },
    Reject {
        reason: String,
    },
    /// Extend the lease now, ack this much later.
    Touch {
        ack_after_ms: u64,
    },
    /// Leave the delivery outstanding and drop the connection.
    Disconnect {
        graceful: bool,
    },
}

#[derive(Debug, Default)]
pub struct EventQueue {
    queue: BTreeMap<(Instant, u64), Event>,
    next_seq: u64,
}

impl EventQueue {
    pub fn push(&mut self, at: Instant, event: Event) {
        self.queue.insert((at, self.next_seq), event);
        self.next_seq += 1;
    }

    pub fn pop(&mut self) -> Option<(Instant, Event)> {
        self.queue.pop_first().map(|((at, _), event)| (at, event))
    }
}
