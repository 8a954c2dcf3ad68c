//! Stopping gracefully, at once (`shutdown`, SIGTERM) or after a lame-duck window (`drain`,
//! SIGUSR2): every client is told `GoingAway` first (PROTOCOL.md §5.7), then the broker stops
//! reading, waits until the log is synced so that every confirm already earned goes out, and
//! closes each connection with `shutting-down`.

use chute_protocol::{FrameKind, GoingAway};

use super::connection::PauseReason;
use super::timers::TimerKey;
use super::Broker;
use crate::ids::ConnId;
use crate::time::Instant;

impl Broker {
    /// Graceful stop: tells every client `GoingAway` (reconnect elsewhere now), stops reading
    /// from every connection, waits for the log to be synced, then closes every connection
    /// with `shutting-down`. `is_drained` turns true when done. New connections are refused.
    pub fn shutdown(&mut self, now: Instant) {
        self.advance_time(now);
        let told = self.drain_ends_at.is_some();
        self.timers.set(&mut self.drain_ends_at, None, TimerKey::DrainEnd);
        self.stop(told);
        assert!(self.shutting_down);
        self.after_input();
    }

    /// Lame duck: new connections are refused; every client is told `GoingAway` with a
    /// reconnect delay spread evenly over `window_ms`, so they move away gradually, and is
    /// otherwise served as before (its deliveries may still be settled, its publishes
    /// confirmed); when the window ends the broker stops as [`Broker::shutdown`] does. A drain
    /// during a drain or a stop changes nothing.
    pub fn drain(&mut self, now: Instant, window_ms: u32) {
        self.advance_time(now);
        if self.shutting_down || self.drain_ends_at.is_some() {
            return;
        }
        let ends_at = now.plus_ms(window_ms.into());
        self.timers.set(&mut self.drain_ends_at, Some(ends_at), TimerKey::DrainEnd);
        let open: Vec<ConnId> =
            self.connections.iter().filter(|(_, c)| c.is_open()).map(|(id, _)| *id).collect();
        let count = open.len() as u64;
        for (index, conn) in (0u64..).zip(open) {
            let reconnect_after_ms = (u64::from(window_ms) * index / count) as u32;
            assert!(reconnect_after_ms <= window_ms, "told to come back after the window");
            self.go_away(conn, reconnect_after_ms, "the server is draining (lame duck)");
        }
        self.after_input();
    }

    /// The drain window is over.
    pub(super) fn fire_drain_end(&mut self) {
        self.drain_ends_at = None;
        assert!(!self.shutting_down, "a drain window outlived the stop it leads to");
        self.stop(true);
    }

    /// Begins the graceful stop. Clients a drain already told get no second `GoingAway`.
    fn stop(&mut self, clients_told: bool) {
        if self.shutting_down {
            return;
        }
        assert!(self.drain_ends_at.is_none(), "stopping with a drain window still armed");
        self.shutting_down = true;
        let conns: Vec<ConnId> = self.connections.keys().copied().collect();
        for conn in conns {
            if !clients_told && self.connections[&conn].is_open() {
                self.go_away(conn, 0, "the server is shutting down");
            }
            self.set_read_pause(conn, PauseReason::Shutdown, true);
        }
        debug_assert!(self.connections.values().all(|c| c.pause_reasons().any()));
    }

    fn go_away(&mut self, conn: ConnId, reconnect_after_ms: u32, message: &str) {
        assert!(
            self.connections[&conn].is_open(),
            "{conn}: GoingAway before HelloOk or after Close"
        );
        let going_away = GoingAway { reconnect_after_ms, message: message.to_string() };
        self.connection_mut(conn)
            .send(FrameKind::GoingAway, &going_away)
            .expect("a short GoingAway fits any frame");
        self.mark_dirty(conn);
    }
}
