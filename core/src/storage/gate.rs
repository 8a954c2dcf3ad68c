//! How durable the log must be before something may happen (a confirm leave, a message be
//! delivered).

/// How durable the log must be before some bytes may be sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    pub written_lsn: u64,
    pub synced_lsn: u64,
}

impl Gate {
    pub fn synced(lsn: u64) -> Gate {
        Gate { written_lsn: 0, synced_lsn: lsn }
    }

    pub fn written(lsn: u64) -> Gate {
        Gate { written_lsn: lsn, synced_lsn: 0 }
    }

    pub fn max(self, other: Gate) -> Gate {
        Gate {
            written_lsn: self.written_lsn.max(other.written_lsn),
            synced_lsn: self.synced_lsn.max(other.synced_lsn),
        }
    }

    pub fn is_open(self, written_lsn: u64, synced_lsn: u64) -> bool {
        self.written_lsn <= written_lsn.max(synced_lsn) && self.synced_lsn <= synced_lsn
    }
}
