//! TLS and mutual TLS on both servers (docs/SECURITY.md): plain and TLS listeners side by side
//! or TLS only, certificates refused on either side, the user a client certificate names,
//! refusing to start with an expired certificate, rotating the certificate without a restart
//! (reload, SIGHUP, the files' directory watched, polling) all or nothing, bounded handshakes,
//! and the admin endpoint over HTTPS. A rustls client speaks the protocol by raw frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chute_tests::http;
use chute_tests::tls::{
    client_config, connect, server_certificate, Ca, Leaf, RawSession, TlsFiles, TlsStream,
};
use chute_tests::{for_both_servers, metric, wait_for, Server, ServerBinary};
use futures::executor::block_on;

const FAR_FUTURE: (i32, u8, u8) = (2099, 1, 1);
const WAIT: Duration = Duration::from_secs(10);

/// A server with a TLS listener, its PKI and where its files are.
struct TlsServer {
    server: Server,
    config_path: PathBuf,
    files: TlsFiles,
    ca: Ca,
    /// Keeps the files' directory for the server's life.
    _dir: tempfile::TempDir,
}

/// The configuration: `server_listen` (`LISTEN` or `"off"`), the TLS listener with the files
/// in `files`, and `tls` lines added to `[tls]`. Heartbeats are rare (a minute), so nothing
/// but the frame under test can push bytes out.
fn config(server_listen: &str, files: &TlsFiles, tls: &str) -> String {
    format!(
        "version = 1\n[server]\nlisten = {server_listen}\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n\
         [timeouts]\nheartbeat_ms = 60000\n\
         [tls]\nlisten = TLS_LISTEN\n{}watch_files = false\nreload_poll_ms = 0\n{tls}",
        files.config_lines()
    )
}

fn start(binary: ServerBinary, server_listen: &str, tls: &str) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path());
    let ca = Ca::new("server CA");
    files.write_server(&ca.server(FAR_FUTURE));
    files.write_client_ca(&Ca::new("unused client CA"));
    let (server, config_path) =
        Server::start_with_config(binary, &config(server_listen, &files, tls));
    TlsServer { server, config_path, files, ca, _dir: dir }
}

impl TlsServer {
    fn tls_addr(&self) -> std::net::SocketAddr {
        self.server.tls_addr.expect("a TLS listener")
    }

    fn connect(&self, trusted: &[&Ca], identity: Option<&Leaf>) -> std::io::Result<TlsStream> {
        connect(self.tls_addr(), client_config(trusted, identity))
    }

    /// A TLS session that got `HelloOk`.
    fn session(&self, identity: Option<&Leaf>, name: &str) -> RawSession<TlsStream> {
        let stream = self.connect(&[&self.ca], identity).expect("a TLS handshake");
        RawSession::open(stream, name).expect("HelloOk over TLS").0
    }

    fn metrics(&self) -> String {
        let answer = http::get(self.server.admin_addr.unwrap(), "/metrics");
        assert_eq!(answer.status, 200);
        answer.body
    }

    fn metric(&self, series: &str) -> f64 {
        let page = self.metrics();
        metric(&page, series).unwrap_or_else(|| panic!("no {series} in\n{page}"))
    }

    fn connections(&self) -> Vec<serde_json::Value> {
        let answer = http::get(self.server.admin_addr.unwrap(), "/api/connections");
        answer.json().as_array().unwrap().clone()
    }

    fn rewrite_config(&self, text: &str) {
        std::fs::write(&self.config_path, chute_tests::fill_config(text, &self.server.data_dir))
            .unwrap();
    }
}

/// The connection of the admin list whose client named itself `name`.
fn connection_named(server: &TlsServer, name: &str) -> serde_json::Value {
    let connections = server.connections();
    let found = connections.iter().find(|c| c["client_name"] == name);
    found.unwrap_or_else(|| panic!("no connection {name} in {connections:#?}")).clone()
}

/// Plain and TLS listeners serve side by side; the admin list says which connection is
/// encrypted; a single confirm (a small frame written alone) arrives over TLS at once, not
/// with the next heartbeat a minute later; the certificate's expiry is a metric.
fn plain_and_tls_side_by_side(binary: ServerBinary) {
    let server = start(binary, "LISTEN", "");
    assert_ne!(Some(server.server.addr), server.server.tls_addr);
    let plain = block_on(chute_client::Connection::connect(&server.server.url())).unwrap();
    block_on(plain.declare_queue("jobs", Default::default())).unwrap();
    block_on(async { plain.publish("jobs", "plain").await.unwrap().await.unwrap() });

    let mut tls = server.session(None, "over-tls");
    assert!(tls.declare("jobs").is_ok());
    let started = Instant::now();
    tls.publish_confirmed("jobs", "encrypted").expect("a confirm over TLS");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the confirm waited {:?}",
        started.elapsed()
    );

    let encrypted = connection_named(&server, "over-tls");
    assert_eq!(encrypted["tls"], true, "{encrypted}");
    assert_eq!(encrypted["certificate_user"], serde_json::Value::Null, "{encrypted}");
    let connections = server.connections();
    assert!(connections.iter().any(|c| c["tls"] == false), "the plain one: {connections:#?}");
    assert_eq!(server.metric("chute_tls_handshakes_total"), 1.0);
    let expiry = server.metric("chute_tls_certificate_expiry_timestamp_seconds");
    assert_eq!(expiry, 4_070_908_800.0, "2099-01-01T00:00:00Z");
    assert!(server.server.stop().success());
}

/// `server.listen = "off"`: TLS only, and nothing listens for plain clients.
fn tls_only_serves(binary: ServerBinary) {
    let server = start(binary, "\"off\"", "");
    assert_eq!(Some(server.server.addr), server.server.tls_addr, "the only client listener");
    let mut session = server.session(None, "tls-only");
    session.declare("jobs").unwrap();
    session.publish_confirmed("jobs", "only over TLS").unwrap();
    let log = server.server.log();
    assert!(log.contains("addr=off"), "the plain listener is off: {log}");
    assert!(server.server.stop().success());
}

/// A client that does not trust the server's CA refuses the handshake.
fn an_untrusted_server_ca_is_refused_by_the_client(binary: ServerBinary) {
    let server = start(binary, "LISTEN", "");
    let Err(error) = server.connect(&[&Ca::new("another CA")], None) else {
        panic!("the handshake succeeded");
    };
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    let _trusting = server.session(None, "trusting");
    assert!(server.server.stop().success());
}

/// Whether a TLS connection with `identity` gets `HelloOk`. (TLS 1.3: the server's verdict on
/// a client certificate arrives after the client's side of the handshake, at the first read.)
fn gets_in(server: &TlsServer, trusted: &[&Ca], identity: Option<&Leaf>) -> bool {
    match server.connect(trusted, identity) {
        Err(_) => false,
        Ok(stream) => RawSession::open(stream, "probe").is_ok(),
    }
}

/// `client_auth = "required"`: a client without a certificate, and one whose certificate
/// another CA issued, are refused by the server and counted; a client with a certificate the
/// configured CA issued gets in, as the user its e-mail SAN names.
fn client_certificates_required(binary: ServerBinary) {
    let clients = Ca::new("client CA");
    let server =
        start(binary, "LISTEN", "client_auth = \"required\"\nclient_identity = \"san-email\"\n");
    server.files.write_client_ca(&clients);
    let reload = http::http(server.server.admin_addr.unwrap(), "POST", "/api/reload", None);
    assert_eq!(reload.status, 200, "{reload:?}");

    assert!(!gets_in(&server, &[&server.ca], None), "no certificate");
    let stranger = Ca::new("stranger CA").client("mallory", "mallory@example.com");
    assert!(!gets_in(&server, &[&server.ca], Some(&stranger)), "another CA's certificate");
    let series = "chute_tls_handshakes_failed_total{reason=\"client_certificate\"}";
    wait_for("both refusals counted", WAIT, || server.metric(series) == 2.0);

    let alice = clients.client("alice", "alice@example.com");
    let mut session = server.session(Some(&alice), "alice-app");
    session.declare("jobs").unwrap();
    session.publish_confirmed("jobs", "from alice").unwrap();
    let connection = connection_named(&server, "alice-app");
    assert_eq!(connection["certificate_user"], "alice@example.com", "{connection}");
    assert!(server.server.stop().success());
}

/// With users: a client certificate logs its user in without a password, a password and a
/// token are accepted over TLS (and the same password on the plain listener is not), and the
/// admin list shows who each connection is.
fn logins_over_tls(binary: ServerBinary) {
    use chute_core::auth::{scram::ScramKeys, TokenHash};
    use chute_protocol::Credentials;
    let dir = tempfile::tempdir().unwrap();
    let clients = Ca::new("client CA");
    let users_file = dir.path().join("users.toml");
    let keys = ScramKeys::derive("svc-pw", b"sixteen-byte-slt", 4096).to_text();
    let (svc_token, ops_token) = (TokenHash::of("svc-token"), TokenHash::of("ops-token"));
    let users = [
        "[[user]]\nname = \"alice@example.com\"\nread = [\"*\"]\n".to_string(),
        format!(
            "[[user]]\nname = \"svc\"\nscram = \"{keys}\"\ntokens = [\"{}\"]\n",
            svc_token.to_text()
        ),
        format!("[[user]]\nname = \"ops\"\nadmin = true\ntokens = [\"{}\"]\n", ops_token.to_text()),
    ];
    std::fs::write(&users_file, users.join("\n")).unwrap();
    let auth = format!(
        "client_auth = \"optional\"\nclient_identity = \"san-email\"\n\
         [auth]\nusers_file = {:?}\nfailure_delay_ms = 0\n",
        users_file.display().to_string()
    );
    let server = start(binary, "LISTEN", &auth);
    server.files.write_client_ca(&clients);
    let admin = server.server.admin_addr.unwrap();
    let as_ops = [("Authorization", "Bearer ops-token")];
    let reload = http::http_with(admin, "POST", "/api/reload", &as_ops, None);
    assert_eq!(reload.status, 200, "{reload:?}");

    let alice = clients.client("alice", "alice@example.com");
    let _alice = server.session(Some(&alice), "by-certificate");
    let open = |credentials: Credentials, name: &str| {
        let stream = server.connect(&[&server.ca], None).unwrap();
        RawSession::open_with(stream, name, credentials).map(|(session, _)| session)
    };
    let password = || Credentials::Password { username: "svc".into(), password: "svc-pw".into() };
    let _by_password = open(password(), "by-password").expect("a password over TLS");
    let _by_token = open(Credentials::Token { token: "svc-token".into() }, "by-token").unwrap();
    assert!(open(Credentials::Anonymous, "nobody").is_err(), "no certificate, no credentials");
    let plain = std::net::TcpStream::connect(server.server.addr).unwrap();
    assert!(RawSession::open_with(plain, "in-clear", password()).is_err(), "a password in clear");
    let connections = http::http_with(admin, "GET", "/api/connections", &as_ops, None).json();
    let user_of = |name: &str| {
        let connection = connections.as_array().unwrap().iter().find(|c| c["client_name"] == name);
        connection.unwrap_or_else(|| panic!("no {name} in {connections}"))["user"].clone()
    };
    assert_eq!(user_of("by-certificate"), "alice@example.com");
    assert_eq!(user_of("by-password"), "svc");
    assert_eq!(user_of("by-token"), "svc");
    assert!(server.server.stop().success());
}

/// `client_auth = "optional"`: a client without a certificate gets in with no certificate
/// user; one with a certificate gets in as its common name; a bad certificate is refused.
fn client_certificates_optional(binary: ServerBinary) {
    let clients = Ca::new("client CA");
    let server = start(binary, "LISTEN", "client_auth = \"optional\"\n");
    server.files.write_client_ca(&clients);
    let reload = http::http(server.server.admin_addr.unwrap(), "POST", "/api/reload", None);
    assert_eq!(reload.status, 200, "{reload:?}");

    let _anonymous = server.session(None, "no-certificate");
    let bob = clients.client("bob", "bob@example.com");
    let _bob = server.session(Some(&bob), "with-certificate");
    assert_eq!(
        connection_named(&server, "no-certificate")["certificate_user"],
        serde_json::Value::Null
    );
    assert_eq!(connection_named(&server, "with-certificate")["certificate_user"], "bob");
    let stranger = Ca::new("stranger CA").client("mallory", "mallory@example.com");
    assert!(
        !gets_in(&server, &[&server.ca], Some(&stranger)),
        "a certificate that does not verify"
    );
    assert!(server.server.stop().success());
}

/// An expired certificate: `--check-config` and the start both refuse it, naming the key.
#[test]
fn an_expired_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path());
    files.write_server(&Ca::new("server CA").server((2020, 1, 1)));
    files.write_client_ca(&Ca::new("client CA"));
    let text = config("LISTEN", &files, "");
    let path = dir.path().join("chute.toml");
    std::fs::write(&path, chute_tests::fill_config(&text, &dir.path().join("data"))).unwrap();
    for binary in ServerBinary::ALL {
        for check in [true, false] {
            let mut command = std::process::Command::new(chute_tests::binary_path(binary.name()));
            command.arg("--config").arg(&path);
            if check {
                command.arg("--check-config");
            }
            let output = command.env_remove("CHUTE_LOG").output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{binary:?} check={check}: {stderr}");
            let line = format!("{}:10:1: tls.cert_file = {:?}: the certificate (CN=localhost) expired on Jan  1 00:00:00 2020 +00:00: renew it", path.display(), files.cert().display().to_string());
            assert!(stderr.lines().any(|l| l == format!("{}: {line}", binary.name())), "{stderr}");
        }
    }
}

/// A TLS address in use stops the start with the endpoint and the key to change named.
#[test]
fn a_tls_address_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = TlsFiles::new(dir.path());
    files.write_server(&Ca::new("server CA").server(FAR_FUTURE));
    files.write_client_ca(&Ca::new("client CA"));
    let text = config("LISTEN", &files, "").replace("TLS_LISTEN", &format!("\"{at}\""));
    let path = dir.path().join("chute.toml");
    std::fs::write(&path, chute_tests::fill_config(&text, &dir.path().join("data"))).unwrap();
    for binary in ServerBinary::ALL {
        let output = std::process::Command::new(chute_tests::binary_path(binary.name()))
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let expected =
            format!("{}: cannot listen on {at} for the client protocol over TLS: ", binary.name());
        assert!(stderr.contains(&expected), "{stderr}");
        assert!(stderr.contains("pick another address with tls.listen)"), "{stderr}");
    }
}

/// Replaces the files as Kubernetes does: the names are symlinks into `..data`, itself a
/// symlink to a directory of this generation, swapped by one rename.
fn swap_like_kubernetes(files: &TlsFiles, generation: &str, leaf: &Leaf, client_ca: &Ca) {
    let target = files.dir.join(generation);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(target.join("key.pem"), &leaf.key_pem).unwrap();
    std::fs::write(target.join("clients-ca.pem"), client_ca.pem()).unwrap();
    let staged = files.dir.join("..data_tmp");
    std::os::unix::fs::symlink(generation, &staged).unwrap();
    std::fs::rename(&staged, files.dir.join("..data")).unwrap();
}

/// The files' directory laid out as a Kubernetes Secret volume, first generation.
fn kubernetes_layout(files: &TlsFiles, leaf: &Leaf, client_ca: &Ca) {
    for name in ["cert.pem", "key.pem", "clients-ca.pem"] {
        let _ = std::fs::remove_file(files.dir.join(name));
        std::os::unix::fs::symlink(Path::new("..data").join(name), files.dir.join(name)).unwrap();
    }
    swap_like_kubernetes(files, "..gen1", leaf, client_ca);
}

/// Rotation by `POST /api/reload` and by SIGHUP, to certificates of a new CA: the answer
/// names `tls.certificate`, new handshakes see the new certificate (and a client trusting only
/// the old CA is refused), and a connection opened before keeps publishing and getting
/// confirms.
fn rotation_by_reload_and_sighup(binary: ServerBinary) {
    let server = start(binary, "LISTEN", "");
    let mut before = server.session(None, "before");
    before.declare("jobs").unwrap();
    before.publish_confirmed("jobs", "before the rotation").unwrap();

    let second_ca = Ca::new("second CA");
    let second = second_ca.server(FAR_FUTURE);
    server.files.write_server(&second);
    let answer = http::http(server.server.admin_addr.unwrap(), "POST", "/api/reload", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    let changed = answer.json()["changed"].to_string();
    assert!(changed.contains("tls.certificate: CN=localhost serial "), "{changed}");
    let stream = server.connect(&[&second_ca], None).expect("the new certificate");
    assert_eq!(server_certificate(&stream), second.der);
    assert!(server.connect(&[&server.ca], None).is_err(), "the old certificate is gone");
    before.publish_confirmed("jobs", "after the rotation").expect("the open connection");

    let third_ca = Ca::new("third CA");
    let third = third_ca.server(FAR_FUTURE);
    server.files.write_server(&third);
    server.server.signal("HUP");
    let reloaded = "chute_tls_certificate_reloads_total{result=\"ok\"}";
    wait_for("the SIGHUP reload", WAIT, || server.metric(reloaded) == 2.0);
    let stream = server.connect(&[&third_ca], None).expect("the third certificate");
    assert_eq!(server_certificate(&stream), third.der);
    before.publish_confirmed("jobs", "after the second rotation").expect("the open connection");
    assert!(server.server.stop().success());
}

/// Rotation with no signal: the files' directory is watched (polling off); a Kubernetes-style
/// symlink swap is picked up and new handshakes see the new certificate; a swap to a key of
/// another pair is refused (logged, counted) and the old certificate keeps serving.
fn rotation_by_watching_the_files(binary: ServerBinary) {
    rotation_without_a_signal(binary, "watch_files = true\nreload_poll_ms = 0\n");
}

/// Rotation by polling only (the directory not watched): the same swap is picked up.
fn rotation_by_polling(binary: ServerBinary) {
    rotation_without_a_signal(binary, "watch_files = false\nreload_poll_ms = 200\n");
}

fn rotation_without_a_signal(binary: ServerBinary, triggers: &str) {
    let server = start(binary, "LISTEN", "");
    let first = server.ca.server(FAR_FUTURE);
    kubernetes_layout(&server.files, &first, &server.ca);
    let text = config("LISTEN", &server.files, "")
        .replace("watch_files = false\nreload_poll_ms = 0\n", triggers);
    server.rewrite_config(&text);
    let answer = http::http(server.server.admin_addr.unwrap(), "POST", "/api/reload", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(server_certificate(&server.connect(&[&server.ca], None).unwrap()), first.der);
    let mut before = server.session(None, "before");
    before.declare("jobs").unwrap();

    // A generation whose key is another pair's: refused, logged, counted once; the first
    // certificate keeps serving.
    let (second, other) = (server.ca.server(FAR_FUTURE), server.ca.server(FAR_FUTURE));
    let mismatched = Leaf { key_pem: other.key_pem, ..second };
    swap_like_kubernetes(&server.files, "..gen2", &mismatched, &server.ca);
    let refused = "chute_tls_certificate_reloads_total{result=\"failed\"}";
    wait_for("the refusal", WAIT, || server.metric(refused) == 1.0);
    server.server.wait_for_log("the key does not match");
    assert_eq!(server_certificate(&server.connect(&[&server.ca], None).unwrap()), first.der);
    // Another change in the directory (a wake-up when it is watched) with the same bad files
    // is not tried, logged and counted again.
    std::fs::write(server.files.dir.join("unrelated.txt"), "x").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(server.metric(refused), 1.0, "the same bad files, refused once");

    let third = server.ca.server(FAR_FUTURE);
    swap_like_kubernetes(&server.files, "..gen3", &third, &server.ca);
    wait_for("the new certificate", WAIT, || {
        server_certificate(&server.connect(&[&server.ca], None).unwrap()) == third.der
    });
    before.publish_confirmed("jobs", "after the rotation").expect("the open connection");
    server.server.wait_for_log("TLS files changed: reloaded");
    assert!(server.server.stop().success());
}

/// A new certificate whose key is another pair's is refused whole: the reload answers 409
/// naming the key file, the failure is logged and counted, the old certificate keeps serving
/// and the open connection keeps working.
fn a_bad_new_certificate_is_refused(binary: ServerBinary) {
    let server = start(binary, "LISTEN", "");
    let old = std::fs::read(server.files.cert()).unwrap();
    let mut before = server.session(None, "before");
    before.declare("jobs").unwrap();
    let mismatched = server.ca.server(FAR_FUTURE);
    std::fs::write(server.files.cert(), &mismatched.cert_pem).unwrap();

    let answer = http::http(server.server.admin_addr.unwrap(), "POST", "/api/reload", None);
    assert_eq!(answer.status, 409, "{answer:?}");
    let problems = answer.json()["problems"].to_string();
    assert!(problems.contains("tls.key_file = "), "{problems}");
    assert!(
        problems.contains("the key does not match the certificate in tls.cert_file"),
        "{problems}"
    );
    assert_eq!(server.metric("chute_tls_certificate_reloads_total{result=\"failed\"}"), 1.0);
    assert_eq!(server.metric("chute_tls_certificate_reloads_total{result=\"ok\"}"), 0.0);
    server.server.wait_for_log("the key does not match");
    let served = server_certificate(&server.connect(&[&server.ca], None).unwrap());
    assert_eq!(served.as_ref(), pem_der(&old), "the old certificate still serves");
    before.publish_confirmed("jobs", "still served").expect("the open connection");
    assert!(server.server.stop().success());
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

/// A TCP connection that never starts its handshake is closed after
/// `tls.handshake_timeout_ms`, and counted; meanwhile other clients are served.
fn a_stalled_handshake_is_closed_after_the_timeout(binary: ServerBinary) {
    let server = start(binary, "LISTEN", "handshake_timeout_ms = 2000\n");
    let mut stalled = TcpStream::connect(server.tls_addr()).unwrap();
    stalled.set_read_timeout(Some(WAIT)).unwrap();
    let opened = Instant::now();
    let mut served = server.session(None, "not-held-up");
    served.declare("jobs").unwrap();
    served.publish_confirmed("jobs", "while another stalls").unwrap();
    let serving = opened.elapsed();
    assert!(serving < Duration::from_millis(1500), "held up by the stalled one: {serving:?}");

    let read = stalled.read(&mut [0; 16]);
    let waited = opened.elapsed();
    assert!(matches!(read, Ok(0)), "closed by the server: {read:?}");
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6), "{waited:?}");
    let series = "chute_tls_handshakes_failed_total{reason=\"timeout\"}";
    wait_for("the timeout counted", WAIT, || server.metric(series) == 1.0);
    assert!(server.server.stop().success());
}

/// Past `tls.handshakes_max` handshakes in progress, a new TCP connection is closed at once
/// and counted.
fn handshakes_over_the_limit_are_closed_at_once(binary: ServerBinary) {
    let server = start(binary, "LISTEN", "handshakes_max = 1\nhandshake_timeout_ms = 30000\n");
    let _holding = TcpStream::connect(server.tls_addr()).unwrap();
    wait_for("the first handshake in progress", WAIT, || {
        server.metric("chute_tls_handshakes_in_progress") == 1.0
    });
    let mut over = TcpStream::connect(server.tls_addr()).unwrap();
    over.set_read_timeout(Some(WAIT)).unwrap();
    let opened = Instant::now();
    let read = over.read(&mut [0; 16]);
    assert!(matches!(read, Ok(0)) || read.is_err(), "closed: {read:?}");
    assert!(opened.elapsed() < Duration::from_secs(2), "at once: {:?}", opened.elapsed());
    assert_eq!(server.metric("chute_tls_handshakes_refused_total"), 1.0);
    assert!(server.server.stop().success());
}

/// `tls.admin = true`: the admin endpoint speaks HTTPS with the server's certificate, and
/// no longer plain HTTP.
fn the_admin_endpoint_speaks_https(binary: ServerBinary) {
    let server = start(binary, "LISTEN", "admin = true\n");
    let admin = server.server.admin_addr.unwrap();
    let mut stream = connect(admin, client_config(&[&server.ca], None)).expect("HTTPS");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    let mut plain = TcpStream::connect(admin).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(!String::from_utf8_lossy(&reply).contains("200 OK"), "plain HTTP answered");
    assert!(server.server.stop().success());
}

for_both_servers!(
    logins_over_tls,
    plain_and_tls_side_by_side,
    tls_only_serves,
    an_untrusted_server_ca_is_refused_by_the_client,
    client_certificates_required,
    client_certificates_optional,
    rotation_by_reload_and_sighup,
    rotation_by_watching_the_files,
    rotation_by_polling,
    a_bad_new_certificate_is_refused,
    a_stalled_handshake_is_closed_after_the_timeout,
    handshakes_over_the_limit_are_closed_at_once,
    the_admin_endpoint_speaks_https,
);
