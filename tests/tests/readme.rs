//! README.md's quick start, run as written: every command of its `sh` blocks, in order, with
//! the built `chute` on the PATH (the block's `alias` for it) against a fresh server. A README
//! command that does not work fails this test, so the newcomer's first steps stay true.

use std::path::Path;
use std::process::{Command, Stdio};

use chute_tests::{binary_path, Server, ServerBinary};

/// The lines of the `sh` blocks of README.md's section titled `title`, in order.
fn section_commands(title: &str) -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme).expect("README.md");
    let start = readme.find(&format!("\n## {title}\n")).expect("the section");
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
    commands
}

/// The commands of the `sh` blocks of README.md's `## Quick start` section, in order, without
/// the lines that build and alias the binary (the test brings its own).
fn quick_start_commands() -> Vec<String> {
    let adapted: Vec<String> = section_commands("Quick start")
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

/// A port free now, for a server the script starts itself.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The TLS and password quick start, run as one script (its server runs in the background
/// of it) in a scratch directory, with the built `chuted` and `chute` on the PATH and free
/// ports in place of 4770, 4771 and 4773. Needs openssl, as the README says.
fn tls_quick_start_runs_as_written(binary: ServerBinary) {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = binary_path("chute").parent().expect("a directory").to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    // The background server must not outlive a failed step: it holds the output pipes.
    let mut script = String::from("set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n");
    let ports = [free_port(), free_port(), free_port()].map(|port| port.to_string());
    for command in section_commands("Quick start with TLS and a password") {
        let command = command
            .replace("4770", &ports[0])
            .replace("4771", &ports[1])
            .replace("4773", &ports[2])
            .replace("chuted ", &format!("{} ", binary.name()));
        script.push_str(&command);
        script.push('\n');
    }
    assert!(script.contains("chutes://localhost:"), "the section lost its TLS login: {script}");
    let mut command = Command::new("bash");
    command.args(["-c", &script]).current_dir(dir.path()).env("PATH", &path);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CHUTE_") {
            command.env_remove(name);
        }
    }
    let output = command.stdin(Stdio::null()).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: the TLS quick start exited {:?}\nstdout: {stdout}\nstderr: {}",
        binary.name(),
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("over TLS, as app"), "{stdout}");
}

#[test]
fn tls_quick_start_runs_as_written_tokio() {
    tls_quick_start_runs_as_written(ServerBinary::Tokio);
}

#[test]
fn tls_quick_start_runs_as_written_smol() {
    tls_quick_start_runs_as_written(ServerBinary::Smol);
}
