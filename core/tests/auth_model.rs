//! Authorization against a reference: random users with random permission patterns make
//! random requests; each is refused with `not-authorized` exactly when a straightforward
//! reference checker says so, and topic publishes land exactly in the queues whose binding
//! owners may configure them.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chute_core::auth::scram::ScramKeys;
use chute_core::auth::{PermissionRules, Permissions, User, Users};
use chute_core::policy::topic;
use chute_core::{BrokerConfig, ConnId, PeerInfo};
use chute_protocol::{
    Binding, Credentials, Destination, ErrorCode, Frame, Hello, Publish, PublishMessage,
    QueueDeclare, QueueOptions, QueueStatsRequest, Subscribe, PREFACE,
};
use proptest::prelude::*;
use support::Net;

const USERS: [&str; 3] = ["a", "b", "c"];
const QUEUES: [&str; 5] = ["a.x", "a.y", "b.x", "c.z", "shared"];
const TOPICS: [&str; 3] = ["t.a", "t.b", "u.a"];
const TOPIC_PATTERNS: [&str; 3] = ["t.*", "#", "u.a"];
const PATTERNS: [&str; 7] = ["*", "{user}.*", "a.*", "*.x", "shared", "t.*", "u.a"];

#[derive(Clone, Debug)]
enum Op {
    Declare(usize),
    Purge(usize),
    Stats(usize),
    Subscribe(usize),
    PublishQueue(usize),
    PublishTopic(usize),
    Bind(usize, usize),
    /// The users are replaced: this user gets these rules.
    Reload(usize, [Vec<&'static str>; 3]),
}

fn op() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES.len();
    // Weighted towards what builds routes (declare, bind), changes them (reload) and uses
    // them (topic publishes), since the owner rule needs all four in one run.
    prop_oneof![
        3 => q.clone().prop_map(Op::Declare),
        1 => q.clone().prop_map(Op::Purge),
        1 => q.clone().prop_map(Op::Stats),
        1 => q.clone().prop_map(Op::Subscribe),
        1 => q.clone().prop_map(Op::PublishQueue),
        3 => (0..TOPICS.len()).prop_map(Op::PublishTopic),
        3 => (q, 0..TOPIC_PATTERNS.len()).prop_map(|(q, p)| Op::Bind(q, p)),
        1 => (0..USERS.len(), rules()).prop_map(|(u, rules)| Op::Reload(u, rules)),
    ]
}

fn rule_list() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(PATTERNS.to_vec(), 0..4)
}

fn rules() -> impl Strategy<Value = [Vec<&'static str>; 3]> {
    (rule_list(), rule_list(), rule_list()).prop_map(|(c, w, r)| [c, w, r])
}

/// The reference: a pattern with `{user}` replaced, matched by the obvious recursion.
fn reference_allows(patterns: &[&str], user: &str, name: &str) -> bool {
    fn glob(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| glob(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && glob(rest, &n[1..]),
        }
    }
    patterns.iter().any(|p| glob(p.replace("{user}", user).as_bytes(), name.as_bytes()))
}

struct Model {
    rules: BTreeMap<&'static str, [Vec<&'static str>; 3]>,
    queues: BTreeSet<&'static str>,
    /// (pattern, queue) -> owner
    bindings: BTreeMap<(&'static str, &'static str), &'static str>,
}

impl Model {
    fn may(&self, user: &str, access: usize, name: &str) -> bool {
        reference_allows(&self.rules[user][access], user, name)
    }

    /// The queues a topic publish must reach.
    fn route(&self, topic_name: &str) -> BTreeSet<&'static str> {
        self.bindings
            .iter()
            .filter(|((pattern, queue), owner)| {
                topic::matches(pattern, topic_name) && self.may(owner, 0, queue)
            })
            .map(|((_, queue), _)| *queue)
            .collect()
    }
}

fn table(user_rules: &[[Vec<&'static str>; 3]]) -> Users {
    let keys = ScramKeys::derive("pw", b"sixteen-byte-slt", 4096);
    let users = USERS.iter().zip(user_rules).map(|(name, [c, w, r])| {
        let owned = |list: &Vec<&str>| list.iter().map(|s| s.to_string()).collect();
        let rules =
            PermissionRules { configure: owned(c), write: owned(w), read: owned(r), admin: false };
        let permissions = Permissions::new(&rules, name).unwrap();
        User { name: name.to_string(), scram: Some(keys.clone()), tokens: vec![], permissions }
    });
    Users::new(users).unwrap()
}

fn login(net: &mut Net, user: &str) -> ConnId {
    let peer = PeerInfo { tls: true, ..PeerInfo::default() };
    let conn = net.accept(peer);
    let hello = Hello {
        version_min: 1,
        version_max: 1,
        client_name: "model".into(),
        credentials: Credentials::Password { username: user.into(), password: "pw".into() },
        heartbeat_ms: 0,
    };
    let mut bytes = bytes::BytesMut::from(&PREFACE[..]);
    Frame::Hello(hello).encode(&mut bytes, 1 << 20).unwrap();
    net.send_raw(conn, &bytes);
    assert!(matches!(net.raw_frames(conn)[..], [Frame::HelloOk(_)]));
    conn
}

fn request(op: &Op, request_id: u32) -> Frame {
    let message = || vec![PublishMessage::new(Bytes::from_static(b"m"))];
    match *op {
        Op::Declare(q) => Frame::QueueDeclare(QueueDeclare {
            request_id,
            name: QUEUES[q].into(),
            options: QueueOptions::default(),
            passive: false,
        }),
        Op::Purge(q) => {
            Frame::QueuePurge(chute_protocol::QueuePurge { request_id, name: QUEUES[q].into() })
        }
        Op::Stats(q) => Frame::QueueStats(QueueStatsRequest { request_id, name: QUEUES[q].into() }),
        Op::Subscribe(q) => Frame::Subscribe(Subscribe {
            request_id,
            subscription: request_id,
            queue: QUEUES[q].into(),
            credit: 0,
            lease_ms: None,
            rate: None,
        }),
        Op::PublishQueue(q) => Frame::Publish(Publish {
            destination: Destination::Queue(QUEUES[q].into()),
            mandatory: false,
            messages: message(),
        }),
        Op::PublishTopic(t) => Frame::Publish(Publish {
            destination: Destination::Topic(TOPICS[t].into()),
            mandatory: false,
            messages: message(),
        }),
        Op::Bind(q, p) => Frame::Bind(Binding {
            request_id,
            queue: QUEUES[q].into(),
            pattern: TOPIC_PATTERNS[p].into(),
        }),
        Op::Reload(..) => unreachable!("not a request"),
    }
}

/// The access the op needs and the name it is checked on (0 configure, 1 write, 2 read).
fn needs(op: &Op) -> (usize, &'static str) {
    match *op {
        Op::Declare(q) | Op::Purge(q) | Op::Bind(q, _) => (0, QUEUES[q]),
        Op::Stats(q) | Op::Subscribe(q) => (2, QUEUES[q]),
        Op::PublishQueue(q) => (1, QUEUES[q]),
        Op::PublishTopic(t) => (1, TOPICS[t]),
        Op::Reload(..) => unreachable!("not a request"),
    }
}

fn refused_as_unauthorized(frames: &[Frame]) -> bool {
    frames.iter().any(|frame| match frame {
        Frame::Error(e) => e.code == ErrorCode::NOT_AUTHORIZED,
        Frame::PublishRejected(r) => r.failures.iter().any(|f| f.code == ErrorCode::NOT_AUTHORIZED),
        _ => false,
    })
}

fn depths(net: &Net) -> BTreeMap<&'static str, u64> {
    QUEUES.iter().filter_map(|q| Some((*q, net.broker.queue_depth(q)?))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn decisions_match_the_reference(
        user_rules in [rules(), rules(), rules()],
        ops in proptest::collection::vec((0..USERS.len(), op()), 1..40),
    ) {
        let mut net = Net::with_config(BrokerConfig::default());
        let now = net.now;
        net.broker.set_users(now, Some(table(&user_rules)));
        let conns: Vec<ConnId> = USERS.iter().map(|u| login(&mut net, u)).collect();
        let mut model = Model {
            rules: USERS.iter().copied().zip(user_rules.iter().cloned()).collect(),
            queues: BTreeSet::new(),
            bindings: BTreeMap::new(),
        };
        // Every user first declares and binds all it can, so that there are routes for the
        // random operations (reloads above all) to change.
        let setup = (0..USERS.len()).flat_map(|u| {
            let declares = (0..QUEUES.len()).map(move |q| (u, Op::Declare(q)));
            let binds = (0..QUEUES.len())
                .flat_map(move |q| (0..TOPIC_PATTERNS.len()).map(move |p| (u, Op::Bind(q, p))));
            declares.chain(binds)
        });
        let all_ops: Vec<(usize, Op)> = setup.chain(ops.iter().cloned()).collect();
        for (i, (user_index, op)) in all_ops.iter().enumerate() {
            if let Op::Reload(changed, rules) = op {
                model.rules.insert(USERS[*changed], rules.clone());
                let all: Vec<_> = USERS.iter().map(|u| model.rules[u].clone()).collect();
                net.broker.set_users(now, Some(table(&all)));
                continue;
            }
            let user = USERS[*user_index];
            let conn = conns[*user_index];
            let before = depths(&net);
            net.send_frames(conn, &[request(op, i as u32 + 1)]);
            let frames = net.raw_frames(conn);
            let (access, name) = needs(op);
            let allowed = model.may(user, access, name);
            prop_assert_eq!(refused_as_unauthorized(&frames), !allowed, "{} {:?}: {:?}", user, op, frames);
            if !allowed {
                prop_assert_eq!(depths(&net), before);
                continue;
            }
            match *op {
                Op::Declare(q) => { model.queues.insert(QUEUES[q]); }
                Op::Bind(q, p) if model.queues.contains(QUEUES[q]) => {
                    model.bindings.entry((TOPIC_PATTERNS[p], QUEUES[q])).or_insert(user);
                }
                Op::PublishTopic(t) => {
                    let reached: BTreeSet<&str> = depths(&net)
                        .into_iter()
                        .filter(|(q, depth)| before.get(q) != Some(depth))
                        .map(|(q, _)| q)
                        .collect();
                    prop_assert_eq!(reached, model.route(TOPICS[t]), "{} {:?}", user, op);
                }
                _ => {}
            }
        }
    }
}
