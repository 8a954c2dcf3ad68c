//! Authorization under faults: probers log in as users with permissions of their own
//! (`users.rs`), publish inside and outside them and ask for what they may or may not read
//! or configure, while the users file is reloaded under them; the broker's every answer is
//! judged against the simulator's own checker.
//!
//! Invariants (`name in reports`):
//! - `authorized-refused`: nothing is refused with `not-authorized` that every users table in
//!   force while it was in flight allowed;
//! - `unauthorized-allowed`: no request is answered (a passive declaration, queue stats) that
//!   every such table refused, and `unauthorized-confirmed`: no publish confirmed that way;
//! - `unauthorized-publish` (`oracle.rs`): a publish refused by the checker is never stored
//!   nor delivered;
//! - `removed-user-connected`: once a reload removes a user, the broker has no open
//!   connection of theirs;
//! - a refusal leaves the connection open: a connection closed with `not-authorized` (or any
//!   other unexpected code) is `connection-error`, as for every actor.
//!
//! Permissions only narrow over a run, so a publish the checker refused when it was handed
//! to the session stays refused whatever table the broker judged it under.

use chute_core::auth::Access;
use chute_core::client::{NotConfirmed, Response};
use chute_core::{ConnectionState, PeerInfo};
use chute_protocol::{Credentials, ErrorCode, QueueOptions};

use crate::actors::Role;
use crate::oracle::Dest;
use crate::trace::TraceEvent;
use crate::users::Login;
use crate::world::World;

/// A prober's request in flight.
#[derive(Clone, Debug)]
pub struct Probe {
    access: Access,
    name: String,
    /// The users table in force when it was issued.
    since: usize,
}

/// Chance per publish tick that a prober also sends a request.
const PROBE_PER_MILLE: u32 = 500;

impl World {
    /// Gives the broker the users table in force (nothing without users).
    pub fn give_users(&mut self) {
        if self.users.is_empty() {
            return;
        }
        let table = self.users.broker_table();
        let now = self.now;
        if let Some(broker) = self.broker.as_mut() {
            broker.set_users(now, Some(table));
        }
    }

    /// The reload fault: the users file changes, and the broker is given the new table (a
    /// broker that is down gets it when it restarts).
    pub fn reload_users(&mut self) {
        if self.users.is_empty() {
            return;
        }
        let removed = self.users.reload(&mut self.rng);
        self.stats.reloads += 1;
        let epoch = self.users.epoch() as u32;
        self.record(TraceEvent::UsersReload { epoch, removed: removed.map(|u| u as u32) });
        self.give_users();
        self.drain_broker_now();
        if let Some(user) = removed {
            self.check_removed_disconnected(user);
        }
    }

    fn check_removed_disconnected(&mut self, user: usize) {
        let name = self.users.current()[user].name.clone();
        let Some(broker) = self.broker.as_ref() else { return };
        let open = broker.connections().into_iter().find(|c| {
            c.user.as_deref() == Some(name.as_str()) && c.state != ConnectionState::Closing
        });
        if let Some(connection) = open {
            let detail =
                format!("{name} was removed, and connection {:?} is still open", connection.id);
            self.fail(("removed-user-connected", detail));
        }
    }

    /// What `actor`'s client says it is: a prober's user's credentials (and whether its
    /// transport presents a certificate), or nothing.
    pub fn credentials_of(&self, actor: usize) -> (Credentials, bool) {
        let Some(user) = self.actors[actor].account.map(|u| &self.users.current()[u]) else {
            return (Credentials::Anonymous, false);
        };
        match user.login {
            Login::Scram => (
                Credentials::Password { username: user.name.clone(), password: user.password() },
                false,
            ),
            Login::Token => (Credentials::Token { token: user.token() }, false),
            Login::Certificate => (Credentials::Anonymous, true),
        }
    }

    /// What the broker is told of `actor`'s transport. A token is only accepted over TLS and
    /// a certificate only comes with it: the simulated network claims TLS for those.
    pub fn peer_of(&self, actor: usize) -> PeerInfo {
        let Some(user) = self.actors[actor].account.map(|u| &self.users.current()[u]) else {
            return PeerInfo::default();
        };
        match user.login {
            Login::Scram => PeerInfo::default(),
            Login::Token => PeerInfo { tls: true, ..PeerInfo::default() },
            Login::Certificate => {
                PeerInfo { tls: true, certificate_user: Some(user.name.clone()), addr: None }
            }
        }
    }

    /// Whether the checker lets `actor` publish to `dest` now (everyone but a prober may).
    pub fn may_write(&self, actor: usize, dest: Dest) -> bool {
        let Some(user) = self.actors[actor].account else { return true };
        self.users.current()[user].allows(Access::Write, &self.dest_name(dest))
    }

    fn dest_name(&self, dest: Dest) -> String {
        match dest {
            Dest::Queue(q) => self.topology.queue(q).name.clone(),
            Dest::Topic(t) => self.topology.topics[t as usize].clone(),
        }
    }

    /// Whether a reload removed `actor`'s user.
    pub fn account_removed(&self, actor: usize) -> bool {
        self.actors[actor].account.is_some_and(|user| self.users.current()[user].removed)
    }

    /// A removed user's prober stops: its session ended (it may not log in any more), and
    /// what it had not got confirmed never will be.
    pub fn retire(&mut self, actor: usize) {
        if let Role::Publisher(publisher) = &mut self.actors[actor].role {
            publisher.unconfirmed.clear();
            publisher.to_send.clear();
            publisher.probes.clear();
        }
    }

    /// Judges the broker letting (`refused` false) or not letting `actor` have `access` to
    /// `name`, against the tables in force since `since`.
    fn judge(&mut self, actor: usize, access: Access, name: &str, since: usize, refused: bool) {
        let Some(user) = self.actors[actor].account else { return };
        let (some_allow, some_refuse) = self.users.verdicts(since, user, access, name);
        let who = format!("{} ({})", self.actors[actor].name, self.users.current()[user].name);
        if refused {
            self.stats.denied += 1;
            let access_code = Access::ALL.iter().position(|a| *a == access).unwrap_or(0) as u8;
            let event =
                TraceEvent::Denied { actor: actor as u32, access: access_code, name: name.into() };
            self.record(event);
            if !some_refuse {
                let detail =
                    format!("{who} was refused {} on {name}, which it may do", access.label());
                self.fail(("authorized-refused", detail));
            }
        } else {
            self.stats.probes_allowed += 1;
            if !some_allow {
                let invariant = if access == Access::Write {
                    "unauthorized-confirmed"
                } else {
                    "unauthorized-allowed"
                };
                let detail = format!("{who} was let {} {name}, which it may not", access.label());
                self.fail((invariant, detail));
            }
        }
    }

    /// A prober's publish of message `key` was confirmed (`refused` false) or refused.
    pub fn judge_publish(&mut self, actor: usize, key: u32, refused: bool) {
        let info = &self.oracle.messages[key as usize];
        let (name, since) = (self.dest_name(info.dest), info.users_epoch);
        self.judge(actor, Access::Write, &name, since, refused);
    }

    /// A prober's publish that will not be confirmed: a refusal with `not-authorized` is judged
    /// (and no other is expected), and a removed user's publishes end unconfirmed. True if
    /// handled here.
    pub fn prober_not_confirmed(&mut self, actor: usize, seq: u64, error: &NotConfirmed) -> bool {
        if self.actors[actor].account.is_none() {
            return false;
        }
        let removed = self.account_removed(actor);
        let not_authorized = matches!(error, NotConfirmed::Refused { code, .. } if *code == ErrorCode::NOT_AUTHORIZED);
        if !not_authorized && !removed {
            return false;
        }
        let Role::Publisher(publisher) = &mut self.actors[actor].role else { return false };
        let Some(key) = publisher.seq_to_key.remove(&seq) else { return true };
        publisher.unconfirmed.remove(&key);
        if not_authorized {
            self.judge_publish(actor, key, true);
        }
        true
    }

    /// Sometimes, a prober asks for the stats of a queue (read) or declares it passively
    /// (configure), whatever its permissions say.
    pub fn probe(&mut self, actor: usize) {
        if self.actors[actor].account.is_none() || !self.rng.chance(PROBE_PER_MILLE) {
            return;
        }
        let q = self.rng.index(self.topology.queues.len());
        let name = self.topology.queues[q].name.clone();
        let access = if self.rng.chance(500) { Access::Read } else { Access::Configure };
        let (now, since) = (self.now, self.users.epoch());
        let a = &mut self.actors[actor];
        let (Some(session), Role::Publisher(publisher)) = (a.session.as_mut(), &mut a.role) else {
            return;
        };
        let request = match access {
            Access::Read => session.queue_stats(now, &name),
            _ => session.declare_queue(now, &name, QueueOptions::default(), true),
        };
        if let Ok(request) = request {
            publisher.probes.insert(request, Probe { access, name, since });
        }
    }

    /// The answer to a prober's request, judged. True if it was one.
    pub fn probe_answered(&mut self, actor: usize, request_id: u32, response: &Response) -> bool {
        let Role::Publisher(publisher) = &mut self.actors[actor].role else { return false };
        let Some(probe) = publisher.probes.remove(&request_id) else { return false };
        match response {
            Response::Failed(error) if error.code == ErrorCode::NOT_AUTHORIZED => {
                self.judge(actor, probe.access, &probe.name, probe.since, true)
            }
            Response::Failed(error) => {
                let detail = format!(
                    "{}: {} {}: {error:?}",
                    self.actors[actor].name,
                    probe.access.label(),
                    probe.name
                );
                self.fail(("request-refused", detail));
            }
            _ => self.judge(actor, probe.access, &probe.name, probe.since, false),
        }
        true
    }
}
