//! Whether a connection is alive: the handshake must complete in time, both sides send a
//! heartbeat when otherwise idle, and a peer silent for three intervals is dead. One timer
//! per connection, armed for the earliest of its deadlines (the frame deadline of
//! `inbound.rs` included).

use chute_protocol::{ErrorCode, FrameKind, Heartbeat};

use super::connection::ConnState;
use super::timers::TimerKey;
use super::Broker;
use crate::ids::ConnId;

impl Broker {
    /// (Re-)arms the connection's single timer for its earliest deadline.
    pub(super) fn arm_connection_timer(&mut self, conn: ConnId) {
        let handshake_timeout_ms = u64::from(self.config.timeouts.handshake_timeout_ms);
        let frame_timeout_ms = self.config.timeouts.frame_timeout_ms;
        let connection = self.connections.get_mut(&conn).expect("connection exists");
        let frame_deadline = connection.frame_deadline(frame_timeout_ms);
        let deadline = match connection.state {
            // The whole login, exchange included, must fit in the handshake timeout.
            ConnState::AwaitingHello | ConnState::Authenticating => {
                connection.accepted_at.plus_ms(handshake_timeout_ms)
            }
            ConnState::Refusing { until } => until,
            ConnState::Open | ConnState::Closing => {
                connection.idle_deadline().min(connection.heartbeat_deadline())
            }
        };
        let deadline = frame_deadline.map_or(deadline, |frame| frame.min(deadline));
        debug_assert!(
            !matches!(connection.state, ConnState::Open | ConnState::Closing)
                || connection.heartbeat_ms > 0,
            "{conn}: an open connection with no heartbeat interval would time out at once"
        );
        self.timers.set(&mut connection.timer_at, Some(deadline), TimerKey::Connection(conn));
    }

    pub(super) fn fire_connection_timer(&mut self, conn: ConnId) {
        let now = self.now;
        let handshake_timeout_ms = u64::from(self.config.timeouts.handshake_timeout_ms);
        // The entry was popped from the set: forget it before re-arming.
        self.connection_mut(conn).timer_at = None;
        if self.check_frame_deadline(conn) {
            return;
        }
        let connection = self.connection_mut(conn);
        match connection.state {
            ConnState::Refusing { until } if now >= until => return self.finish_refusal(conn),
            ConnState::Refusing { .. } => {}
            ConnState::AwaitingHello | ConnState::Authenticating => {
                if now >= connection.accepted_at.plus_ms(handshake_timeout_ms) {
                    let message = format!("no Hello within {handshake_timeout_ms} ms");
                    return self.close_connection(conn, ErrorCode::HANDSHAKE_TIMEOUT, message);
                }
            }
            ConnState::Open | ConnState::Closing => {
                // While the broker is not reading, the client's silence is the broker's doing.
                if connection.pause_reasons().any() {
                    connection.last_received = now;
                }
                if now >= connection.idle_deadline() {
                    let message = format!(
                        "nothing received for {} ms (3 heartbeat intervals)",
                        3 * u64::from(connection.heartbeat_ms)
                    );
                    return self.close_connection(conn, ErrorCode::HEARTBEAT_TIMEOUT, message);
                }
                if now >= connection.heartbeat_deadline() && connection.state == ConnState::Open {
                    connection
                        .send(FrameKind::Heartbeat, &Heartbeat)
                        .expect("a heartbeat is empty");
                    // The heartbeat counts as sent now; `take_send` will agree.
                    connection.last_sent = now;
                    self.mark_dirty(conn);
                }
            }
        }
        self.arm_connection_timer(conn);
    }
}
