//! The client side of security against both servers: the Rust client and the CLI log in by
//! SCRAM-SHA-256 (in clear and over TLS), with a token over TLS and with a client certificate;
//! a wrong password, an untrusted CA and a certificate for another name fail at once with a
//! clear error; the server-name override lets an IP address connect; a reconnecting client
//! logs in again after the server restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chute_client::{
    ConnectOptions, Connection, ConnectionEvent, Error, ErrorCode, QueueOptions, TlsOptions,
};
use chute_core::auth::{scram::ScramKeys, TokenHash};
use chute_tests::tls::{Ca, Leaf, TlsFiles};
use chute_tests::{binary_path, for_both_servers, metric, stderr, within, Server, ServerBinary};
use futures::executor::block_on;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

/// A server with users, a plain and a TLS listener, and the files a client needs.
struct Secured {
    server: Server,
    /// The CA's certificate, for `--ca`.
    ca_file: PathBuf,
    clients: Ca,
    dir: tempfile::TempDir,
}

/// svc: a password and a token, its own queues; alice@example.com: a certificate user, her
/// own queues; anonymous (where anonymous clients are allowed): `public.*`.
fn users_file(dir: &Path) -> PathBuf {
    let keys = ScramKeys::derive("svc-pw", b"sixteen-byte-slt", 4096).to_text();
    let token = TokenHash::of("svc-token").to_text();
    let own = "configure = [\"{user}.*\"]\nwrite = [\"{user}.*\"]\nread = [\"{user}.*\"]\n";
    let users = format!(
        "[[user]]\nname = \"svc\"\nscram = \"{keys}\"\ntokens = [\"{token}\"]\n{own}\n\
         [[user]]\nname = \"alice@example.com\"\nconfigure = [\"alice.*\"]\n\
         [[user]]\nname = \"anonymous\"\nconfigure = [\"public.*\"]\n"
    );
    let path = dir.join("users.toml");
    std::fs::write(&path, users).unwrap();
    path
}

/// The configuration with `listen` and `tls_listen` (placeholders or fixed addresses); `tls`
/// adds lines to `[tls]`, `auth` to `[auth]`.
fn config(dir: &Path, files: &TlsFiles, listen: &str, tls_listen: &str, tls: &str) -> String {
    config_with_auth(dir, files, listen, tls_listen, tls, "")
}

fn config_with_auth(
    dir: &Path,
    files: &TlsFiles,
    listen: &str,
    tls_listen: &str,
    tls: &str,
    auth: &str,
) -> String {
    format!(
        "[server]\nlisten = {listen}\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n\
         [tls]\nlisten = {tls_listen}\n{}watch_files = false\nreload_poll_ms = 0\n\
         client_identity = \"san-email\"\n{tls}\
         [auth]\nusers_file = {:?}\nfailure_delay_ms = 200\n{auth}",
        files.config_lines(),
        users_file(dir).display().to_string(),
    )
}

/// A secured server; `tls` adds lines to `[tls]` (`client_auth = "required"`).
fn secured(binary: ServerBinary, tls: &str) -> Secured {
    secured_with(binary, tls, "", |ca| ca.server((2099, 1, 1)))
}

/// [`secured`] with `auth` added to `[auth]` and the server certificate `certificate` makes.
fn secured_with(
    binary: ServerBinary,
    tls: &str,
    auth: &str,
    certificate: impl Fn(&Ca) -> Leaf,
) -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(&dir.path().join("tls"));
    let ca = Ca::new("server CA");
    files.write_server(&certificate(&ca));
    let clients = Ca::new("client CA");
    files.write_client_ca(&clients);
    let ca_file = dir.path().join("ca.pem");
    ca.write_pem(&ca_file);
    let text = config_with_auth(dir.path(), &files, "LISTEN", "TLS_LISTEN", tls, auth);
    let (server, _) = Server::start_with_config(binary, &text);
    Secured { server, ca_file, clients, dir }
}

impl Secured {
    fn tls_addr(&self) -> SocketAddr {
        self.server.tls_addr.unwrap()
    }

    /// `chutes://[userinfo]localhost:PORT`.
    fn tls_url(&self, userinfo: &str) -> String {
        format!("chutes://{userinfo}localhost:{}", self.tls_addr().port())
    }

    fn plain_url(&self, userinfo: &str) -> String {
        format!("chute://{userinfo}{}", self.server.addr)
    }

    fn tls_options(&self) -> ConnectOptions {
        let tls = TlsOptions { ca_file: Some(self.ca_file.clone()), ..TlsOptions::default() };
        ConnectOptions { tls, ..ConnectOptions::default() }
    }

    /// A client certificate for alice, written for `--cert` and `--key`.
    fn alice(&self) -> (Leaf, PathBuf, PathBuf) {
        let leaf = self.clients.client("alice", "alice@example.com");
        let (cert, key) = leaf.write_to(self.dir.path(), "alice");
        (leaf, cert, key)
    }

    fn failed_logins(&self) -> f64 {
        let page = chute_tests::http::get(self.server.admin_addr.unwrap(), "/metrics").body;
        metric(&page, "chute_auth_logins_total{result=\"failed\"}").unwrap_or(0.0)
    }
}

fn connect(url: &str, options: ConnectOptions) -> Result<Connection, Error> {
    let url = url.to_string();
    within("connecting", WAIT, move || block_on(Connection::connect_with(&url, options)))
}

/// Declares `queue` and reports the server's answer's code, if a refusal.
fn declare(connection: &Connection, queue: &str) -> Result<(), Option<ErrorCode>> {
    block_on(connection.declare_queue(queue, QueueOptions::default()))
        .map(|_| ())
        .map_err(|error| error.code())
}

/// The connection acts as svc: its own queue is allowed, another's not.
fn acts_as_svc(connection: &Connection) {
    assert_eq!(declare(connection, "svc.jobs"), Ok(()));
    assert_eq!(declare(connection, "other.jobs"), Err(Some(ErrorCode::NOT_AUTHORIZED)));
}

/// Runs `chute` with `args` and environment `env` (nothing else of the test's `CHUTE_*`).
fn chute(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(binary_path("chute"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHUTE_") {
            command.env_remove(name);
        }
    }
    let (args, env): (Vec<String>, Vec<(String, String)>) = (
        args.iter().map(|a| a.to_string()).collect(),
        env.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
    );
    command.args(&args).envs(env).stdin(Stdio::null());
    within("chute", Duration::from_secs(120), move || command.output().unwrap())
}

fn succeeded(output: &Output) {
    assert!(output.status.success(), "stderr: {}", stderr(output));
}

/// SCRAM in clear and over TLS, from the URL and from the options; a token over TLS; a token
/// in clear is refused before anything is sent.
fn rust_client_logs_in(binary: ServerBinary) {
    let secured = secured(binary, "");
    acts_as_svc(&connect(&secured.plain_url("svc:svc-pw@"), ConnectOptions::default()).unwrap());
    let options = ConnectOptions::default().with_password("svc", "svc-pw");
    acts_as_svc(&connect(&secured.plain_url(""), options).unwrap());
    acts_as_svc(&connect(&secured.tls_url("svc:svc-pw@"), secured.tls_options()).unwrap());
    let by_token = secured.tls_options().with_token("svc-token");
    acts_as_svc(&connect(&secured.tls_url(""), by_token).unwrap());

    let in_clear = ConnectOptions::default().with_token("svc-token");
    match connect(&secured.plain_url(""), in_clear) {
        Err(Error::InvalidOptions(message)) => assert!(message.contains("only over TLS")),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert!(secured.server.stop().success());
}

/// Within a tokio runtime the connection's I/O runs on the runtime's own sockets
/// (`IoPlacement::Auto`): SCRAM over TLS and in clear work there the same, reconnects' handshakes
/// included (the TLS one runs over tokio's socket).
fn rust_client_logs_in_on_tokio(binary: ServerBinary) {
    let secured = secured(binary, "");
    let (tls_url, plain_url) = (secured.tls_url("svc:svc-pw@"), secured.plain_url("svc:svc-pw@"));
    let options = secured.tls_options();
    within("logging in on tokio", WAIT, move || {
        let runtime = ::tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            for (url, options) in [(tls_url, options), (plain_url, ConnectOptions::default())] {
                let connection = Connection::connect_with(&url, options).await.unwrap();
                connection.declare_queue("svc.jobs", QueueOptions::default()).await.unwrap();
                let refused = connection.declare_queue("other.jobs", QueueOptions::default());
                assert_eq!(refused.await.unwrap_err().code(), Some(ErrorCode::NOT_AUTHORIZED));
                connection.close().await;
            }
        })
    });
    assert!(secured.server.stop().success());
}

/// The CLI: a password from a file in clear, a password from CHUTE_PASSWORD and a token from
/// CHUTE_TOKEN over TLS (`--ca`), and `chute bench` over TLS.
fn cli_logs_in(binary: ServerBinary) {
    let secured = secured(binary, "");
    let password_file = secured.dir.path().join("password");
    std::fs::write(&password_file, "svc-pw\n").unwrap();
    let password_file = password_file.display().to_string();
    let ca = secured.ca_file.display().to_string();
    let (plain, tls) = (secured.plain_url(""), secured.tls_url(""));

    let args = ["--url", &plain, "--user", "svc", "--password-file", &password_file];
    succeeded(&chute(&[&args[..], &["queue", "declare", "svc.a"]].concat(), &[]));
    let env = [("CHUTE_PASSWORD", "svc-pw"), ("CHUTE_USER", "svc"), ("CHUTE_CA", &ca)];
    succeeded(&chute(&["--url", &tls, "queue", "declare", "svc.b"], &env));
    let env = [("CHUTE_TOKEN", "svc-token")];
    let list = chute(&["--url", &tls, "--ca", &ca, "queue", "list"], &env);
    succeeded(&list);
    let listed = chute_tests::stdout(&list);
    assert!(listed.contains("svc.a") && listed.contains("svc.b"), "{listed}");

    let bench = [
        "--url",
        &tls,
        "--ca",
        &ca,
        "bench",
        "--queue",
        "svc.bench",
        "--messages",
        "500",
        "--timeout-s",
        "60",
        "--admin-url",
        "off",
    ];
    succeeded(&chute(&bench, &[("CHUTE_TOKEN", "svc-token")]));
    assert!(secured.server.stop().success());
}

/// `client_auth = "required"`: a client certificate logs alice in (EXTERNAL), from the Rust
/// client and the CLI; without one the TLS handshake fails.
fn client_certificate_logs_in(binary: ServerBinary) {
    let secured = secured(binary, "client_auth = \"required\"\n");
    let (_, cert, key) = secured.alice();
    let mut options = secured.tls_options();
    options.tls.cert_file = Some(cert.clone());
    options.tls.key_file = Some(key.clone());
    let alice = connect(&secured.tls_url(""), options).unwrap();
    assert_eq!(declare(&alice, "alice.jobs"), Ok(()));
    assert_eq!(declare(&alice, "svc.jobs"), Err(Some(ErrorCode::NOT_AUTHORIZED)));

    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let ca = secured.ca_file.display().to_string();
    let url = secured.tls_url("");
    let args = ["--url", &url, "--ca", &ca, "--cert", &cert, "--key", &key];
    succeeded(&chute(&[&args[..], &["queue", "declare", "alice.cli"]].concat(), &[]));

    let mut without = secured.tls_options();
    without.reconnect.enabled = false;
    assert!(connect(&secured.tls_url(""), without).is_err(), "no certificate, no way in");
    assert!(secured.server.stop().success());
}

/// A wrong password: the connect fails with authentication-failed, once (the client does not
/// try again even when told to retry its first connect), and the CLI says so.
fn wrong_password_fails_without_retrying(binary: ServerBinary) {
    let secured = secured(binary, "");
    let mut options = ConnectOptions::default().with_password("svc", "wrong");
    options.reconnect.retry_first_connect = true;
    let started = Instant::now();
    let error = connect(&secured.plain_url(""), options).map(|_| ()).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::AUTHENTICATION_FAILED), "{error}");
    assert!(!error.is_retriable());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(secured.failed_logins(), 1.0, "one attempt");

    let url = secured.plain_url("svc:wrong@");
    let output = chute(&["--url", &url, "queue", "list"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("authentication-failed"), "{}", stderr(&output));
    assert_eq!(secured.failed_logins(), 2.0, "the CLI tried once too");
    assert!(secured.server.stop().success());
}

/// A server certificate from a CA the client does not trust fails the handshake, saying so.
fn an_untrusted_ca_fails_the_handshake(binary: ServerBinary) {
    let secured = secured(binary, "");
    let stranger = secured.dir.path().join("stranger.pem");
    Ca::new("stranger CA").write_pem(&stranger);
    let mut options = secured.tls_options();
    options.tls.ca_file = Some(stranger.clone());
    let error = connect(&secured.tls_url("svc:svc-pw@"), options).map(|_| ()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("TLS handshake with localhost failed"), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");

    let (url, ca) = (secured.tls_url("svc:svc-pw@"), stranger.display().to_string());
    let output = chute(&["--url", &url, "--ca", &ca, "queue", "list"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("UnknownIssuer"), "{}", stderr(&output));
    let output = chute(&["--url", &url, "queue", "list"], &[]);
    assert!(stderr(&output).contains("needs the CA"), "{}", stderr(&output));
    assert!(secured.server.stop().success());
}

/// A certificate for `chute.test` only: an IP address does not match it, and the server-name
/// override makes it match.
fn the_server_name_override_lets_an_ip_address_connect(binary: ServerBinary) {
    let secured = secured_with(binary, "", "", |ca| ca.server_named(&["chute.test"]));
    let by_ip = format!("chutes://svc:svc-pw@{}", secured.tls_addr());
    let error = connect(&by_ip, secured.tls_options()).map(|_| ()).unwrap_err();
    assert!(error.to_string().contains("certificate not valid for name \"127.0.0.1\""), "{error}");
    let mut options = secured.tls_options();
    options.tls.server_name = Some("chute.test".into());
    acts_as_svc(&connect(&by_ip, options).unwrap());

    let ca = secured.ca_file.display().to_string();
    let args = ["--url", &by_ip, "--ca", &ca, "--server-name", "chute.test", "queue", "list"];
    succeeded(&chute(&args, &[]));
    assert!(secured.server.stop().success());
}

/// Users and anonymous clients on one server: a password client is its own user (the server
/// does not let it in as the anonymous user because it said `Anonymous` in `Hello`, which a
/// SCRAM client does), and a client without credentials is the anonymous user.
fn password_and_anonymous_clients_side_by_side(binary: ServerBinary) {
    let secured =
        secured_with(binary, "", "allow_anonymous = true\n", |ca| ca.server((2099, 1, 1)));
    let svc = connect(&secured.plain_url("svc:svc-pw@"), ConnectOptions::default()).unwrap();
    acts_as_svc(&svc);
    assert_eq!(declare(&svc, "public.svc"), Err(Some(ErrorCode::NOT_AUTHORIZED)));
    acts_as_svc(&connect(&secured.tls_url("svc:svc-pw@"), secured.tls_options()).unwrap());
    let anonymous = connect(&secured.plain_url(""), ConnectOptions::default()).unwrap();
    assert_eq!(declare(&anonymous, "public.news"), Ok(()));
    assert_eq!(declare(&anonymous, "svc.jobs"), Err(Some(ErrorCode::NOT_AUTHORIZED)));
    assert!(secured.server.stop().success());
}

/// Killed and started again on the same addresses with the same users file, the server gets
/// a TLS handshake and a SCRAM login again from the reconnecting client, which then works.
fn logs_in_again_after_a_restart(binary: ServerBinary) {
    let mut secured = secured(binary, "");
    let connection = connect(&secured.tls_url("svc:svc-pw@"), secured.tls_options()).unwrap();
    let mut events = connection.events();
    assert_eq!(declare(&connection, "svc.kept"), Ok(()));
    secured.server.kill();
    let files = TlsFiles::new(&secured.dir.path().join("tls"));
    let (listen, tls_listen) = (secured.server.addr, secured.tls_addr());
    let text = config(
        secured.dir.path(),
        &files,
        &format!("\"{listen}\""),
        &format!("\"{tls_listen}\""),
        "",
    );
    let (restarted, _) = Server::start_with_config(binary, &text);
    let reconnected = within("reconnecting", WAIT, move || {
        block_on(async {
            while let Some(event) = events.next().await {
                if let ConnectionEvent::Reconnected { .. } = event {
                    return true;
                }
            }
            false
        })
    });
    assert!(reconnected, "the events ended without a reconnect");
    acts_as_svc(&connection);
    assert!(restarted.stop().success());
}

for_both_servers!(
    rust_client_logs_in,
    rust_client_logs_in_on_tokio,
    cli_logs_in,
    client_certificate_logs_in,
    wrong_password_fails_without_retrying,
    an_untrusted_ca_fails_the_handshake,
    the_server_name_override_lets_an_ip_address_connect,
    logs_in_again_after_a_restart,
    password_and_anonymous_clients_side_by_side,
);
