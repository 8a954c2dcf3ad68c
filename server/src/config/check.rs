//! Loading the configuration from its layers, and every problem with it: parse errors, unknown
//! keys, wrong types, values out of range and relations between values, each on one line naming
//! the key and where it was set.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::file::{ConfigFile, SCHEMA_VERSION};
use super::layers::{self, FlagSetting, Layer, Origin};
use super::renamed;

/// Where the settings come from, besides the defaults and the environment: kept by the server
/// so that a reload reads the same file, and the command line keeps winning.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `--config FILE` (`CHUTE_CONFIG`).
    pub file: Option<PathBuf>,
    /// The command line's settings, highest layer.
    pub flags: Vec<FlagSetting>,
}

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: Origin,
    /// Names the key and, for a value out of range, the range accepted.
    pub message: String,
}

impl Problem {
    pub fn new(origin: Origin, message: impl Into<String>) -> Problem {
        Problem { origin, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

/// A configuration that passed every check.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: ConfigFile,
    /// Renamed keys still in use, one line each, naming the new key.
    pub warnings: Vec<String>,
    layers: Vec<Layer>,
}

impl Loaded {
    /// Where `key`'s value came from.
    pub fn origin(&self, key: &str) -> Origin {
        layers::origin_of(&self.layers.iter().collect::<Vec<_>>(), key)
    }
}

/// Reads the configuration from `sources` and the process environment.
pub fn load(sources: &Sources) -> Result<Loaded, Vec<Problem>> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
        .filter(|(name, _)| name.starts_with("CHUTE_"))
        .map(|(name, value)| (name, value.to_string_lossy().into_owned()))
        .collect();
    load_from(sources, &env)
}

/// Reads the configuration from `sources` and the environment `env`, and checks all of it:
/// `Err` holds every problem found, not only the first.
pub fn load_from(sources: &Sources, env: &[(String, String)]) -> Result<Loaded, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut layers = Vec::new();
    if let Some(path) = &sources.file {
        layers.push(layers::file_layer(path, &mut problems));
    }
    layers.push(layers::env_layer(env, &mut problems));
    layers.push(layers::flags_layer(&sources.flags));
    for layer in &mut layers {
        renamed::apply(layer, &mut warnings, &mut problems);
        check_types(layer, &mut problems);
        check_version(layer, &mut problems);
    }
    let layer_refs: Vec<&Layer> = layers.iter().collect();
    let merged = layers::merge(&layer_refs);
    let config: ConfigFile = match toml::Value::Table(merged).try_into() {
        Ok(config) => config,
        // Every key passed on its own; this would be a combination the schema refuses.
        Err(error) => {
            problems.push(Problem::new(Origin::Default, layers::one_line(error.message())));
            return Err(problems);
        }
    };
    for (key, message) in check_values(&config) {
        problems.push(Problem::new(layers::origin_of(&layer_refs, &key), message));
    }
    match problems.is_empty() {
        true => Ok(Loaded { config, warnings, layers }),
        false => Err(problems),
    }
}

/// The TLS files a checked configuration names, when TLS is in use: every problem with them
/// (missing, not PEM, a key of another pair, an expired certificate, unusable CAs), each
/// naming the key and where it was set. Separate from [`load`] because it reads files other
/// than the configuration; the start and `--check-config` run it, a reload checks the files
/// as it loads them.
pub fn check_files(loaded: &Loaded) -> Vec<Problem> {
    if !loaded.config.tls.in_use() {
        return Vec::new();
    }
    match crate::tls::Material::load(&loaded.config.tls) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .map(|problem| Problem::new(loaded.origin(problem.key), problem.to_string()))
            .collect(),
    }
}

/// Unknown keys and wrong types, key by key, so that every one is reported: each key is read
/// on its own into the schema (whose other keys take their defaults). A key with a problem is
/// taken out of the layer, so that the checks of values that follow still run on the rest.
fn check_types(layer: &mut Layer, problems: &mut Vec<Problem>) {
    for key in layer.keys() {
        let mut single = Layer::default();
        let value = layer.get(&key).expect("a key the layer lists").clone();
        single.set(&key, value, Origin::Default);
        if let Err(error) = toml::Value::Table(single.table).try_into::<ConfigFile>() {
            let message = layers::one_line(error.message());
            let (_, origin) = layer.remove(&key).expect("a key the layer lists");
            problems.push(Problem::new(origin, format!("{key}: {message}")));
        }
    }
}

/// `version`, when a layer sets it, must be the one this server reads.
fn check_version(layer: &mut Layer, problems: &mut Vec<Problem>) {
    let Some(version) = layer.get("version") else { return };
    if version.as_integer() != Some(SCHEMA_VERSION.into()) {
        let message = format!(
            "version = {version} is not supported: this server reads version {SCHEMA_VERSION}"
        );
        let (_, origin) = layer.remove("version").expect("just read");
        problems.push(Problem::new(origin, message));
    }
}

/// Values out of range and relations between values: the broker's own rules
/// ([`chute_core::BrokerConfig::validate_all`]) and the server's. `(key, message)` each.
pub fn check_values(config: &ConfigFile) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = config
        .broker_config()
        .validate_all()
        .into_iter()
        .map(|error| (error.key().to_string(), error.to_string()))
        .collect();
    let server = &config.server;
    let mut out_of_range = |key: &str, value: u64, min: u64, max: u64| {
        if !(min..=max).contains(&value) {
            found.push((
                key.into(),
                format!("{key} = {value} is out of range: must be in {min}..={max}"),
            ));
        }
    };
    out_of_range("server.shutdown_timeout_ms", server.shutdown_timeout_ms, 0, 3_600_000);
    out_of_range("server.drain_window_ms", server.drain_window_ms.into(), 0, 3_600_000);
    let trim_interval_ms = server.memory_trim_interval_ms.into();
    out_of_range("server.memory_trim_interval_ms", trim_interval_ms, 0, 86_400_000);
    out_of_range("audit.queue_max", config.audit.queue_max.into(), 1, 1 << 24);
    if !(1..=255).contains(&server.server_name.len()) {
        let bytes = server.server_name.len();
        found.push((
            "server.server_name".into(),
            format!("server.server_name is {bytes} bytes long: must be 1..=255 bytes"),
        ));
    }
    if server.data_dir.as_os_str().is_empty() {
        found.push(("server.data_dir".into(), "server.data_dir is empty: name a directory".into()));
    }
    if let super::file::Listen::At(admin) = server.admin_listen {
        if server.listen == super::file::Listen::At(admin) && admin.port() != 0 {
            found.push((
                "server.admin_listen".into(),
                format!("server.admin_listen = {admin} is server.listen's address: pick another, or off"),
            ));
        }
    }
    found.extend(check_auth(config));
    if let Err(error) =
        tracing_subscriber::EnvFilter::builder().with_regex(false).parse(&config.log.level)
    {
        let level = &config.log.level;
        found.push((
            "log.level".into(),
            format!("log.level = {level:?} is not a filter ({error}): use a level (error, warn, info, debug, trace) or directives such as info,chute_server=debug"),
        ));
    }
    found.extend(super::tls::check_values(config));
    found.extend(super::alerts::check_values(&config.alerts));
    found
}

/// The users file must read, and a server reachable from other hosts must not be open to
/// anyone unless that is said explicitly (secure by default).
fn check_auth(config: &ConfigFile) -> Vec<(String, String)> {
    let auth = &config.auth;
    let mut found = Vec::new();
    if let Some(path) = &auth.users_file {
        if let Err(problem) = crate::users_file::load(path) {
            found.push(("auth.users_file".into(), format!("auth.users_file: {problem}")));
        }
    }
    let listeners = [
        ("server.listen", config.server.listen),
        ("server.admin_listen", config.server.admin_listen),
        ("tls.listen", config.tls.listen),
    ];
    let exposed: Vec<(&str, SocketAddr)> = listeners
        .into_iter()
        .filter_map(|(key, listen)| Some((key, Option::<SocketAddr>::from(listen)?)))
        .filter(|(_, addr)| !addr.ip().is_loopback())
        .collect();
    if let (None, false, Some((key, addr))) =
        (&auth.users_file, auth.allow_anonymous, exposed.first())
    {
        found.push((
            "auth.users_file".into(),
            format!("{key} = {addr} is reachable from other hosts and no users are configured: set auth.users_file (docs/SECURITY.md), or auth.allow_anonymous = true to let anyone in"),
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn load_file(text: &str) -> (tempfile::NamedTempFile, Result<Loaded, Vec<Problem>>) {
        let file = file(text);
        let sources = Sources { file: Some(file.path().to_path_buf()), flags: Vec::new() };
        let loaded = load_from(&sources, &[]);
        (file, loaded)
    }

    fn problems(text: &str) -> (String, Vec<String>) {
        let (file, loaded) = load_file(text);
        let path = file.path().display().to_string();
        let lines = loaded.unwrap_err().iter().map(|problem| problem.to_string()).collect();
        (path, lines)
    }

    /// A server reachable from other hosts needs users or an explicit `allow_anonymous`.
    #[test]
    fn an_exposed_server_without_users_is_refused() {
        let (_, lines) = problems("[server]\nlisten = \"0.0.0.0:4770\"\n");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("server.listen = 0.0.0.0:4770 is reachable from other hosts")),
            "{lines:?}"
        );
        let (_, lines) = problems("[server]\nadmin_listen = \"[::]:4771\"\n");
        assert!(lines.iter().any(|l| l.contains("server.admin_listen")), "{lines:?}");
        let (_, allowed) =
            load_file("[server]\nlisten = \"0.0.0.0:4770\"\n[auth]\nallow_anonymous = true\n");
        assert!(allowed.is_ok());
        let (_, loopback) = load_file("[server]\nlisten = \"127.0.0.1:4770\"\n");
        assert!(loopback.is_ok());
    }

    #[test]
    fn a_broken_users_file_is_a_problem_naming_it() {
        let users = file("[[user]]\nname = \"a\"\nscram = \"x\"\n");
        let text = format!("[auth]\nusers_file = {:?}\n", users.path());
        let (_, lines) = problems(&text);
        assert!(
            lines.iter().any(|l| l.contains("auth.users_file: user \"a\": scram")),
            "{lines:?}"
        );
    }

    /// No file and no environment: exactly the defaults.
    #[test]
    fn nothing_set_is_the_defaults() {
        let loaded = load_from(&Sources::default(), &[]).unwrap();
        assert_eq!(loaded.config, ConfigFile::default());
        assert!(loaded.warnings.is_empty());
    }

    /// Every problem of a file is reported, each with the key, the file, the line and column,
    /// and (for a range) the range accepted.
    #[test]
    fn every_problem_is_reported_with_its_position() {
        let (path, lines) = problems(
            "version = 1\n\
             [limits]\n\
             connections_max = 0\n\
             conections_max = 5\n\
             queues_max = \"many\"\n\
             [storage]\n\
             segment_bytes_max = 1\n",
        );
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with(&format!("{path}:4:1: limits.conections_max: unknown field `conections_max`, expected one of")), "{lines:#?}");
        assert!(
            lines[1].starts_with(&format!(
                "{path}:5:1: limits.queues_max: invalid type: string \"many\", expected u32"
            )),
            "{lines:#?}"
        );
        assert_eq!(
            lines[2..],
            [
                format!("{path}:3:1: limits.connections_max = 0 is out of range: must be in 1..=1048576"),
                format!("{path}:7:1: storage.segment_bytes_max = 1 is out of range: must be in 65536..=1099511627776"),
            ]
        );
    }

    /// A file that is not TOML: each parse error toml finds, at its position.
    #[test]
    fn parse_errors_have_positions() {
        let (path, lines) = problems("[limits\nconnections_max = = 3\n");
        assert!(!lines.is_empty());
        assert!(lines.iter().all(|line| line.starts_with(&format!("{path}:"))), "{lines:#?}");
        assert!(lines[0].starts_with(&format!("{path}:1:")), "{lines:#?}");
    }

    #[test]
    fn an_unreadable_file_is_a_problem() {
        let sources = Sources { file: Some("/nonexistent/chute.toml".into()), flags: Vec::new() };
        let lines = load_from(&sources, &[]).unwrap_err();
        assert!(
            lines[0].to_string().starts_with("/nonexistent/chute.toml: cannot read the file:"),
            "{lines:?}"
        );
    }

    #[test]
    fn another_version_names_the_supported_one() {
        let (path, lines) = problems("version = 2\n");
        assert_eq!(
            lines,
            [format!("{path}:1:1: version = 2 is not supported: this server reads version 1")]
        );
        let (path, lines) = problems("version = \"1\"\n");
        assert_eq!(
            lines,
            [format!("{path}:1:1: version: invalid type: string \"1\", expected u32")]
        );
        let (_file, loaded) = load_file("[limits]\nqueues_max = 5\n");
        assert_eq!(loaded.unwrap().config.version, 1, "a missing version means 1");
    }

    /// Layers, lowest to highest: defaults < file < environment < flags.
    #[test]
    fn environment_beats_the_file_and_flags_beat_both() {
        let file = file("[limits]\nconnections_max = 10\nqueues_max = 10\ncredit_max = 10\n");
        let flag = FlagSetting::parse_set("limits.credit_max=30").unwrap();
        let sources = Sources { file: Some(file.path().into()), flags: vec![flag] };
        let env = [
            ("CHUTE_LIMITS_QUEUES_MAX".to_string(), "20".to_string()),
            ("CHUTE_LIMITS_CREDIT_MAX".to_string(), "20".to_string()),
        ];
        let loaded = load_from(&sources, &env).unwrap();
        let limits = &loaded.config.limits;
        assert_eq!((limits.connections_max, limits.queues_max, limits.credit_max), (10, 20, 30));
        assert_eq!(
            loaded.origin("limits.queues_max"),
            Origin::Env("CHUTE_LIMITS_QUEUES_MAX".into())
        );
        assert_eq!(loaded.origin("limits.unconfirmed_max"), Origin::Default);
    }

    /// A bad environment value or flag is a problem naming the variable or the flag.
    #[test]
    fn bad_environment_values_and_flags_name_themselves() {
        let flag = FlagSetting::parse_set("timeouts.heartbeat_ms=fast").unwrap();
        let sources = Sources { file: None, flags: vec![flag] };
        let env = [("CHUTE_LIMITS_CONNECTIONS_MAX".to_string(), "-1".to_string())];
        let lines: Vec<String> =
            load_from(&sources, &env).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("environment CHUTE_LIMITS_CONNECTIONS_MAX: limits.connections_max: invalid value: integer `-1`"), "{lines:#?}");
        assert!(lines[1].starts_with("flag --set timeouts.heartbeat_ms=fast: timeouts.heartbeat_ms: invalid type: string \"fast\""), "{lines:#?}");
    }

    /// An old-style file (the top-level `segment_bytes_max` of the first flag) reads as the
    /// new-style one, with a warning naming the new key.
    #[test]
    fn a_renamed_key_still_works_with_a_warning() {
        let (_old_file, old) = load_file("segment_bytes_max = 1048576\n");
        let (_new_file, new) = load_file("[storage]\nsegment_bytes_max = 1048576\n");
        let (old, new) = (old.unwrap(), new.unwrap());
        assert_eq!(old.config, new.config);
        assert_eq!(old.config.storage.segment_bytes_max, 1_048_576);
        assert_eq!(old.warnings.len(), 1);
        assert!(
            old.warnings[0]
                .ends_with(":1:1: the key segment_bytes_max is now storage.segment_bytes_max"),
            "{:?}",
            old.warnings
        );
        assert!(new.warnings.is_empty());
        let (_file, both) = load_file("segment_bytes_max = 1\n[storage]\nsegment_bytes_max = 2\n");
        assert!(both.unwrap_err()[0].message.contains("are both set"));
    }

    /// The TLS files are checked when TLS is in use: each problem names its key, where it
    /// was set, and the file.
    #[test]
    fn tls_files_are_checked_with_their_origin() {
        let text = "[tls]\nlisten = \"127.0.0.1:4773\"\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\"\n";
        let (file, loaded) = load_file(text);
        let path = file.path().display().to_string();
        let lines: Vec<String> =
            check_files(&loaded.unwrap()).iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with(&format!(
                "{path}:3:1: tls.cert_file = \"/nonexistent/c.pem\": cannot read it:"
            )),
            "{lines:#?}"
        );
        assert!(lines[1].starts_with(&format!("{path}:4:1: tls.key_file = ")), "{lines:#?}");
        let (_file, unused) = load_file("[tls]\ncert_file = \"/nonexistent/c.pem\"\n");
        assert!(check_files(&unused.unwrap()).is_empty(), "TLS not in use: the files are not read");
    }

    /// `[alerts]` is read from the file and its problems name the entry and where it was set;
    /// a good one loads.
    #[test]
    fn alerts_settings_are_checked() {
        let (path, lines) = problems(
            "[alerts]\nevaluation_interval_ms = 1000\n[[alerts.rules]]\nname = \"nope\"\n\
             [[alerts.receivers]]\nname = \"ops\"\nurl = \"https://example.com/\"\n",
        );
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with(&path), "{lines:#?}");
        assert!(
            lines[0].contains("alerts.rules[0] (name = \"nope\"): no default rule"),
            "{lines:#?}"
        );
        assert!(lines[1].contains("alerts.receivers[0] (name = \"ops\"): url = \"https://example.com/\": https:// is not supported"), "{lines:#?}");
        let (_, loaded) = load_file(
            "[[alerts.rules]]\nname = \"queue_depth_high\"\nthreshold = 5\n\
             [[alerts.receivers]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/\"\n",
        );
        let config = loaded.unwrap().config;
        assert_eq!(config.alerts.rules[0].threshold, Some(5));
        assert_eq!(config.alerts.receivers[0].timeout_ms, 5_000, "defaults fill the rest");
    }

    #[test]
    fn server_settings_are_checked() {
        let (path, lines) = problems(
            "[server]\nlisten = \"127.0.0.1:4770\"\nadmin_listen = \"127.0.0.1:4770\"\n\
             drain_window_ms = 4000000\nserver_name = \"\"\n[log]\nlevel = \"info,=\"\n",
        );
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0]
            .starts_with(&format!("{path}:4:1: server.drain_window_ms = 4000000 is out of range")));
        assert!(lines[1].starts_with(&format!(
            "{path}:5:1: server.server_name is 0 bytes long: must be 1..=255 bytes"
        )));
        assert!(lines[2].starts_with(&format!(
            "{path}:3:1: server.admin_listen = 127.0.0.1:4770 is server.listen's address"
        )));
        assert!(
            lines[3].starts_with(&format!("{path}:7:1: log.level = \"info,=\" is not a filter")),
            "{lines:#?}"
        );
        let (_path, lines) =
            problems("[server]\nlisten = \"nowhere\"\nadmin_listen = \"somewhere\"\n");
        assert!(lines[0].contains("server.listen: invalid socket address syntax"), "{lines:#?}");
        assert!(
            lines[1].contains(
                "server.admin_listen: invalid socket address syntax (expected ADDR:PORT or off)"
            ),
            "{lines:#?}"
        );
    }
}
