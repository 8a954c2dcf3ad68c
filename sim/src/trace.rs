//! The event trace: every step of a run, hashed into one value that identifies the run (two
//! runs of a seed must produce the same hash), kept whole with `--trace`, and otherwise kept as
//! a short tail for failure reports.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use chute_core::Instant;

/// Trace lines kept for a failure report when the full trace is off.
const TAIL_LEN: usize = 80;

/// A fast, deterministic 64-bit hasher (FxHash's mix, with a final avalanche). Deterministic
/// across runs and threads, unlike std's `RandomState`.
#[derive(Clone, Debug)]
pub struct TraceHasher {
    state: u64,
}

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher { state: 0xCBF2_9CE4_8422_2325 }
    }
}

impl TraceHasher {
    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(0x51_7C_C1_B7_27_22_0A_95);
    }

    /// Digest of a byte string, for trace entries that stand for payloads.
    pub fn digest(bytes: &[u8]) -> u64 {
        let mut hasher = TraceHasher::default();
        hasher.write(bytes);
        hasher.finish()
    }
}

impl Hasher for TraceHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    fn finish(&self) -> u64 {
        let mut z = self.state;
        z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        z ^ (z >> 33)
    }
}

/// One step of a run. Connections are `c<id>`, actors `a<index>`, messages `m<key>`, queues by
/// their index in the topology.
#[derive(Clone, Debug, Hash)]
pub enum TraceEvent {
    Phase(&'static str),
    /// An actor opened a connection (the broker accepted it).
    Connect {
        actor: u32,
        conn: u64,
    },
    /// An actor tried to connect while the broker was down.
    Refused {
        actor: u32,
    },
    /// Bytes entered the network (`up`: client to broker).
    Send {
        conn: u64,
        up: bool,
        len: u32,
        digest: u64,
    },
    /// A chunk reached its receiver.
    Arrive {
        conn: u64,
        up: bool,
        len: u32,
    },
    Flushed {
        conn: u64,
        bytes: u64,
    },
    PauseRead {
        conn: u64,
    },
    ResumeRead {
        conn: u64,
    },
    /// The broker asked to close the connection after flushing.
    BrokerClose {
        conn: u64,
    },
    /// The broker was told the peer closed.
    BrokerSawClosed {
        conn: u64,
    },
    /// The client was told the transport closed.
    ClientSawClosed {
        conn: u64,
    },
    ClientClosed {
        actor: u32,
        code: u16,
    },
    Reset {
        conn: u64,
    },
    Partition {
        conn: u64,
        ms: u64,
    },
    PartitionHealed {
        conn: u64,
        reset: bool,
    },
    Stall {
        conn: u64,
        ms: u64,
    },
    /// A memory reading above (`raised`) or below the alarm threshold was fed to the broker.
    Alarm {
        raised: bool,
    },
    /// The users table `epoch` was given to the broker (`removed`: the user it removed).
    UsersReload {
        epoch: u32,
        removed: Option<u32>,
    },
    /// The broker refused a prober's operation with `not-authorized` (`access`: 0 configure,
    /// 1 write, 2 read).
    Denied {
        actor: u32,
        access: u8,
        name: String,
    },
    Storage {
        op: &'static str,
        base: u64,
        end: u64,
        len: u32,
    },
    StorageDone {
        op: &'static str,
        through: u64,
    },
    /// A `Published` record in an append: message `key` stored in `queue` as `seq`.
    Logged {
        queue: u16,
        key: u32,
        seq: u64,
        end: u64,
    },
    StorageFailed,
    BrokerEvent {
        what: &'static str,
        conn: u64,
        code: u16,
    },
    Halted,
    Crash {
        machine: bool,
        files: u32,
        dir_ops_lost: u32,
        torn_bytes: u64,
    },
    Restart {
        incarnation: u64,
        files: u32,
        truncated: Option<u64>,
    },
    Flip {
        base: u64,
        offset: u64,
        bit: u8,
    },
    RecoveryRefused,
    /// An operator lost part of the log while the broker was down (see `Disk::lose_segment_data`).
    SegmentLoss(String),
    /// A `Deliver` entry the broker emitted.
    Deliver {
        conn: u64,
        queue: u16,
        key: u32,
        attempt: u32,
        tag: u64,
    },
    Publish {
        actor: u32,
        key: u32,
        seq: u64,
    },
    Confirm {
        actor: u32,
        key: u32,
    },
    Ack {
        actor: u32,
        key: u32,
        tag: u64,
    },
    Nack {
        actor: u32,
        key: u32,
        tag: u64,
        delay_ms: Option<u64>,
    },
    Reject {
        actor: u32,
        key: u32,
        tag: u64,
    },
    Touch {
        actor: u32,
        key: u32,
        tag: u64,
    },
    Hold {
        actor: u32,
        key: u32,
        tag: u64,
    },
    Disconnect {
        actor: u32,
        graceful: bool,
    },
    Subscribe {
        actor: u32,
        queue: u16,
        subscription: u32,
    },
    Audit {
        dlq: u16,
        entries: u32,
    },
}

/// A trace entry with its time.
#[derive(Clone, Debug)]
pub struct TraceLine {
    pub at: Instant,
    pub event: TraceEvent,
}

impl fmt::Display for TraceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.at.as_nanos();
        write!(f, "[{:>4}.{:06}s] {:?}", ns / 1_000_000_000, (ns / 1_000) % 1_000_000, self.event)
    }
}

#[derive(Debug)]
pub struct Trace {
    hasher: TraceHasher,
    events: u64,
    /// Every line (full trace) or the last `TAIL_LEN`.
    lines: VecDeque<TraceLine>,
    full: bool,
}

impl Trace {
    pub fn new(full: bool) -> Trace {
        Trace { hasher: TraceHasher::default(), events: 0, lines: VecDeque::new(), full }
    }

    pub fn record(&mut self, at: Instant, event: TraceEvent) {
        self.events += 1;
        at.as_nanos().hash(&mut self.hasher);
        event.hash(&mut self.hasher);
        if !self.full && self.lines.len() == TAIL_LEN {
            self.lines.pop_front();
        }
        self.lines.push_back(TraceLine { at, event });
    }

    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn take_lines(&mut self) -> Vec<TraceLine> {
        std::mem::take(&mut self.lines).into()
    }
}
