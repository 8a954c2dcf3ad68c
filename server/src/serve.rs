//! Starting and stopping a server: arguments, binding, the accept loop, signals.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::time::{Instant as StdInstant, SystemTime, UNIX_EPOCH};

use chute_core::storage::failure::StorageFailure;
use chute_core::storage::recovery::ManifestCheck;
use chute_core::{Broker, BrokerConfig, Input, Instant, Recovery};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use futures::channel::{mpsc, oneshot};
use futures::SinkExt;

use crate::access::{self, SharedUsers};
use crate::admin::{self, AdminState, Phase};
use crate::alerts::Alerting;
use crate::audit::AuditLog;
use crate::config::{
    self, AdminListen, ConfigFile, FlagSetting, Listen, LogFormat, Reloader, Sources,
};
use crate::counters::ServerCounters;
use crate::data_dir::{DataDir, DataDirError};
use crate::event_loop::{EventLoop, LoopParts, StartupSyncError, StorageReports, EVENT_QUEUE_MAX};
use crate::keys;
use crate::logging::{self, LogControl};
use crate::payload_reader::{PayloadReader, StorageSender};
use crate::runtime::{accept_until_stopped, Runtime};
use crate::storage_worker::{StorageMetrics, StorageWorker};
use crate::tls::{self as server_tls, Accepted, ServerStream, TlsState};
use crate::tools::{self, Tool};
use crate::{notify, resources, signals};

/// Command-line flags shared by `chuted` and `chuted-smol`. Each setting flag is the highest
/// layer over the file and the environment (docs/CONFIG.md), and stays on top after a reload.
#[derive(Clone, Debug, Parser)]
// A flag given twice takes its last value, so a wrapper's default can be overridden.
#[command(about = "chute message broker", args_override_self = true)]
pub struct Args {
    /// Configuration file (TOML; docs/CONFIG.md lists every key). Without one, the defaults,
    /// the CHUTE_* environment and the flags make the configuration.
    #[arg(long, env = "CHUTE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration (file, environment and flags) and exit: 0 when it is valid, 2
    /// with one line per problem when it is not.
    #[arg(long)]
    pub check_config: bool,
    /// Print the effective configuration (every key, defaults included) as TOML and exit.
    #[arg(long, conflicts_with = "check_config")]
    pub print_config: bool,
    /// Address for the client protocol, or `off` for a TLS-only server (tls.listen)
    /// [server.listen, CHUTE_LISTEN; default 127.0.0.1:4770].
    #[arg(long, value_name = "ADDR|off")]
    pub listen: Option<Listen>,
    /// Address for the admin HTTP endpoint (/healthz, /readyz, /metrics, /api/...), or `off`
    /// [server.admin_listen, CHUTE_ADMIN_LISTEN; default 127.0.0.1:4771].
    #[arg(long, value_name = "ADDR|off")]
    pub admin_listen: Option<AdminListen>,
    /// Directory for the message log and lock file [server.data_dir, CHUTE_DATA_DIR; default
    /// ./chute-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How long a graceful stop waits for clients to receive what was sent to them
    /// [server.shutdown_timeout_ms, CHUTE_SHUTDOWN_TIMEOUT_MS; default 10000].
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Size at which a log segment is closed and a new one started [storage.segment_bytes_max,
    /// CHUTE_SEGMENT_BYTES_MAX; default 67108864].
    #[arg(long, value_name = "BYTES")]
    pub segment_bytes_max: Option<u64>,
    /// Log lines as text or JSON objects [log.format, CHUTE_LOG_FORMAT; default text]. The
    /// filter is log.level (CHUTE_LOG; default info).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Any configuration key, as the highest layer; repeatable (e.g. --set
    /// limits.connections_max=5000).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = FlagSetting::parse_set)]
    pub set: Vec<FlagSetting>,
    /// For this start only: when the log ends earlier than its manifest says it was durable
    /// (a segment deleted or cut), recover what is left instead of refusing to start. The
    /// loss is logged; the next start checks against the new end. Never a configuration key.
    #[arg(long)]
    pub accept_data_loss: bool,
}

impl Args {
    /// Where the configuration comes from: the file, and these flags as settings.
    pub fn sources(&self) -> Sources {
        let mut flags = Vec::new();
        let mut flag = |key: &str, name: &str, value: toml::Value| {
            let shown = match &value {
                toml::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            flags.push(FlagSetting { key: key.into(), value, flag: format!("{name} {shown}") });
        };
        let text = |value: &dyn fmt::Display| toml::Value::String(value.to_string());
        // Beyond i64 no key accepts it anyway; as text, the type check names the flag.
        let number =
            |value: u64| i64::try_from(value).map_or_else(|_| text(&value), toml::Value::Integer);
        if let Some(listen) = self.listen {
            flag("server.listen", "--listen", text(&listen));
        }
        if let Some(admin) = self.admin_listen {
            flag("server.admin_listen", "--admin-listen", text(&admin));
        }
        if let Some(dir) = &self.data_dir {
            flag("server.data_dir", "--data-dir", text(&dir.display()));
        }
        if let Some(ms) = self.shutdown_timeout_ms {
            flag("server.shutdown_timeout_ms", "--shutdown-timeout-ms", number(ms));
        }
        if let Some(bytes) = self.segment_bytes_max {
            flag("storage.segment_bytes_max", "--segment-bytes-max", number(bytes));
        }
        if let Some(format) = self.log_format {
            let name = format.to_possible_value().expect("no variant is skipped");
            flag("log.format", "--log-format", text(&name.get_name()));
        }
        flags.extend(self.set.iter().cloned());
        Sources { file: self.config.clone(), flags }
    }
}

/// What [`serve`] runs with.
pub struct ServerConfig {
    /// The checked configuration.
    pub config: ConfigFile,
    /// Where it came from, to read it again on a reload.
    pub sources: Sources,
    /// The process's log, for a reload to change; `None` when the caller set up logging.
    pub log: Option<LogControl>,
    pub counters: ServerCounters,
    /// `--accept-data-loss`: recover a log cut short, for this start.
    pub accept_data_loss: bool,
}

impl ServerConfig {
    /// A server with `config` and nothing to reload it from but the environment.
    pub fn new(config: ConfigFile) -> ServerConfig {
        ServerConfig {
            config,
            sources: Sources::default(),
            log: None,
            counters: ServerCounters::default(),
            accept_data_loss: false,
        }
    }
}

/// What the server listens for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The client protocol (`--listen`).
    Protocol,
    /// The admin HTTP endpoint (`--admin-listen`).
    Admin,
    /// The client protocol over TLS (`tls.listen`).
    Tls,
}

impl Endpoint {
    fn flag(self) -> &'static str {
        match self {
            Endpoint::Protocol => "--listen",
            Endpoint::Admin => "--admin-listen",
            Endpoint::Tls => "tls.listen",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Protocol => "the client protocol",
            Endpoint::Admin => "the admin endpoint",
            Endpoint::Tls => "the client protocol over TLS",
        })
    }
}

/// Where a started server listens, as announced on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    /// The plain client listener, unless it is off (a TLS-only server).
    pub addr: Option<SocketAddr>,
    /// The TLS client listener, when `tls.listen` is set.
    pub tls_addr: Option<SocketAddr>,
    /// The admin HTTP endpoint, unless it is off.
    pub admin_addr: Option<SocketAddr>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("cannot listen on {addr} for {endpoint}: {source}{hint}")]
    Bind { endpoint: Endpoint, addr: SocketAddr, source: io::Error, hint: String },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot recover the log in {path}: {source}")]
    Recovery { path: PathBuf, source: chute_core::storage::recovery::RecoveryError },
    /// The startup checkpoint could not be written or synced.
    #[error("cannot write to the log in {path}: {source}")]
    LogNotWritable { path: PathBuf, source: StartupSyncError },
    /// Storage failed while serving: the broker halted.
    #[error("{}", .0.halt_message())]
    Halted(StorageFailure),
    #[error("invalid configuration: {0}")]
    Config(#[from] chute_core::ConfigError),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("{0}")]
    Users(String),
    #[error("cannot open the audit log {}: {source}", path.display())]
    Audit { path: PathBuf, source: io::Error },
    #[error("cannot read random bytes from the operating system: {0}")]
    Random(String),
    /// A key file of `[storage.encryption]` is missing, unreadable, of the wrong size, or open
    /// to others.
    #[error("{0}")]
    Keys(String),
    /// The TLS files are missing or wrong: one line per problem, each naming its key.
    #[error("cannot start TLS: {}", .0.join("; "))]
    Tls(Vec<String>),
}

/// 32 bytes from the operating system, for the secret the broker's SCRAM nonces are made of.
fn random_secret() -> Result<[u8; 32], ServeError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| ServeError::Random(error.to_string()))?;
    Ok(secret)
}

/// The whole life of a server binary: parse flags and the configuration, serve until a stop
/// (SIGINT, SIGTERM, or the end of a SIGUSR2 drain), exit 0; or print why it could not start
/// and exit 1 (2 for a wrong command line or configuration, one line per problem).
pub fn main<R: Runtime>(runtime: R, binary: &'static str) -> ExitCode {
    main_with_flags(binary, |NoFlags {}| Ok(runtime))
}

/// [`main`] for a runtime adapter with flags of its own (`A`, parsed beside [`Args`] and listed
/// in `--help`): `build_runtime` makes the runtime from them before anything is served.
pub fn main_with_flags<A: clap::Args, R: Runtime>(
    binary: &'static str,
    build_runtime: impl FnOnce(A) -> io::Result<R>,
) -> ExitCode {
    signals::ignore_sigpipe();
    let flags = match parse_flags::<A>(binary) {
        Ok(flags) => flags,
        Err(error) => return usage_error(binary, &error),
    };
    if let Some(tool) = flags.tool {
        return match tools::run(tool) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("{binary}: {reason}");
                ExitCode::FAILURE
            }
        };
    }
    let sources = flags.server.sources();
    let loaded = match config::load(&sources) {
        Ok(loaded) => loaded,
        Err(problems) => {
            for problem in problems {
                eprintln!("{binary}: {problem}");
            }
            return ExitCode::from(2);
        }
    };
    if !flags.server.print_config {
        let problems = config::check::check_files(&loaded);
        if !problems.is_empty() {
            for problem in problems {
                eprintln!("{binary}: {problem}");
            }
            return ExitCode::from(2);
        }
    }
    if flags.server.check_config || flags.server.print_config {
        for warning in &loaded.warnings {
            eprintln!("{binary}: warning: {warning}");
        }
        match flags.server.print_config {
            true => print!("{}", config::print::render(&loaded.config)),
            false => println!("{binary}: the configuration is valid"),
        }
        return ExitCode::SUCCESS;
    }
    let counters = ServerCounters::default();
    let (log, log_guard) =
        match logging::init(&loaded.config.log, counters.log_lines_dropped.clone()) {
            Ok(log) => log,
            Err(err) => {
                eprintln!("{binary}: cannot start the log writer: {err}");
                return ExitCode::FAILURE;
            }
        };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match build_runtime(flags.adapter) {
        Ok(runtime) => runtime,
        Err(err) => {
            log_guard.flush();
            eprintln!("{binary}: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = ServerConfig {
        config: loaded.config,
        sources,
        log: Some(log),
        counters,
        accept_data_loss: flags.server.accept_data_loss,
    };
    let result =
        runtime.block_on(serve(runtime.clone(), config, |listening| announce(binary, listening)));
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            log_guard.flush();
            ExitCode::SUCCESS
        }
        Err(err) => {
            log_guard.flush();
            eprintln!("{binary}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// [`Args`] and a runtime adapter's own flags, parsed as one command line.
#[derive(Parser)]
#[command(version, about = "chute message broker", args_override_self = true)]
struct Flags<A: clap::Args> {
    #[command(flatten)]
    server: Args,
    #[command(flatten)]
    adapter: A,
    #[command(subcommand)]
    tool: Option<Tool>,
}

/// The command line, under the binary's own name (`chuted --version` says `chuted 0.1.0`,
/// not the name of this library crate).
fn parse_flags<A: clap::Args>(binary: &'static str) -> Result<Flags<A>, clap::Error> {
    let mut command = Flags::<A>::command().name(binary).bin_name(binary);
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    Flags::<A>::from_arg_matches(&matches).map_err(|error| error.format(&mut command))
}

/// The flags of an adapter that has none.
#[derive(clap::Args)]
struct NoFlags {}

/// clap's verdict on the command line: help and version on stdout (exit 0), or the error's
/// first paragraph as one line on stderr (exit 2) instead of clap's several lines of usage.
fn usage_error(binary: &str, error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let message = error.render().to_string();
    let reason: Vec<&str> =
        message.lines().take_while(|line| !line.trim().is_empty()).map(str::trim).collect();
    eprintln!("{binary}: {} (see '{binary} --help')", reason.join(" "));
    ExitCode::from(2)
}

/// The stdout lines that scripts and tests wait for, in this order: `{binary} listening on
/// {addr}` unless the plain listener is off, `{binary} tls on {addr}` when TLS is on, then
/// `{binary} admin on {addr}` unless the admin endpoint is off.
fn announce(binary: &str, listening: Listening) {
    use std::io::Write;
    let mut lines = String::new();
    if let Some(addr) = listening.addr {
        lines.push_str(&format!("{binary} listening on {addr}\n"));
    }
    if let Some(addr) = listening.tls_addr {
        lines.push_str(&format!("{binary} tls on {addr}\n"));
    }
    if let Some(admin) = listening.admin_addr {
        lines.push_str(&format!("{binary} admin on {admin}\n"));
    }
    // One write, and errors ignored: whoever started the server may read only the first line
    // and close the pipe, which must not stop the server (`println!` would panic).
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(lines.as_bytes());
    let _ = stdout.flush();
}

/// Serves until a graceful stop completes. `ready` is called with the bound addresses once
/// connections are being accepted. Recovery from the data directory runs first, then the
/// startup checkpoint is synced (docs/STORAGE.md §10.1): a log that cannot be written stops
/// the server here, before anyone is served. The admin endpoint answers already during both
/// (`/readyz` says it is not ready yet).
pub async fn serve<R: Runtime>(
    runtime: R,
    config: ServerConfig,
    ready: impl FnOnce(Listening),
) -> Result<(), ServeError> {
    let ServerConfig { config: settings, sources, log, counters, accept_data_loss } = config;
    let mut broker_config = settings.broker_config();
    broker_config.validate()?;
    let server = &settings.server;
    let shutdown_timeout = Duration::from_millis(server.shutdown_timeout_ms);
    let data_dir = DataDir::open(&server.data_dir)?;
    // Bound now, so an address in use is reported before recovery; accepted only once the
    // startup checkpoint is synced (until then connections wait in the listen backlog).
    let plain_listener = listen_if_on(&runtime, server.listen, Endpoint::Protocol)?;
    let tls_listener = listen_if_on(&runtime, settings.tls.listen, Endpoint::Tls)?;
    let admin_listener = listen_if_on(&runtime, server.admin_listen, Endpoint::Admin)?;
    let mut tls = match settings.tls.in_use() {
        true => Some(TlsState::start(&settings.tls, counters.tls.clone()).map_err(|problems| {
            ServeError::Tls(problems.iter().map(ToString::to_string).collect())
        })?),
        false => None,
    };
    let admin_tls = tls.as_ref().filter(|_| settings.tls.admin).map(TlsState::acceptor);

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_MAX);
    // From here on SIGHUP and SIGUSR2 no longer kill the process; what they ask for waits in
    // the event queue until the broker task runs.
    signals::install(events_tx.clone()).map_err(ServeError::Signals)?;
    let storage_metrics = Arc::new(StorageMetrics::default());
    // Users first: the admin endpoint serves during recovery, and must check who asks.
    let users = Arc::new(SharedUsers::default());
    let table = access::load(&settings.auth).map_err(ServeError::Users)?;
    broker_config.keyring =
        keys::read_keyring(&settings.storage.encryption).map_err(ServeError::Keys)?;
    users.set(table.clone());
    users.set_config(settings.auth.clone());
    let audit = AuditLog::open(&settings.audit, counters.audit.clone()).map_err(|source| {
        ServeError::Audit { path: settings.audit.file.clone().unwrap_or_default(), source }
    })?;
    let admin_state = Arc::new(AdminState::new(
        events_tx.clone(),
        storage_metrics.clone(),
        counters.clone(),
        users.clone(),
        audit.handle(),
    ));
    // Dropped when `serve` returns, which stops the admin accept loop.
    let (_admin_stop, admin_stop_rx) = oneshot::channel::<()>();
    let admin_addr = admin_listener.map(|(listener, admin_addr)| {
        runtime.spawn(admin::accept_loop(
            runtime.clone(),
            listener,
            admin_state.clone(),
            admin_tls,
            admin_stop_rx,
        ));
        admin_addr
    });

    broker_config.epoch_unix_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let started = StdInstant::now();
    let segment_bytes_max = broker_config.storage.segment_bytes_max;
    let alarm_interval_ms = Arc::new(AtomicU32::new(broker_config.alarms.check_interval_ms));
    let mut broker = recover(&data_dir, broker_config, accept_data_loss)?;
    broker.set_auth_secret(random_secret()?);
    broker.set_users(Instant::ZERO, table);
    // Measured before anyone is served: a server started short of disk comes up with the
    // alarm raised, instead of taking publishes until its first write fails.
    match resources::measure(&data_dir.path) {
        Ok(reading) => broker.handle_input(Instant::ZERO, Input::Resources(reading)),
        Err(error) => {
            tracing::warn!(%error, "cannot measure free disk space; the disk alarm waits for a reading")
        }
    }
    let alerting = Alerting::start(
        runtime.clone(),
        &settings.alerts,
        counters.alerts.clone(),
        storage_metrics.clone(),
        events_tx.clone(),
    );
    let (storage_tx, storage_reports, storage_worker) =
        start_storage_worker(&data_dir, storage_metrics, segment_bytes_max)?;
    let (plain_stop_tx, plain_stop_rx) = oneshot::channel();
    let (tls_stop_tx, tls_stop_rx) = oneshot::channel();
    let drain_window_ms = server.drain_window_ms;
    let memory_trim_interval_ms = server.memory_trim_interval_ms;
    if let Some(tls) = &mut tls {
        let events = events_tx.clone();
        // The broker task is gone only when the server stops; nobody needs the event then.
        tls.watch(move || {
            let changed = crate::event_loop::LoopEvent::TlsFilesChanged;
            let _ = futures::executor::block_on(events.clone().send(changed));
        });
    }
    let tls_acceptor = tls.as_ref().map(TlsState::acceptor);
    let data_dir_shown = server.data_dir.display().to_string();
    let reloader = Reloader::new(sources, settings.clone(), log, counters.reloads.clone());
    runtime.spawn(resources::measure_loop(
        runtime.clone(),
        data_dir.path.clone(),
        alarm_interval_ms.clone(),
        events_tx.clone(),
    ));
    let mut event_loop = EventLoop::new(LoopParts {
        runtime: runtime.clone(),
        broker,
        started,
        events_tx,
        storage_tx,
        storage_reports,
        accept_stops: vec![plain_stop_tx, tls_stop_tx],
        shutdown_timeout,
        drain_window_ms,
        memory_trim_interval_ms,
        reloader,
        audit,
        users,
        tls,
        alarm_interval_ms,
        alerting,
    });
    admin_state.set_phase(Phase::SyncingCheckpoint);
    event_loop
        .sync_startup_checkpoint()
        .await
        .map_err(|source| ServeError::LogNotWritable { path: data_dir.path.clone(), source })?;
    let (accepted_tx, accepted_rx) = mpsc::channel(16);
    let addr = plain_listener.map(|(listener, addr)| {
        runtime.spawn(accept_loop(runtime.clone(), listener, accepted_tx.clone(), plain_stop_rx));
        addr
    });
    let tls_addr = tls_listener.map(|(listener, addr)| {
        let acceptor = tls_acceptor.expect("TLS is in use when it listens");
        let accepting = server_tls::acceptor::accept_loop;
        runtime.spawn(accepting(runtime.clone(), listener, acceptor, accepted_tx, tls_stop_rx));
        addr
    });
    let shown =
        |addr: Option<SocketAddr>| addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    let admin_scheme = if settings.tls.admin { "https" } else { "http" };
    tracing::info!(
        runtime = runtime.name(),
        addr = %shown(addr),
        tls = %shown(tls_addr),
        admin = %shown(admin_addr),
        admin_scheme,
        data_dir = %data_dir_shown,
        "serving"
    );
    admin_state.set_phase(Phase::Serving);
    ready(Listening { addr, tls_addr, admin_addr });
    notify::ready();
    let result = event_loop.run(events_rx, accepted_rx).await.map_err(ServeError::Halted);
    admin_state.set_phase(Phase::Stopped);
    // The broker task hung up on the worker; let it finish before the process exits.
    wait_for_worker(&runtime, storage_worker, shutdown_timeout).await;
    drop(data_dir);
    result
}

/// Reads the log, rebuilds the broker, and cuts a torn tail before anything is appended.
fn recover(
    data_dir: &DataDir,
    config: BrokerConfig,
    accept_data_loss: bool,
) -> Result<Broker, ServeError> {
    let started = StdInstant::now();
    let refused = |source| ServeError::Recovery { path: data_dir.path.clone(), source };
    // One segment in memory at a time: each is read, handed over and dropped before the next.
    let names = data_dir.segment_names()?;
    let mut recovery = Recovery::new(config, Instant::ZERO);
    let mut bytes = 0;
    for (index, name) in names.iter().enumerate() {
        let file = data_dir.read_segment(name)?;
        bytes += file.bytes.len();
        recovery.handle_segment(file, index + 1 == names.len()).map_err(refused)?;
    }
    let manifest = data_dir.read_manifest()?;
    let (broker, report) =
        recovery.finish(manifest.as_deref(), accept_data_loss).map_err(refused)?;
    match &report.manifest {
        ManifestCheck::Agrees => {}
        ManifestCheck::Absent if names.is_empty() => {}
        ManifestCheck::Absent => tracing::info!(
            "the log has no manifest yet (written by an earlier version); writing one"
        ),
        ManifestCheck::LossAccepted(loss) => {
            tracing::warn!(%loss, "data loss accepted (--accept-data-loss): recovering the rest")
        }
    }
    if let Some(truncation) = &report.truncation {
        if truncation.only_zeros {
            // What a stop without a clean shutdown leaves of the storage worker's preallocation.
            tracing::info!(
                file = %truncation.file,
                dropped_bytes = truncation.dropped_bytes,
                "cutting unused preallocated space at the end of the log"
            );
        } else {
            tracing::warn!(
                file = %truncation.file,
                kept_bytes = truncation.valid_len,
                dropped_bytes = truncation.dropped_bytes,
                "cutting a torn write at the end of the log"
            );
        }
        data_dir.truncate(truncation)?;
    }
    // Recovery's scratch space (the decoded log, indexes of every record) is freed by now, but
    // glibc keeps freed heap pages mapped, and they are interleaved with the queues' messages:
    // after recovering a million messages that is about 50 MB of resident memory nobody uses.
    crate::memory_trim::release_free_memory();
    tracing::info!(
        queues = report.queues,
        messages = report.messages,
        segments = report.segments,
        records = report.records,
        log_bytes = bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    Ok(broker)
}

/// Starts the storage worker thread and the payload reader's; returns where to send them
/// requests, where they report, and the worker's thread (the reader's ends when the broker
/// hangs up, and has nothing to finish).
fn start_storage_worker(
    data_dir: &DataDir,
    metrics: Arc<StorageMetrics>,
    segment_bytes_max: u64,
) -> Result<(StorageSender, StorageReports, JoinHandle<()>), ServeError> {
    let (storage_tx, storage_rx) = std::sync::mpsc::channel();
    let (reads_tx, reads_rx) = std::sync::mpsc::channel();
    let (reports_tx, reports_rx) = mpsc::unbounded();
    let reader_reports = reports_tx.clone();
    // The broker task is gone only when the server stops; nobody needs the report then.
    let report = move |done| {
        let _ = reports_tx.unbounded_send(done);
    };
    let io_error = |source| DataDirError::Io { path: data_dir.path.clone(), source };
    let worker = StorageWorker::new(&data_dir.path, metrics, segment_bytes_max)
        .spawn(storage_rx, report)
        .map_err(io_error)?;
    PayloadReader::new(&data_dir.path)
        .spawn(reads_rx, move |done| {
            let _ = reader_reports.unbounded_send(done);
        })
        .map_err(io_error)?;
    Ok((StorageSender { worker: storage_tx, reader: reads_tx }, reports_rx, worker))
}

/// Waits, at most `timeout`, for the storage worker to finish once the broker task has hung
/// up: it then cuts the newest segment's preallocated zeros and syncs, so that a clean stop
/// leaves nothing for the next start to cut. Without the wait the process exits under it. A
/// worker stuck in a hung fsync is left behind (with a warning) rather than hanging the stop.
async fn wait_for_worker<R: Runtime>(runtime: &R, worker: JoinHandle<()>, timeout: Duration) {
    const POLL: Duration = Duration::from_millis(5);
    let deadline = StdInstant::now() + timeout;
    while !worker.is_finished() {
        if StdInstant::now() >= deadline {
            tracing::warn!("the storage worker did not finish in time; exiting without it");
            return;
        }
        runtime.sleep_until(StdInstant::now() + POLL).await;
    }
    if worker.join().is_err() {
        tracing::error!("the storage worker panicked");
    }
}

/// [`listen`] unless `at` is off.
fn listen_if_on<R: Runtime>(
    runtime: &R,
    at: Listen,
    endpoint: Endpoint,
) -> Result<Option<(R::Listener, SocketAddr)>, ServeError> {
    Option::<SocketAddr>::from(at).map(|addr| listen(runtime, addr, endpoint)).transpose()
}

/// Binds `addr` and hands the listener to the runtime; returns it with the bound address.
fn listen<R: Runtime>(
    runtime: &R,
    addr: SocketAddr,
    endpoint: Endpoint,
) -> Result<(R::Listener, SocketAddr), ServeError> {
    let listener = bind(addr, endpoint)?;
    let bound = listener.local_addr().map_err(|source| bind_error(addr, endpoint, source))?;
    let listener =
        runtime.listener(listener).map_err(|source| bind_error(addr, endpoint, source))?;
    Ok((listener, bound))
}

fn bind(addr: SocketAddr, endpoint: Endpoint) -> Result<std::net::TcpListener, ServeError> {
    let error = |source| bind_error(addr, endpoint, source);
    let listener = std::net::TcpListener::bind(addr).map_err(error)?;
    listener.set_nonblocking(true).map_err(error)?;
    Ok(listener)
}

fn bind_error(addr: SocketAddr, endpoint: Endpoint, source: io::Error) -> ServeError {
    let flag = endpoint.flag();
    let hint = match (source.kind(), endpoint) {
        (io::ErrorKind::AddrInUse, Endpoint::Protocol | Endpoint::Tls) => {
            format!(" (is another chuted running? pick another address with {flag})")
        }
        (io::ErrorKind::AddrInUse, Endpoint::Admin) => format!(
            " (is another chuted running? pick another address with {flag}, or turn the \
             admin endpoint off with `{flag} off`)"
        ),
        (io::ErrorKind::AddrNotAvailable, _) => " (that address is not on this machine)".into(),
        (io::ErrorKind::PermissionDenied, _) => " (ports below 1024 need privileges)".into(),
        _ => String::new(),
    };
    ServeError::Bind { endpoint, addr, source, hint }
}

async fn accept_loop<R: Runtime>(
    runtime: R,
    listener: R::Listener,
    mut accepted: mpsc::Sender<Accepted<R::Stream>>,
    mut stop: oneshot::Receiver<()>,
) {
    while let Some((stream, addr)) =
        accept_until_stopped(&runtime, &listener, &mut stop, "client").await
    {
        let peer = chute_core::PeerInfo { addr: Some(addr), ..chute_core::PeerInfo::default() };
        let connection = Accepted { stream: ServerStream::Plain(stream), peer };
        if accepted.send(connection).await.is_err() {
            return;
        }
    }
}
