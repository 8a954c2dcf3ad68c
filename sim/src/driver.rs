//! Driving the broker: feeding it inputs, carrying out its outputs (bytes onto the network,
//! requests to the storage worker), its timer, and its crashes and restarts through the real
//! recovery path.

use bytes::Bytes;
use chute_core::storage::format::parse_segment_file_name;
use chute_core::storage::io::{ReadId, StorageDone, StorageRequest};
use chute_core::{Broker, BrokerConfig, ConnId, Event as BrokerEvent, Input, Output};
use chute_protocol::Frame;

use crate::events::Event;
use crate::report::Outcome;
use crate::trace::TraceEvent;
use crate::world::{Phase, World};

impl World {
    /// Feeds the broker one input and carries out everything it asks for. Inputs caused by
    /// outputs (`Flushed`, a close) are fed after, in order, never re-entrantly.
    pub fn broker_input(&mut self, input: Input) {
        self.broker_inbox.push_back(input);
        if !self.in_broker {
            self.run_broker();
        }
    }

    /// Drains the broker's outputs (after `new`/`recover`), then any queued inputs.
    pub fn drain_broker_now(&mut self) {
        if !self.in_broker {
            self.run_broker();
        }
    }

    fn run_broker(&mut self) {
        self.in_broker = true;
        self.drain_outputs();
        while let Some(input) = self.broker_inbox.pop_front() {
            let now = self.now;
            let Some(broker) = self.broker.as_mut() else {
                self.broker_inbox.clear();
                break;
            };
            broker.handle_input(now, input);
            self.drain_outputs();
            // The broker's own invariants after every input, so that a failing seed points
            // at the input that broke its state (a panic here is reported as the failure).
            if let Some(broker) = self.broker.as_ref() {
                broker.check_invariants();
            }
        }
        self.in_broker = false;
        let result = self.oracle.check_emitted(&self.topology);
        self.check(result);
        self.arm_broker_timer();
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.broker.as_mut().and_then(Broker::poll_output) {
            self.on_output(output);
        }
    }

    fn arm_broker_timer(&mut self) {
        let Some(at) = self.broker.as_ref().and_then(Broker::poll_timeout) else { return };
        let at = at.max(self.now);
        if self.broker_timer_at.is_none_or(|current| at < current) {
            self.broker_timer_at = Some(at);
            self.events.push(at, Event::BrokerTimer { incarnation: self.incarnation });
        }
    }

    pub fn on_broker_timer(&mut self, incarnation: u64) {
        if incarnation != self.incarnation || self.broker_timer_at != Some(self.now) {
            return;
        }
        self.broker_timer_at = None;
        self.broker_input(Input::Timeout);
    }

    fn on_output(&mut self, output: Output) {
        match output {
            Output::Send { conn, bytes } => self.on_send(conn, bytes),
            Output::PauseRead { conn } => {
                self.record(TraceEvent::PauseRead { conn: conn.0 });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.read_paused = true;
                }
            }
            Output::ResumeRead { conn } => {
                self.record(TraceEvent::ResumeRead { conn: conn.0 });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.read_paused = false;
                    self.schedule(0, Event::Unpause { conn });
                }
            }
            Output::Close { conn } => {
                self.record(TraceEvent::BrokerClose { conn: conn.0 });
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.broker_open = false;
                    c.broker_closing = true;
                    c.paused_bytes.clear();
                }
                self.finish_broker_close(conn);
                self.maybe_remove(conn);
            }
            Output::Storage(request) => self.on_storage_request(request),
            Output::Event(event) => self.on_broker_event(event),
            // The simulated broker runs without an audit log.
            Output::Audit(_) => unreachable!("the simulator does not turn the audit log on"),
        }
    }

    fn on_send(&mut self, conn: ConnId, bytes: Bytes) {
        self.observe_emitted(conn, &bytes);
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.outbox_bytes += bytes.len() as u64;
        c.outbox.push_back(bytes);
        self.pump_outbox(conn);
        let Some(c) = self.conns.get(&conn) else { return };
        let outbox = c.outbox_bytes;
        self.stats.outbox_bytes_max = self.stats.outbox_bytes_max.max(outbox);
        // The broker stops queueing deliveries at `connection_outbound_bytes_max` and stops
        // reading (so earns no more replies); a dispatch pass may overshoot by one frame.
        let limits = &self.broker_config.limits;
        let bound = limits.connection_outbound_bytes_max + u64::from(limits.frame_size_max);
        if outbox > bound {
            self.fail((
                "bounded-buffer",
                format!(
                    "c{}: {outbox} bytes emitted and not taken by the network (bound {bound})",
                    conn.0
                ),
            ));
        }
    }

    /// Decodes what the broker emitted, checking every delivery.
    fn observe_emitted(&mut self, conn: ConnId, bytes: &Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.decoder.feed(bytes.clone());
        let mut frames = Vec::new();
        loop {
            match c.decoder.next_frame() {
                Ok(Some(Frame::Deliver(deliver))) => frames.push(deliver),
                Ok(Some(Frame::Blocked(_))) => c.blocked_at_sent = Some(c.publishes_sent),
                Ok(Some(Frame::Unblocked(_))) => c.blocked_at_sent = None,
                Ok(Some(Frame::Confirm(confirm))) => {
                    let last = confirm.ranges.iter().filter_map(|r| r.last()).max();
                    if let (Some(sent), Some(last)) = (c.blocked_at_sent, last) {
                        if last > sent {
                            let detail = format!(
                                "c{}: publish {last} confirmed while the connection is blocked; \
                                 it was sent after Blocked (only 1..={sent} were sent before)",
                                conn.0
                            );
                            return self.fail(("publish-while-blocked", detail));
                        }
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(err) => {
                    let detail =
                        format!("c{}: the broker emitted bytes that do not decode: {err}", conn.0);
                    return self.fail(("broker-frames", detail));
                }
            }
        }
        for deliver in frames {
            let Some(q) = self.conns[&conn].subs.get(&deliver.subscription).copied() else {
                let detail = format!(
                    "c{}: delivery on unknown subscription {}",
                    conn.0, deliver.subscription
                );
                return self.fail(("broker-frames", detail));
            };
            for delivery in &deliver.deliveries {
                match self.oracle.on_emitted(&self.topology, q, delivery) {
                    Ok(key) => {
                        self.stats.deliveries += 1;
                        let (attempt, tag) = (delivery.attempt, delivery.tag);
                        self.record(TraceEvent::Deliver {
                            conn: conn.0,
                            queue: q,
                            key,
                            attempt,
                            tag,
                        });
                    }
                    Err(violation) => return self.fail(violation),
                }
            }
        }
    }

    fn on_broker_event(&mut self, event: BrokerEvent) {
        match event {
            BrokerEvent::Halted { .. } => {
                self.record(TraceEvent::Halted);
                if !self.crash_pending {
                    self.crash_pending = true;
                    // After a failed fsync the page cache cannot be trusted: what reaches the
                    // disk is what a machine crash would leave.
                    let after = self.rng.range(1, 20);
                    self.schedule(after, Event::Crash { machine: true });
                }
            }
            BrokerEvent::ConnectionClosed { conn, code, .. } => {
                self.record(TraceEvent::BrokerEvent { what: "closed", conn: conn.0, code: code.0 });
            }
            BrokerEvent::ConnectionOpened { conn, .. } => {
                self.record(TraceEvent::BrokerEvent { what: "opened", conn: conn.0, code: 0 });
            }
            _ => {}
        }
    }

    // ---- storage ----

    fn on_storage_request(&mut self, request: StorageRequest) {
        if let StorageRequest::Read { id, base_lsn, offset, len } = request {
            self.record(TraceEvent::Storage { op: "read", base: base_lsn.0, end: offset, len });
            let ns = self.disk.push_read(id, request, &mut self.rng);
            let at = self.after_ns(ns);
            self.events.push(at, Event::ReadDone { epoch: self.storage_epoch, id });
            return;
        }
        let (op, base, end, len) = match &request {
            StorageRequest::CreateSegment { base_lsn, .. } => ("create", base_lsn.0, 0, 0),
            StorageRequest::Append { base_lsn, end_lsn, bytes } => {
                match self.oracle.on_append(&self.topology, end_lsn.0, bytes) {
                    Ok(stored) => {
                        for (queue, key, seq, end) in stored {
                            self.record(TraceEvent::Logged { queue, key, seq, end });
                        }
                    }
                    Err(violation) => self.fail(violation),
                }
                ("append", base_lsn.0, end_lsn.0, bytes.len() as u32)
            }
            StorageRequest::Sync { through } => ("sync", 0, through.0, 0),
            StorageRequest::DeleteSegment { base_lsn } => ("delete", base_lsn.0, 0, 0),
            StorageRequest::WriteManifest { slot_offset, .. } => ("manifest", *slot_offset, 0, 0),
            StorageRequest::Read { .. } => unreachable!("reads returned above"),
        };
        self.record(TraceEvent::Storage { op, base, end, len });
        if self.disk.push(request) {
            self.start_storage();
        }
    }

    fn start_storage(&mut self) {
        let fail_per_mille =
            if self.phase == Phase::Faults { self.cfg.faults.fsync_failure_per_mille } else { 0 };
        let started = self.disk.start(&mut self.rng, fail_per_mille);
        if let Some(ns) = started.sync_ns {
            let at = self.after_ns(ns);
            self.events.push(at, Event::SyncDone { epoch: self.storage_epoch });
        }
        if let Some(ns) = started.write_ns {
            let at = self.after_ns(ns);
            self.events.push(at, Event::StorageDone { epoch: self.storage_epoch });
        }
    }

    pub fn on_read_done(&mut self, epoch: u64, id: ReadId) {
        if epoch != self.storage_epoch {
            return;
        }
        let fail_per_mille =
            if self.phase == Phase::Faults { self.cfg.faults.read_failure_per_mille } else { 0 };
        if let Some(done) = self.disk.complete_read(id, &mut self.rng, fail_per_mille) {
            let ok = matches!(&done, StorageDone::Read { result: Ok(_), .. });
            self.stats.reads += 1;
            self.stats.read_failures += u64::from(!ok);
            self.record(TraceEvent::StorageDone {
                op: if ok { "read" } else { "read-failed" },
                through: id.0,
            });
            self.broker_input(Input::Storage(done));
        }
    }

    pub fn on_storage_done(&mut self, epoch: u64) {
        if epoch != self.storage_epoch {
            return;
        }
        match self.disk.complete() {
            Ok((_, done)) => {
                if let Some(done) = done {
                    self.storage_report(done);
                }
                self.start_storage();
            }
            Err(refused) => self.fail(("storage-request", refused.to_string())),
        }
    }

    /// The sync beside the writes finished (or failed).
    pub fn on_sync_done(&mut self, epoch: u64) {
        if epoch != self.storage_epoch {
            return;
        }
        if let Some(done) = self.disk.complete_sync() {
            self.storage_report(done);
        }
        self.start_storage();
    }

    fn storage_report(&mut self, done: StorageDone) {
        match &done {
            StorageDone::Written { through } => {
                self.oracle.on_written(through.0);
                self.record(TraceEvent::StorageDone { op: "written", through: through.0 })
            }
            StorageDone::Synced { through } => {
                self.oracle.on_synced(through.0);
                self.record(TraceEvent::StorageDone { op: "synced", through: through.0 })
            }
            StorageDone::Failed { .. } => {
                self.stats.fsync_failures += 1;
                self.record(TraceEvent::StorageFailed);
            }
            StorageDone::Read { .. } => unreachable!("reads complete apart (on_read_done)"),
        }
        self.broker_input(Input::Storage(done));
    }

    // ---- crash and restart ----

    /// The broker process dies (or the machine under it). Every connection dies with it.
    pub fn crash(&mut self, machine: bool) {
        if self.broker.is_none() {
            return;
        }
        self.crash_pending = false;
        self.broker = None;
        self.broker_timer_at = None;
        self.broker_inbox.clear();
        self.storage_epoch += 1;
        let damage = if machine {
            self.stats.machine_crashes += 1;
            let damage = self.disk.machine_crash(&mut self.rng);
            let kept_end_lsn = self.disk.kept_end_lsn().unwrap_or(0);
            self.oracle.on_machine_crash(&self.topology, kept_end_lsn);
            damage
        } else {
            self.stats.process_crashes += 1;
            self.disk.process_crash(&mut self.rng)
        };
        self.record(TraceEvent::Crash {
            machine,
            files: self.disk.mem.files().len() as u32,
            dir_ops_lost: damage.dir_ops_lost,
            torn_bytes: damage.torn_bytes,
        });
        for (conn, c) in std::mem::take(&mut self.conns) {
            if c.client_attached {
                self.record(TraceEvent::ClientSawClosed { conn: conn.0 });
                let reason = "the broker crashed".to_string();
                let closed = chute_core::client::SessionInput::TransportClosed { reason };
                self.session_input(c.actor, closed);
            }
        }
        let downtime = self.rng.range(1, self.cfg.faults.downtime_ms_max.max(1));
        self.schedule(downtime, Event::Restart);
    }

    /// Starts a broker from what the crash left on disk, one segment at a time through
    /// `Recovery`, as the server does.
    pub fn restart(&mut self) {
        if self.broker.is_some() {
            return;
        }
        let flip =
            if self.phase == Phase::Faults && self.rng.chance(self.cfg.faults.bit_flip_per_mille) {
                self.disk.flip_bit(&mut self.rng)
            } else {
                None
            };
        if let Some((base, offset, bit)) = flip {
            self.stats.bit_flips += 1;
            self.record(TraceEvent::Flip { base: base.0, offset, bit });
        }
        let loss = if flip.is_none()
            && self.phase == Phase::Faults
            && self.rng.chance(self.cfg.faults.segment_loss_per_mille)
        {
            self.disk.lose_segment_data(&mut self.rng)
        } else {
            None
        };
        if let Some(loss) = loss {
            self.stats.segment_losses += 1;
            self.record(TraceEvent::SegmentLoss(format!("{loss:?}")));
        }
        let files = self.disk.segment_count();
        let expected = self.disk.expected_recovery();
        let mut config = BrokerConfig {
            seed: self.broker_config.seed ^ (self.incarnation + 1),
            ..self.broker_config.clone()
        };
        if self.cfg.encryption {
            config.keyring = crate::world::sim_keyring(self.cfg.seed, self.incarnation + 1);
        }
        match self.disk.recover(config, self.now) {
            Ok((broker, report)) => {
                if let Some((base, offset, bit)) = flip {
                    return self.fail((
                        "undetected-corruption",
                        format!(
                            "recovery accepted segment {base} with bit {bit} of byte {offset} \
                             flipped: {report:?}"
                        ),
                    ));
                }
                let truncation = report.truncation.as_ref().map(|t| {
                    (parse_segment_file_name(&t.file).map_or(u64::MAX, |b| b.0), t.valid_len)
                });
                if truncation != expected.truncation || report.records != expected.records {
                    return self.fail((
                        "recovery",
                        format!(
                            "recovery kept {} records and cut {truncation:?}; the files hold {} \
                             valid records and a torn tail at {:?}",
                            report.records, expected.records, expected.truncation
                        ),
                    ));
                }
                if let Err(refused) = self.disk.recovered(report.truncation.as_ref()) {
                    return self.fail(("recovery", refused.to_string()));
                }
                self.incarnation += 1;
                self.stats.truncations += u64::from(report.truncation.is_some());
                let end_lsn = self.disk.kept_end_lsn().unwrap_or(0);
                self.oracle.restarted(self.now, end_lsn);
                self.record(TraceEvent::Restart {
                    incarnation: self.incarnation,
                    files: files as u32,
                    truncated: report.truncation.as_ref().map(|t| t.dropped_bytes),
                });
                self.broker = Some(broker);
                self.give_users();
                self.drain_broker_now();
                // A restarted broker has no reading yet: the alarm fault still stands.
                if self.alarm_raised {
                    self.feed_alarm_reading();
                }
            }
            Err(error) => {
                self.record(TraceEvent::RecoveryRefused);
                if flip.is_some() {
                    self.phase = Phase::Done;
                    self.outcome = Some(Outcome::CorruptionDetected { error: error.to_string() });
                } else if loss.is_some()
                    && matches!(error, chute_core::storage::recovery::RecoveryError::CutShort(_))
                {
                    self.phase = Phase::Done;
                    self.outcome = Some(Outcome::LossDetected { error: error.to_string() });
                } else {
                    self.fail((
                        "recovery-refused",
                        format!("recovery refused a log nothing corrupted: {error}"),
                    ));
                }
            }
        }
    }
}
