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
