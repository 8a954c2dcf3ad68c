//! Helpers for black-box tests: start a real server binary on an ephemeral loopback port with
//! its own data directory, run the `chute` CLI, and stop everything when the test ends.

pub mod http;
mod promql;
pub mod raw;
pub mod tls;

pub use promql::{promql_metric_names, scraped_metric_names};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The segment files in `data_dir`, oldest first (by name, that is by base LSN).
pub fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut named: Vec<_> = std::fs::read_dir(data_dir)
        .expect("data directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            Some((chute_core::storage::format::parse_segment_file_name(&name)?, name))
        })
        .collect();
    named.sort();
    named.into_iter().map(|(_, name)| data_dir.join(name)).collect()
}

/// The newest segment file in `data_dir`.
pub fn newest_segment(data_dir: &Path) -> PathBuf {
    segment_files(data_dir).pop().expect("a segment file")
}

/// The two reference servers; every black-box test runs against both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerBinary {
    Tokio,
    Smol,
}

impl ServerBinary {
    pub const ALL: [ServerBinary; 2] = [ServerBinary::Tokio, ServerBinary::Smol];

    pub fn name(self) -> &'static str {
        match self {
            ServerBinary::Tokio => "chuted",
            ServerBinary::Smol => "chuted-smol",
        }
    }
}

/// Where cargo put the workspace's binaries for this build profile.
pub fn binary_path(name: &str) -> PathBuf {
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let path = dir.join(name);
    if !path.exists() {
        build_binaries();
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds the binaries when a test runs without them (e.g. `cargo test -p chute-tests`).
fn build_binaries() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "chute-server-tokio",
                "-p",
                "chute-server-smol",
                "-p",
                "chute-cli",
                "--bins",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
    });
}

/// A running server. Killed (if still running) on drop; its scratch directory (its log, and
/// its data unless the caller gave a data directory) is removed then too.
pub struct Server {
    child: Option<Child>,
    pub binary: ServerBinary,
    /// The plain client listener; on a TLS-only server (`server.listen = "off"`), the TLS one.
    pub addr: SocketAddr,
    /// The TLS client listener, when the configuration turns it on.
    pub tls_addr: Option<SocketAddr>,
    /// The admin HTTP endpoint (on an ephemeral port), unless the test turned it off.
    pub admin_addr: Option<SocketAddr>,
    /// What the server was given as `--data-dir`.
    pub data_dir: PathBuf,
    stderr_path: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Server {
    pub fn start(binary: ServerBinary) -> Server {
        Server::start_with_args(binary, &[])
    }

    /// Starts a server on a fresh data directory, removed when the server is dropped.
    pub fn start_with_args(binary: ServerBinary, extra: &[&str]) -> Server {
        Server::start_with_env(binary, extra, &[])
    }

    /// [`Server::start_with_args`] with environment variables set for the server.
    pub fn start_with_env(binary: ServerBinary, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let scratch = tempfile::tempdir().expect("temp dir");
        let data_dir = scratch.path().join("data");
        let mut command = Server::command(binary, &data_dir, extra);
        command.envs(env.iter().copied());
        let admin_off =
            extra.iter().any(|a| a.contains("--admin-listen")) && extra.contains(&"off");
        Server::launch(binary, scratch, data_dir, command, !admin_off)
    }

    /// Starts a server whose every setting comes from the configuration file `config` (with
    /// `LISTEN`, `ADMIN` and `DATA_DIR` replaced by an ephemeral port, another one and a fresh
    /// data directory): no flag or `CHUTE_*` variable is above it, so a reload sees all of it.
    /// Returns the server and the file's path, to rewrite before a reload.
    pub fn start_with_config(binary: ServerBinary, config: &str) -> (Server, PathBuf) {
        let scratch = tempfile::tempdir().expect("temp dir");
        let data_dir = scratch.path().join("data");
        let path = scratch.path().join("chute.toml");
        std::fs::write(&path, fill_config(config, &data_dir)).expect("write the config file");
        let mut command = Command::new(binary_path(binary.name()));
        command.arg("--config").arg(&path);
        // The test's own environment must not sit above the file either.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CHUTE_") {
                command.env_remove(name);
            }
        }
        let server = Server::launch(binary, scratch, data_dir, command, true);
        (server, path)
    }

    /// Starts a server on a data directory the caller owns and that outlives the server: start
    /// again on the same directory after a kill to test recovery. The server's log is kept
    /// elsewhere, so it never competes with the data for space.
    pub fn start_in(binary: ServerBinary, data_dir: &Path, extra: &[&str]) -> Server {
        let scratch = tempfile::tempdir().expect("temp dir");
        Server::spawn(binary, scratch, data_dir.to_path_buf(), extra)
    }

    /// [`Server::start_in`] on a given address: a server restarted where a killed one
    /// listened, for clients that reconnect to it.
    pub fn start_in_at(
        binary: ServerBinary,
        data_dir: &Path,
        addr: SocketAddr,
        extra: &[&str],
    ) -> Server {
        let listen = addr.to_string();
        let args: Vec<&str> =
            ["--listen", listen.as_str()].into_iter().chain(extra.iter().copied()).collect();
        Server::start_in(binary, data_dir, &args)
    }

    fn spawn(
        binary: ServerBinary,
        scratch: tempfile::TempDir,
        data_dir: PathBuf,
        extra: &[&str],
    ) -> Server {
        let command = Server::command(binary, &data_dir, extra);
        let admin_off =
            extra.iter().any(|a| a.contains("--admin-listen")) && extra.contains(&"off");
        Server::launch(binary, scratch, data_dir, command, !admin_off)
    }

    /// The command line every server of the tests gets: an ephemeral port (unless the caller
    /// names one), `data_dir`, `extra`.
    fn command(binary: ServerBinary, data_dir: &Path, extra: &[&str]) -> Command {
        let listen =
            if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] };
        let mut command = Command::new(binary_path(binary.name()));
        command
            .args(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("CHUTE_LOG", "debug")
            // An ephemeral admin port, so servers of tests running in parallel never collide;
            // a test's own `--admin-listen` overrides it.
            .env("CHUTE_ADMIN_LISTEN", "127.0.0.1:0");
        command
    }

    /// Starts `command`, its log in `scratch`, and waits for the lines announcing where it
    /// listens: the plain listener's and the TLS one's, whichever are on, then the admin line
    /// when `admin` is on.
    fn launch(
        binary: ServerBinary,
        scratch: tempfile::TempDir,
        data_dir: PathBuf,
        mut command: Command,
        admin: bool,
    ) -> Server {
        let stderr_path = scratch.path().join("server.log");
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let mut child =
            command.stdout(Stdio::piped()).stderr(stderr).spawn().expect("start server");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let (mut addr, mut tls_addr, mut admin_addr) = (None, None, None);
        let mut lines = Vec::new();
        // The lines come in order (plain, TLS, admin): the last one expected ends the wait.
        while if admin { admin_addr.is_none() } else { addr.is_none() && tls_addr.is_none() } {
            let mut line = String::new();
            if stdout.read_line(&mut line).expect("read server stdout") == 0 {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("{} did not start: stdout {lines:?}, stderr:\n{log}", binary.name());
            }
            let at =
                |marker: &str| line.trim().rsplit_once(marker).and_then(|(_, a)| a.parse().ok());
            addr = addr.or(at(" listening on "));
            tls_addr = tls_addr.or(at(" tls on "));
            admin_addr = admin_addr.or(at(" admin on "));
            lines.push(line);
        }
        let addr = addr.or(tls_addr).unwrap_or_else(|| panic!("no client listener in {lines:?}"));
        Server {
            child: Some(child),
            binary,
            addr,
            tls_addr,
            admin_addr,
            data_dir,
            stderr_path,
            _scratch: scratch,
        }
    }

    pub fn url(&self) -> String {
        format!("chute://{}", self.addr)
    }

    /// A client connection that introduces itself as `client_name` (its I/O on a thread of
    /// its own, as `Connection::connect` runs it).
    pub fn connect_as(&self, client_name: &str) -> chute_client::Connection {
        self.connect_with(client_name, chute_client::ConnectOptions::default())
    }

    /// Connects with `options`, named `client_name`.
    pub fn connect_with(
        &self,
        client_name: &str,
        options: chute_client::ConnectOptions,
    ) -> chute_client::Connection {
        use chute_client::{ClientConfig, Connection};
        let url = self.url();
        let client = ClientConfig { client_name: client_name.into(), ..options.client };
        let options = chute_client::ConnectOptions { client, ..options };
        let connect = move || futures::executor::block_on(Connection::connect_with(&url, options));
        within("connecting", Duration::from_secs(30), connect).expect("connect")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A memory figure of the server process from `/proc/PID/status`, in bytes: `VmRSS`
    /// (resident now) or `VmHWM` (resident at its peak).
    pub fn memory_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let prefix = format!("{field}:");
        let line = status.lines().find(|line| line.starts_with(&prefix)).expect(field);
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Sends a signal (by name, as `kill -s` takes it) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// SIGTERM, then wait for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(20))
    }

    /// SIGKILL: the process dies at once, with no chance to flush or sync anything. Returns
    /// once it is gone (the data directory is free for a restart).
    pub fn kill(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        child.kill().expect("SIGKILL the server");
        let status = child.wait().expect("wait for the killed server");
        self.child = None;
        status
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}:\n{}",
                self.binary.name(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits up to 10 s for `text` in the log. Log lines go through a writer thread, so a line
    /// can land after a metric or an answer that reports the same event.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            assert!(Instant::now() < deadline, "{text:?} not in the log: {}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let exited = child.try_wait().ok().flatten();
            let _ = child.kill();
            let _ = child.wait();
            // A failing test shows what the server said: its log is otherwise deleted with
            // the scratch directory, and a flaky failure may not come back.
            if std::thread::panicking() {
                let log = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL_LINES).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                eprintln!(
                    "{} (exited before the end of the test: {exited:?}), last lines of its log:\n{}",
                    self.binary.name(),
                    tail.join("\n")
                );
            }
        }
    }
}

/// Lines of a server's log shown when its test fails.
const LOG_TAIL_LINES: usize = 60;

/// Defines each named test, a function taking a [`ServerBinary`], once per server: in modules
/// `tokio` and `smol` (`tokio::name`, `smol::name`).
#[macro_export]
macro_rules! for_both_servers {
    ($($test:ident),* $(,)?) => {
        mod tokio {
            $(#[test] fn $test() { super::$test($crate::ServerBinary::Tokio); })*
        }
        mod smol {
            $(#[test] fn $test() { super::$test($crate::ServerBinary::Smol); })*
        }
    };
}

/// `config` with `TLS_LISTEN`, `LISTEN`, `ADMIN` and `DATA_DIR` filled in: three ephemeral
/// loopback ports and `data_dir`, as TOML strings.
pub fn fill_config(config: &str, data_dir: &Path) -> String {
    config
        .replace("TLS_LISTEN", "\"127.0.0.1:0\"")
        .replace("LISTEN", "\"127.0.0.1:0\"")
        .replace("ADMIN", "\"127.0.0.1:0\"")
        .replace("DATA_DIR", &format!("{:?}", data_dir.display().to_string()))
}

/// The value of a series (its name and labels as written) on a metrics page.
pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until `done` holds, checking every 20 ms, or panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `work` on a thread of its own and returns its result, or panics naming `what` if it
/// takes longer than `timeout`: a test that would hang fails instead. (A panic in `work` is
/// passed on.)
pub fn within<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done_tx.send(work());
    });
    match done_rx.recv_timeout(timeout) {
        Ok(result) => {
            let _ = worker.join();
            result
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends its result before it ends"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {timeout:?}")
        }
    }
}

/// Runs the `chute` CLI against a server and returns its output.
pub fn chute(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    chute_at(&server.url(), args, stdin)
}

pub fn chute_at(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(binary_path("chute"))
        .args(["--url", url])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chute");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("chute output")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A payload of `size` bytes (at least the id and a separator) that names the message: the
/// crash and disk-full tests check messages off by these ids.
pub fn labelled_payload(id: &str, size: usize) -> bytes::Bytes {
    let mut payload = format!("{id}|");
    payload.extend(std::iter::repeat_n('.', size.saturating_sub(payload.len())));
    bytes::Bytes::from(payload)
}

/// The id a [`labelled_payload`] carries.
pub fn id_of(payload: &[u8]) -> String {
    let text = std::str::from_utf8(payload).expect("utf-8 payload");
    text.split_once('|').map_or(text, |(id, _)| id).to_string()
}

/// Subscribes to `queue`, takes its `ready` messages, acks each, and returns their ids.
pub async fn take_ready(
    connection: &chute_client::Connection,
    queue: &str,
    ready: u64,
) -> Vec<String> {
    use futures::StreamExt;
    let mut ids = Vec::new();
    if ready == 0 {
        return ids;
    }
    let prefetch = u32::try_from(ready).unwrap_or(u32::MAX).min(1000);
    let mut deliveries = connection.subscribe(queue, prefetch).await.expect("subscribe");
    for _ in 0..ready {
        let delivery = deliveries.next().await.expect("a recovered message");
        ids.push(id_of(delivery.payload()));
        delivery.ack().expect("ack");
    }
    ids
}
