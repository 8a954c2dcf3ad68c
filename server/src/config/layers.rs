//! Where settings come from, lowest to highest: the embedded defaults, the file, `CHUTE_*`
//! environment variables, command-line flags. Each source becomes a [`Layer`] (the values it
//! sets, and where each was set); the layers are merged key by key, the highest winning.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::check::Problem;
use super::file::ConfigFile;

/// The tables of the schema; everything else at the top level is a plain key (`version`).
pub const SECTIONS: [&str; 7] = ["server", "log", "limits", "timeouts", "storage", "tls", "alarms"];

/// Environment variables older than the `CHUTE_<TABLE>_<KEY>` scheme, kept as short names.
pub const ENV_ALIASES: [(&str, &str); 6] = [
    ("CHUTE_LISTEN", "server.listen"),
    ("CHUTE_ADMIN_LISTEN", "server.admin_listen"),
    ("CHUTE_DATA_DIR", "server.data_dir"),
    ("CHUTE_SHUTDOWN_TIMEOUT_MS", "server.shutdown_timeout_ms"),
    ("CHUTE_SEGMENT_BYTES_MAX", "storage.segment_bytes_max"),
    ("CHUTE_LOG", "log.level"),
];

/// Where a setting's value came from, as a problem or a warning names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it: the embedded default.
    Default,
    /// The file, at a line and column when the key is known (1-based).
    File { path: PathBuf, position: Option<(usize, usize)> },
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, as given (`--listen` or `--set KEY=VALUE`).
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, position: Some((line, column)) } => {
                write!(f, "{}:{line}:{column}", path.display())
            }
            Origin::File { path, position: None } => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One source's settings: values nested as in the file (`limits.connections_max` is the key
/// `connections_max` of the table `limits`), and where each key was set.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    pub table: toml::Table,
    /// By key path (`limits.connections_max`, or a top-level `version`).
    pub origins: BTreeMap<String, Origin>,
}

impl Layer {
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        match key.split_once('.') {
            None => self.table.get(key),
            Some((section, name)) => self.table.get(section)?.as_table()?.get(name),
        }
    }

    /// Sets `key` (one or two parts) to `value`, set at `origin`.
    pub fn set(&mut self, key: &str, value: toml::Value, origin: Origin) {
        match key.split_once('.') {
            None => {
                self.table.insert(key.to_string(), value);
            }
            Some((section, name)) => {
                let entry = self
                    .table
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                match entry {
                    toml::Value::Table(table) => {
                        table.insert(name.to_string(), value);
                    }
                    // `limits = 5` then `limits.x = 1`: the type check reports `limits`.
                    _ => return,
                }
            }
        }
        self.origins.insert(key.to_string(), origin);
    }

    pub fn remove(&mut self, key: &str) -> Option<(toml::Value, Origin)> {
        let value = match key.split_once('.') {
            None => self.table.remove(key)?,
            Some((section, name)) => self.table.get_mut(section)?.as_table_mut()?.remove(name)?,
        };
        let origin = self.origins.remove(key).unwrap_or(Origin::Default);
        Some((value, origin))
    }

    /// Every key path this layer sets, in the order they were written (for a file): a
    /// section's keys one by one, a top-level value (or a table that is not a section) as
    /// itself.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for (name, value) in &self.table {
            match value.as_table() {
                Some(table) if SECTIONS.contains(&name.as_str()) => {
                    keys.extend(table.keys().map(|key| format!("{name}.{key}")));
                }
                _ => keys.push(name.clone()),
            }
        }
        keys.sort_by_key(|key| match self.origins.get(key) {
            Some(Origin::File { position: Some(position), .. }) => *position,
            _ => (usize::MAX, 0),
        });
        keys
    }

    pub fn origin(&self, key: &str) -> Origin {
        self.origins.get(key).cloned().unwrap_or(Origin::Default)
    }
}

/// The file's layer: its values, and the line and column of each key. A file that cannot be
/// read or parsed gives problems (every parse error toml finds) and an empty layer.
pub fn file_layer(path: &Path, problems: &mut Vec<Problem>) -> Layer {
    let at = |position| Origin::File { path: path.to_path_buf(), position };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            problems.push(Problem::new(at(None), format!("cannot read the file: {error}")));
            return Layer::default();
        }
    };
    let (document, errors) = toml::de::DeTable::parse_recoverable(&text);
    if !errors.is_empty() {
        for error in errors {
            let position = error.span().map(|span| line_column(&text, span.start));
            problems.push(Problem::new(at(position), one_line(error.message())));
        }
        return Layer::default();
    }
    let table = match toml::from_str::<toml::Table>(&text) {
        Ok(table) => table,
        Err(error) => {
            let position = error.span().map(|span| line_column(&text, span.start));
            problems.push(Problem::new(at(position), one_line(error.message())));
            return Layer::default();
        }
    };
    let mut origins = BTreeMap::new();
    for (key, value) in document.get_ref() {
        let position = line_column(&text, key.span().start);
        origins.insert(key.get_ref().to_string(), at(Some(position)));
        if let Some(section) = value.get_ref().as_table() {
            for (name, _) in section {
                let position = line_column(&text, name.span().start);
                origins.insert(format!("{}.{}", key.get_ref(), name.get_ref()), at(Some(position)));
            }
        }
    }
    Layer { table, origins }
}

/// The environment's layer: `CHUTE_<TABLE>_<KEY>` for every key of the schema's tables, and
/// the older short names ([`ENV_ALIASES`]). Other `CHUTE_*` variables (the CLI's
/// `CHUTE_URL`, the runtime's `CHUTE_TOKIO_THREADS`) are not the file's and are left alone;
/// a variable naming a table but no key of it is a problem (a typo would otherwise be ignored).
pub fn env_layer(vars: &[(String, String)], problems: &mut Vec<Problem>) -> Layer {
    let schema = schema_keys();
    let mut layer = Layer::default();
    for (name, raw) in vars {
        let key = match env_key(name, &schema) {
            EnvKey::Key(key) => key,
            EnvKey::NotOurs => continue,
            EnvKey::Unknown(section) => {
                let known: Vec<String> = schema[&section]
                    .keys()
                    .map(|key| format!("CHUTE_{}_{}", section, key).to_uppercase())
                    .collect();
                problems.push(Problem::new(
                    Origin::Env(name.clone()),
                    format!("no such setting in [{section}]; known: {}", known.join(", ")),
                ));
                continue;
            }
        };
        let value = parse_value(raw, default_of(&schema, &key));
        layer.set(&key, value, Origin::Env(name.clone()));
    }
    layer
}

enum EnvKey {
    Key(String),
    /// Names a table of the schema (`CHUTE_LIMITS_`) but none of its keys.
    Unknown(String),
    NotOurs,
}

fn env_key(name: &str, schema: &Schema) -> EnvKey {
    if let Some((_, key)) = ENV_ALIASES.iter().find(|(alias, _)| *alias == name) {
        return EnvKey::Key(key.to_string());
    }
    let Some(rest) = name.strip_prefix("CHUTE_") else { return EnvKey::NotOurs };
    for section in SECTIONS {
        let Some(key) = rest.strip_prefix(&format!("{}_", section.to_uppercase())) else {
            continue;
        };
        let key = key.to_lowercase();
        return match schema[section].contains_key(&key) {
            true => EnvKey::Key(format!("{section}.{key}")),
            false => EnvKey::Unknown(section.to_string()),
        };
    }
    EnvKey::NotOurs
}

/// One command-line setting: a dedicated flag (`--listen`) or `--set KEY=VALUE`.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagSetting {
    pub key: String,
    pub value: toml::Value,
    /// The flag as the operator gave it, to name it in a problem.
    pub flag: String,
}

impl FlagSetting {
    /// `--set KEY=VALUE`, the value read as the file would read it (a string when it is not a
    /// TOML value, or when the key holds a string).
    pub fn parse_set(text: &str) -> Result<FlagSetting, String> {
        let (key, raw) = text.split_once('=').ok_or_else(|| {
            format!("--set {text}: expected KEY=VALUE (e.g. limits.connections_max=5000)")
        })?;
        let key = key.trim();
        if key.is_empty() || key.split('.').count() > 2 {
            return Err(format!(
                "--set {text}: a key is a table and a name (limits.connections_max) or a top-level name"
            ));
        }
        let value = parse_value(raw, default_of(&schema_keys(), key));
        Ok(FlagSetting { key: key.to_string(), value, flag: format!("--set {text}") })
    }
}

pub fn flags_layer(flags: &[FlagSetting]) -> Layer {
    let mut layer = Layer::default();
    for flag in flags {
        layer.set(&flag.key, flag.value.clone(), Origin::Flag(flag.flag.clone()));
    }
    layer
}

/// Reads a value from the environment or a flag with the file's types: a key that holds a
/// string takes the text as it is (`CHUTE_DATA_DIR=/var/lib/chute`); others read it as a TOML
/// value (`5000`, `true`, `{ per_second = 100, burst = 100, policy = "pause" }`), and text that
/// is none stays a string, for the type check to name.
fn parse_value(raw: &str, default: Option<&serde_json::Value>) -> toml::Value {
    if matches!(default, Some(serde_json::Value::String(_))) {
        return toml::Value::String(raw.to_string());
    }
    match toml::from_str::<toml::Table>(&format!("value = {raw}")) {
        Ok(mut table) => table.remove("value").unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Every table of the schema with its keys and default values (`null` for a setting that is
/// unset by default, such as `limits.publish_rate`).
pub type Schema = BTreeMap<String, serde_json::Map<String, serde_json::Value>>;

pub fn schema_keys() -> Schema {
    // serde_json rather than toml: it keeps the unset (`None`) settings, as `null`.
    let serde_json::Value::Object(top) =
        serde_json::to_value(ConfigFile::default()).expect("the defaults serialize")
    else {
        unreachable!("the configuration is a table");
    };
    top.into_iter()
        .filter_map(|(name, value)| match value {
            serde_json::Value::Object(keys) => Some((name, keys)),
            _ => None,
        })
        .collect()
}

fn default_of<'a>(schema: &'a Schema, key: &str) -> Option<&'a serde_json::Value> {
    let (section, name) = key.split_once('.')?;
    schema.get(section)?.get(name)
}

/// Merges the layers, lowest first: a higher layer's key replaces a lower one's; a section
/// set in several layers holds the keys of all of them.
pub fn merge(layers: &[&Layer]) -> toml::Table {
    let mut merged = toml::Table::new();
    for layer in layers {
        for (name, value) in &layer.table {
            match (merged.get_mut(name), value) {
                (Some(toml::Value::Table(into)), toml::Value::Table(from))
                    if SECTIONS.contains(&name.as_str()) =>
                {
                    into.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => {
                    merged.insert(name.clone(), value.clone());
                }
            }
        }
    }
    merged
}

/// Where a key's value came from: the highest layer that sets it, or the default.
pub fn origin_of(layers: &[&Layer], key: &str) -> Origin {
    layers
        .iter()
        .rev()
        .find(|layer| layer.get(key).is_some())
        .map_or(Origin::Default, |layer| layer.origin(key))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// toml's messages may span lines; a problem is one line.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one() {
        let text = "a = 1\n[limits]\n  connections_max = 5\n";
        let offset = text.find("connections_max").unwrap();
        assert_eq!(line_column(text, offset), (3, 3));
        assert_eq!(line_column(text, 0), (1, 1));
    }

    /// Every table's keys are reachable as `CHUTE_<TABLE>_<KEY>`, the old short names still
    /// work, other `CHUTE_*` variables are not the server's, and a typo in a key is a problem.
    #[test]
    fn environment_names_map_to_keys() {
        let vars = [
            ("CHUTE_LIMITS_CONNECTIONS_MAX", "5000"),
            ("CHUTE_TIMEOUTS_HEARTBEAT_MS", "1000"),
            ("CHUTE_LOG", "debug"),
            ("CHUTE_LOG_FORMAT", "json"),
            ("CHUTE_DATA_DIR", "/var/lib/chute"),
            ("CHUTE_URL", "chute://elsewhere"),
            ("CHUTE_TOKIO_THREADS", "2"),
            ("CHUTE_LIMITS_CONECTIONS_MAX", "1"),
        ]
        .map(|(name, value)| (name.to_string(), value.to_string()));
        let mut problems = Vec::new();
        let layer = env_layer(&vars, &mut problems);
        assert_eq!(layer.get("limits.connections_max"), Some(&toml::Value::Integer(5000)));
        assert_eq!(layer.get("timeouts.heartbeat_ms"), Some(&toml::Value::Integer(1000)));
        assert_eq!(layer.get("log.level"), Some(&toml::Value::String("debug".into())));
        assert_eq!(layer.get("log.format"), Some(&toml::Value::String("json".into())));
        assert_eq!(
            layer.get("server.data_dir"),
            Some(&toml::Value::String("/var/lib/chute".into()))
        );
        assert_eq!(layer.keys().len(), 5, "{:?}", layer.keys());
        assert_eq!(layer.origin("log.level"), Origin::Env("CHUTE_LOG".into()));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = problems[0].to_string();
        assert!(
            problem.starts_with(
                "environment CHUTE_LIMITS_CONECTIONS_MAX: no such setting in [limits]"
            ),
            "{problem}"
        );
        assert!(problem.contains("CHUTE_LIMITS_CONNECTIONS_MAX"), "{problem}");
    }

    /// A string setting takes the text as it is, even when it reads as a number; others read
    /// TOML values, inline tables included.
    #[test]
    fn values_are_read_with_the_setting_type() {
        let set = |text: &str| FlagSetting::parse_set(text).unwrap().value;
        assert_eq!(set("server.server_name=42"), toml::Value::String("42".into()));
        assert_eq!(set("limits.connections_max=5000"), toml::Value::Integer(5000));
        let rate = set("limits.publish_rate={ per_second = 10, burst = 20, policy = \"reject\" }");
        assert_eq!(rate.as_table().unwrap()["burst"], toml::Value::Integer(20));
        assert_eq!(set("limits.connections_max=lots"), toml::Value::String("lots".into()));
        assert!(FlagSetting::parse_set("limits.connections_max").is_err());
        assert!(FlagSetting::parse_set("a.b.c=1").is_err());
    }

    #[test]
    fn higher_layers_win_key_by_key() {
        let mut file = Layer::default();
        file.set("limits.connections_max", toml::Value::Integer(1), Origin::Default);
        file.set("limits.queues_max", toml::Value::Integer(2), Origin::Default);
        let mut flags = Layer::default();
        flags.set("limits.queues_max", toml::Value::Integer(3), Origin::Flag("--set".into()));
        let merged = merge(&[&file, &flags]);
        let limits = merged["limits"].as_table().unwrap();
        assert_eq!(limits["connections_max"], toml::Value::Integer(1));
        assert_eq!(limits["queues_max"], toml::Value::Integer(3));
        assert_eq!(origin_of(&[&file, &flags], "limits.queues_max"), Origin::Flag("--set".into()));
        assert_eq!(origin_of(&[&file, &flags], "limits.credit_max"), Origin::Default);
    }
}
