//! Server startup: clear errors for bad addresses and busy ports.

use std::process::Command;

use chute_tests::{binary_path, Server, ServerBinary};

fn port_in_use_is_reported(binary: ServerBinary) {
    let first = Server::start(binary);
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(binary_path(binary.name()))
        .args(["--listen", &first.addr.to_string(), "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains(&format!("cannot listen on {}", first.addr)), "{message}");
    assert!(message.contains("in use"), "{message}");
}

#[test]
fn port_in_use_is_reported_tokio() {
    port_in_use_is_reported(ServerBinary::Tokio);
}

#[test]
fn port_in_use_is_reported_smol() {
    port_in_use_is_reported(ServerBinary::Smol);
}

#[test]
fn bad_listen_address_is_refused() {
    for binary in ServerBinary::ALL {
        let output = Command::new(binary_path(binary.name()))
            .args(["--listen", "not-an-address"])
            .output()
            .unwrap();
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("invalid socket address"));
    }
}

/// `chuted --tokio-threads N` (or `CHUTE_TOKIO_THREADS`) is a flag like the server's others:
/// listed in `--help`, checked by clap (a bad value exits 2 with one line naming the flag),
/// and used: a server with two threads serves. `chuted-smol` has no such flag.
#[test]
fn tokio_threads_is_a_checked_flag() {
    let chuted = binary_path("chuted");
    let help = Command::new(&chuted).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--tokio-threads <N>") && help.contains("CHUTE_TOKIO_THREADS"), "{help}");

    let by_flag = |value: &str| Command::new(&chuted).args(["--tokio-threads", value]).output();
    let by_env = Command::new(&chuted).env("CHUTE_TOKIO_THREADS", "0").output();
    for output in [by_flag("0"), by_flag("x"), by_env] {
        let output = output.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("chuted: error: invalid value")
                && stderr.contains("'--tokio-threads <N>'"),
            "{stderr}"
        );
    }

    let server = Server::start_with_args(ServerBinary::Tokio, &["--tokio-threads", "2"]);
    let connection = futures::executor::block_on(chute_client::Connection::connect(&server.url()));
    assert!(connection.is_ok(), "{:?}", connection.err());
    assert!(server.stop().success());

    let smol = Command::new(binary_path("chuted-smol")).args(["--tokio-threads", "2"]).output();
    assert_eq!(smol.unwrap().status.code(), Some(2));
}
