//! Encryption at rest on both servers (docs/STORAGE.md §16): `gen-key` makes a key for the
//! owner alone; with it, the segment files hold no payload, message id or consumer's reason;
//! a directory written in clear and then with the key recovers whole; a wrong key, or a key
//! file others may read, refuses to start and changes no file.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use chute_core::storage::format::parse_segment_file_name;
use chute_tests::{binary_path, chute, for_both_servers, stderr, stdout, Server, ServerBinary};

/// Every segment file's name and bytes.
fn segments(data_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(data_dir)
        .expect("data directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| parse_segment_file_name(name).is_some())
        .map(|name| {
            let bytes = std::fs::read(data_dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn gen_key(binary: ServerBinary, path: &Path) -> std::process::Output {
    Command::new(binary_path(binary.name())).arg("gen-key").arg(path).output().unwrap()
}

/// A configuration file sealing with `key`.
fn sealed_config(dir: &Path, key: &Path) -> PathBuf {
    let name = key.file_stem().unwrap().to_string_lossy();
    let path = dir.join(format!("sealed-with-{name}.toml"));
    let text = format!("[storage.encryption]\nkey_file = {:?}\n", key.display().to_string());
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the server expecting it to refuse; returns its stderr.
fn refused(binary: ServerBinary, data_dir: &Path, config: &Path) -> String {
    let output = Command::new(binary_path(binary.name()))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir"])
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "it started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sealed_segments_hide_contents_and_a_mixed_directory_recovers(binary: ServerBinary) {
    let scratch = tempfile::tempdir().unwrap();
    let (data_dir, key) = (scratch.path().join("data"), scratch.path().join("data.key"));
    let made = gen_key(binary, &key);
    assert!(made.status.success(), "{}", stderr(&made));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    let again = gen_key(binary, &key);
    assert!(!again.status.success() && stderr(&again).contains("never overwritten"));

    // First in clear, then with the key: a mixed directory.
    let server = Server::start_in(binary, &data_dir, &[]);
    assert!(chute(&server, &["queue", "declare", "jobs"], None).status.success());
    let plain = chute(&server, &["publish", "jobs", "written-in-clear", "--id", "clear-id"], None);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert!(server.stop().success());

    let config = sealed_config(scratch.path(), &key);
    let config_arg = config.to_str().unwrap();
    let server = Server::start_in(binary, &data_dir, &["--config", config_arg]);
    for n in 1..=3 {
        let (payload, id) = (format!("sealed-payload-{n}"), format!("sealed-msgid-{n}"));
        let published = chute(&server, &["publish", "jobs", &payload, "--id", &id], None);
        assert!(published.status.success(), "{}", stderr(&published));
    }
    // The first message (in clear, from before) fails once with a reason; it is logged sealed.
    let nacked = chute(
        &server,
        &["consume", "jobs", "--count", "1", "--nack", "--reason", "sealed-reason-x"],
        None,
    );
    assert!(nacked.status.success(), "{}", stderr(&nacked));
    assert!(server.stop().success());

    let files = segments(&data_dir);
    assert!(files.len() >= 2, "a segment in clear and a sealed one: {:?}", files.keys());
    for (name, bytes) in &files {
        for needle in ["sealed-payload", "sealed-msgid", "sealed-reason"] {
            assert!(!contains(bytes, needle), "{needle} in clear in {name}");
        }
    }

    // A restart with the key brings back all four, the one written in clear included.
    let server = Server::start_in(binary, &data_dir, &["--config", config_arg]);
    let consumed = chute(&server, &["consume", "jobs", "--count", "4", "--wait-ms", "3000"], None);
    let out = stdout(&consumed);
    for expected in ["written-in-clear", "sealed-payload-1", "sealed-payload-2", "sealed-payload-3"]
    {
        assert!(out.contains(expected), "{expected} not recovered: {out}");
    }
    assert!(server.stop().success());
}

fn a_wrong_key_or_an_open_key_file_refuses_to_start_and_changes_nothing(binary: ServerBinary) {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("data");
    let (key, other) = (scratch.path().join("right.key"), scratch.path().join("other.key"));
    assert!(gen_key(binary, &key).status.success());
    assert!(gen_key(binary, &other).status.success());
    let config = sealed_config(scratch.path(), &key);
    let server = Server::start_in(binary, &data_dir, &["--config", config.to_str().unwrap()]);
    assert!(chute(&server, &["queue", "declare", "jobs"], None).status.success());
    assert!(chute(&server, &["publish", "jobs", "m"], None).status.success());
    assert!(server.stop().success());
    let before = segments(&data_dir);
    let manifest = std::fs::read(data_dir.join("manifest")).unwrap();

    let wrong = sealed_config(scratch.path(), &other);
    let error = refused(binary, &data_dir, &wrong);
    let first = before.keys().next().unwrap();
    assert!(
        error.contains(first) && error.contains("key id 1") && error.contains("is not that key"),
        "{error}"
    );
    assert_eq!(segments(&data_dir), before, "a refused start changed a segment");
    assert_eq!(std::fs::read(data_dir.join("manifest")).unwrap(), manifest);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = refused(binary, &data_dir, &config);
    assert!(error.contains("mode 0644") && error.contains("chmod 600"), "{error}");
    assert_eq!(segments(&data_dir), before);
}

for_both_servers!(
    sealed_segments_hide_contents_and_a_mixed_directory_recovers,
    a_wrong_key_or_an_open_key_file_refuses_to_start_and_changes_nothing,
);
