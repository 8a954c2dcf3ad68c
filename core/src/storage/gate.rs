//! How durable the log must be before something may happen (a confirm leave, a message be
//! delivered).

use crate::ids::Lsn;

/// How durable the log must be before some bytes may be sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    pub written_lsn: Lsn,
    pub synced_lsn: Lsn,
}

impl Gate {
    pub fn synced(lsn: Lsn) -> Gate {
        Gate { written_lsn: Lsn::ZERO, synced_lsn: lsn }
    }

    pub fn written(lsn: Lsn) -> Gate {
        Gate { written_lsn: lsn, synced_lsn: Lsn::ZERO }
    }

    pub fn max(self, other: Gate) -> Gate {
        Gate {
            written_lsn: self.written_lsn.max(other.written_lsn),
            synced_lsn: self.synced_lsn.max(other.synced_lsn),
        }
    }

    pub fn is_open(self, written_lsn: Lsn, synced_lsn: Lsn) -> bool {
        self.written_lsn <= written_lsn.max(synced_lsn) && self.synced_lsn <= synced_lsn
    }
}
