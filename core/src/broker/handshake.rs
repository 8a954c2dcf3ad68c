//! `Hello` → `HelloOk`: version negotiation and heartbeat agreement (authentication, between
//! the two, is in `authenticate.rs`).

use chute_protocol::{
    ErrorCode, FrameKind, Hello, HelloOk, ServerLimits, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN,
};

use super::authenticate::HelloTerms;
use super::connection::ConnState;
use super::Broker;
use crate::ids::ConnId;
use crate::io::{Event, Output};
use crate::policy::token_bucket::TokenBucket;

impl Broker {
    pub(super) fn handle_hello(&mut self, conn: ConnId, hello: Hello) {
        let Some(version) = negotiate_version(hello.version_min, hello.version_max) else {
            let message = format!(
                "client speaks versions {}..={}, server speaks {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}",
                hello.version_min, hello.version_max
            );
            return self.close_connection(conn, ErrorCode::UNSUPPORTED_VERSION, message);
        };
        let terms = HelloTerms {
            version,
            heartbeat_ms: self.agree_heartbeat(hello.heartbeat_ms),
            client_name: hello.client_name.chars().take(256).collect(),
        };
        self.authenticate_hello(conn, terms, &hello.credentials);
    }

    /// The client is who it says (or nobody is checked): `HelloOk`, and the connection is open.
    pub(super) fn open_after_hello(&mut self, conn: ConnId, terms: HelloTerms) {
        let HelloTerms { version, heartbeat_ms, client_name } = terms;
        let hello_ok = HelloOk {
            version,
            server_name: self.config.server_name.clone(),
            connection_id: conn.0,
            heartbeat_ms,
            limits: self.connection_mut(conn).limits,
        };
        let (now, connection_rate) = (self.now, self.config.limits.connection_publish_rate);
        let connection = self.connection_mut(conn);
        connection.state = ConnState::Open;
        connection.version = version;
        connection.publish_rate = connection_rate.map(|rate| TokenBucket::new(rate, now));
        connection.heartbeat_ms = heartbeat_ms;
        connection.client_name = client_name;
        connection
            .send(FrameKind::HelloOk, &hello_ok)
            .expect("HelloOk is smaller than the smallest frame limit");
        let client_name = connection.client_name.clone();
        self.mark_dirty(conn);
        self.arm_connection_timer(conn);
        let event = Event::ConnectionOpened { conn, client_name, version };
        self.outputs.push_back(Output::Event(event));
    }

    fn agree_heartbeat(&self, requested_ms: u32) -> u32 {
        let timeouts = &self.config.timeouts;
        if requested_ms == 0 {
            return timeouts.heartbeat_ms;
        }
        requested_ms.clamp(timeouts.heartbeat_ms_min, timeouts.heartbeat_ms_max)
    }

    /// The limits a connection accepted now is told in `HelloOk` and held to.
    pub(super) fn server_limits(&self) -> ServerLimits {
        let limits = &self.config.limits;
        ServerLimits {
            frame_size_max: limits.frame_size_max,
            payload_size_max: limits.payload_size_max,
            publish_batch_max: limits.publish_batch_max,
            unconfirmed_max: limits.unconfirmed_max,
            credit_max: limits.credit_max,
            subscriptions_max: limits.subscriptions_per_connection_max,
        }
    }
}

/// The highest version in both the client's range and ours.
fn negotiate_version(client_min: u16, client_max: u16) -> Option<u16> {
    let high = client_max.min(PROTOCOL_VERSION_MAX);
    let low = client_min.max(PROTOCOL_VERSION_MIN);
    (low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::negotiate_version;

    #[test]
    fn picks_highest_common_version() {
        assert_eq!(negotiate_version(1, 1), Some(1));
        assert_eq!(negotiate_version(1, 7), Some(2));
        assert_eq!(negotiate_version(0, 1), Some(1));
        assert_eq!(negotiate_version(2, 7), Some(2));
        assert_eq!(negotiate_version(3, 7), None);
        assert_eq!(negotiate_version(1, 0), None);
    }
}
