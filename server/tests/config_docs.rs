//! docs/CONFIG.md documents every key, and deploy/chute.toml (the example file) reads without
//! a problem or warning and shows every table. A key added to the schema without a line in the
//! doc fails here.

use std::path::PathBuf;

use chute_server::config::check::{load_from, Sources};
use chute_server::config::layers::schema_keys;

fn repository_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The keys documented in CONFIG.md's tables: the first cell of each row, in backquotes.
fn documented_keys() -> Vec<String> {
    let doc = std::fs::read_to_string(repository_file("docs/CONFIG.md")).unwrap();
    doc.lines()
        .filter_map(|line| {
            let cell = line.strip_prefix("| ")?.split(" |").next()?;
            Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_string())
        })
        .collect()
}

/// Every key of the schema (the serialized defaults, unset settings included), as
/// `table.key`, plus the top-level `version`.
fn schema() -> Vec<String> {
    let mut keys = vec!["version".to_string()];
    for (table, fields) in schema_keys() {
        for (key, value) in fields {
            keys.push(format!("{table}.{key}"));
            // A table inside a table ([storage.encryption]): each of its keys has a row too.
            if let serde_json::Value::Object(nested) = value {
                keys.extend(nested.keys().map(|inner| format!("{table}.{key}.{inner}")));
            }
        }
    }
    keys
}

#[test]
fn every_key_is_documented() {
    let documented = documented_keys();
    let missing: Vec<String> =
        schema().into_iter().filter(|key| !documented.contains(key)).collect();
    assert!(missing.is_empty(), "keys without a row in docs/CONFIG.md: {missing:?}");
    let schema = schema();
    let stale: Vec<&String> =
        documented.iter().filter(|key| key.contains('.') && !schema.contains(key)).collect();
    assert!(stale.is_empty(), "rows in docs/CONFIG.md for keys that do not exist: {stale:?}");
}

#[test]
fn the_example_file_reads_cleanly_and_shows_every_table() {
    let path = repository_file("deploy/chute.toml");
    let sources = Sources { file: Some(path.clone()), flags: Vec::new() };
    let loaded = match load_from(&sources, &[]) {
        Ok(loaded) => loaded,
        Err(problems) => panic!("deploy/chute.toml: {problems:#?}"),
    };
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let text = std::fs::read_to_string(path).unwrap();
    for table in schema_keys().keys() {
        assert!(text.contains(&format!("\n[{table}]\n")), "no [{table}] in deploy/chute.toml");
    }
}
