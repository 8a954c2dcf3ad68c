//! The one task that owns the `Broker`: it turns socket events into inputs, carries out the
//! outputs, and sleeps until the broker's next deadline.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant as StdInstant;

use bytes::Bytes;
use chute_core::ids::Lsn;
use chute_core::storage::failure::StorageFailure;
use chute_core::storage::io::{StorageDone, StorageRequest};

use crate::payload_reader::StorageSender;
use chute_core::{Broker, BrokerStats, ConnId, Event, Input, Instant, Output};
use futures::channel::mpsc;
use futures::future;
use futures::io::AsyncReadExt;
use futures::{Stream, StreamExt};

use chute_core::auth::{AuditEvent, AuditKind, AuditOutcome, Users};
use chute_core::policy::alarm::ResourceReading;

use crate::access::{self, SharedUsers};
use crate::alerts::Alerting;
use crate::audit::AuditLog;
use crate::config::{ReloadError, ReloadOutcome, Reloader};
use crate::connection::{read_loop, write_loop, ReadGate, WriterMessage};
use crate::memory_trim::{self, TrimSchedule};
use crate::operator::{self, OperatorRequest, PendingAnswers};
use crate::runtime::Runtime;
use crate::tls::{Accepted, TlsState};

/// Events from the connection tasks, the signal thread and the admin endpoint to the broker task.
pub enum LoopEvent {
    Received(ConnId, Bytes),
    Flushed(ConnId, u64),
    ReadClosed(ConnId),
    WriterDone(ConnId),
    /// Stop gracefully (SIGINT, SIGTERM).
    Shutdown,
    /// Read the configuration again and apply it, all or nothing (SIGHUP, `POST /api/reload`).
    Reload(futures::channel::oneshot::Sender<Result<ReloadOutcome, ReloadError>>),
    /// The TLS files may have changed (the watcher saw an event, or their contents differ):
    /// read them again.
    TlsFilesChanged,
    /// The graceful stop took too long; exit with what is written.
    ShutdownDeadline,
    /// The admin endpoint asks for a snapshot of the broker.
    Stats(futures::channel::oneshot::Sender<BrokerStats>),
    /// An operator's command or question from the admin endpoint.
    Operator(OperatorRequest),
    /// Lame duck (SIGUSR2, `POST /api/drain`): clients are told to go away over the window
    /// (the configured one unless `window_ms` says otherwise), then the server stops as after
    /// `Shutdown`. `reply`, if any, hears what happened.
    Drain {
        window_ms: Option<u32>,
        reply: Option<futures::channel::oneshot::Sender<DrainAnswer>>,
    },
    /// What the memory and disk measure now (`resources.rs`), for the resource alarms.
    Resources(ResourceReading),
    /// Time to evaluate the alert rules (`alerts.evaluation_interval_ms`).
    EvaluateAlerts,
    /// The admin endpoint changed the users file: these are its users now.
    SetUsers {
        users: Users,
        reply: futures::channel::oneshot::Sender<()>,
    },
}

/// What a drain request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainAnswer {
    /// The drain began: the server stops `window_ms` from now.
    Started { window_ms: u32 },
    /// A drain was already under way; nothing changed.
    AlreadyDraining,
    /// A graceful stop has begun; there is nothing left to drain.
    Stopping,
    /// Storage failed; the server is stopping with the reason.
    Halted(StorageFailure),
}

/// Why the log took no startup checkpoint: the broker must not serve.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartupSyncError {
    /// A write or the sync of the checkpoint failed.
    #[error(transparent)]
    Storage(#[from] StorageFailure),
    /// The storage worker's report channel closed before the sync was reported.
    #[error("the storage worker stopped without reporting")]
    WorkerStopped,
}

/// Everything the broker task waits for on the inbox.
enum Inbox<S> {
    Accepted(Accepted<S>),
    Event(LoopEvent),
}

/// What woke the broker task.
enum Wake<T> {
    Storage(StorageDone),
    /// `None`: every sender of the inbox is gone.
    Inbox(Option<T>),
    Timer,
    /// The audit events that waited for room are in the writer's queue.
    AuditDrained,
}

/// The storage worker's reports, on a channel of their own. Unbounded, so the worker never
/// blocks on it (a blocked worker would hold up every sync), and bounded in practice all the
/// same: the worker reports at most once per request it was given (a `Written` per run of
/// appends, a `Synced` per `Sync`), and the broker task takes every report before anything
/// else each time it wakes.
pub type StorageReports = mpsc::UnboundedReceiver<StorageDone>;

/// How many events may wait for the broker task; readers block beyond this, which is
/// backpressure on the sockets rather than memory growth.
pub const EVENT_QUEUE_MAX: usize = 1024;

struct ConnHandle {
    writer: mpsc::UnboundedSender<WriterMessage>,
    gate: Arc<ReadGate>,
}

/// What the broker task is built from.
pub struct LoopParts<R: Runtime> {
    pub runtime: R,
    pub broker: Broker,
    /// The instant the broker's `Instant::ZERO` stands for.
    pub started: StdInstant,
    pub events_tx: mpsc::Sender<LoopEvent>,
    pub storage_tx: StorageSender,
    pub storage_reports: StorageReports,
    /// Dropped to stop the accept loops (plain and TLS).
    pub accept_stops: Vec<futures::channel::oneshot::Sender<()>>,
    pub shutdown_timeout: std::time::Duration,
    /// Lame duck's window (`server.drain_window_ms`) when a drain request names none.
    pub drain_window_ms: u32,
    /// `server.memory_trim_interval_ms`: the least time between two returns of free heap.
    pub memory_trim_interval_ms: u32,
    pub reloader: Reloader,
    pub audit: AuditLog,
    /// The users the broker has, shared with the admin endpoint.
    pub users: Arc<SharedUsers>,
    /// The TLS material in use, when a listener or the admin endpoint speaks TLS.
    pub tls: Option<TlsState>,
    /// How often the measuring task measures (`alarms.check_interval_ms`); a reload sets it.
    pub alarm_interval_ms: Arc<AtomicU32>,
    /// The alert rules and their receivers.
    pub alerting: Alerting<R>,
}

/// The broker task's state.
pub struct EventLoop<R: Runtime> {
    runtime: R,
    broker: Broker,
    started: StdInstant,
    connections: BTreeMap<ConnId, ConnHandle>,
    writers_running: usize,
    next_conn: u64,
    events_tx: mpsc::Sender<LoopEvent>,
    storage_tx: StorageSender,
    /// `None` once the worker has stopped (after a failure) and dropped its end.
    storage_reports: Option<StorageReports>,
    /// The `through` of the last `Sync` handed to the worker.
    sync_requested: Option<Lsn>,
    /// Why the broker halted, once it did.
    halted: Option<StorageFailure>,
    /// Dropped to stop the accept loops.
    accept_stops: Vec<futures::channel::oneshot::Sender<()>>,
    shutdown_timeout: std::time::Duration,
    drain_window_ms: u32,
    /// A drain or a graceful stop began (the broker ignores a second one; the deadline is
    /// armed once), and which: the answer to a drain request says.
    stop_requested: Option<StopRequest>,
    deadline_passed: bool,
    reloader: Reloader,
    tls: Option<TlsState>,
    /// Operator commands' answers waiting for the log to be synced.
    pending_answers: PendingAnswers,
    audit: AuditLog,
    users: Arc<SharedUsers>,
    alarm_interval_ms: Arc<AtomicU32>,
    memory_trim: TrimSchedule,
    alerting: Alerting<R>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopRequest {
    Drain,
    Shutdown,
}

impl<R: Runtime> EventLoop<R> {
    /// Wraps a broker started (new or recovered) at `started`, whose storage requests go to
    /// `storage_tx`. `events_tx` feeds the channel that `run` reads.
    pub fn new(parts: LoopParts<R>) -> EventLoop<R> {
        EventLoop {
            runtime: parts.runtime,
            broker: parts.broker,
            started: parts.started,
            connections: BTreeMap::new(),
            writers_running: 0,
            next_conn: 1,
            events_tx: parts.events_tx,
            storage_tx: parts.storage_tx,
            storage_reports: Some(parts.storage_reports),
            sync_requested: None,
            halted: None,
            accept_stops: parts.accept_stops,
            shutdown_timeout: parts.shutdown_timeout,
            drain_window_ms: parts.drain_window_ms,
            stop_requested: None,
            deadline_passed: false,
            reloader: parts.reloader,
            tls: parts.tls,
            pending_answers: PendingAnswers::default(),
            audit: parts.audit,
            users: parts.users,
            alarm_interval_ms: parts.alarm_interval_ms,
            memory_trim: TrimSchedule::new(parts.memory_trim_interval_ms),
            alerting: parts.alerting,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.started.elapsed().as_nanos() as u64)
    }

    /// Carries out what a new or recovered broker asks for before it serves anyone (its first
    /// segment, its checkpoint and the checkpoint's sync: docs/STORAGE.md §10.1) and waits for
    /// that sync. `Err` says why the log cannot be written; the broker must not serve then.
    pub async fn sync_startup_checkpoint(&mut self) -> Result<(), StartupSyncError> {
        self.carry_out_outputs();
        let Some(through) = self.sync_requested else { return Ok(()) };
        loop {
            let report = match self.storage_reports.as_mut() {
                Some(reports) => reports.next().await,
                None => None,
            };
            match report {
                Some(StorageDone::Failed(failure)) => return Err(failure.into()),
                Some(done) => {
                    let synced = matches!(done, StorageDone::Synced { through: t } if t >= through);
                    self.storage_done(done);
                    if synced {
                        return Ok(());
                    }
                }
                None => return Err(StartupSyncError::WorkerStopped),
            }
        }
    }

    /// Runs until a graceful shutdown has closed every connection and their writers finished,
    /// or until storage fails (`Err` with the failure, after clients were told).
    pub async fn run(
        mut self,
        events: mpsc::Receiver<LoopEvent>,
        accepted: mpsc::Receiver<Accepted<R::Stream>>,
    ) -> Result<(), StorageFailure> {
        let accepted = accepted.map(Inbox::Accepted);
        let mut inbox = futures::stream::select(accepted, events.map(Inbox::Event));
        // A new or recovered broker may still have work queued.
        self.carry_out_outputs();
        loop {
            if let Some(failure) = &self.halted {
                if self.writers_running == 0 || self.deadline_passed {
                    return Err(failure.clone());
                }
            } else if (self.broker.is_drained() && self.writers_running == 0)
                || self.deadline_passed
            {
                return Ok(());
            }
            let timer =
                self.broker.poll_timeout().map(|at| self.runtime.sleep_until(self.std_instant(at)));
            futures::pin_mut!(timer);
            let wake = future::poll_fn(|cx| {
                // While audit events wait for room (`audit.when_full = "block"`), no request is
                // read: storage reports and timers still run, so what was accepted completes.
                let audit_backed_up = self.audit.backed_up();
                if audit_backed_up && self.audit.poll_drain(cx).is_ready() {
                    return Poll::Ready(Wake::AuditDrained);
                }
                let inbox = (!audit_backed_up).then_some(&mut inbox);
                poll_wake(cx, &mut self.storage_reports, inbox, timer.as_mut().as_pin_mut())
            })
            .await;
            match wake {
                Wake::AuditDrained => {}
                Wake::Storage(done) => self.storage_done(done),
                Wake::Inbox(Some(event)) => {
                    self.handle_event(event);
                    self.carry_out_outputs();
                }
                Wake::Inbox(None) => return Ok(()),
                Wake::Timer => {
                    let now = self.now();
                    self.broker.handle_input(now, Input::Timeout);
                    self.carry_out_outputs();
                }
            }
        }
    }

    fn storage_done(&mut self, done: StorageDone) {
        let now = self.now();
        self.broker.handle_input(now, Input::Storage(done));
        self.carry_out_outputs();
        self.pending_answers.release(self.broker.log_synced_lsn());
    }

    fn std_instant(&self, deadline: Instant) -> StdInstant {
        self.started + std::time::Duration::from_nanos(deadline.as_nanos())
    }

    fn handle_event(&mut self, event: Inbox<R::Stream>) {
        let now = self.now();
        let event = match event {
            Inbox::Accepted(accepted) => return self.adopt(accepted),
            Inbox::Event(event) => event,
        };
        match event {
            LoopEvent::Received(conn, bytes) => {
                self.broker.handle_input(now, Input::Received { conn, bytes });
            }
            LoopEvent::Flushed(conn, bytes) => {
                self.broker.handle_input(now, Input::Flushed { conn, bytes });
            }
            LoopEvent::ReadClosed(conn) => {
                if let Some(handle) = self.connections.remove(&conn) {
                    handle.writer.unbounded_send(WriterMessage::Close).ok();
                    self.broker.handle_input(now, Input::Closed { conn });
                }
            }
            LoopEvent::WriterDone(conn) => {
                self.writers_running -= 1;
                if let Some(handle) = self.connections.remove(&conn) {
                    // The socket failed while writing; the broker still thinks it is open.
                    handle.gate.close();
                    self.broker.handle_input(now, Input::Closed { conn });
                }
            }
            LoopEvent::Shutdown => {
                tracing::info!("shutting down: closing {} connections", self.connections.len());
                self.stop_requested = Some(StopRequest::Shutdown);
                self.accept_stops.clear();
                self.broker.shutdown(now);
                self.arm_shutdown_deadline(self.shutdown_timeout);
            }
            LoopEvent::Reload(reply) => {
                let broker = &mut self.broker;
                let shutdown_timeout = &mut self.shutdown_timeout;
                let drain_window_ms = &mut self.drain_window_ms;
                let shared_users = &self.users;
                let tls = &mut self.tls;
                let alarm_interval_ms = &self.alarm_interval_ms;
                let memory_trim = &mut self.memory_trim;
                let alerting = &mut self.alerting;
                let result = self.reloader.reload(|config| {
                    let users = access::load(&config.auth)?;
                    // The TLS files are read again even when the configuration did not
                    // change: that is how a rotated certificate is picked up on SIGHUP.
                    let tls_prepared = tls.as_ref().map(|tls| tls.prepare(&config.tls));
                    let tls_prepared = tls_prepared.transpose()?;
                    broker.reconfigure(now, config.broker_config()).map_err(|error| {
                        format!("the broker refused the configuration: {error}")
                    })?;
                    *shutdown_timeout =
                        std::time::Duration::from_millis(config.server.shutdown_timeout_ms);
                    *drain_window_ms = config.server.drain_window_ms;
                    alarm_interval_ms.store(config.alarms.check_interval_ms, Ordering::Relaxed);
                    memory_trim.set_interval_ms(config.server.memory_trim_interval_ms);
                    let mut changes = match (tls.as_mut(), tls_prepared) {
                        (Some(tls), Some(prepared)) => tls.commit(prepared),
                        _ => Vec::new(),
                    };
                    changes.extend(access::describe_changes(
                        shared_users.get().as_deref(),
                        users.as_ref(),
                    ));
                    shared_users.set(users.clone());
                    shared_users.set_config(config.auth.clone());
                    broker.set_users(now, users);
                    alerting.reconfigure(&config.alerts, broker.config().wall_clock().unix_ms(now));
                    Ok(changes)
                });
                self.audit.reopen();
                self.audit.record(reload_audit(&result));
                // The asker (a signal, or an admin request that timed out) may be gone.
                let _ = reply.send(result);
            }
            LoopEvent::TlsFilesChanged => {
                if let Some(tls) = &mut self.tls {
                    tls.reload_files();
                }
            }
            LoopEvent::Stats(reply) => {
                // The asker may have timed out and gone; then nobody needs the snapshot.
                let _ = reply.send(self.broker.stats());
            }
            LoopEvent::Operator(request) => {
                let halted = self.halted.as_ref();
                let pending = &mut self.pending_answers;
                operator::carry_out(&mut self.broker, now, request, pending, halted);
            }
            LoopEvent::Drain { window_ms, reply } => {
                let answer = self.drain(now, window_ms.unwrap_or(self.drain_window_ms));
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            LoopEvent::Resources(reading) => {
                self.broker.handle_input(now, Input::Resources(reading));
                self.trim_memory_if_due();
            }
            LoopEvent::EvaluateAlerts => self.alerting.evaluate(now, &self.broker),
            LoopEvent::SetUsers { users, reply } => {
                self.users.set(Some(users.clone()));
                self.broker.set_users(now, Some(users));
                let _ = reply.send(());
            }
            LoopEvent::ShutdownDeadline => {
                tracing::warn!(
                    "{} connections did not finish writing in time",
                    self.writers_running
                );
                self.deadline_passed = true;
            }
        }
    }

    /// Returns free heap to the system when many connections have closed since the last time
    /// (memory_trim.rs says why and how often).
    fn trim_memory_if_due(&mut self) {
        let connections = self.connections.len() as u64;
        if !self.memory_trim.due(StdInstant::now(), connections) {
            return;
        }
        let started = StdInstant::now();
        memory_trim::release_free_memory();
        let elapsed_us = started.elapsed().as_micros() as u64;
        tracing::debug!(connections, elapsed_us, "returned free heap memory to the system");
    }

    /// Starts a drain of `window_ms` unless a stop is under way. The broker refuses new
    /// connections from now on, and stops by itself when the window ends; the deadline covers
    /// the window and then the graceful stop.
    fn drain(&mut self, now: Instant, window_ms: u32) -> DrainAnswer {
        if let Some(failure) = &self.halted {
            return DrainAnswer::Halted(failure.clone());
        }
        match self.stop_requested {
            Some(StopRequest::Drain) => return DrainAnswer::AlreadyDraining,
            Some(StopRequest::Shutdown) => return DrainAnswer::Stopping,
            None => {}
        }
        tracing::info!(
            window_ms,
            connections = self.connections.len(),
            "draining (lame duck): new connections are refused, clients are told to go away \
             over the window, then the server stops"
        );
        self.stop_requested = Some(StopRequest::Drain);
        self.broker.drain(now, window_ms);
        let window = std::time::Duration::from_millis(window_ms.into());
        self.arm_shutdown_deadline(window + self.shutdown_timeout);
        DrainAnswer::Started { window_ms }
    }

    /// Gives connections a bounded time (`delay`) to receive their last bytes.
    fn arm_shutdown_deadline(&self, delay: std::time::Duration) {
        let sleep = self.runtime.sleep_until(StdInstant::now() + delay);
        let mut events = self.events_tx.clone();
        self.runtime.spawn(async move {
            sleep.await;
            let _ = futures::SinkExt::send(&mut events, LoopEvent::ShutdownDeadline).await;
        });
    }

    /// Spawns the reader and writer of a new connection and tells the broker.
    fn adopt(&mut self, accepted: Accepted<R::Stream>) {
        let Accepted { stream, peer } = accepted;
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let (read_half, write_half) = stream.split();
        let gate = Arc::new(ReadGate::default());
        let (writer_tx, writer_rx) = mpsc::unbounded();
        let reader =
            read_loop(self.runtime.clone(), conn, read_half, gate.clone(), self.events_tx.clone());
        self.runtime.spawn(reader);
        self.runtime.spawn(write_loop(
            conn,
            write_half,
            writer_rx,
            gate.clone(),
            self.events_tx.clone(),
        ));
        self.writers_running += 1;
        self.connections.insert(conn, ConnHandle { writer: writer_tx, gate });
        self.memory_trim.saw_connections(self.connections.len() as u64);
        match &peer.addr {
            Some(addr) => tracing::debug!(%conn, peer = %addr, tls = peer.tls, "accepted"),
            None => tracing::debug!(%conn, tls = peer.tls, "accepted"),
        }
        let now = self.now();
        self.broker.handle_input(now, Input::Accepted { conn, peer });
    }

    fn carry_out_outputs(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Send { conn, bytes } => {
                    if let Some(handle) = self.connections.get(&conn) {
                        handle.writer.unbounded_send(WriterMessage::Data(bytes)).ok();
                    }
                }
                Output::PauseRead { conn } => self.set_paused(conn, true),
                Output::ResumeRead { conn } => self.set_paused(conn, false),
                Output::Close { conn } => {
                    if let Some(handle) = self.connections.remove(&conn) {
                        handle.writer.unbounded_send(WriterMessage::Close).ok();
                        handle.gate.close();
                    }
                }
                Output::Storage(request) => {
                    if let StorageRequest::Sync { through } = request {
                        self.sync_requested = Some(through);
                    }
                    // The worker only hangs up after a failure, which halts the broker anyway.
                    let _ = self.storage_tx.send(request);
                }
                Output::Event(Event::Halted { failure }) => {
                    tracing::error!(reason = %failure.halt_message(), "broker halted");
                    self.pending_answers.fail(&failure);
                    self.halted = Some(failure);
                    self.accept_stops.clear();
                    self.arm_shutdown_deadline(self.shutdown_timeout);
                }
                Output::Event(event) => log_event(&event),
                Output::Audit(event) => self.audit.record(event),
            }
        }
    }

    fn set_paused(&self, conn: ConnId, paused: bool) {
        if let Some(handle) = self.connections.get(&conn) {
            handle.gate.set_paused(paused);
        }
    }
}

/// The next thing for the broker task, storage reports first: a sync's report releases
/// every confirm it covers, and must not wait behind socket reads (up to [`EVENT_QUEUE_MAX`] of
/// them) that arrived while the sync ran. Then the inbox, then the timer. A report stream that
/// ended (the worker stopped) is dropped and not polled again.
fn poll_wake<T>(
    cx: &mut Context<'_>,
    storage_reports: &mut Option<impl Stream<Item = StorageDone> + Unpin>,
    inbox: Option<&mut (impl Stream<Item = T> + Unpin)>,
    timer: Option<Pin<&mut impl Future<Output = ()>>>,
) -> Poll<Wake<T>> {
    if let Some(reports) = storage_reports {
        match reports.poll_next_unpin(cx) {
            Poll::Ready(Some(done)) => return Poll::Ready(Wake::Storage(done)),
            Poll::Ready(None) => *storage_reports = None,
            Poll::Pending => {}
        }
    }
    if let Some(Poll::Ready(event)) = inbox.map(|inbox| inbox.poll_next_unpin(cx)) {
        return Poll::Ready(Wake::Inbox(event));
    }
    match timer.map(|timer| timer.poll(cx)) {
        Some(Poll::Ready(())) => Poll::Ready(Wake::Timer),
        _ => Poll::Pending,
    }
}

/// The audit event of a reload: what changed, or every problem.
fn reload_audit(result: &Result<ReloadOutcome, ReloadError>) -> AuditEvent {
    let (outcome, detail) = match result {
        Ok(outcome) => (AuditOutcome::Ok, outcome.changed.join("; ")),
        Err(error) => (AuditOutcome::Failed, error.to_string()),
    };
    AuditEvent {
        kind: AuditKind::ConfigReloaded,
        conn: None,
        user: None,
        peer: None,
        resource: None,
        outcome,
        detail,
    }
}

fn log_event(event: &Event) {
    match event {
        Event::ConnectionOpened { conn, client_name, version } => {
            tracing::info!(%conn, client = %client_name, version, "connection opened");
        }
        Event::ConnectionClosed { conn, code, message } => {
            tracing::info!(%conn, %code, %message, "connection closed");
        }
        Event::QueueCreated { name } => tracing::info!(queue = %name, "queue created"),
        Event::QueueDeleted { name } => tracing::info!(queue = %name, "queue deleted"),
        Event::Halted { failure } => tracing::error!(reason = %failure.halt_message(), "halted"),
        Event::AlarmRaised { resource, reading_bytes, threshold_bytes } => {
            tracing::warn!(
                %resource,
                reading_bytes,
                threshold_bytes,
                "{resource} alarm raised: publishes are held until it clears; consumers are served"
            );
        }
        Event::AlarmCleared { resource, reading_bytes, threshold_bytes } => {
            tracing::info!(
                %resource,
                reading_bytes,
                threshold_bytes,
                "{resource} alarm cleared: publishes are read again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::task::noop_waker_ref;

    use super::*;

    /// No timer: `poll_wake` then waits for reports and the inbox only.
    const NO_TIMER: Option<Pin<&mut future::Pending<()>>> = None;

    /// A storage report is taken before socket events that were queued before it, however many
    /// (here a full event queue): a sync's report, and the confirms it releases, never waits
    /// behind the reads that piled up while the sync ran.
    #[test]
    fn a_storage_report_comes_before_a_full_queue_of_socket_events() {
        let (mut events_tx, mut inbox) = mpsc::channel(EVENT_QUEUE_MAX);
        for n in 0..EVENT_QUEUE_MAX as u64 {
            events_tx.try_send(LoopEvent::Flushed(ConnId(1), n)).expect("room in the queue");
        }
        let (reports_tx, reports_rx) = mpsc::unbounded();
        reports_tx.unbounded_send(StorageDone::Synced { through: Lsn(7) }).unwrap();
        let mut reports = Some(reports_rx);
        let mut cx = Context::from_waker(noop_waker_ref());

        let first = poll_wake(&mut cx, &mut reports, Some(&mut inbox), NO_TIMER);
        assert!(
            matches!(first, Poll::Ready(Wake::Storage(StorageDone::Synced { through: Lsn(7) }))),
            "the report first"
        );
        let second = poll_wake(&mut cx, &mut reports, Some(&mut inbox), NO_TIMER);
        assert!(matches!(second, Poll::Ready(Wake::Inbox(Some(LoopEvent::Flushed(_, 0))))));
    }

    /// When the worker has stopped (its end of the channel is gone), the reports are dropped
    /// and the inbox is served, instead of a closed stream waking the task again and again.
    #[test]
    fn an_ended_report_stream_is_dropped() {
        let (mut events_tx, mut inbox) = mpsc::channel(1);
        let (reports_tx, reports_rx) = mpsc::unbounded::<StorageDone>();
        drop(reports_tx);
        let mut reports = Some(reports_rx);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(poll_wake(&mut cx, &mut reports, Some(&mut inbox), NO_TIMER).is_pending());
        assert!(reports.is_none());
        events_tx.try_send(LoopEvent::Shutdown).unwrap();
        let woken = poll_wake(&mut cx, &mut reports, Some(&mut inbox), NO_TIMER);
        assert!(matches!(woken, Poll::Ready(Wake::Inbox(Some(LoopEvent::Shutdown)))));
    }
}
