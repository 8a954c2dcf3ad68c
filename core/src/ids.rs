//! Newtypes that keep the many integer ids apart.

/// A connection, numbered by the driver; unique for the broker's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A queue, numbered by the broker; never reused, so a stale id cannot name a new queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u64);

/// A message, numbered by the broker in publish order; unique across restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageSeq(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A log sequence number: a byte position in the one log that runs across every segment
/// (docs/STORAGE.md §3). Segments are named and found by the LSN they start at; records, gates
/// and syncs are ordered by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    pub const ZERO: Lsn = Lsn(0);

    /// The position `bytes` further on.
    pub fn plus(self, bytes: u64) -> Lsn {
        Lsn(self.0.checked_add(bytes).expect("a log position past 16 EiB"))
    }

    /// Bytes from `earlier` to here.
    pub fn bytes_since(self, earlier: Lsn) -> u64 {
        assert!(earlier <= self, "{earlier} is after {self}");
        self.0 - earlier.0
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
