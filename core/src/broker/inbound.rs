//! What peers make the broker hold while their frames arrive: every frame must complete within
//! `frame_timeout_ms` once started, and partly received frames of all connections together
//! stay within `partial_frames_bytes_max`.
//!
//! A frame's length is checked before its body is buffered, but a peer may announce a 4 MiB
//! frame and then send it a byte every few seconds: without these two rules, each such
//! connection would pin a frame's worth of memory for as long as it liked.

use std::collections::BTreeSet;

use chute_protocol::ErrorCode;

use super::connection::PauseReason;
use super::Broker;
use crate::ids::ConnId;

/// Over the budget, connections with at least this much of a frame buffered stop being read.
/// One socket read's worth (the servers read 64 KiB at a time): a client sending small frames
/// rarely holds more than the tail of one read, so it keeps being served while the connections
/// that hold large unfinished frames wait.
pub(super) const PARTIAL_FRAME_PAUSE_MIN_BYTES: usize = 64 * 1024;

/// Connections paused for the budget, and the bytes all frame readers hold.
#[derive(Debug, Default)]
pub(super) struct PartialFrames {
    pub held_bytes: u64,
    pub paused: BTreeSet<ConnId>,
}

impl Broker {
    /// Re-counts what the connection's frame reader holds and when its current frame started;
    /// over the budget, stops reading it if it is in the middle of a large frame. Call after
    /// feeding or reading a connection.
    pub(super) fn account_partial_frame(&mut self, conn: ConnId) {
        let now = self.now;
        let budget_bytes = self.config.limits.partial_frames_bytes_max;
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        let held = connection.reader.held_bytes() as u64;
        assert!(
            connection.partial_held_bytes <= self.partial.held_bytes,
            "partial bytes undercounted"
        );
        self.partial.held_bytes = self.partial.held_bytes - connection.partial_held_bytes + held;
        connection.partial_held_bytes = held;
        let partial_len = connection.reader.partial_frame_len();
        debug_assert!(partial_len as u64 <= held, "a partial frame larger than what is held");
        match (partial_len > 0, connection.frame_started_at) {
            (true, None) => {
                connection.frame_started_at = Some(now);
                self.arm_connection_timer(conn);
            }
            (false, Some(_)) => connection.frame_started_at = None,
            _ => {}
        }
        if self.partial.held_bytes > budget_bytes && partial_len >= PARTIAL_FRAME_PAUSE_MIN_BYTES {
            self.partial.paused.insert(conn);
            self.set_read_pause(conn, PauseReason::PartialFrames, true);
        }
    }

    /// A connection is gone: what its reader held no longer counts.
    pub(super) fn forget_partial_frame(&mut self, conn: ConnId, held_bytes: u64) {
        assert!(held_bytes <= self.partial.held_bytes, "partial frame bytes went negative");
        self.partial.held_bytes -= held_bytes;
        self.partial.paused.remove(&conn);
    }

    /// Back under the budget, reads again every connection paused for it. Runs once at the
    /// end of every input, not where bytes are released, so that reading never re-enters the
    /// code that released them.
    pub(super) fn resume_partial_frames(&mut self) {
        let budget_bytes = self.config.limits.partial_frames_bytes_max;
        if self.partial.held_bytes > budget_bytes || self.partial.paused.is_empty() {
            return;
        }
        for conn in std::mem::take(&mut self.partial.paused) {
            if !self.connections.contains_key(&conn) {
                continue;
            }
            assert!(self.connections[&conn].pause_reasons().contains(PauseReason::PartialFrames));
            self.set_read_pause(conn, PauseReason::PartialFrames, false);
            self.process_received(conn);
        }
    }

    /// The connection timer fired: a frame that has taken too long closes the connection. Time
    /// the broker spent not reading for its own reasons does not count against the peer (but
    /// time paused for holding a large frame over the budget does: that is the peer's doing).
    /// Returns whether the connection was closed.
    pub(super) fn check_frame_deadline(&mut self, conn: ConnId) -> bool {
        let now = self.now;
        let timeout_ms = self.config.timeouts.frame_timeout_ms;
        let connection = self.connection_mut(conn);
        if connection.pause_reasons().by_broker() && connection.frame_started_at.is_some() {
            connection.frame_started_at = Some(now);
        }
        let Some(deadline) = connection.frame_deadline(timeout_ms) else { return false };
        if now < deadline {
            return false;
        }
        assert!(
            connection.reader.partial_frame_len() > 0,
            "{conn}: a frame timed out that never started"
        );
        let buffered = connection.reader.partial_frame_len();
        let message = format!(
            "a frame started {timeout_ms} ms ago is still incomplete ({buffered} bytes of it \
             received; frame_timeout_ms)"
        );
        self.close_connection(conn, ErrorCode::SLOW_FRAME, message);
        true
    }
}
