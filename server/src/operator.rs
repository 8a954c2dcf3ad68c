//! Operator commands from the admin endpoint, carried out on the broker task (which owns the
//! `Broker`): the connection list, one queue's stats, and the commands that change state (declare, alter, delete, purge, close a
//! connection).
//!
//! A command that changed durable state is answered only once it is durable: the broker's log
//! is synced through where it ended right after the command ([`Broker::log_end_lsn`]). Until
//! then its answer waits in [`PendingAnswers`], released by the storage reports; if the broker
//! halts first, the answer says so instead.

use std::collections::VecDeque;

use chute_core::ids::Lsn;
use chute_core::storage::failure::StorageFailure;
use chute_core::{Broker, ConnId, ConnectionInfo, DeclareError, Instant, QueueAdminError};
use chute_protocol::{QueueOptions, QueueStats};
use futures::channel::oneshot;

use crate::admin::OptionsPatch;

/// Where an answer goes; the asker may have given up (a timeout), and then nobody needs it.
pub type Reply<T> = oneshot::Sender<T>;

/// What the admin endpoint asks of the broker task.
pub enum OperatorRequest {
    /// Every connection with its peer address.
    Connections(Reply<Vec<ConnectionInfo>>),
    /// One queue's stats; `None` when there is no such queue.
    QueueStats { name: String, reply: Reply<Option<QueueStats>> },
    /// Declares a queue, as `QueueDeclare` does.
    Declare { name: String, options: QueueOptions, reply: Reply<Result<Declared, CommandError>> },
    /// Changes the options `patch` names on an existing queue; the rest stay.
    Alter { name: String, patch: OptionsPatch, reply: Reply<Result<Altered, CommandError>> },
    /// Deletes a queue; answers how many messages it held.
    Delete {
        name: String,
        if_empty: bool,
        if_unused: bool,
        reply: Reply<Result<u64, CommandError>>,
    },
    /// Purges a queue; answers how many messages went.
    Purge { name: String, reply: Reply<Result<u64, CommandError>> },
    /// Closes a connection with `closed-by-operator` and `reason`; answers whether it existed.
    Close { conn: ConnId, reason: String, reply: Reply<bool> },
}

/// The answer to a declare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    pub created: bool,
    pub options: QueueOptions,
}

/// The answer to an alter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Altered {
    pub changed: bool,
    pub options: QueueOptions,
}

/// Why a command did not take effect, or is not known to be durable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Declare(#[from] DeclareError),
    #[error(transparent)]
    Queue(#[from] QueueAdminError),
    /// The patch does not make valid options on top of the queue's current ones.
    #[error("{0}")]
    BadOptions(String),
    /// Storage failed: before the command ran, or before it was durable (then it may or may
    /// not survive a restart).
    #[error("{}", .0.halt_message())]
    Halted(StorageFailure),
}

/// Carries out `request` on `broker` at `now`.
/// Answers that must wait for durability go to `pending`; after a halt (`halted`), commands
/// that would change the log are refused at once.
pub fn carry_out(
    broker: &mut Broker,
    now: Instant,
    request: OperatorRequest,
    pending: &mut PendingAnswers,
    halted: Option<&StorageFailure>,
) {
    match request {
        OperatorRequest::Connections(reply) => {
            let _ = reply.send(broker.connections());
        }
        OperatorRequest::QueueStats { name, reply } => {
            let _ = reply.send(broker.queue_stats_by_name(&name));
        }
        OperatorRequest::Declare { name, options, reply } => {
            let result = unless_halted(halted, || {
                let (created, options) = broker.declare_queue_at(now, &name, options)?;
                Ok(Declared { created, options })
            });
            pending.answer_when_durable(broker, reply, result);
        }
        OperatorRequest::Alter { name, patch, reply } => {
            let result = unless_halted(halted, || alter(broker, now, &name, &patch));
            pending.answer_when_durable(broker, reply, result);
        }
        OperatorRequest::Delete { name, if_empty, if_unused, reply } => {
            let result = unless_halted(halted, || {
                Ok(broker.delete_queue_at(now, &name, if_empty, if_unused)?)
            });
            pending.answer_when_durable(broker, reply, result);
        }
        OperatorRequest::Purge { name, reply } => {
            let result = unless_halted(halted, || Ok(broker.purge_queue_at(now, &name)?));
            pending.answer_when_durable(broker, reply, result);
        }
        OperatorRequest::Close { conn, reason, reply } => {
            let _ = reply.send(broker.close_connection_by_operator(now, conn, &reason));
        }
    }
}

/// Runs `command` unless the broker halted: a halted broker takes no more changes.
fn unless_halted<T>(
    halted: Option<&StorageFailure>,
    command: impl FnOnce() -> Result<T, CommandError>,
) -> Result<T, CommandError> {
    match halted {
        Some(failure) => Err(CommandError::Halted(failure.clone())),
        None => command(),
    }
}

/// Applies `patch` to the queue's current options, on the broker task so that no other
/// change can slip in between reading them and altering.
fn alter(
    broker: &mut Broker,
    now: Instant,
    name: &str,
    patch: &OptionsPatch,
) -> Result<Altered, CommandError> {
    let current = match broker.queue_stats_by_name(name) {
        Some(stats) => stats.options,
        None => return Err(QueueAdminError::NoSuchQueue(name.to_string()).into()),
    };
    let wanted = patch.apply(&current).map_err(CommandError::BadOptions)?;
    let options = broker.alter_queue(now, name, wanted)?;
    Ok(Altered { changed: options != current, options })
}

/// A failed fdatasync, for the tests of what a halt does.
#[cfg(test)]
pub(crate) fn test_failure() -> StorageFailure {
    let error = chute_core::storage::failure::OsError::new(std::io::ErrorKind::Other, "EIO");
    StorageFailure::Sync { through: Lsn(1), error }
}

/// Answers waiting for the log to be synced through their position, oldest first (positions
/// only grow, so the queue is in order).
#[derive(Default)]
pub struct PendingAnswers {
    waiting: VecDeque<PendingAnswer>,
}

struct PendingAnswer {
    /// Durable once the synced position reaches this.
    end_lsn: Lsn,
    send: SendAnswer,
}

/// Sends a waiting answer: given `None` when it is durable, `Some(failure)` when storage
/// failed first.
type SendAnswer = Box<dyn FnOnce(Option<&StorageFailure>) + Send>;

impl PendingAnswers {
    /// Sends `result` now if it is an error (nothing changed) or already durable; otherwise
    /// once the log is synced through where it ends now.
    pub fn answer_when_durable<T: Send + 'static>(
        &mut self,
        broker: &Broker,
        reply: Reply<Result<T, CommandError>>,
        result: Result<T, CommandError>,
    ) {
        let end_lsn = broker.log_end_lsn();
        let value = match result {
            Ok(value) if broker.log_synced_lsn() < end_lsn => value,
            done => {
                let _ = reply.send(done);
                return;
            }
        };
        let send = move |halted: Option<&StorageFailure>| {
            let answer = match halted {
                None => Ok(value),
                Some(failure) => Err(CommandError::Halted(failure.clone())),
            };
            let _ = reply.send(answer);
        };
        self.waiting.push_back(PendingAnswer { end_lsn, send: Box::new(send) });
    }

    /// Sends every answer the log is now synced far enough for.
    pub fn release(&mut self, synced_lsn: Lsn) {
        while self.waiting.front().is_some_and(|answer| answer.end_lsn <= synced_lsn) {
            let answer = self.waiting.pop_front().expect("checked above");
            (answer.send)(None);
        }
    }

    /// Storage failed: what still waits will never be known durable.
    pub fn fail(&mut self, failure: &StorageFailure) {
        for answer in self.waiting.drain(..) {
            (answer.send)(Some(failure));
        }
    }
}

#[cfg(test)]
mod tests {
    use chute_core::storage::io::StorageDone;
    use chute_core::{BrokerConfig, Input, PeerInfo};

    use super::*;

    const NOW: Instant = Instant::ZERO;

    /// A new broker whose startup checkpoint is written and synced.
    fn broker() -> Broker {
        let mut broker = Broker::new(BrokerConfig::default(), NOW);
        sync(&mut broker);
        broker
    }

    /// The storage worker's reports for everything appended so far.
    fn sync(broker: &mut Broker) {
        while broker.poll_output().is_some() {}
        let through = broker.log_end_lsn();
        broker.handle_input(NOW, Input::Storage(StorageDone::Written { through }));
        broker.handle_input(NOW, Input::Storage(StorageDone::Synced { through }));
        while broker.poll_output().is_some() {}
    }

    fn run(broker: &mut Broker, pending: &mut PendingAnswers, request: OperatorRequest) {
        carry_out(broker, NOW, request, pending, None);
    }

    fn declare(
        name: &str,
        options: QueueOptions,
    ) -> (OperatorRequest, oneshot::Receiver<Result<Declared, CommandError>>) {
        let (reply, answer) = oneshot::channel();
        (OperatorRequest::Declare { name: name.into(), options, reply }, answer)
    }

    /// A declare is answered once its record is synced, not before.
    #[test]
    fn a_declare_is_answered_once_durable() {
        let mut broker = broker();
        let mut pending = PendingAnswers::default();
        let (request, mut answer) = declare("jobs", QueueOptions::default());
        run(&mut broker, &mut pending, request);
        pending.release(broker.log_synced_lsn());
        assert_eq!(answer.try_recv(), Ok(None), "not durable yet");
        sync(&mut broker);
        pending.release(broker.log_synced_lsn());
        let declared = answer.try_recv().unwrap().unwrap().unwrap();
        assert!(declared.created);
    }

    /// Nothing to wait for: a refusal, or a declare that changed nothing, is answered at once.
    #[test]
    fn refusals_and_no_ops_are_answered_at_once() {
        let mut broker = broker();
        let mut pending = PendingAnswers::default();
        let (request, mut answer) = declare("bad name", QueueOptions::default());
        run(&mut broker, &mut pending, request);
        let refused = answer.try_recv().unwrap().unwrap().unwrap_err();
        assert!(matches!(refused, CommandError::Declare(DeclareError::BadName(_))), "{refused:?}");

        let (request, _) = declare("jobs", QueueOptions::default());
        run(&mut broker, &mut pending, request);
        sync(&mut broker);
        let (again, mut answer) = declare("jobs", QueueOptions::default());
        run(&mut broker, &mut pending, again);
        assert!(!answer.try_recv().unwrap().unwrap().unwrap().created);
    }

    /// Storage fails before the record is synced: the answer says so.
    #[test]
    fn a_halt_fails_what_waits() {
        let mut broker = broker();
        let mut pending = PendingAnswers::default();
        let (request, mut answer) = declare("jobs", QueueOptions::default());
        run(&mut broker, &mut pending, request);
        pending.fail(&test_failure());
        let failed = answer.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(failed, CommandError::Halted(test_failure()));
    }

    /// After a halt, a command is refused with the reason and does not run.
    #[test]
    fn a_halted_broker_takes_no_commands() {
        let mut broker = broker();
        let mut pending = PendingAnswers::default();
        let (request, mut answer) = declare("jobs", QueueOptions::default());
        let failure = test_failure();
        carry_out(&mut broker, NOW, request, &mut pending, Some(&failure));
        assert_eq!(answer.try_recv().unwrap().unwrap(), Err(CommandError::Halted(failure)));
        assert_eq!(broker.queue_depth("jobs"), None);
    }

    /// An alter changes what the patch names and keeps the rest of the queue's options.
    #[test]
    fn an_alter_patches_the_current_options() {
        let mut broker = broker();
        let mut pending = PendingAnswers::default();
        let options = QueueOptions { lease_ms: 5_000, ..QueueOptions::default() };
        run(&mut broker, &mut pending, declare("jobs", options).0);
        let (reply, mut answer) = oneshot::channel();
        let patch = OptionsPatch::parse(br#"{"messages_max": 2}"#).unwrap();
        run(
            &mut broker,
            &mut pending,
            OperatorRequest::Alter { name: "jobs".into(), patch, reply },
        );
        sync(&mut broker);
        pending.release(broker.log_synced_lsn());
        let altered = answer.try_recv().unwrap().unwrap().unwrap();
        assert!(altered.changed);
        assert_eq!((altered.options.messages_max, altered.options.lease_ms), (Some(2), 5_000));

        let (reply, mut answer) = oneshot::channel();
        let patch = OptionsPatch::parse(br#"{"durability": "none"}"#).unwrap();
        run(
            &mut broker,
            &mut pending,
            OperatorRequest::Alter { name: "jobs".into(), patch, reply },
        );
        let refused = answer.try_recv().unwrap().unwrap().unwrap_err();
        assert!(matches!(refused, CommandError::Queue(QueueAdminError::Immutable { .. })));
    }

    /// The connection list carries the peer the driver saw when accepting it.
    #[test]
    fn connections_carry_their_peers() {
        let mut broker = broker();
        let addr: std::net::SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let peer = PeerInfo { addr: Some(addr), tls: true, certificate_user: None };
        broker.handle_input(NOW, Input::Accepted { conn: ConnId(3), peer: peer.clone() });
        let (reply, mut answer) = oneshot::channel();
        let mut pending = PendingAnswers::default();
        carry_out(&mut broker, NOW, OperatorRequest::Connections(reply), &mut pending, None);
        let infos = answer.try_recv().unwrap().unwrap();
        assert_eq!((infos[0].id, &infos[0].peer), (ConnId(3), &peer));
    }
}
