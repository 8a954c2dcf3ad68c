//! systemd: the unit in deploy/ passes `systemd-analyze verify` (where systemd is installed),
//! and both servers send `READY=1` to `NOTIFY_SOCKET` once they serve (Type=notify).

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chute_tests::{binary_path, Server, ServerBinary};

const UNIT: &str = "deploy/systemd/chuted.service";
/// Where the unit expects the binary; the test points it at the one just built.
const INSTALLED: &str = "/usr/local/bin/chuted";

/// `systemd-analyze verify` accepts the unit without a warning (it only warns about unknown
/// keys, so stderr must be empty too). Skipped, saying so, without systemd-analyze.
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let unit = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(UNIT))
        .expect("the unit file");
    assert!(unit.contains(&format!("ExecStart={INSTALLED} ")), "{unit}");
    for directive in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/chute",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "LimitNOFILE=",
        "TimeoutStopSec=",
    ] {
        assert!(unit.lines().any(|line| line.starts_with(directive)), "{directive} missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let built = binary_path("chuted");
    let copy = dir.path().join("chuted.service");
    std::fs::write(&copy, unit.replace(INSTALLED, built.to_str().unwrap())).unwrap();
    let output = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
}

/// `READY=1` reaches the socket named by `NOTIFY_SOCKET`, by the time the server announces
/// that it listens.
fn ready_is_sent(binary: ServerBinary) {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let server =
        Server::start_with_env(binary, &[], &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let mut message = [0u8; 256];
    let length = socket.recv(&mut message).expect("a notification");
    assert_eq!(String::from_utf8_lossy(&message[..length]).trim_end(), "READY=1");
    assert!(server.stop().success());
}

#[test]
fn ready_is_sent_tokio() {
    ready_is_sent(ServerBinary::Tokio);
}

#[test]
fn ready_is_sent_smol() {
    ready_is_sent(ServerBinary::Smol);
}
