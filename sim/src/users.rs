//! Users and permissions: the users table the simulated broker is given, the way each user
//! logs in, and the simulator's own reference checker of who may do what.
//!
//! - The workload's actors (admin, publishers, consumers, drainers) carry no credentials: the
//!   broker lets them in as its anonymous user (the `ANONYMOUS` exchange of protocol version
//!   2), whom the table gives every right, so the workload runs as it would without users.
//! - Each prober logs in as a user of its own, by SCRAM-SHA-256, a token, or a client
//!   certificate (EXTERNAL; the simulated transport claims TLS and names the certificate's
//!   user). Its permissions are a few patterns per access, random per seed: exact names,
//!   prefixes (`t.*`, `wo*`) and rarely `*`, so they cover some queues and topics and not
//!   others.
//! - Reloads (a fault) narrow a user's permissions (a pattern dropped) or remove a user. Every
//!   table in force is kept, so that an answer can be judged against every table in force
//!   while its request was in flight.
//!
//! The checker is written here, independently of `chute_core::auth`: `*` matches any run of
//! characters, anything else itself, and a name is allowed if any pattern of the access matches.

use std::sync::OnceLock;

use chute_core::auth::scram::ScramKeys;
use chute_core::auth::{Access, PermissionRules, Permissions, TokenHash, User, Users};

use crate::rng::SimRng;
use crate::topology::Topology;

/// The user the broker makes of clients without credentials.
pub const ANONYMOUS_USER: &str = "anonymous";

/// At most this many probing users (their SCRAM keys are derived once per process).
pub const USERS_MAX: usize = 6;

/// SCRAM's minimum iteration count: the keys are derived once per process, the client's
/// proof once per login.
const SCRAM_ITERATIONS: u32 = 4096;

/// How a user's client proves who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    Scram,
    Token,
    Certificate,
}

#[derive(Clone, Debug)]
pub struct SimUser {
    pub name: String,
    pub login: Login,
    /// Patterns per access, in [`Access::ALL`] order.
    pub rules: [Vec<String>; 3],
    pub removed: bool,
}

impl SimUser {
    pub fn password(&self) -> String {
        format!("pw-{}", self.name)
    }

    pub fn token(&self) -> String {
        format!("token-{}", self.name)
    }

    /// The reference checker.
    pub fn allows(&self, access: Access, name: &str) -> bool {
        !self.removed && self.rules[access_index(access)].iter().any(|p| glob(p, name))
    }
}

fn access_index(access: Access) -> usize {
    match access {
        Access::Configure => 0,
        Access::Write => 1,
        Access::Read => 2,
    }
}

/// `*` matches any run of characters (none included); anything else matches itself.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(name) = name.strip_prefix(head) else { return false };
            (0..=name.len()).any(|at| name.is_char_boundary(at) && glob(rest, &name[at..]))
        }
    }
}

/// The users of a run and every table that was in force, oldest first.
#[derive(Debug, Default)]
pub struct SimUsers {
    tables: Vec<Vec<SimUser>>,
}

impl SimUsers {
    /// `count` users (at most [`USERS_MAX`]) with random patterns over `topology`'s names.
    pub fn generate(count: usize, topology: &Topology, rng: &mut SimRng) -> SimUsers {
        let logins = [Login::Scram, Login::Token, Login::Certificate];
        let queues: Vec<&str> = topology.queues.iter().map(|q| q.name.as_str()).collect();
        let writable: Vec<&str> = topology
            .sources()
            .iter()
            .map(|q| topology.queue(*q).name.as_str())
            .chain(topology.topics.iter().map(String::as_str))
            .collect();
        let users = (0..count.min(USERS_MAX))
            .map(|index| {
                let mut patterns = |names: &[&str]| random_patterns(names, rng);
                let rules = [patterns(&queues), patterns(&writable), patterns(&queues)];
                let login = logins[index % logins.len()];
                SimUser { name: format!("user{index}"), login, rules, removed: false }
            })
            .collect();
        SimUsers { tables: vec![users] }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.last().is_none_or(Vec::is_empty)
    }

    pub fn current(&self) -> &[SimUser] {
        self.tables.last().map_or(&[], Vec::as_slice)
    }

    /// The number of the table in force now (0 without users).
    pub fn epoch(&self) -> usize {
        self.tables.len().saturating_sub(1)
    }

    /// What the tables in force from `since` until now say of `user` doing `access` to
    /// `name`: (some allowed it, some refused it).
    pub fn verdicts(&self, since: usize, user: usize, access: Access, name: &str) -> (bool, bool) {
        let mut verdicts = (false, false);
        for table in &self.tables[since.min(self.epoch())..] {
            if table[user].allows(access, name) {
                verdicts.0 = true;
            } else {
                verdicts.1 = true;
            }
        }
        verdicts
    }

    /// A reload: a user loses a pattern or, now and then, is removed. Returns the user
    /// removed, if one was.
    pub fn reload(&mut self, rng: &mut SimRng) -> Option<usize> {
        let mut table = self.current().to_vec();
        let live: Vec<usize> = (0..table.len()).filter(|u| !table[*u].removed).collect();
        if live.is_empty() {
            return None;
        }
        let user = live[rng.index(live.len())];
        let removed = rng.chance(250);
        if removed {
            table[user].removed = true;
        } else {
            let rules = &mut table[user].rules[rng.index(3)];
            if !rules.is_empty() {
                rules.remove(rng.index(rules.len()));
            }
        }
        self.tables.push(table);
        removed.then_some(user)
    }

    /// The table the broker is given: the anonymous user with every right, and each user
    /// not removed.
    pub fn broker_table(&self) -> Users {
        let everything = PermissionRules {
            configure: vec!["*".into()],
            write: vec!["*".into()],
            read: vec!["*".into()],
            admin: false,
        };
        let anonymous = User {
            name: ANONYMOUS_USER.into(),
            scram: None,
            tokens: Vec::new(),
            permissions: Permissions::new(&everything, ANONYMOUS_USER).expect("valid"),
        };
        let users = self.current().iter().enumerate().filter(|(_, user)| !user.removed).map(
            |(index, user)| {
                let [configure, write, read] = user.rules.clone();
                let rules = PermissionRules { configure, write, read, admin: false };
                User {
                    name: user.name.clone(),
                    scram: Some(scram_keys(index).clone()),
                    tokens: vec![TokenHash::of(&user.token())],
                    permissions: Permissions::new(&rules, &user.name).expect("valid patterns"),
                }
            },
        );
        Users::new(std::iter::once(anonymous).chain(users)).expect("distinct names")
    }
}

/// Up to three patterns: exact names, prefixes of names followed by `*`, rarely `*`.
fn random_patterns(names: &[&str], rng: &mut SimRng) -> Vec<String> {
    let count = rng.below(4);
    (0..count)
        .map(|_| {
            let name = names[rng.index(names.len())];
            match rng.below(10) {
                0 => "*".to_string(),
                1..=4 => {
                    let cut = 1 + rng.index(name.len().max(1));
                    format!("{}*", &name[..cut.min(name.len())])
                }
                _ => name.to_string(),
            }
        })
        .collect()
}

/// The SCRAM keys of user `index` (its password is fixed by its name): PBKDF2 is slow on
/// purpose, so they are derived once per process.
fn scram_keys(index: usize) -> &'static ScramKeys {
    static KEYS: OnceLock<Vec<ScramKeys>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..USERS_MAX)
            .map(|i| {
                let password = format!("pw-user{i}");
                ScramKeys::derive(&password, b"sim-user-salt-16", SCRAM_ITERATIONS)
            })
            .collect()
    });
    &keys[index]
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("*", "work"));
        assert!(glob("t.*", "t.eu"));
        assert!(!glob("t.*", "t"));
        assert!(glob("wo*", "work"));
        assert!(glob("work", "work"));
        assert!(!glob("work", "work.dlq"));
        assert!(glob("*.dlq", "work.dlq"));
        assert!(glob("o*e*.*", "orders.eu.x"));
        assert!(!glob("o*z", "orders"));
    }
}
