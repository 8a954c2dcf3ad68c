//! Security against the real servers, each test named for what it attacks: logins (wrong,
//! replayed, in clear, before authenticating), permission escalation, the admin endpoint, and
//! what the audit log keeps. TLS has its own file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use chute_core::auth::scram::ScramClient;
use chute_protocol::{
    AuthResponse, AuthStart, Credentials, ErrorCode, Frame, QueueDeclare, QueueOptions,
};
use chute_tests::http::http_with;
use chute_tests::raw::RawConn;
use chute_tests::{
    binary_path, chute_at, for_both_servers, stderr, stdout, wait_for, Server, ServerBinary,
};

/// ops: admin with a password; svc: a token, its own queues; nobody else.
struct Secured {
    server: Server,
    users_file: PathBuf,
    audit_file: PathBuf,
    svc_token: String,
    _dir: tempfile::TempDir,
}

fn hash_password(password: &str) -> String {
    let mut child = Command::new(binary_path("chuted"))
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn new_token() -> (String, String) {
    let output = Command::new(binary_path("chuted")).arg("new-token").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    (lines.next().unwrap().to_string(), lines.next().unwrap().to_string())
}

fn secured(binary: ServerBinary) -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let users_file = dir.path().join("users.toml");
    let audit_file = dir.path().join("audit.log");
    let (svc_token, svc_hash) = new_token();
    let users = format!(
        "[[user]]\nname = \"ops\"\nscram = \"{}\"\nadmin = true\nconfigure = [\"*\"]\nwrite = [\"*\"]\nread = [\"*\"]\n\n\
         [[user]]\nname = \"svc\"\nscram = \"{}\"\ntokens = [\"{svc_hash}\"]\nconfigure = [\"{{user}}.*\"]\nwrite = [\"{{user}}.*\"]\nread = [\"{{user}}.*\"]\n",
        hash_password("ops-password"),
        hash_password("svc-password"),
    );
    std::fs::write(&users_file, users).unwrap();
    let config = format!(
        "[server]\nlisten = LISTEN\nadmin_listen = ADMIN\ndata_dir = DATA_DIR\n\
         [auth]\nusers_file = {:?}\nfailure_delay_ms = 200\nfailed_logins_burst = 3\nfailed_login_refill_ms = 60000\n\
         [audit]\nfile = {:?}\n",
        users_file.display().to_string(),
        audit_file.display().to_string(),
    );
    let (server, _) = Server::start_with_config(binary, &config);
    Secured { server, users_file, audit_file, svc_token, _dir: dir }
}

/// Logs in with SCRAM-SHA-256 over raw frames; the frames after the client's proof.
fn scram_login(server: &Server, user: &str, password: &str) -> (RawConn, Vec<Frame>) {
    let mut conn = RawConn::hello(server.addr, 2, Credentials::Anonymous);
    assert!(matches!(conn.next(), Some(Frame::AuthRequired(_))));
    let (client, first) = ScramClient::start(user, password, "test-client-nonce");
    conn.send(&[Frame::AuthStart(AuthStart {
        mechanism: "SCRAM-SHA-256".into(),
        data: first.into(),
    })]);
    let Some(Frame::AuthChallenge(challenge)) = conn.next() else { panic!("no challenge") };
    let (client, last) = client.answer(&challenge.data).unwrap();
    conn.send(&[Frame::AuthResponse(AuthResponse { data: last.into() })]);
    let first = conn.next();
    let mut frames: Vec<Frame> = first.into_iter().collect();
    if let Some(Frame::AuthOk(ok)) = frames.first() {
        client.verify(&ok.data).expect("the server proves it knows the password");
        frames.extend(conn.next());
    }
    (conn, frames)
}

/// The error a connection is closed with, read to its end.
fn refusal(conn: &mut RawConn) -> (ErrorCode, String) {
    let frames = conn.until_closed();
    refused_with(&frames)
        .unwrap_or_else(|| panic!("closed without an error ({}) after {frames:?}", conn.ended()))
}

fn refused_with(frames: &[Frame]) -> Option<(ErrorCode, String)> {
    frames.iter().find_map(|f| match f {
        Frame::Error(e) => Some((e.code, e.message.clone())),
        _ => None,
    })
}

fn declare(name: &str) -> Frame {
    Frame::QueueDeclare(QueueDeclare {
        request_id: 1,
        name: name.into(),
        options: QueueOptions::default(),
        passive: false,
    })
}

fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each audit line is JSON"))
        .collect()
}

fn wait_for_audit(path: &Path, event: &str) -> serde_json::Value {
    let mut found = None;
    wait_for(&format!("audit event {event}"), Duration::from_secs(10), || {
        found = audit_lines(path).into_iter().rev().find(|line| line["event"] == event);
        found.is_some()
    });
    found.unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

// ---- logins ----

fn scram_logs_in_and_wrong_passwords_fail_alike(binary: ServerBinary) {
    let s = secured(binary);
    let (_, frames) = scram_login(&s.server, "svc", "svc-password");
    assert!(
        matches!(&frames[..], [Frame::AuthOk(ok), Frame::HelloOk(_)] if ok.user == "svc"),
        "{frames:?}"
    );
    let (mut conn, frames) = scram_login(&s.server, "svc", "guess");
    let frames = [frames, conn.until_closed()].concat();
    let wrong = refused_with(&frames).unwrap();
    let (mut conn, frames) = scram_login(&s.server, "nobody", "guess");
    let frames = [frames, conn.until_closed()].concat();
    let unknown = refused_with(&frames).unwrap();
    assert_eq!(wrong, (ErrorCode::AUTHENTICATION_FAILED, "authentication failed".into()));
    assert_eq!(unknown, wrong, "an unknown user fails exactly like a wrong password");
    let failed = wait_for_audit(&s.audit_file, "authentication-failed");
    assert_eq!(failed["user"], "nobody");
    let audit = std::fs::read_to_string(&s.audit_file).unwrap();
    assert!(
        !audit.contains("guess") && !audit.contains("svc-password"),
        "no secret in the audit log"
    );
}

fn a_password_in_clear_is_refused(binary: ServerBinary) {
    let s = secured(binary);
    let credentials =
        Credentials::Password { username: "svc".into(), password: "svc-password".into() };
    let mut conn = RawConn::hello(s.server.addr, 1, credentials);
    let (code, message) = refusal(&mut conn);
    assert_eq!(code, ErrorCode::AUTHENTICATION_FAILED);
    assert!(message.contains("only over TLS"), "{message}");
    let mut conn =
        RawConn::hello(s.server.addr, 1, Credentials::Token { token: s.svc_token.clone() });
    assert!(refusal(&mut conn).1.contains("only over TLS"));
}

fn frames_before_authentication_do_nothing(binary: ServerBinary) {
    let s = secured(binary);
    // Version 1 without credentials: refused, and the declare behind the Hello never runs.
    let mut conn = RawConn::hello(s.server.addr, 1, Credentials::Anonymous);
    conn.send(&[declare("svc.sneaky")]);
    assert_eq!(refusal(&mut conn).0, ErrorCode::AUTHENTICATION_FAILED);
    // Version 2, in the middle of the exchange: a connection error.
    let mut conn = RawConn::hello(s.server.addr, 2, Credentials::Anonymous);
    assert!(matches!(conn.next(), Some(Frame::AuthRequired(_))));
    conn.send(&[declare("svc.sneaky")]);
    assert_eq!(refusal(&mut conn).0, ErrorCode::UNEXPECTED_FRAME);
    let (mut ops, _) = scram_login(&s.server, "ops", "ops-password");
    ops.send(&[Frame::QueueStats(chute_protocol::QueueStatsRequest {
        request_id: 2,
        name: "svc.sneaky".into(),
    })]);
    let answer = ops.next().unwrap();
    assert_eq!(
        refused_with(std::slice::from_ref(&answer)).map(|e| e.0),
        Some(ErrorCode::NO_SUCH_QUEUE),
        "{answer:?}"
    );
}

fn a_replayed_proof_is_refused(binary: ServerBinary) {
    let s = secured(binary);
    let mut first = RawConn::hello(s.server.addr, 2, Credentials::Anonymous);
    first.next();
    let (client, client_first) = ScramClient::start("svc", "svc-password", "nonce-to-replay");
    first.send(&[Frame::AuthStart(AuthStart {
        mechanism: "SCRAM-SHA-256".into(),
        data: client_first.clone().into(),
    })]);
    let Some(Frame::AuthChallenge(challenge)) = first.next() else { panic!() };
    let (_, recorded) = client.answer(&challenge.data).unwrap();
    let mut replay = RawConn::hello(s.server.addr, 2, Credentials::Anonymous);
    replay.next();
    replay.send(&[Frame::AuthStart(AuthStart {
        mechanism: "SCRAM-SHA-256".into(),
        data: client_first.into(),
    })]);
    replay.next();
    replay.send(&[Frame::AuthResponse(AuthResponse { data: recorded.into() })]);
    assert_eq!(refusal(&mut replay).0, ErrorCode::AUTHENTICATION_FAILED);
}

/// Past the burst, a source is refused before its credentials are read, right ones included.
fn guessing_is_cut_off(binary: ServerBinary) {
    let s = secured(binary);
    for _ in 0..3 {
        let (mut conn, _) = scram_login(&s.server, "svc", "guess");
        conn.until_closed();
    }
    let mut conn = RawConn::hello(s.server.addr, 2, Credentials::Anonymous);
    let (code, message) = refusal(&mut conn);
    assert_eq!(code, ErrorCode::AUTHENTICATION_FAILED);
    assert!(message.contains("too many failed logins"), "{message}");
}

// ---- permissions ----

fn escalation_is_refused(binary: ServerBinary) {
    let s = secured(binary);
    let (mut ops, _) = scram_login(&s.server, "ops", "ops-password");
    ops.send(&[declare("ops.private")]);
    assert!(matches!(ops.next(), Some(Frame::QueueDeclareOk(_))));
    let (mut svc, _) = scram_login(&s.server, "svc", "svc-password");
    let attempts = [
        declare("ops.mine-now"),
        Frame::Bind(chute_protocol::Binding {
            request_id: 3,
            queue: "ops.private".into(),
            pattern: "svc.#".into(),
        }),
        Frame::Subscribe(chute_protocol::Subscribe {
            request_id: 4,
            subscription: 1,
            queue: "ops.private".into(),
            credit: 1,
            lease_ms: None,
            rate: None,
        }),
        Frame::DlqList(chute_protocol::DlqList {
            request_id: 5,
            queue: "ops.private".into(),
            after: None,
            limit: 0,
        }),
        Frame::DlqRedrive(chute_protocol::DlqRedrive {
            request_id: 6,
            queue: "ops.private".into(),
            dead_ids: vec![1],
        }),
        Frame::QueueDelete(chute_protocol::QueueDelete {
            request_id: 7,
            name: "ops.private".into(),
            if_empty: false,
            if_unused: false,
        }),
    ];
    for attempt in attempts {
        svc.send(std::slice::from_ref(&attempt));
        let answer = svc.next().unwrap();
        assert_eq!(
            refused_with(std::slice::from_ref(&answer)).map(|e| e.0),
            Some(ErrorCode::NOT_AUTHORIZED),
            "{attempt:?}: {answer:?}"
        );
    }
    svc.send(&[declare("svc.jobs")]);
    assert!(matches!(svc.next(), Some(Frame::QueueDeclareOk(_))), "the connection stays usable");
    let denied = wait_for_audit(&s.audit_file, "permission-denied");
    assert_eq!(denied["user"], "svc");
}

// ---- the admin endpoint ----

fn the_admin_api_needs_an_admin(binary: ServerBinary) {
    let s = secured(binary);
    let admin = s.server.admin_addr.unwrap();
    let anonymous = http_with(admin, "GET", "/api/overview", &[], None);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.header("www-authenticate").unwrap().starts_with("Basic"));
    let bearer = format!("Bearer {}", s.svc_token);
    let svc = http_with(admin, "GET", "/api/overview", &[("Authorization", &bearer)], None);
    assert_eq!((svc.status, svc.error_code()), (403, "not-authorized".to_string()));
    let wrong =
        http_with(admin, "GET", "/api/overview", &[("Authorization", &basic("ops", "nope"))], None);
    assert_eq!(wrong.status, 401);
    let ops = http_with(
        admin,
        "GET",
        "/api/overview",
        &[("Authorization", &basic("ops", "ops-password"))],
        None,
    );
    assert_eq!(ops.status, 200, "{ops:?}");
    // Probes stay open from this host.
    assert_eq!(http_with(admin, "GET", "/healthz", &[], None).status, 200);
    let request = wait_for_audit(&s.audit_file, "admin-request");
    assert_eq!(request["resource"], "GET /api/overview");
    let ops = basic("ops", "ops-password");
    let declared = http_with(admin, "PUT", "/api/queues/audited", &[("Authorization", &ops)], None);
    assert_eq!(declared.status, 201, "{declared:?}");
    let event = wait_for_audit(&s.audit_file, "queue-declared");
    assert_eq!((&event["user"], &event["resource"]), (&"ops".into(), &"audited".into()));
}

/// Users added through the CLI can log in at once; removed ones are disconnected.
fn users_are_managed_through_the_cli(binary: ServerBinary) {
    let s = secured(binary);
    let admin_url = format!("http://{}", s.server.admin_addr.unwrap());
    let as_ops = |args: &[&str], stdin: Option<&str>| {
        let mut command = Command::new(binary_path("chute"));
        command
            .args(["admin", "--admin-url", &admin_url, "--admin-user", "ops"])
            .args(args)
            .env("CHUTE_ADMIN_PASSWORD", "ops-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let added = as_ops(
        &["user", "add", "carol", "--password-stdin", "--new-token", "--read", "{user}.*"],
        Some("carol-pw\n"),
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let text = stdout(&added);
    assert!(text.contains("user carol created") && text.contains("chute_"), "{text}");
    let (mut carol, frames) = scram_login(&s.server, "carol", "carol-pw");
    assert!(matches!(frames.last(), Some(Frame::HelloOk(_))), "{frames:?}");
    let file = std::fs::read_to_string(&s.users_file).unwrap();
    assert!(file.contains("carol") && !file.contains("carol-pw"), "only keys are stored");
    let listed = as_ops(&["user", "list"], None);
    assert!(stdout(&listed).contains("carol  password: yes  tokens: 1"), "{}", stdout(&listed));
    let removed = as_ops(&["user", "remove", "carol"], None);
    assert!(removed.status.success(), "{}", stderr(&removed));
    let (code, _) = refusal(&mut carol);
    assert_eq!(code, ErrorCode::CLOSED_BY_OPERATOR);
    assert_eq!(wait_for_audit(&s.audit_file, "user-removed")["user"], "ops");
    // Without credentials the CLI gets the server's refusal, on one line.
    let refused =
        chute_at(&s.server.url(), &["admin", "--admin-url", &admin_url, "overview"], None);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("authentication-required"), "{}", stderr(&refused));
}

/// A users file changed by hand is read again on SIGHUP.
fn a_reload_reads_the_users_file_again(binary: ServerBinary) {
    let s = secured(binary);
    let (mut conn, frames) = scram_login(&s.server, "dave", "dave-pw");
    let _ = [frames, conn.until_closed()];
    let mut file = std::fs::read_to_string(&s.users_file).unwrap();
    file.push_str(&format!(
        "\n[[user]]\nname = \"dave\"\nscram = \"{}\"\n",
        hash_password("dave-pw")
    ));
    std::fs::write(&s.users_file, file).unwrap();
    s.server.signal("HUP");
    let reloaded = wait_for_audit(&s.audit_file, "config-reloaded");
    assert!(reloaded["detail"].as_str().unwrap().contains("users: added dave"), "{reloaded}");
    let (_, frames) = scram_login(&s.server, "dave", "dave-pw");
    assert!(matches!(frames.last(), Some(Frame::HelloOk(_))), "{frames:?}");
}

/// A server reachable from other hosts does not start open to anyone.
fn an_exposed_server_needs_users(binary: ServerBinary) {
    let output = Command::new(binary_path(binary.name()))
        .args(["--listen", "0.0.0.0:0", "--admin-listen", "off", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("reachable from other hosts and no users are configured"),
        "{}",
        stderr(&output)
    );
}

for_both_servers!(
    scram_logs_in_and_wrong_passwords_fail_alike,
    a_password_in_clear_is_refused,
    frames_before_authentication_do_nothing,
    a_replayed_proof_is_refused,
    guessing_is_cut_off,
    escalation_is_refused,
    the_admin_api_needs_an_admin,
    users_are_managed_through_the_cli,
    a_reload_reads_the_users_file_again,
    an_exposed_server_needs_users,
);
