//! Planted bugs ("mutants") that prove the simulator has teeth.
//!
//! This module, and every hook that consults it, exists only with the `mutants` cargo feature
//! (`cargo build -p chute-sim --features mutants` turns it on through chute-sim). A build that
//! serves traffic never has it. Each hook in the core is a few lines marked `MUTANT <name>` and
//! `#[cfg(feature = "mutants")]`; `grep -rn MUTANT core/src` lists them all.
//!
//! A mutant is chosen at run time, per thread, with [`set`]: the simulator runs one simulation
//! per thread, so parallel seeds with different mutants do not interfere. With no mutant set the
//! hooks do nothing and the core behaves exactly as without the feature.

use std::cell::Cell;

use crate::storage::format::{SegmentScan, SEGMENT_HEADER_LEN};

/// A known bug the simulator must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// Confirms on `Always` queues (and first deliveries) are released when the `Published`
    /// record is appended, not when it is synced. A crash loses confirmed messages.
    ConfirmBeforeSync,
    /// Recovery takes a `Delivered` record for an ack: every message that was delivered and not
    /// yet settled when the broker stopped vanishes. (Ignoring `Acked` records instead would
    /// only cause redeliveries, which at-least-once allows.)
    ForgetAckOnRecovery,
    /// When a retry rejoins the ready line at the front, the message that was at the head is
    /// moved to the back: first deliveries leave FIFO order.
    DeliverOutOfOrderAfterRedelivery,
    /// A lease that runs out does not count the attempt, so a consumer that keeps timing out
    /// gets the message more than `attempts_max` times.
    SkipAttemptOnLeaseExpiry,
    /// Recovery cuts the last valid record of the newest segment as if it were a torn write.
    TruncateValidRecord,
    /// The manifest keeps naming the first segment as the newest: losing a later one (deleted
    /// or emptied while the broker is down) goes unnoticed, and the confirmed messages in it
    /// with it.
    StaleManifestNewest,
    /// The manifest records the end of the log as durable when it was only appended: after a
    /// machine crash loses the unsynced tail, recovery refuses a log nothing damaged.
    ManifestAheadOfSync,
    /// A client session forgets the publishes a lost connection carried instead of sending
    /// them again: they are never confirmed (nor refused).
    ForgetUnconfirmedOnReconnect,
    /// A client session sends the settle of a delivery from a lost connection on the new one,
    /// where its tag names another delivery: that message is acked unprocessed.
    SettleAcrossReconnect,
    /// A publish read while a resource alarm is raised is handled at once instead of held:
    /// a blocked publisher's publishes are confirmed.
    PublishDuringAlarm,
    /// A publish to a topic is not checked against the user's `write` permissions: a user may
    /// publish to any topic, and the copies are stored, delivered and confirmed.
    SkipTopicWriteCheck,
    /// A sync's report is taken to cover every append written by the time it arrives, not
    /// just those before the sync began: appends written while the fsync ran (the worker goes
    /// on writing) are confirmed undurable, and a machine crash loses them.
    SyncCoversLaterWrites,
    /// A read of evicted payloads fills each message but the first with the bytes of the
    /// record before it in the read (cut or padded to its own length): consumers get another
    /// message's payload.
    ReadFillsWrongMessage,
    /// A ready message whose state is no longer what its record holds (delivered and
    /// returned, dead-lettered, redriven) may go cold: read back, it is what its record says,
    /// the attempts and failures since forgotten.
    ColdRunHoldsChangedMessage,
}

impl Mutant {
    pub const ALL: [Mutant; 14] = [
        Mutant::ConfirmBeforeSync,
        Mutant::ForgetAckOnRecovery,
        Mutant::DeliverOutOfOrderAfterRedelivery,
        Mutant::SkipAttemptOnLeaseExpiry,
        Mutant::TruncateValidRecord,
        Mutant::StaleManifestNewest,
        Mutant::ManifestAheadOfSync,
        Mutant::ForgetUnconfirmedOnReconnect,
        Mutant::SettleAcrossReconnect,
        Mutant::PublishDuringAlarm,
        Mutant::SkipTopicWriteCheck,
        Mutant::SyncCoversLaterWrites,
        Mutant::ReadFillsWrongMessage,
        Mutant::ColdRunHoldsChangedMessage,
    ];

    /// The name used on the command line (`chute-sim --mutant NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Mutant::ConfirmBeforeSync => "confirm-before-sync",
            Mutant::ForgetAckOnRecovery => "forget-ack-on-recovery",
            Mutant::DeliverOutOfOrderAfterRedelivery => "deliver-out-of-order-after-redelivery",
            Mutant::SkipAttemptOnLeaseExpiry => "skip-attempt-on-lease-expiry",
            Mutant::TruncateValidRecord => "truncate-valid-record",
            Mutant::StaleManifestNewest => "stale-manifest-newest",
            Mutant::ManifestAheadOfSync => "manifest-ahead-of-sync",
            Mutant::ForgetUnconfirmedOnReconnect => "forget-unconfirmed-on-reconnect",
            Mutant::SettleAcrossReconnect => "settle-across-reconnect",
            Mutant::PublishDuringAlarm => "publish-during-alarm",
            Mutant::SkipTopicWriteCheck => "skip-topic-write-check",
            Mutant::SyncCoversLaterWrites => "sync-covers-later-writes",
            Mutant::ReadFillsWrongMessage => "read-fills-wrong-message",
            Mutant::ColdRunHoldsChangedMessage => "cold-run-holds-changed-message",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}

thread_local! {
    static ACTIVE: Cell<Option<Mutant>> = const { Cell::new(None) };
}

/// Plants `mutant` (or none) for the code running on this thread from now on.
pub fn set(mutant: Option<Mutant>) {
    ACTIVE.with(|active| active.set(mutant));
}

/// The mutant planted on this thread, if any.
pub fn current() -> Option<Mutant> {
    ACTIVE.with(Cell::get)
}

/// Whether `mutant` is planted on this thread.
pub fn active(mutant: Mutant) -> bool {
    current() == Some(mutant)
}

/// MUTANT truncate-valid-record: drops the last valid record of the newest segment and reports
/// it as a torn tail, so the driver cuts it from the file too.
pub(crate) fn truncate_valid_record(mut scan: SegmentScan, is_last: bool) -> SegmentScan {
    if !active(Mutant::TruncateValidRecord) || !is_last || scan.torn_tail.is_some() {
        return scan;
    }
    let Some(last) = scan.records.pop() else { return scan };
    let valid_len = SEGMENT_HEADER_LEN as u64 + last.lsn.bytes_since(scan.base_lsn);
    scan.torn_tail = Some(scan.valid_len - valid_len);
    scan.valid_len = valid_len;
    scan
}
