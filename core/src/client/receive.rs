//! Frames from the server, turned into events.

use chute_protocol::{DecodeError, Direction, ErrorCode, Frame, HelloOk, PROTOCOL_VERSION_MIN};

use super::{Client, ClientEvent, ClientOutput, Response, State, CLIENT_VERSION_MAX};

impl Client {
    pub(super) fn process_received(&mut self) {
        while self.state != State::Closed {
            match self.reader.next_frame() {
                Ok(Some(frame)) => self.handle_frame(frame),
                Ok(None) => break,
                Err(err) => self.bad_bytes(err),
            }
        }
    }

    /// Frames the driver decoded, then the error its reader stopped at.
    pub(super) fn handle_frames(&mut self, frames: Vec<Frame>, error: Option<DecodeError>) {
        for frame in frames {
            if self.state == State::Closed {
                return;
            }
            self.handle_frame(frame);
        }
        if let Some(err) = error {
            self.bad_bytes(err);
        }
    }

    fn bad_bytes(&mut self, err: DecodeError) {
        self.finish(err.error_code(), format!("server sent bad bytes: {err}"), true);
    }

    fn emit(&mut self, event: ClientEvent) {
        self.outputs.push_back(ClientOutput::Event(event));
    }

    fn respond(&mut self, request_id: u32, response: Response) {
        self.emit(ClientEvent::Response { request_id, response });
    }

    fn handle_frame(&mut self, frame: Frame) {
        if frame.kind().direction() == Direction::ClientToServer {
            let message = format!("server sent {:?}, a client-to-server frame", frame.kind());
            return self.finish(ErrorCode::UNEXPECTED_FRAME, message, true);
        }
        if self.state == State::Handshaking {
            return self.handle_handshake_frame(frame);
        }
        let version = self.server.as_ref().map_or(PROTOCOL_VERSION_MIN, |s| s.version);
        if frame.kind().since_version() > version {
            let message =
                format!("server sent {:?} on a version {version} connection", frame.kind());
            return self.finish(ErrorCode::UNEXPECTED_FRAME, message, true);
        }
        match frame {
            Frame::Heartbeat(_) => {}
            Frame::AuthRequired(_) | Frame::AuthChallenge(_) | Frame::AuthOk(_) => {
                let message = format!("server sent {:?} after HelloOk", frame.kind());
                self.finish(ErrorCode::UNEXPECTED_FRAME, message, true);
            }
            Frame::HelloOk(_) => {
                self.finish(ErrorCode::UNEXPECTED_FRAME, "second HelloOk".into(), true);
            }
            Frame::Close(close) => self.finish(close.code, close.message, true),
            Frame::GoingAway(going_away) => self.emit(ClientEvent::GoingAway(going_away)),
            // A connection error: the server closes after it, whether or not `Close` arrives.
            Frame::Error(error) if error.request_id == 0 => {
                self.finish(error.code, error.message, true)
            }
            Frame::Error(error) => self.respond(error.request_id, Response::Failed(error)),
            Frame::Done(done) => {
                self.respond(done.request_id, Response::Done { count: done.count })
            }
            Frame::QueueDeclareOk(ok) => self.respond(ok.request_id, Response::Declared(ok)),
            Frame::QueueListOk(ok) => self.respond(ok.request_id, Response::QueueList(ok)),
            Frame::QueueStatsOk(ok) => {
                self.respond(ok.request_id, Response::QueueStats(Box::new(ok.stats)))
            }
            Frame::DlqListOk(ok) => self.respond(ok.request_id, Response::DlqList(ok)),
            Frame::DlqInspectOk(ok) => {
                self.respond(ok.request_id, Response::DlqInspect(Box::new(ok.entry)))
            }
            Frame::Confirm(confirm) => {
                for range in confirm.ranges {
                    self.unconfirmed = self.unconfirmed.saturating_sub(u64::from(range.count));
                    self.emit(ClientEvent::Confirmed(range));
                }
            }
            Frame::PublishRejected(rejected) => {
                for failure in rejected.failures {
                    self.unconfirmed = self.unconfirmed.saturating_sub(1);
                    self.emit(ClientEvent::PublishFailed(failure));
                }
            }
            Frame::Deliver(deliver) => {
                for delivery in &deliver.deliveries {
                    self.outstanding.insert(delivery.tag, deliver.subscription);
                }
                let event = ClientEvent::Deliveries {
                    subscription: deliver.subscription,
                    deliveries: deliver.deliveries,
                };
                self.emit(event);
            }
            Frame::SubscriptionCancelled(cancelled) => {
                self.subscriptions.remove(&cancelled.subscription);
                self.emit(ClientEvent::SubscriptionCancelled(cancelled));
            }
            Frame::Blocked(blocked) => self.emit(ClientEvent::Blocked { reason: blocked.reason }),
            Frame::Unblocked(_) => self.emit(ClientEvent::Unblocked),
            // The authentication exchange's frames, after `HelloOk`; and client-to-server
            // kinds, which were refused above (a bad server must not panic the client).
            other => {
                let message = format!("server sent {:?} on an open connection", other.kind());
                self.finish(ErrorCode::UNEXPECTED_FRAME, message, true);
            }
        }
    }

    fn handle_handshake_frame(&mut self, frame: Frame) {
        match frame {
            Frame::HelloOk(hello_ok) => self.hello_ok(hello_ok),
            Frame::AuthRequired(required) => self.auth_required(required),
            Frame::AuthChallenge(challenge) => self.auth_challenge(challenge),
            Frame::AuthOk(ok) => self.auth_ok(ok),
            Frame::Error(error) => {
                self.finish(error.code, error.message, true);
            }
            Frame::Close(close) => self.finish(close.code, close.message, true),
            other => {
                let message = format!("expected HelloOk, got {:?}", other.kind());
                self.finish(ErrorCode::UNEXPECTED_FRAME, message, true);
            }
        }
    }

    fn hello_ok(&mut self, hello_ok: HelloOk) {
        if let Some((code, message)) = self.login_incomplete() {
            return self.finish(code, message, true);
        }
        if !(PROTOCOL_VERSION_MIN..=CLIENT_VERSION_MAX).contains(&hello_ok.version) {
            let message = format!(
                "the server chose version {}, outside the {PROTOCOL_VERSION_MIN}..={CLIENT_VERSION_MAX} offered",
                hello_ok.version
            );
            return self.finish(ErrorCode::UNSUPPORTED_VERSION, message, true);
        }
        self.state = State::Open;
        self.server = Some(hello_ok.clone());
        self.emit(ClientEvent::Connected(hello_ok));
    }
}
