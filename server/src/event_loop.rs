//! The one task that owns the `Broker`: it turns socket events into inputs, carries out the
//! outputs, and sleeps until the broker's next deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use chute_core::storage::io::{StorageDone, StorageRequest};
use chute_core::{Broker, BrokerStats, ConnId, Event, Input, Instant, Output};
use futures::channel::mpsc;
use futures::future::{self, Either};
use futures::io::AsyncReadExt;
use futures::StreamExt;

use crate::connection::{read_loop, write_loop, ReadGate, WriterMessage};
use crate::runtime::Runtime;

/// Events from the connection tasks, the signal thread and the admin endpoint to the broker task.
pub enum LoopEvent {
    Received(ConnId, Bytes),
    Flushed(ConnId, u64),
    ReadClosed(ConnId),
    WriterDone(ConnId),
    /// Stop gracefully (SIGINT, SIGTERM).
    Shutdown,
    /// The graceful stop took too long; exit with what is written.
    ShutdownDeadline,
    /// The storage worker's report.
    Storage(StorageDone),
    /// The admin endpoint asks for a snapshot of the broker.
    Stats(futures::channel::oneshot::Sender<BrokerStats>),
}

/// Everything the broker task waits for.
enum Inbox<S> {
    Accepted(S, std::net::SocketAddr),
    Event(LoopEvent),
}

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
    pub storage_tx: std::sync::mpsc::Sender<StorageRequest>,
    pub accept_stop: futures::channel::oneshot::Sender<()>,
    pub shutdown_timeout: std::time::Duration,
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
    storage_tx: std::sync::mpsc::Sender<StorageRequest>,
    /// Why the broker halted, once it did.
    halted: Option<String>,
    /// Dropped to stop the accept loop.
    accept_stop: Option<futures::channel::oneshot::Sender<()>>,
    shutdown_timeout: std::time::Duration,
    deadline_passed: bool,
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
            halted: None,
            accept_stop: Some(parts.accept_stop),
            shutdown_timeout: parts.shutdown_timeout,
            deadline_passed: false,
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.started.elapsed().as_nanos() as u64)
    }

    /// Runs until a graceful shutdown has closed every connection and their writers finished,
    /// or until storage fails (`Err` with the reason, after clients were told).
    pub async fn run(
        mut self,
        events: mpsc::Receiver<LoopEvent>,
        accepted: mpsc::Receiver<(R::Stream, std::net::SocketAddr)>,
    ) -> Result<(), String> {
        let accepted = accepted.map(|(stream, peer)| Inbox::Accepted(stream, peer));
        let mut inbox = futures::stream::select(accepted, events.map(Inbox::Event));
        // A new or recovered broker already has work queued: its first segment, its checkpoint.
        self.carry_out_outputs();
        loop {
            if let Some(reason) = &self.halted {
                if self.writers_running == 0 || self.deadline_passed {
                    return Err(reason.clone());
                }
            } else if (self.broker.is_drained() && self.writers_running == 0)
                || self.deadline_passed
            {
                return Ok(());
            }
            let event = match self.broker.poll_timeout() {
                Some(deadline) => {
                    let sleep = self.runtime.sleep_until(self.std_instant(deadline));
                    futures::pin_mut!(sleep);
                    match future::select(inbox.next(), sleep).await {
                        Either::Left((event, _)) => event,
                        Either::Right(((), _)) => {
                            let now = self.now();
                            self.broker.handle_input(now, Input::Timeout);
                            self.carry_out_outputs();
                            continue;
                        }
                    }
                }
                None => inbox.next().await,
            };
            let Some(event) = event else { return Ok(()) };
            self.handle_event(event);
            self.carry_out_outputs();
        }
    }

    fn std_instant(&self, deadline: Instant) -> StdInstant {
        self.started + std::time::Duration::from_nanos(deadline.as_nanos())
    }

    fn handle_event(&mut self, event: Inbox<R::Stream>) {
        let now = self.now();
        let event = match event {
            Inbox::Accepted(stream, peer) => return self.adopt(stream, peer),
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
                self.accept_stop.take();
                self.broker.shutdown(now);
                self.arm_shutdown_deadline();
            }
            LoopEvent::Storage(done) => self.broker.handle_input(now, Input::Storage(done)),
            LoopEvent::Stats(reply) => {
                // The asker may have timed out and gone; then nobody needs the snapshot.
                let _ = reply.send(self.broker.stats());
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

    /// Gives connections a bounded time to receive their last bytes.
    fn arm_shutdown_deadline(&self) {
        let sleep = self.runtime.sleep_until(StdInstant::now() + self.shutdown_timeout);
        let mut events = self.events_tx.clone();
        self.runtime.spawn(async move {
            sleep.await;
            let _ = futures::SinkExt::send(&mut events, LoopEvent::ShutdownDeadline).await;
        });
    }

    /// Spawns the reader and writer of a new connection and tells the broker.
    fn adopt(&mut self, stream: R::Stream, peer: std::net::SocketAddr) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let (read_half, write_half) = stream.split();
        let gate = Arc::new(ReadGate::default());
        let (writer_tx, writer_rx) = mpsc::unbounded();
        self.runtime.spawn(read_loop(conn, read_half, gate.clone(), self.events_tx.clone()));
        self.runtime.spawn(write_loop(
            conn,
            write_half,
            writer_rx,
            gate.clone(),
            self.events_tx.clone(),
        ));
        self.writers_running += 1;
        self.connections.insert(conn, ConnHandle { writer: writer_tx, gate });
        tracing::debug!(%conn, %peer, "accepted");
        let now = self.now();
        self.broker.handle_input(now, Input::Accepted { conn });
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
                    // The worker only hangs up after a failure, which halts the broker anyway.
                    let _ = self.storage_tx.send(request);
                }
                Output::Event(Event::Halted { reason }) => {
                    tracing::error!(%reason, "broker halted");
                    self.halted = Some(reason);
                    self.accept_stop.take();
                    self.arm_shutdown_deadline();
                }
                Output::Event(event) => log_event(&event),
            }
        }
    }

    fn set_paused(&self, conn: ConnId, paused: bool) {
        if let Some(handle) = self.connections.get(&conn) {
            handle.gate.set_paused(paused);
        }
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
        Event::Halted { reason } => tracing::error!(%reason, "halted"),
    }
}
