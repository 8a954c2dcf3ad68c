//! README.md's quick start, run as written: every command of its `sh` blocks, in order, with
//! the built `chute` on the PATH (the block's `alias` for it) against a fresh server. A README
//! command that does not work fails this test, so the newcomer's first steps stay true.

use std::path::Path;
use std::process::{Command, Stdio};

use chute_tests::{binary_path, Server, ServerBinary};

/// The commands of the `sh` blocks of README.md's `## Quick start` section, in order, without
/// the lines that build and alias the binary (the test brings its own).
fn quick_start_commands() -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme).expect("README.md");
    let start = readme.find("\n## Quick start\n").expect("a Quick start section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            command if in_sh && !command.is_empty() => commands.push(command.to_string()),
            _ => {}
        }
    }
    let adapted: Vec<String> = commands
        .into_iter()
        .filter(|c| !c.starts_with("cargo build") && !c.starts_with("alias chute="))
        .collect();
    assert!(adapted.len() >= 15, "the quick start lost its commands: {adapted:?}");
    adapted
}

fn quick_start_runs_as_written(binary: ServerBinary) {
    let server = Server::start(binary);
    let chute_dir = binary_path("chute").parent().expect("a directory").to_path_buf();
    let path = format!("{}:{}", chute_dir.display(), std::env::var("PATH").unwrap_or_default());
    for command in quick_start_commands() {
        let output = Command::new("bash")
            .args(["-c", &command])
            .env("PATH", &path)
            .env("CHUTE_URL", server.url())
            .stdin(Stdio::null())
            .output()
            .expect("run bash");
        assert!(
            output.status.success(),
            "{}: `{command}` exited {:?}\nstdout: {}\nstderr: {}",
            binary.name(),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(server.stop().success());
}

#[test]
fn quick_start_runs_as_written_tokio() {
    quick_start_runs_as_written(ServerBinary::Tokio);
}

#[test]
fn quick_start_runs_as_written_smol() {
    quick_start_runs_as_written(ServerBinary::Smol);
}
