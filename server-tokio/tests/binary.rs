//! The `chuted` binary answers `--help` and `--version`. Having an integration test here also
//! makes `cargo test --workspace` build the binary, which the black-box tests in `tests/` run.

use std::process::Command;

#[test]
fn help_lists_the_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_chuted")).arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--segment-bytes-max",
        "--config",
        "--check-config",
        "--print-config",
        "--log-format",
        "--set",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

/// `--version` names the binary (it said `chute-server`, the library's name, before).
#[test]
fn version_names_the_binary() {
    let output = Command::new(env!("CARGO_BIN_EXE_chuted")).arg("--version").output().unwrap();
    assert!(output.status.success());
    let expected = format!("chuted {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
}
