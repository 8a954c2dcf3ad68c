//! The simulated world: one broker (crashed and recovered as faults dictate), its disk, the
//! network, and the client actors, all driven by one event queue on simulated time.
//!
//! A run goes through three phases:
//! 1. setup: an admin client declares every queue and binding (no faults yet);
//! 2. faults: publishers publish, consumers consume, and faults are injected;
//! 3. liveness: faults stop, publishers only finish what is unconfirmed, consumers ack
//!    everything, a drainer consumes every queue and dead-letter queue; the run ends as soon as
//!    everything drained and every confirmed message is accounted for, and fails if the phase
//!    runs out first.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use chute_core::client::ClientConfig;
use chute_core::policy::alarm::ResourceReading;
use chute_core::storage::seal::Keyring;
use chute_core::{Broker, BrokerConfig, ConnId, Input, Instant};
use chute_protocol::{FrameReader, FRAME_SIZE_CEILING};

use crate::actors::{Actor, Role};
use crate::config::SimConfig;
use crate::disk::Disk;
use crate::events::{Event, EventQueue, FaultKind, Wake};
use crate::oracle::{Oracle, Violation};
use crate::report::{Failure, Outcome, Stats, Summary};
use crate::rng::SimRng;
use crate::topology::{QIdx, Topology};
use crate::trace::{Trace, TraceEvent};
use crate::users::SimUsers;

/// Unix time (ms) at simulated time zero.
pub const EPOCH_UNIX_MS: u64 = 1_700_000_000_000;
/// Heartbeat interval the clients ask for; a connection silent for three is dead.
pub const HEARTBEAT_MS: u32 = 300;

/// The memory alarm's threshold; the alarm faults feed readings of twice this, then of 0.
pub const ALARM_MEMORY_HIGH_BYTES: u64 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Faults,
    Liveness,
    Done,
}

/// One direction of a connection: chunks in flight, delivered in order.
#[derive(Debug, Default)]
pub struct Pipe {
    pub chunks: VecDeque<Bytes>,
    /// Arrival time of the last chunk sent (later chunks never overtake it).
    pub last_at: Instant,
}

/// A connection as the network and the driver see it.
#[derive(Debug)]
pub struct SimConn {
    pub actor: usize,
    pub up: Pipe,
    pub down: Pipe,
    /// Bytes the broker emitted that the network has not taken yet (not reported `Flushed`).
    pub outbox: VecDeque<Bytes>,
    pub outbox_bytes: u64,
    /// Broker-to-client bytes in the network and not yet read; at most `window_max`.
    pub window_bytes: u64,
    pub window_max: u64,
    /// The broker knows the connection (neither closed it nor was told it closed).
    pub broker_open: bool,
    /// The broker asked to close: flush the down direction, then the client sees the close.
    pub broker_closing: bool,
    /// The client machine is alive on this connection.
    pub client_attached: bool,
    /// The client asked to close: flush the up direction, then the broker sees `Closed`.
    pub client_closing: bool,
    pub read_paused: bool,
    /// Client bytes that arrived while the broker was not reading.
    pub paused_bytes: VecDeque<Bytes>,
    /// Decodes what the broker emits, for the invariants.
    pub decoder: FrameReader,
    /// Decodes what the client sends, to count its publishes.
    pub up_decoder: FrameReader,
    /// Publish messages the client has put on the wire on this connection: the sequence
    /// number of the last one.
    pub publishes_sent: u64,
    /// While the broker has told the connection `Blocked` (and not yet `Unblocked`): how many
    /// publishes the client had sent when it was told. Only those may be confirmed meanwhile.
    pub blocked_at_sent: Option<u64>,
    /// The queue of each subscription the client asked for on this connection.
    pub subs: BTreeMap<u32, QIdx>,
    /// A partition holds both directions until then; a stall holds the down direction.
    pub hold_until: Instant,
    pub stall_until: Instant,
}

impl SimConn {
    fn new(actor: usize, window_max: u64) -> SimConn {
        SimConn {
            actor,
            up: Pipe::default(),
            down: Pipe::default(),
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            window_bytes: 0,
            window_max,
            broker_open: true,
            broker_closing: false,
            client_attached: true,
            client_closing: false,
            read_paused: false,
            paused_bytes: VecDeque::new(),
            decoder: FrameReader::new(FRAME_SIZE_CEILING),
            up_decoder: FrameReader::expecting_preface(FRAME_SIZE_CEILING),
            publishes_sent: 0,
            blocked_at_sent: None,
            subs: BTreeMap::new(),
            hold_until: Instant::ZERO,
            stall_until: Instant::ZERO,
        }
    }
}

pub struct World {
    pub cfg: SimConfig,
    pub now: Instant,
    pub rng: SimRng,
    pub events: EventQueue,
    pub trace: Trace,
    pub topology: Topology,
    pub broker_config: BrokerConfig,
    pub client_config: ClientConfig,
    pub broker: Option<Broker>,
    /// Restarts so far.
    pub incarnation: u64,
    pub broker_timer_at: Option<Instant>,
    /// Inputs for the broker, fed in order (outputs may cause inputs, such as `Flushed`).
    pub broker_inbox: VecDeque<Input>,
    pub in_broker: bool,
    pub disk: Disk,
    /// Bumped by every crash, so completions of requests the crash lost are ignored.
    pub storage_epoch: u64,
    pub conns: BTreeMap<ConnId, SimConn>,
    pub next_conn: u64,
    pub actors: Vec<Actor>,
    pub oracle: Oracle,
    pub phase: Phase,
    pub stats: Stats,
    pub failure: Option<Violation>,
    pub outcome: Option<Outcome>,
    pub crash_pending: bool,
    /// A resource alarm fault is on: the broker was last fed a reading above the threshold
    /// (fed again after a restart, since a new broker has no reading).
    pub alarm_raised: bool,
    /// The users and every table given to the broker (none: the broker has no users).
    pub users: SimUsers,
}

/// The keyring of a sealed run for its `start`-th start: one key drawn from the seed, and salts
/// that differ at every start, as a server's random ones do. Drawn from generators of their own,
/// so the run's other choices are the same with and without encryption.
pub fn sim_keyring(seed: u64, start: u64) -> Keyring {
    let bytes = |rng: &mut SimRng, out: &mut [u8]| {
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
        }
    };
    let (mut key, mut salt_seed) = ([0u8; 32], [0u8; 16]);
    bytes(&mut SimRng::new(seed ^ 0x6b65_795f_6b65_795f), &mut key);
    bytes(&mut SimRng::new(seed.rotate_left(17) ^ start ^ 0x7361_6c74), &mut salt_seed);
    Keyring::new([(1, key)], salt_seed).expect("one key")
}

impl World {
    pub fn new(cfg: SimConfig) -> World {
        let mut rng = SimRng::new(cfg.seed);
        let mut broker_config = BrokerConfig {
            server_name: "chute-sim".into(),
            seed: rng.next_u64(),
            epoch_unix_ms: EPOCH_UNIX_MS,
            ..BrokerConfig::default()
        };
        let limits = &mut broker_config.limits;
        // Small buffers, so that a consumer that stops reading soon reaches the broker's bound
        // on what it queues for a connection.
        limits.frame_size_max = 16 * 1024;
        limits.payload_size_max = 8 * 1024;
        limits.unconfirmed_max = 256;
        limits.connection_outbound_bytes_max = 16 * 1024;
        broker_config.timeouts.heartbeat_ms = HEARTBEAT_MS;
        broker_config.timeouts.heartbeat_ms_min = 100;
        broker_config.timeouts.handshake_timeout_ms = 2_000;
        broker_config.storage.segment_bytes_max = cfg.segment_bytes_max;
        // Manifest updates far more often than the default second, so that crashes and
        // operators' losses meet them in the short runs.
        broker_config.storage.manifest_interval_ms = 50;
        if cfg.encryption {
            broker_config.keyring = sim_keyring(cfg.seed, 0);
        }
        // Half of the runs hold a few KiB of payloads at most, so that backlogs leave memory
        // and are read back; drawn from a generator of its own, so that the run's other
        // choices do not depend on it.
        let mut cache_rng = SimRng::new(cfg.seed ^ 0x6361_6368_655f_6279);
        if cache_rng.chance(500) {
            broker_config.storage.payload_cache_bytes = cache_rng.range(0, 8 * 1024);
        }
        // The alarm faults feed readings around this threshold; the disk alarm is off (the
        // simulated disk has no size).
        broker_config.alarms.memory_high_bytes = Some(ALARM_MEMORY_HIGH_BYTES);
        broker_config.alarms.disk_free_low_bytes = Some(0);
        let client_config = ClientConfig {
            client_name: "sim".into(),
            heartbeat_ms: HEARTBEAT_MS,
            handshake_timeout_ms: 2_000,
            unconfirmed_max_initial: 256,
            ..ClientConfig::default()
        };
        let trace = Trace::new(cfg.full_trace);
        let topology = Topology::standard();
        // From a generator of its own, so that the run's other choices do not depend on it.
        let mut users_rng = SimRng::new(cfg.seed ^ 0x7573_6572_735f_7273);
        let users = if cfg.users > 0 {
            // The workload's actors come in as the anonymous user, who may do everything.
            broker_config.auth.allow_anonymous = true;
            SimUsers::generate(cfg.users, &topology, &mut users_rng)
        } else {
            SimUsers::default()
        };
        let mut world = World {
            now: Instant::ZERO,
            rng,
            events: EventQueue::default(),
            trace,
            topology,
            broker_config,
            client_config,
            broker: None,
            incarnation: 0,
            broker_timer_at: None,
            broker_inbox: VecDeque::new(),
            in_broker: false,
            disk: Disk::default(),
            storage_epoch: 0,
            conns: BTreeMap::new(),
            next_conn: 1,
            actors: Vec::new(),
            oracle: Oracle::new(EPOCH_UNIX_MS),
            phase: Phase::Setup,
            stats: Stats::default(),
            failure: None,
            outcome: None,
            crash_pending: false,
            alarm_raised: false,
            users,
            cfg,
        };
        if world.cfg.encryption {
            world.oracle.keyring = Some(sim_keyring(world.cfg.seed, 0));
        }
        world.create_actors();
        world
    }

    /// Runs events until the run passes, fails, or runs out of events.
    pub fn run_events(&mut self) {
        let broker = Broker::new(self.broker_config.clone(), self.now);
        self.broker = Some(broker);
        self.give_users();
        self.drain_broker_now();
        self.schedule(0, Event::Wake { actor: 0, wake: Wake::Start });
        let deadline = self.cfg.fault_phase_ms + self.cfg.liveness_phase_ms + 30_000;
        self.schedule(deadline, Event::Deadline);
        while let Some((at, event)) = self.events.pop() {
            debug_assert!(at >= self.now, "time went backwards");
            self.now = at;
            self.handle(event);
            if self.failure.is_some() || self.outcome.is_some() {
                break;
            }
        }
    }

    pub fn finish(mut self) -> Result<Summary, Failure> {
        self.stats.fifo_checked = self.oracle.fifo_checked;
        self.stats.dead_letters_audited = self.oracle.audited;
        self.stats.fifo_unordered = self.oracle.fifo_unordered;
        [self.stats.dead_max_attempts, self.stats.dead_rejected, self.stats.dead_expired] =
            self.oracle.audited_reasons;
        self.stats.lost_allowed =
            self.oracle.copies.values().filter(|c| c.may_be_lost && !c.acked).count() as u64;
        self.stats.syncs = self.disk.mem.syncs;
        self.stats.confirmed = self.oracle.messages.iter().filter(|m| m.confirmed).count() as u64;
        for session in self.actors.iter().filter_map(|actor| actor.session.as_ref()) {
            let clients = session.stats();
            self.stats.republished += clients.republished;
            self.stats.void_settles += clients.void_settles;
            self.stats.breaker_opens += clients.breaker_opens;
            self.stats.breaker_rejections += clients.breaker_rejections;
        }
        if let Some((invariant, detail)) = self.failure.take() {
            return Err(self.failure_report(self.cfg.seed, invariant, detail));
        }
        let outcome = self.outcome.take().unwrap_or(Outcome::Drained);
        let trace_hash = self.trace.hash();
        let trace = if self.cfg.full_trace { self.trace.take_lines() } else { Vec::new() };
        Ok(Summary {
            seed: self.cfg.seed,
            outcome,
            sim_ms: self.now.as_millis(),
            trace_hash,
            events: self.trace.events(),
            stats: self.stats,
            trace,
        })
    }

    pub fn failure_report(
        &mut self,
        seed: u64,
        invariant: &'static str,
        detail: String,
    ) -> Failure {
        Failure {
            seed,
            invariant,
            detail,
            at_ms: self.now.as_millis(),
            trace_hash: self.trace.hash(),
            trace: self.trace.take_lines(),
        }
    }

    // ---- plumbing shared by the other modules ----

    pub fn schedule(&mut self, after_ms: u64, event: Event) {
        let at = self.now.plus_ms(after_ms);
        self.events.push(at, event);
    }

    pub fn schedule_at(&mut self, at: Instant, event: Event) {
        self.events.push(at.max(self.now), event);
    }

    pub fn record(&mut self, event: TraceEvent) {
        self.trace.record(self.now, event);
    }

    /// Marks the run failed (the first violation wins).
    pub fn fail(&mut self, violation: Violation) {
        if self.failure.is_none() {
            self.failure = Some(violation);
        }
    }

    pub fn check(&mut self, result: Result<(), Violation>) {
        if let Err(violation) = result {
            self.fail(violation);
        }
    }

    // ---- events ----

    fn handle(&mut self, event: Event) {
        match event {
            Event::BrokerTimer { incarnation } => self.on_broker_timer(incarnation),
            Event::ClientTimer { actor } => self.on_client_timer(actor),
            Event::Arrive { conn, up } => self.on_arrive(conn, up),
            Event::TransportClosed { conn } => self.on_transport_closed(conn),
            Event::Unpause { conn } => self.on_unpause(conn),
            Event::StorageDone { epoch } => self.on_storage_done(epoch),
            Event::SyncDone { epoch } => self.on_sync_done(epoch),
            Event::ReadDone { epoch, id } => self.on_read_done(epoch, id),
            Event::Wake { actor, wake } => self.on_wake(actor, wake),
            Event::Fault(kind) => self.on_fault(kind),
            Event::PartitionEnd { conn } => self.on_partition_end(conn),
            Event::AlarmEnd => self.set_alarm(false),
            Event::Crash { machine } => self.crash(machine),
            Event::Restart => self.restart(),
            Event::LivenessStart => self.start_liveness(),
            Event::Check => self.on_check(),
            Event::End => self.on_end(),
            Event::Deadline => self.fail(("liveness", "the run never finished".into())),
        }
    }

    /// The admin finished declaring: clients start and faults begin.
    pub fn start_faults(&mut self) {
        if self.phase != Phase::Setup {
            return;
        }
        self.phase = Phase::Faults;
        self.record(TraceEvent::Phase("faults"));
        self.schedule(self.cfg.fault_phase_ms, Event::LivenessStart);
        let kinds = [
            FaultKind::Crash,
            FaultKind::Reset,
            FaultKind::Partition,
            FaultKind::Stall,
            FaultKind::Alarm,
            FaultKind::Reload,
        ];
        for kind in kinds {
            self.schedule_fault(kind);
        }
        for actor in 1..self.actors.len() {
            let delay = self.rng.range(0, 50);
            self.schedule(delay, Event::Wake { actor, wake: Wake::Start });
            if matches!(self.actors[actor].role, Role::Publisher(_)) {
                self.schedule(delay + 1, Event::Wake { actor, wake: Wake::Publish });
            }
        }
        self.schedule(250, Event::Wake { actor: 0, wake: Wake::Audit });
    }

    fn schedule_fault(&mut self, kind: FaultKind) {
        let faults = &self.cfg.faults;
        let mean = match kind {
            FaultKind::Crash => faults.crash_every_ms,
            FaultKind::Reset => faults.reset_every_ms,
            FaultKind::Partition => faults.partition_every_ms,
            FaultKind::Stall => faults.stall_every_ms,
            FaultKind::Alarm => faults.alarm_every_ms,
            FaultKind::Reload => faults.reload_every_ms.filter(|_| !self.users.is_empty()),
        };
        if let Some(mean) = mean {
            let after = self.rng.interval(mean);
            self.schedule(after, Event::Fault(kind));
        }
    }

    fn on_fault(&mut self, kind: FaultKind) {
        if self.phase != Phase::Faults {
            return;
        }
        self.schedule_fault(kind);
        match kind {
            FaultKind::Crash => {
                if self.broker.is_some() && !self.crash_pending {
                    let machine = self.rng.chance(self.cfg.faults.machine_crash_per_mille);
                    self.crash(machine);
                }
            }
            FaultKind::Reset => {
                if let Some(conn) = self.random_conn(false) {
                    self.reset_conn(conn);
                }
            }
            FaultKind::Partition => {
                if let Some(conn) = self.random_conn(false) {
                    let ms = self.rng.range(10, self.cfg.faults.partition_ms_max.max(10));
                    self.stats.partitions += 1;
                    self.record(TraceEvent::Partition { conn: conn.0, ms });
                    let until = self.now.plus_ms(ms);
                    self.conns.get_mut(&conn).expect("picked").hold_until = until;
                    self.schedule_at(until, Event::PartitionEnd { conn });
                }
            }
            FaultKind::Stall => {
                if let Some(conn) = self.random_conn(true) {
                    let ms = self.rng.range(10, self.cfg.faults.stall_ms_max.max(10));
                    self.stats.stalls += 1;
                    self.record(TraceEvent::Stall { conn: conn.0, ms });
                    self.conns.get_mut(&conn).expect("picked").stall_until = self.now.plus_ms(ms);
                }
            }
            FaultKind::Alarm => {
                if !self.alarm_raised {
                    let ms = self.rng.range(10, self.cfg.faults.alarm_ms_max.max(10));
                    self.set_alarm(true);
                    self.schedule(ms, Event::AlarmEnd);
                }
            }
            FaultKind::Reload => self.reload_users(),
        }
    }

    /// A random open connection (of a consumer, if `consumers`).
    fn random_conn(&mut self, consumers: bool) -> Option<ConnId> {
        let candidates: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.broker_open && c.client_attached)
            .filter(|(_, c)| !consumers || matches!(self.actors[c.actor].role, Role::Consumer(_)))
            .map(|(id, _)| *id)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.index(candidates.len())])
    }

    fn on_partition_end(&mut self, conn: ConnId) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let reset = self.phase == Phase::Faults && self.rng.chance(500);
        self.record(TraceEvent::PartitionHealed { conn: conn.0, reset });
        if reset {
            self.reset_conn(conn);
        }
    }

    /// Feeds the broker a memory reading above the alarm threshold (`raised`) or below it.
    pub fn set_alarm(&mut self, raised: bool) {
        if self.alarm_raised == raised {
            return;
        }
        self.alarm_raised = raised;
        self.record(TraceEvent::Alarm { raised });
        self.feed_alarm_reading();
    }

    /// The reading that stands for the alarm fault's state, for a broker that may not have it.
    pub fn feed_alarm_reading(&mut self) {
        if self.broker.is_none() {
            return;
        }
        let rss_bytes = if self.alarm_raised { 2 * ALARM_MEMORY_HIGH_BYTES } else { 0 };
        let reading = ResourceReading { rss_bytes, memory_total_bytes: 0, disk_free_bytes: 0 };
        self.broker_input(Input::Resources(reading));
    }

    fn start_liveness(&mut self) {
        self.phase = Phase::Liveness;
        // Faults stop: publishers must get through to drain.
        self.set_alarm(false);
        self.record(TraceEvent::Phase("liveness"));
        for conn in self.conns.values_mut() {
            conn.hold_until = conn.hold_until.min(self.now);
            conn.stall_until = conn.stall_until.min(self.now);
        }
        for drainer in self.add_drainers() {
            self.schedule(300, Event::Wake { actor: drainer, wake: Wake::Start });
        }
        self.schedule(self.cfg.liveness_phase_ms, Event::End);
        self.schedule(100, Event::Check);
    }

    fn on_check(&mut self) {
        if self.phase != Phase::Liveness {
            return;
        }
        if self.drained().is_ok() {
            self.phase = Phase::Done;
            self.record(TraceEvent::Phase("drained"));
            self.outcome = Some(Outcome::Drained);
            return;
        }
        self.schedule(100, Event::Check);
    }

    fn on_end(&mut self) {
        if self.phase != Phase::Liveness {
            return;
        }
        if let Err(violation) = self.drained() {
            self.fail(violation);
        }
    }

    /// Whether everything drained: the broker is up, every publish was confirmed, every
    /// confirmed message is accounted for, and every queue is empty.
    fn drained(&self) -> Result<(), Violation> {
        let Some(broker) = self.broker.as_ref() else {
            return Err(("liveness", "the broker is down at the end".into()));
        };
        for actor in &self.actors {
            if let Role::Publisher(publisher) = &actor.role {
                if let Some(key) = publisher.unconfirmed.first() {
                    let count = publisher.unconfirmed.len();
                    return Err((
                        "liveness",
                        format!("{}: {count} publishes never confirmed (first m{key})", actor.name),
                    ));
                }
            }
        }
        let depths: Vec<String> = self
            .topology
            .queues
            .iter()
            .filter_map(|spec| {
                let depth = broker.queue_depth(&spec.name);
                (depth != Some(0)).then(|| format!("{} {depth:?}", spec.name))
            })
            .collect();
        let unaccounted = self.oracle.unaccounted();
        let first = unaccounted.first().map(|(q, key)| {
            let copy = &self.oracle.copies[&(*q, *key)];
            format!(
                "m{key} was confirmed but never acked from {} or its dead-letter queue \
                 ({} deliveries emitted, seq {:?}); its story: --trace | grep -E \
                 'key: {key}[, ]|Crash|Restart'",
                self.topology.queue(*q).name,
                copy.emitted,
                copy.seq,
            )
        });
        // Messages still held are stuck, not lost.
        if !depths.is_empty() {
            let also = first.map(|f| format!("; {} not yet acked, first: {f}", unaccounted.len()));
            return Err((
                "liveness",
                format!(
                    "queues did not drain: [{}]{}",
                    depths.join(", "),
                    also.unwrap_or_default()
                ),
            ));
        }
        if let Some(first) = first {
            return Err(("lost-confirmed", first));
        }
        Ok(())
    }

    /// A new connection of `actor`, with socket buffers (its window) of a random size.
    pub fn new_conn(&mut self, actor: usize) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let window_max = self.rng.range(1024, 32 * 1024);
        self.conns.insert(conn, SimConn::new(actor, window_max));
        self.stats.connections += 1;
        conn
    }
}
