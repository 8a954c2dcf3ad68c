//! The simulated network. Each connection has two directions; bytes sent are cut into random
//! chunks that arrive in order after a random latency. Broker-to-client bytes pass through a
//! bounded window (the sockets' buffers): the broker is told `Flushed` for what the window
//! took, and a client that stops reading (a stall) makes the rest wait in the outbox, which is
//! what the broker's backpressure must bound.
//!
//! Faults: a reset closes both sides at once (the broker sees `Input::Closed`, the client
//! `SessionInput::TransportClosed`); a partition holds both directions until it heals, after which the
//! traffic flows again or the connection resets.

use bytes::Bytes;
use chute_core::client::SessionInput;
use chute_core::{ConnId, Input, Instant};

use crate::events::Event;
use crate::trace::{TraceEvent, TraceHasher};
use crate::world::World;

impl World {
    fn latency_ns(&mut self) -> u64 {
        if self.rng.chance(20) {
            self.rng.range(5_000_000, 30_000_000)
        } else {
            self.rng.range(50_000, 2_000_000)
        }
    }

    /// Puts bytes on the wire, cut into chunks.
    pub fn net_send(&mut self, conn: ConnId, up: bool, bytes: Bytes) {
        if !self.conns.contains_key(&conn) || bytes.is_empty() {
            return;
        }
        if up {
            self.count_publishes_sent(conn, &bytes);
        }
        let len = bytes.len() as u32;
        let digest = TraceHasher::digest(&bytes);
        self.record(TraceEvent::Send { conn: conn.0, up, len, digest });
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = if rest.len() > 1 && self.rng.chance(300) {
                self.rng.range(1, rest.len() as u64 - 1) as usize
            } else {
                rest.len()
            };
            let chunk = rest.split_to(take);
            let latency = self.latency_ns();
            let now = self.now;
            let c = self.conns.get_mut(&conn).expect("checked");
            let pipe = if up { &mut c.up } else { &mut c.down };
            let at = (now + std::time::Duration::from_nanos(latency)).max(pipe.last_at);
            pipe.last_at = at;
            pipe.chunks.push_back(chunk);
            self.events.push(at, Event::Arrive { conn, up });
        }
    }

    pub fn on_arrive(&mut self, conn: ConnId, up: bool) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let held = if up { c.hold_until } else { c.hold_until.max(c.stall_until) };
        if held > now {
            self.events.push(held, Event::Arrive { conn, up });
            return;
        }
        let pipe = if up { &mut c.up } else { &mut c.down };
        let chunk = pipe.chunks.pop_front().expect("a chunk per arrival");
        let len = chunk.len();
        self.record(TraceEvent::Arrive { conn: conn.0, up, len: len as u32 });
        if up {
            self.arrive_at_broker(conn, chunk);
        } else {
            self.arrive_at_client(conn, chunk);
        }
    }

    fn arrive_at_broker(&mut self, conn: ConnId, chunk: Bytes) {
        let c = self.conns.get_mut(&conn).expect("arrived");
        if c.broker_open {
            if c.read_paused || !c.paused_bytes.is_empty() {
                c.paused_bytes.push_back(chunk);
            } else {
                self.broker_input(Input::Received { conn, bytes: chunk });
            }
        }
        self.finish_client_close(conn);
    }

    fn arrive_at_client(&mut self, conn: ConnId, chunk: Bytes) {
        let c = self.conns.get_mut(&conn).expect("arrived");
        c.window_bytes -= chunk.len() as u64;
        let (attached, actor) = (c.client_attached, c.actor);
        if attached {
            self.session_input(actor, SessionInput::Received(chunk));
        }
        self.pump_outbox(conn);
        self.finish_broker_close(conn);
    }

    /// Moves what the window has room for from the outbox onto the wire, and tells the broker.
    pub fn pump_outbox(&mut self, conn: ConnId) {
        let mut flushed = 0u64;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            let room = c.window_max.saturating_sub(c.window_bytes);
            // Like TCP's silly-window avoidance: wait for a quarter of the window to be free
            // rather than dribble bytes into every sliver of room.
            let worth_sending = c.outbox_bytes.min(c.window_max / 4).max(1);
            if room < worth_sending || c.outbox.is_empty() {
                break;
            }
            let front = c.outbox.front_mut().expect("not empty");
            let bytes = if front.len() as u64 <= room {
                c.outbox.pop_front().expect("not empty")
            } else {
                front.split_to(room as usize)
            };
            let len = bytes.len() as u64;
            c.outbox_bytes -= len;
            c.window_bytes += len;
            flushed += len;
            if c.client_attached {
                self.net_send(conn, false, bytes);
            } else {
                // Nobody reads any more: the socket swallows the bytes.
                c.window_bytes -= len;
            }
        }
        let Some(c) = self.conns.get(&conn) else { return };
        if flushed > 0 && c.broker_open {
            self.record(TraceEvent::Flushed { conn: conn.0, bytes: flushed });
            self.broker_input(Input::Flushed { conn, bytes: flushed });
        }
    }

    /// Both sides see the connection fail at once; whatever was in flight is lost.
    pub fn reset_conn(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        self.stats.resets += 1;
        self.record(TraceEvent::Reset { conn: conn.0 });
        let broker_first = self.rng.chance(500);
        if c.broker_open && broker_first {
            self.tell_broker_closed(conn);
        }
        if c.client_attached {
            self.record(TraceEvent::ClientSawClosed { conn: conn.0 });
            let reason = "connection reset".to_string();
            self.session_input(c.actor, SessionInput::TransportClosed { reason });
        }
        if c.broker_open && !broker_first {
            self.tell_broker_closed(conn);
        }
    }

    fn tell_broker_closed(&mut self, conn: ConnId) {
        self.record(TraceEvent::BrokerSawClosed { conn: conn.0 });
        self.broker_input(Input::Closed { conn });
    }

    /// The broker sent `Close`: once everything it wrote is delivered, the client's transport
    /// closes.
    pub fn finish_broker_close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.broker_closing && c.down.chunks.is_empty() && c.outbox.is_empty() {
            self.schedule(0, Event::TransportClosed { conn });
        }
    }

    pub fn on_transport_closed(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.down.chunks.is_empty() || !c.outbox.is_empty() {
            return;
        }
        let (attached, actor) = (c.client_attached, c.actor);
        c.client_attached = false;
        if attached {
            self.record(TraceEvent::ClientSawClosed { conn: conn.0 });
            let reason = "the broker closed the connection".to_string();
            self.session_input(actor, SessionInput::TransportClosed { reason });
        }
        self.maybe_remove(conn);
    }

    /// The client sent `Close` (or gave up): once its bytes are delivered, the broker sees the
    /// stream end.
    pub fn finish_client_close(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.client_closing && c.up.chunks.is_empty() && c.broker_open {
            // What the broker has not read yet is lost with the socket.
            c.paused_bytes.clear();
            c.broker_open = false;
            self.tell_broker_closed(conn);
        }
        self.maybe_remove(conn);
    }

    pub fn maybe_remove(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            if !c.broker_open && !c.client_attached {
                self.conns.remove(&conn);
            }
        }
    }

    /// The broker resumed reading: it gets what waited, a chunk at a time, until it pauses
    /// again.
    pub fn on_unpause(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            if c.read_paused || !c.broker_open {
                return;
            }
            let Some(chunk) = c.paused_bytes.pop_front() else { return };
            self.broker_input(Input::Received { conn, bytes: chunk });
        }
    }

    /// The time `now` plus `ns`.
    pub fn after_ns(&self, ns: u64) -> Instant {
        self.now + std::time::Duration::from_nanos(ns)
    }
}

impl World {
    /// Counts the publish messages a client puts on the wire (the broker numbers them in this
    /// order), for the `publish-while-blocked` invariant.
    fn count_publishes_sent(&mut self, conn: ConnId, bytes: &Bytes) {
        let c = self.conns.get_mut(&conn).expect("checked");
        c.up_decoder.feed(bytes.clone());
        while let Ok(Some(frame)) = c.up_decoder.next_frame() {
            if let chute_protocol::Frame::Publish(publish) = frame {
                c.publishes_sent += publish.messages.len() as u64;
            }
        }
    }
}
