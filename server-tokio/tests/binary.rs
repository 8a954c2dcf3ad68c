//! The `chuted` binary answers `--help` and `--version`. Having an integration test here also
//! makes `cargo test --workspace` build the binary, which the black-box tests in `tests/` run.

use std::process::Command;

#[test]
fn help_lists_the_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_chuted")).arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in ["--listen", "--data-dir", "--segment-bytes-max"] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

#[test]
fn version_is_printed() {
    let output = Command::new(env!("CARGO_BIN_EXE_chuted")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}
