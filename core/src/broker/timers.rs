//! Deadlines. Each timer is a key in an ordered set; a connection keeps at most one entry and
//! re-arms it when it fires, so receiving or sending bytes never touches the set.

use std::collections::BTreeSet;

use chute_protocol::{ErrorCode, FrameKind, Heartbeat};

use super::connection::ConnState;
use super::Broker;
use crate::ids::ConnId;
use crate::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// Handshake timeout, heartbeat send, or idle timeout of a connection.
    Connection(ConnId),
    /// Records nobody waits for must be synced by now.
    LazySync,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Instant, TimerKey)>,
}

impl Timers {
    pub fn next_deadline(&self) -> Option<Instant> {
        self.set.first().map(|(at, _)| *at)
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<TimerKey> {
        let (at, _) = self.set.first()?;
        if *at > now {
            return None;
        }
        self.set.pop_first().map(|(_, key)| key)
    }

    pub fn insert(&mut self, at: Instant, key: TimerKey) {
        self.set.insert((at, key));
    }

    pub fn cancel(&mut self, at: Instant, key: TimerKey) {
        let removed = self.set.remove(&(at, key));
        debug_assert!(removed, "cancelled a timer that was not armed");
    }
}

impl Broker {
    pub(super) fn fire_timer(&mut self, key: TimerKey) {
        match key {
            TimerKey::Connection(conn) => self.fire_connection_timer(conn),
            TimerKey::LazySync => self.fire_lazy_sync(),
        }
    }

    /// (Re-)arms the connection's single timer for its earliest deadline.
    pub(super) fn arm_connection_timer(&mut self, conn: ConnId) {
        let handshake_timeout_ms = u64::from(self.config.timeouts.handshake_timeout_ms);
        let connection = self.connection_mut(conn);
        let deadline = match connection.state {
            ConnState::AwaitingHello => connection.accepted_at.plus_ms(handshake_timeout_ms),
            ConnState::Open => connection.idle_deadline().min(connection.heartbeat_deadline()),
        };
        if connection.timer_at == Some(deadline) {
            return;
        }
        let previous = connection.timer_at.replace(deadline);
        if let Some(at) = previous {
            self.timers.cancel(at, TimerKey::Connection(conn));
        }
        self.timers.insert(deadline, TimerKey::Connection(conn));
    }

    fn fire_connection_timer(&mut self, conn: ConnId) {
        let now = self.now;
        let frame_size_max = self.config.limits.frame_size_max;
        let handshake_timeout_ms = u64::from(self.config.timeouts.handshake_timeout_ms);
        // The entry was popped from the set: forget it before re-arming.
        let connection = self.connection_mut(conn);
        connection.timer_at = None;
        match connection.state {
            ConnState::AwaitingHello => {
                if now >= connection.accepted_at.plus_ms(handshake_timeout_ms) {
                    let message = format!("no Hello within {handshake_timeout_ms} ms");
                    return self.close_connection(conn, ErrorCode::HANDSHAKE_TIMEOUT, message);
                }
            }
            ConnState::Open => {
                // While the broker is not reading, the client's silence is the broker's doing.
                if connection.read_paused_output {
                    connection.last_received = now;
                }
                if now >= connection.idle_deadline() {
                    let message = format!(
                        "nothing received for {} ms (3 heartbeat intervals)",
                        3 * u64::from(connection.heartbeat_ms)
                    );
                    return self.close_connection(conn, ErrorCode::HEARTBEAT_TIMEOUT, message);
                }
                if now >= connection.heartbeat_deadline() {
                    connection.send(FrameKind::Heartbeat, &Heartbeat, frame_size_max);
                    // The heartbeat counts as sent now; `take_send` will agree.
                    connection.last_sent = now;
                    self.mark_dirty(conn);
                }
            }
        }
        self.arm_connection_timer(conn);
    }
}
