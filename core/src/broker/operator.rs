//! Operator commands: what an admin API or a management tool asks of the broker directly,
//! without a client connection. Each takes `now` like an input and leaves its outputs (records
//! to write, frames for clients) to `poll_output`. A command that changed durable state is
//! durable once the log's synced position reaches [`Broker::log_end_lsn`] as it was right
//! after the command; a driver answers the operator only then.

use chute_protocol::{ErrorCode, QueueOptions};

use super::connection::ConnState;
use super::errors::{DeclareError, QueueAdminError};
use super::Broker;
use crate::ids::{ConnId, Lsn};
use crate::io::PeerInfo;
use crate::time::Instant;

/// A connection as an operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    pub id: ConnId,
    /// Free text from its `Hello` (empty before the handshake).
    pub client_name: String,
    /// Where it comes from and whether it is encrypted.
    pub peer: PeerInfo,
    /// Who it authenticated as (none during the handshake, or without users).
    pub user: Option<String>,
    pub state: ConnectionState,
    /// Milliseconds since it was accepted.
    pub age_ms: u64,
    pub published_total: u64,
    pub delivered_total: u64,
    /// Publishes accepted whose confirms have not left yet.
    pub unconfirmed: u64,
    pub in_flight: u64,
    pub subscriptions: u64,
    /// The broker is not reading it (backpressure, a rate limit, a resource alarm, ...).
    pub read_paused: bool,
    /// It holds a publish for a resource alarm (and is not read until the alarm clears).
    pub blocked: bool,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    Handshake,
    Open,
    Closing,
}

impl ConnectionState {
    pub fn label(self) -> &'static str {
        match self {
            ConnectionState::Handshake => "handshake",
            ConnectionState::Open => "open",
            ConnectionState::Closing => "closing",
        }
    }
}

impl Broker {
    /// Every open connection, by id.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.connections
            .iter()
            .map(|(id, c)| ConnectionInfo {
                id: *id,
                client_name: c.client_name.clone(),
                peer: c.peer.clone(),
                user: c.user.as_ref().map(|user| user.name.clone()),
                state: match c.state {
                    ConnState::AwaitingHello
                    | ConnState::Authenticating
                    | ConnState::Refusing { .. } => ConnectionState::Handshake,
                    ConnState::Open => ConnectionState::Open,
                    ConnState::Closing => ConnectionState::Closing,
                },
                age_ms: self.now.saturating_since(c.accepted_at).as_millis() as u64,
                published_total: c.published_total,
                delivered_total: c.delivered_total,
                unconfirmed: c.outbound.unconfirmed,
                in_flight: c.in_flight.len() as u64,
                subscriptions: c.subscriptions.len() as u64,
                read_paused: c.pause_reasons().any(),
                blocked: c.held_publish.is_some(),
            })
            .collect()
    }

    /// The log position just past the last record appended: a command's records are durable
    /// once [`Broker::log_synced_lsn`] reaches what this was right after it.
    pub fn log_end_lsn(&self) -> Lsn {
        self.log.end_lsn()
    }

    /// How far the log is synced.
    pub fn log_synced_lsn(&self) -> Lsn {
        self.log.synced_lsn()
    }

    /// Declares a queue, as `QueueDeclare` does.
    pub fn declare_queue_at(
        &mut self,
        now: Instant,
        name: &str,
        options: QueueOptions,
    ) -> Result<(bool, QueueOptions), DeclareError> {
        self.command(now, |broker| broker.declare_queue(name, options, false))
    }

    /// Changes the options of an existing queue from now on (what it holds keeps its expiry
    /// times and attempts; new publishes and deliveries follow the new options). Durability
    /// cannot change. A dead-letter queue it names that does not exist is created.
    pub fn alter_queue(
        &mut self,
        now: Instant,
        name: &str,
        options: QueueOptions,
    ) -> Result<QueueOptions, QueueAdminError> {
        self.command(now, |broker| broker.alter_queue_options(name, options))
    }

    /// Deletes a queue, as `QueueDelete` does; returns how many messages it held.
    pub fn delete_queue_at(
        &mut self,
        now: Instant,
        name: &str,
        if_empty: bool,
        if_unused: bool,
    ) -> Result<u64, QueueAdminError> {
        self.command(now, |broker| broker.delete_queue_checked(name, if_empty, if_unused))
    }

    /// Purges a queue, as `QueuePurge` does; returns how many messages went.
    pub fn purge_queue_at(&mut self, now: Instant, name: &str) -> Result<u64, QueueAdminError> {
        self.command(now, |broker| broker.purge_queue(name))
    }

    /// Closes a connection with `closed-by-operator` and `reason`, which its client sees.
    /// Returns false if there is no such connection.
    pub fn close_connection_by_operator(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: &str,
    ) -> bool {
        self.command(now, |broker| {
            if !broker.connections.contains_key(&conn) {
                return false;
            }
            let message = format!("closed by an operator: {reason}");
            broker.close_connection(conn, ErrorCode::CLOSED_BY_OPERATOR, message);
            assert!(!broker.connections.contains_key(&conn), "{conn} survived its close");
            true
        })
    }

    /// Runs a command as an input would run: time moves first, and what the command changed
    /// is dispatched and handed to the log after it.
    pub(super) fn command<T>(&mut self, now: Instant, run: impl FnOnce(&mut Broker) -> T) -> T {
        self.advance_time(now);
        let result = run(self);
        self.resume_partial_frames();
        self.dispatch_dirty_queues();
        self.after_input();
        // A command ends as an input does: every queue it touched had its dispatch.
        debug_assert!(self.dirty_queues.is_empty(), "a command left queues unvisited");
        result
    }
}
