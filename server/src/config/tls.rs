//! `[tls]`: the TLS client listener, its certificate and key, mutual TLS, and the admin
//! endpoint over HTTPS (docs/CONFIG.md, docs/SECURITY.md). The files themselves are read and
//! checked by [`crate::tls::material`]; this is the schema and the checks of the values.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::file::{ConfigFile, Listen};

/// `[tls]`. TLS is in use when `listen` is on or `admin` is true; the files are needed then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// Address of the TLS client listener, or `off` (no TLS listener).
    pub listen: Listen,
    /// PEM: the server's certificate, then the chain up to (not including) the root.
    pub cert_file: Option<PathBuf>,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM bundle of the CAs trusted for client certificates.
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Which field of a verified client certificate names its user.
    pub client_identity: ClientIdentity,
    /// A TLS handshake not done by then is closed.
    pub handshake_timeout_ms: u32,
    /// TLS handshakes in progress at once; further TCP connections are closed at once.
    pub handshakes_max: u32,
    /// The admin endpoint speaks HTTPS with the same certificate.
    pub admin: bool,
    /// Watch the files' directories for changes (inotify on Linux).
    pub watch_files: bool,
    /// Compare the files' contents this often, and reload when they changed; 0: never.
    pub reload_poll_ms: u32,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            listen: Listen::Off,
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: ClientAuth::None,
            client_identity: ClientIdentity::CommonName,
            handshake_timeout_ms: 10_000,
            handshakes_max: 1024,
            admin: false,
            watch_files: true,
            reload_poll_ms: 10_000,
        }
    }
}

impl TlsSettings {
    /// A listener or the admin endpoint speaks TLS, so a certificate must be loaded.
    pub fn in_use(&self) -> bool {
        self.listen != Listen::Off || self.admin
    }
}

/// `tls.client_auth`: whether clients of the TLS listener present a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one gets in (without a certificate user), one with a
    /// certificate that does not verify is refused.
    Optional,
    /// A client without a certificate that verifies is refused.
    Required,
}

/// `tls.client_identity`: RabbitMQ's `ssl_cert_login_from` vocabulary. The first such value
/// of the certificate names the user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIdentity {
    /// The subject's common name (CN).
    #[default]
    CommonName,
    /// The first e-mail address (rfc822Name) among the subject alternative names.
    SanEmail,
    /// The first DNS name among the subject alternative names.
    SanDns,
    /// The first URI among the subject alternative names.
    SanUri,
}

/// Values out of range and relations between `[tls]` and the listeners, as `(key, message)`.
/// The files' contents are checked by [`crate::tls::material::Material::load`].
pub fn check_values(config: &ConfigFile) -> Vec<(String, String)> {
    let tls = &config.tls;
    let mut found = Vec::new();
    let mut problem = |key: &str, message: String| found.push((key.to_string(), message));
    let ranges = [
        ("tls.handshake_timeout_ms", tls.handshake_timeout_ms, 10, 600_000),
        ("tls.handshakes_max", tls.handshakes_max, 1, 1_048_576),
    ];
    for (key, value, min, max) in ranges {
        if !(min..=max).contains(&value) {
            problem(key, format!("{key} = {value} is out of range: must be in {min}..={max}"));
        }
    }
    if tls.reload_poll_ms != 0 && !(100..=86_400_000).contains(&tls.reload_poll_ms) {
        let value = tls.reload_poll_ms;
        problem(
            "tls.reload_poll_ms",
            format!("tls.reload_poll_ms = {value} is out of range: must be 0 (off) or in 100..=86400000"),
        );
    }
    if tls.in_use() {
        let why = match tls.listen {
            Listen::At(_) => "tls.listen is set",
            Listen::Off => "tls.admin is true",
        };
        if tls.cert_file.is_none() {
            problem("tls.cert_file", format!("tls.cert_file is needed: {why}"));
        }
        if tls.key_file.is_none() {
            problem("tls.key_file", format!("tls.key_file is needed: {why}"));
        }
    }
    if tls.client_auth != ClientAuth::None && tls.client_ca_file.is_none() {
        let auth = serde_json::to_value(tls.client_auth).expect("serializes");
        problem(
            "tls.client_auth",
            format!("tls.client_auth = {auth} needs tls.client_ca_file (the CAs that client certificates must chain to)"),
        );
    }
    if config.server.listen == Listen::Off && tls.listen == Listen::Off {
        problem(
            "server.listen",
            "server.listen is off and tls.listen is off: the server would serve no client; turn one on".into(),
        );
    }
    if let Listen::At(at) = tls.listen {
        let clashes = [
            ("server.listen", config.server.listen),
            ("server.admin_listen", config.server.admin_listen),
        ];
        for (other, address) in clashes {
            if address == Listen::At(at) && at.port() != 0 {
                problem(
                    "tls.listen",
                    format!("tls.listen = {at} is {other}'s address: pick another"),
                );
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(edit: impl FnOnce(&mut ConfigFile)) -> Vec<(String, String)> {
        let mut config = ConfigFile::default();
        edit(&mut config);
        check_values(&config)
    }

    fn keys(found: &[(String, String)]) -> Vec<&str> {
        found.iter().map(|(key, _)| key.as_str()).collect()
    }

    #[test]
    fn the_defaults_use_no_tls_and_pass() {
        let config = ConfigFile::default();
        assert!(!config.tls.in_use());
        assert!(check_values(&config).is_empty());
    }

    /// A TLS listener (or HTTPS admin) without a certificate and key names both keys.
    #[test]
    fn tls_in_use_needs_a_certificate_and_key() {
        let found =
            problems(|config| config.tls.listen = Listen::At("127.0.0.1:4773".parse().unwrap()));
        assert_eq!(keys(&found), ["tls.cert_file", "tls.key_file"]);
        assert_eq!(found[0].1, "tls.cert_file is needed: tls.listen is set");
        let found = problems(|config| config.tls.admin = true);
        assert_eq!(found[1].1, "tls.key_file is needed: tls.admin is true");
    }

    #[test]
    fn client_auth_needs_a_ca() {
        for auth in [ClientAuth::Optional, ClientAuth::Required] {
            let found = problems(|config| config.tls.client_auth = auth);
            assert_eq!(keys(&found), ["tls.client_auth"], "{found:?}");
            assert!(found[0].1.contains("needs tls.client_ca_file"), "{found:?}");
        }
        let found = problems(|config| {
            config.tls.client_auth = ClientAuth::Required;
            config.tls.client_ca_file = Some("ca.pem".into());
        });
        assert!(found.is_empty(), "{found:?}");
    }

    /// At least one client listener; the TLS one on an address of its own.
    #[test]
    fn listeners_are_checked() {
        let found = problems(|config| config.server.listen = Listen::Off);
        assert_eq!(keys(&found), ["server.listen"]);
        assert!(found[0].1.contains("would serve no client"), "{found:?}");
        let found = problems(|config| {
            config.tls.listen = config.server.listen;
            config.tls.cert_file = Some("c".into());
            config.tls.key_file = Some("k".into());
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].1,
            "tls.listen = 127.0.0.1:4770 is server.listen's address: pick another"
        );
    }

    #[test]
    fn ranges_are_checked() {
        let found = problems(|config| {
            config.tls.handshake_timeout_ms = 1;
            config.tls.handshakes_max = 0;
            config.tls.reload_poll_ms = 5;
        });
        assert_eq!(
            keys(&found),
            ["tls.handshake_timeout_ms", "tls.handshakes_max", "tls.reload_poll_ms"]
        );
        assert!(problems(|config| config.tls.reload_poll_ms = 0).is_empty());
    }

    /// The names in the file are RabbitMQ's and the brief's: `common-name`, `san-email`, ...
    #[test]
    fn enum_values_read_as_documented() {
        let tls: TlsSettings = toml::from_str(
            "client_auth = \"optional\"\nclient_identity = \"san-email\"\nlisten = \"off\"\n",
        )
        .unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Optional);
        assert_eq!(tls.client_identity, ClientIdentity::SanEmail);
        for (text, identity) in [
            ("common-name", ClientIdentity::CommonName),
            ("san-dns", ClientIdentity::SanDns),
            ("san-uri", ClientIdentity::SanUri),
        ] {
            let read: TlsSettings =
                toml::from_str(&format!("client_identity = \"{text}\"")).unwrap();
            assert_eq!(read.client_identity, identity);
        }
    }
}
