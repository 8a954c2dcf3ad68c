//! The `chute` binary answers `--help`. Having an integration test here also makes
//! `cargo test --workspace` build the binary, which the black-box tests in `tests/` run.

use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let output = Command::new(env!("CARGO_BIN_EXE_chute")).arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for command in ["queue", "publish", "consume"] {
        assert!(text.contains(command), "{command} missing from --help:\n{text}");
    }
}
