//! Turning received bytes into frames and frames into actions.

use chute_protocol::{Confirm, Direction, ErrorCode, Frame, FrameKind, RANGES_MAX};

use super::connection::{ConnState, PauseReason};
use super::Broker;
use crate::ids::ConnId;

impl Broker {
    /// Decodes and handles buffered frames until the buffer is empty, the connection pauses, or
    /// it closes. Then encodes the confirms those frames earned.
    pub(super) fn process_received(&mut self, conn: ConnId) {
        let outbound_bytes_max = self.config.limits.connection_outbound_bytes_max;
        loop {
            let Some(connection) = self.connections.get_mut(&conn) else { return };
            if connection.outbound_backlog() >= connection.read_pause_backlog(outbound_bytes_max) {
                self.set_read_pause(conn, PauseReason::OutboundBacklog, true);
            }
            let connection = self.connection_mut(conn);
            if connection.outbound.unconfirmed >= u64::from(connection.limits.unconfirmed_max) {
                self.set_read_pause(conn, PauseReason::Unconfirmed, true);
            }
            let connection = self.connection_mut(conn);
            if connection.pause_reasons().any() || connection.state == ConnState::Closing {
                break;
            }
            match connection.reader.next_frame() {
                Ok(Some(frame)) => {
                    self.handle_frame(conn, frame);
                    self.flush_confirms_if_full(conn);
                }
                Ok(None) => break,
                Err(err) => return self.close_connection(conn, err.error_code(), err.to_string()),
            }
        }
        self.account_partial_frame(conn);
        self.flush_confirms(conn);
    }

    /// Encodes one `Confirm` for the publishes accepted since the last, held back until the
    /// log is as durable as the most demanding of them needs.
    /// A `Confirm` holds at most as many ranges as one frame can carry (and the protocol's
    /// `RANGES_MAX`): refusals between accepted publishes split ranges, and a connection that
    /// was paused may have many frames to read at once.
    fn flush_confirms_if_full(&mut self, conn: ConnId) {
        let Some(connection) = self.connections.get(&conn) else { return };
        let ranges_max = confirm_ranges_max(connection.limits.frame_size_max);
        if connection.confirm_ranges.len() >= ranges_max {
            self.flush_confirms(conn);
        }
    }

    fn flush_confirms(&mut self, conn: ConnId) {
        let Some(connection) = self.connections.get_mut(&conn) else { return };
        if connection.confirm_ranges.is_empty() {
            return;
        }
        let confirm = Confirm { ranges: std::mem::take(&mut connection.confirm_ranges) };
        let count: u64 = confirm.ranges.iter().map(|r| u64::from(r.count)).sum();
        // Each accepted publish counts unconfirmed until its confirm leaves.
        assert!(count <= connection.outbound.unconfirmed, "confirming more than was accepted");
        connection.outbound.raise_gate(std::mem::take(&mut connection.confirm_gate));
        connection
            .send(FrameKind::Confirm, &confirm)
            .expect("confirms are flushed before their ranges outgrow a frame");
        connection.outbound.add_confirms(count);
        self.mark_dirty(conn);
    }

    fn handle_frame(&mut self, conn: ConnId, frame: Frame) {
        let state = self.connection_mut(conn).state;
        // Nothing is read after a client's `Close`, nor while reading is paused.
        assert_ne!(state, ConnState::Closing, "{conn}: a frame read after its Close");
        debug_assert!(!self.connections[&conn].pause_reasons().any(), "{conn}: read while paused");
        if frame.kind().direction() == Direction::ServerToClient {
            let message = format!("{:?} is a server-to-client frame", frame.kind());
            return self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, message);
        }
        if state == ConnState::Authenticating {
            return self.handle_login_frame(conn, frame);
        }
        if state == ConnState::AwaitingHello {
            return match frame {
                Frame::Hello(hello) => self.handle_hello(conn, hello),
                other => {
                    let message = format!("expected Hello, got {:?}", other.kind());
                    self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, message)
                }
            };
        }
        let version = self.connection_mut(conn).version;
        if frame.kind().since_version() > version {
            let message = format!("{:?} is not part of protocol version {version}", frame.kind());
            return self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, message);
        }
        if answered_request_id(&frame) == Some(0) {
            let message = format!(
                "{:?} with request_id 0: requests that are answered need a non-zero request_id",
                frame.kind()
            );
            return self.close_connection(conn, ErrorCode::MALFORMED_FRAME, message);
        }
        if self.refuse_unauthorized(conn, &frame) {
            return;
        }
        match frame {
            Frame::Hello(_) => {
                self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, "second Hello".into())
            }
            Frame::Heartbeat(_) => {}
            Frame::Close(close) => self.begin_client_close(conn, close.message),
            Frame::QueueDeclare(declare) => self.handle_declare(conn, declare),
            Frame::QueueDelete(delete) => self.handle_delete(conn, delete),
            Frame::QueuePurge(purge) => self.handle_purge(conn, purge),
            Frame::QueueList(list) => self.handle_list(conn, list),
            Frame::QueueStats(request) => self.handle_stats(conn, request),
            Frame::Publish(publish) if self.holds_publishes() => self.hold_publish(conn, publish),
            Frame::Publish(publish) => self.handle_publish(conn, publish),
            Frame::Subscribe(subscribe) => self.handle_subscribe(conn, subscribe),
            Frame::Credit(credit) => self.handle_credit(conn, credit),
            Frame::Unsubscribe(unsubscribe) => self.handle_unsubscribe(conn, unsubscribe),
            Frame::Ack(ack) => self.handle_ack(conn, ack),
            Frame::Nack(nack) => self.handle_nack(conn, nack),
            Frame::Reject(reject) => self.handle_reject(conn, reject),
            Frame::Touch(touch) => self.handle_touch(conn, touch),
            Frame::Bind(binding) => self.handle_bind(conn, binding),
            Frame::Unbind(binding) => self.handle_unbind(conn, binding),
            Frame::DlqList(list) => self.handle_dlq_list(conn, list),
            Frame::DlqInspect(inspect) => self.handle_dlq_inspect(conn, inspect),
            Frame::DlqRedrive(redrive) => self.handle_dlq_redrive(conn, redrive),
            Frame::AuthStart(_) | Frame::AuthResponse(_) => {
                let message = "authentication is not in progress on this connection".into();
                self.close_connection(conn, ErrorCode::UNEXPECTED_FRAME, message)
            }
            // Server-to-client kinds were refused above.
            _ => {
                unreachable!("server-to-client frame {:?} passed the direction check", frame.kind())
            }
        }
    }
}

/// The `request_id` of a request the server answers. `request_id` 0 is reserved for connection
/// errors, so such a request with 0 could never be told apart from one (PROTOCOL.md §6).
/// Settlements (`Ack`, `Nack`, `Reject`, `Touch`) are absent: for them 0 means "no answer".
fn answered_request_id(frame: &Frame) -> Option<u32> {
    Some(match frame {
        Frame::QueueDeclare(f) => f.request_id,
        Frame::QueueDelete(f) => f.request_id,
        Frame::QueuePurge(f) => f.request_id,
        Frame::Bind(f) | Frame::Unbind(f) => f.request_id,
        Frame::QueueList(f) => f.request_id,
        Frame::QueueStats(f) => f.request_id,
        Frame::Subscribe(f) => f.request_id,
        Frame::Unsubscribe(f) => f.request_id,
        Frame::DlqList(f) => f.request_id,
        Frame::DlqInspect(f) => f.request_id,
        Frame::DlqRedrive(f) => f.request_id,
        _ => return None,
    })
}

/// The most ranges one `Confirm` frame may carry: a range is at most 15 bytes on the wire (a
/// `u64` and a `u32` varint), after a 3-byte length.
fn confirm_ranges_max(frame_size_max: u32) -> usize {
    let ranges_max =
        (frame_size_max as usize).saturating_sub(3).div_euclid(15).clamp(1, RANGES_MAX);
    debug_assert!(ranges_max == 1 || 3 + 15 * ranges_max <= frame_size_max as usize);
    ranges_max
}
