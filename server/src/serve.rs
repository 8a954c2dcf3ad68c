//! Starting and stopping a server: arguments, binding, the accept loop, signals.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::time::{Instant as StdInstant, SystemTime, UNIX_EPOCH};

use chute_core::storage::io::StorageRequest;
use chute_core::{Broker, BrokerConfig, Instant};
use clap::Parser;
use futures::channel::{mpsc, oneshot};
use futures::SinkExt;

use crate::admin::{self, AdminState, Phase};
use crate::data_dir::{DataDir, DataDirError};
use crate::event_loop::{
    EventLoop, LoopEvent, LoopParts, StorageReports, DRAIN_WINDOW_MS_DEFAULT, EVENT_QUEUE_MAX,
};
use crate::runtime::{accept_until_stopped, Runtime};
use crate::storage_worker::{StorageMetrics, StorageWorker};

/// Command-line flags shared by `chuted` and `chuted-smol`.
#[derive(Clone, Debug, Parser)]
// A flag given twice takes its last value, so a wrapper's default can be overridden.
#[command(version, about = "chute message broker", args_override_self = true)]
pub struct Args {
    /// Address for the client protocol.
    #[arg(long, env = "CHUTE_LISTEN", default_value = "127.0.0.1:4770")]
    pub listen: SocketAddr,
    /// Address for the admin HTTP endpoint (/healthz, /readyz, /metrics, /api/queues), or
    /// `off`.
    #[arg(
        long,
        env = "CHUTE_ADMIN_LISTEN",
        default_value = "127.0.0.1:4771",
        value_name = "ADDR|off"
    )]
    pub admin_listen: AdminListen,
    /// Directory for the message log and lock file.
    #[arg(long, env = "CHUTE_DATA_DIR", default_value = "./chute-data")]
    pub data_dir: PathBuf,
    /// How long a graceful stop waits for clients to receive what was sent to them.
    #[arg(long, env = "CHUTE_SHUTDOWN_TIMEOUT_MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,
    /// Size at which a log segment is closed and a new one started.
    #[arg(long, env = "CHUTE_SEGMENT_BYTES_MAX", default_value_t = chute_core::storage::log::StorageConfig::default().segment_bytes_max)]
    pub segment_bytes_max: u64,
}

/// The value of `--admin-listen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminListen {
    Off,
    At(SocketAddr),
}

impl FromStr for AdminListen {
    type Err = String;

    fn from_str(value: &str) -> Result<AdminListen, String> {
        if value == "off" {
            return Ok(AdminListen::Off);
        }
        value
            .parse()
            .map(AdminListen::At)
            .map_err(|err| format!("{err} (expected ADDR:PORT or off)"))
    }
}

impl From<AdminListen> for Option<SocketAddr> {
    fn from(listen: AdminListen) -> Option<SocketAddr> {
        match listen {
            AdminListen::Off => None,
            AdminListen::At(addr) => Some(addr),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The admin HTTP endpoint's address; `None` turns it off.
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub broker: BrokerConfig,
}

impl From<Args> for ServerConfig {
    fn from(args: Args) -> ServerConfig {
        let mut broker = BrokerConfig::default();
        broker.storage.segment_bytes_max = args.segment_bytes_max;
        ServerConfig {
            listen: args.listen,
            admin_listen: args.admin_listen.into(),
            data_dir: args.data_dir,
            shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
            broker,
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
}

impl Endpoint {
    fn flag(self) -> &'static str {
        match self {
            Endpoint::Protocol => "--listen",
            Endpoint::Admin => "--admin-listen",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::Protocol => "the client protocol",
            Endpoint::Admin => "the admin endpoint",
        })
    }
}

/// Where a started server listens, as announced on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    pub addr: SocketAddr,
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
    #[error("cannot write to the log in {path}: {reason}")]
    LogNotWritable { path: PathBuf, reason: String },
    #[error("{0}")]
    Halted(String),
    #[error("invalid configuration: {0}")]
    Config(#[from] chute_core::ConfigError),
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

/// The whole life of a server binary: parse flags, serve until SIGINT/SIGTERM, exit 0; or
/// print one line saying why it could not start and exit 1 (2 for a wrong command line).
pub fn main<R: Runtime>(runtime: R, binary: &str) -> ExitCode {
    main_with_flags(binary, |NoFlags {}| Ok(runtime))
}

/// [`main`] for a runtime adapter with flags of its own (`A`, parsed beside [`Args`] and listed
/// in `--help`): `build_runtime` makes the runtime from them before anything is served.
pub fn main_with_flags<A: clap::Args, R: Runtime>(
    binary: &str,
    build_runtime: impl FnOnce(A) -> io::Result<R>,
) -> ExitCode {
    let flags = match Flags::<A>::try_parse() {
        Ok(flags) => flags,
        Err(error) => return usage_error(binary, &error),
    };
    init_tracing();
    let runtime = match build_runtime(flags.adapter) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{binary}: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = ServerConfig::from(flags.server);
    let result =
        runtime.block_on(serve(runtime.clone(), config, |listening| announce(binary, listening)));
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
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

/// The stdout lines that scripts and tests wait for: `{binary} listening on {addr}`, then
/// `{binary} admin on {addr}` unless the admin endpoint is off.
fn announce(binary: &str, listening: Listening) {
    use std::io::Write;
    let mut lines = format!("{binary} listening on {}\n", listening.addr);
    if let Some(admin) = listening.admin_addr {
        lines.push_str(&format!("{binary} admin on {admin}\n"));
    }
    // One write, and errors ignored: whoever started the server may read only the first line
    // and close the pipe, which must not stop the server (`println!` would panic).
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(lines.as_bytes());
    let _ = stdout.flush();
}

fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHUTE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Serves until a graceful stop completes. `ready` is called with the bound addresses once
/// connections are being accepted. Recovery from the data directory runs first, then the
/// startup checkpoint is synced (docs/STORAGE.md §10.1): a log that cannot be written stops
/// the server here, before anyone is served. The admin endpoint answers already during both
/// (`/readyz` says it is not ready yet).
pub async fn serve<R: Runtime>(
    runtime: R,
    mut config: ServerConfig,
    ready: impl FnOnce(Listening),
) -> Result<(), ServeError> {
    config.broker.validate()?;
    let data_dir = DataDir::open(&config.data_dir)?;
    // Bound now, so an address in use is reported before recovery; accepted only once the
    // startup checkpoint is synced (until then connections wait in the listen backlog).
    let (listener, addr) = listen(&runtime, config.listen, Endpoint::Protocol)?;
    let admin_listener = match config.admin_listen {
        Some(at) => Some(listen(&runtime, at, Endpoint::Admin)?),
        None => None,
    };

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE_MAX);
    let storage_metrics = Arc::new(StorageMetrics::default());
    let admin_state = Arc::new(AdminState::new(events_tx.clone(), storage_metrics.clone()));
    // Dropped when `serve` returns, which stops the admin accept loop.
    let (_admin_stop, admin_stop_rx) = oneshot::channel::<()>();
    let admin_addr = admin_listener.map(|(listener, admin_addr)| {
        runtime.spawn(admin::accept_loop(
            runtime.clone(),
            listener,
            admin_state.clone(),
            admin_stop_rx,
        ));
        admin_addr
    });

    config.broker.epoch_unix_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let started = StdInstant::now();
    let segment_bytes_max = config.broker.storage.segment_bytes_max;
    let broker = recover(&data_dir, config.broker)?;
    let (storage_tx, storage_reports, storage_worker) =
        start_storage_worker(&data_dir, storage_metrics, segment_bytes_max)?;
    let (accept_stop_tx, accept_stop_rx) = oneshot::channel();
    install_signal_thread(events_tx.clone()).map_err(ServeError::Signals)?;
    let mut event_loop = EventLoop::new(LoopParts {
        runtime: runtime.clone(),
        broker,
        started,
        events_tx,
        storage_tx,
        storage_reports,
        accept_stop: accept_stop_tx,
        shutdown_timeout: config.shutdown_timeout,
        drain_window_ms: DRAIN_WINDOW_MS_DEFAULT,
    });
    admin_state.set_phase(Phase::SyncingCheckpoint);
    event_loop
        .sync_startup_checkpoint()
        .await
        .map_err(|reason| ServeError::LogNotWritable { path: data_dir.path.clone(), reason })?;
    let (accepted_tx, accepted_rx) = mpsc::channel(16);
    runtime.spawn(accept_loop(runtime.clone(), listener, accepted_tx, accept_stop_rx));
    tracing::info!(
        runtime = runtime.name(),
        %addr,
        admin = %admin_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
        data_dir = %config.data_dir.display(),
        "serving"
    );
    admin_state.set_phase(Phase::Serving);
    ready(Listening { addr, admin_addr });
    let result = event_loop.run(events_rx, accepted_rx).await.map_err(ServeError::Halted);
    admin_state.set_phase(Phase::Stopped);
    // The broker task hung up on the worker; let it finish before the process exits.
    wait_for_worker(&runtime, storage_worker, config.shutdown_timeout).await;
    drop(data_dir);
    result
}

/// Reads the log, rebuilds the broker, and cuts a torn tail before anything is appended.
fn recover(data_dir: &DataDir, config: BrokerConfig) -> Result<Broker, ServeError> {
    let started = StdInstant::now();
    let files = data_dir.read_segments()?;
    let bytes: usize = files.iter().map(|f| f.bytes.len()).sum();
    let (broker, report) = Broker::recover(config, Instant::ZERO, &files)
        .map_err(|source| ServeError::Recovery { path: data_dir.path.clone(), source })?;
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
    drop(files);
    release_free_memory();
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

/// Recovery's scratch space (the decoded log, indexes of every record) is freed by now, but
/// glibc keeps freed heap pages mapped, and they are interleaved with the queues' messages:
/// after recovering a million messages that is about 50 MB of resident memory nobody uses.
/// `malloc_trim` hands those pages back.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator Rust uses here (the
    // system allocator, glibc's); it touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Starts the storage worker thread; returns where to send it requests, where it reports,
/// and the thread.
fn start_storage_worker(
    data_dir: &DataDir,
    metrics: Arc<StorageMetrics>,
    segment_bytes_max: u64,
) -> Result<(std::sync::mpsc::Sender<StorageRequest>, StorageReports, JoinHandle<()>), ServeError> {
    let (storage_tx, storage_rx) = std::sync::mpsc::channel();
    let (reports_tx, reports_rx) = mpsc::unbounded();
    // The broker task is gone only when the server stops; nobody needs the report then.
    let report = move |done| {
        let _ = reports_tx.unbounded_send(done);
    };
    let worker = StorageWorker::new(&data_dir.path, metrics, segment_bytes_max)
        .spawn(storage_rx, report)
        .map_err(|source| DataDirError::Io { path: data_dir.path.clone(), source })?;
    Ok((storage_tx, reports_rx, worker))
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
        (io::ErrorKind::AddrInUse, Endpoint::Protocol) => {
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
    mut accepted: mpsc::Sender<(R::Stream, SocketAddr)>,
    mut stop: oneshot::Receiver<()>,
) {
    while let Some(connection) =
        accept_until_stopped(&runtime, &listener, &mut stop, "client").await
    {
        if accepted.send(connection).await.is_err() {
            return;
        }
    }
}

/// First SIGINT/SIGTERM: graceful stop. A second one: exit at once.
fn install_signal_thread(events: mpsc::Sender<LoopEvent>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("chute-signals".into()).spawn(move || {
        let mut events = events;
        let mut seen = 0;
        for signal in signals.forever() {
            seen += 1;
            if seen > 1 {
                eprintln!("second signal {signal}: exiting now");
                std::process::exit(130);
            }
            let _ = futures::executor::block_on(events.send(LoopEvent::Shutdown));
        }
    })?;
    Ok(())
}
