//! The configuration as an operator meets it, on both servers: `--check-config` lists every
//! problem (file, environment, flags) and exits 2; `--print-config` prints the merged
//! configuration, which reads back as itself; an old-style key still works with a warning; an
//! invalid configuration stops the server before it serves; `--log-format json` writes JSON.

use std::path::Path;
use std::process::{Command, Output};

use chute_tests::{binary_path, Server, ServerBinary};

fn run(binary: ServerBinary, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary_path(binary.name()))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("CHUTE_CONFIG")
        .output()
        .expect("run the server binary")
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_string).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Every problem, one line each, from every layer; exit 2.
#[test]
fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "chute.toml",
        "version = 1\n[limits]\nconnections_max = 0\nqueues_max = \"many\"\n\
         [timeouts]\nheartbeat_ms = 50\n[surver]\nlisten = \"x\"\n",
    );
    for binary in ServerBinary::ALL {
        let name = binary.name();
        let output = run(
            binary,
            &["--check-config", "--config", &file, "--set", "storage.compact_live_percent=101"],
            &[("CHUTE_LIMITS_CREDIT_MAX", "lots")],
        );
        assert_eq!(output.status.code(), Some(2));
        let expected = [
            format!("{name}: {file}:4:1: limits.queues_max: invalid type: string \"many\", expected u32"),
            format!("{name}: {file}:7:2: surver: unknown field `surver`, expected one of `version`, `server`, `log`, `limits`, `timeouts`, `storage`, `auth`, `audit`, `tls`, `alarms`, `alerts`"),
            format!("{name}: environment CHUTE_LIMITS_CREDIT_MAX: limits.credit_max: invalid type: string \"lots\", expected u32"),
            format!("{name}: {file}:3:1: limits.connections_max = 0 is out of range: must be in 1..=1048576"),
            format!("{name}: {file}:6:1: timeouts.heartbeat_ms = 50 is out of range: must be in 100..=300000"),
            format!("{name}: flag --set storage.compact_live_percent=101: storage.compact_live_percent = 101 is out of range: must be in 0..=100"),
        ];
        assert_eq!(lines(&output.stderr), expected);
        assert!(output.stdout.is_empty());
    }
}

/// A valid configuration: exit 0, one line on stdout. The example file is valid.
#[test]
fn check_config_accepts_a_valid_configuration() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/chute.toml");
    for binary in ServerBinary::ALL {
        let output = run(binary, &["--check-config", "--config", example.to_str().unwrap()], &[]);
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            lines(&output.stdout),
            [format!("{}: the configuration is valid", binary.name())]
        );
        assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

/// What `--print-config` prints is the merged configuration (file < environment < flags), and
/// reads back as the same configuration.
#[test]
fn print_config_shows_the_merged_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "chute.toml", "[limits]\nconnections_max = 10\nqueues_max = 10\n");
    for binary in ServerBinary::ALL {
        let output = run(
            binary,
            &[
                "--print-config",
                "--config",
                &file,
                "--set",
                "limits.queues_max=30",
                "--log-format",
                "json",
            ],
            &[("CHUTE_LIMITS_QUEUES_MAX", "20"), ("CHUTE_TIMEOUTS_HEARTBEAT_MS", "2000")],
        );
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let printed = String::from_utf8(output.stdout).unwrap();
        for line in [
            "version = 1",
            "[server]",
            "listen = \"127.0.0.1:4770\"",
            "format = \"json\"",
            "connections_max = 10",
            "queues_max = 30",
            "heartbeat_ms = 2000",
            "segment_bytes_max = 67108864",
        ] {
            assert!(printed.lines().any(|l| l == line), "{line:?} not in\n{printed}");
        }
        let unset = printed.lines().find(|l| l.starts_with("# Unset: ")).expect("unset keys");
        assert!(unset.contains("limits.connection_publish_rate, limits.publish_rate"), "{unset}");
        let again = write(dir.path(), "printed.toml", &printed);
        let reprinted = run(binary, &["--print-config", "--config", &again], &[]);
        assert_eq!(String::from_utf8(reprinted.stdout).unwrap(), printed, "reads back the same");
    }
}

/// The old top-level `segment_bytes_max` reads as `storage.segment_bytes_max`, with a warning
/// naming the new key.
#[test]
fn an_old_style_key_still_works_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let old = write(dir.path(), "old.toml", "segment_bytes_max = 1048576\n");
    let new = write(dir.path(), "new.toml", "[storage]\nsegment_bytes_max = 1048576\n");
    for binary in ServerBinary::ALL {
        let from_old = run(binary, &["--print-config", "--config", &old], &[]);
        let from_new = run(binary, &["--print-config", "--config", &new], &[]);
        assert!(from_old.status.success() && from_new.status.success());
        assert_eq!(from_old.stdout, from_new.stdout);
        let warning = format!(
            "{}: warning: {old}:1:1: the key segment_bytes_max is now storage.segment_bytes_max",
            binary.name()
        );
        assert_eq!(lines(&from_old.stderr), [warning]);
        assert!(from_new.stderr.is_empty());
    }
}

/// An invalid configuration stops the server before it binds or serves: exit 2 and the
/// problems, not a listening line.
#[test]
fn an_invalid_configuration_stops_the_start() {
    let data = tempfile::tempdir().unwrap();
    for binary in ServerBinary::ALL {
        let output = run(
            binary,
            &["--listen", "127.0.0.1:0", "--data-dir", data.path().to_str().unwrap()],
            &[("CHUTE_LIMITS_CONNECTIONS_MAX", "0"), ("CHUTE_ADMIN_LISTEN", "off")],
        );
        assert_eq!(output.status.code(), Some(2));
        assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
        assert_eq!(
            lines(&output.stderr),
            [format!(
                "{}: environment CHUTE_LIMITS_CONNECTIONS_MAX: limits.connections_max = 0 is out of range: must be in 1..=1048576",
                binary.name()
            )]
        );
    }
}

/// `--log-format json`: every log line is a JSON object with the level and the message.
#[test]
fn json_log_lines_are_json() {
    for binary in ServerBinary::ALL {
        let mut server = Server::start_with_args(binary, &["--log-format", "json"]);
        server.signal("TERM");
        assert!(server.wait(std::time::Duration::from_secs(20)).success());
        let log = server.log();
        let events: Vec<serde_json::Value> = log
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect();
        assert!(
            events.iter().any(|e| e["level"] == "INFO" && e["fields"]["message"] == "serving"),
            "{log}"
        );
        assert!(events.iter().any(|e| e["fields"]["message"] == "stopped"), "{log}");
    }
}
