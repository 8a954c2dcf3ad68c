//! The certificate, key and client CAs, read from their PEM files and checked before anything
//! uses them: the chain parses, the key parses and matches the certificate, the certificate
//! has not expired, the client CAs parse. Each problem names the key whose file is wrong.
//! Then the rustls configurations of the client listener and the admin endpoint are built
//! from them, on the ring provider, TLS 1.3 and 1.2.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};

use crate::config::{ClientAuth, TlsSettings};

/// One thing wrong with the TLS files, naming the key (and the file) to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaterialProblem {
    pub key: &'static str,
    pub path: Option<PathBuf>,
    pub message: String,
}

impl fmt::Display for MaterialProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => {
                write!(f, "{} = {:?}: {}", self.key, path.display().to_string(), self.message)
            }
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// The files' contents as read, to tell whether they changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Files {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl Files {
    /// Reads the files `settings` names. A missing setting is the config check's problem, not
    /// this one's; it reads as an empty file here (and fails to parse).
    pub fn read(settings: &TlsSettings) -> Result<Files, Vec<MaterialProblem>> {
        let mut problems = Vec::new();
        let mut read = |key: &'static str, path: &Option<PathBuf>| {
            let path = path.as_deref()?;
            std::fs::read(path)
                .map_err(|error| {
                    problems.push(problem(key, path, format!("cannot read it: {error}")))
                })
                .ok()
        };
        let cert = read("tls.cert_file", &settings.cert_file);
        let key = read("tls.key_file", &settings.key_file);
        let client_ca = read("tls.client_ca_file", &settings.client_ca_file);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Files { cert: cert.unwrap_or_default(), key: key.unwrap_or_default(), client_ca })
    }
}

/// What the serving certificate is, for logs, the reload's answer and the expiry metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    pub subject: String,
    pub serial: String,
    pub not_after_unix_s: i64,
    pub not_after: String,
}

impl fmt::Display for CertificateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} serial {} (expires {})", self.subject, self.serial, self.not_after)
    }
}

/// Checked TLS material, ready to build configurations from.
#[derive(Debug)]
pub struct Material {
    pub files: Files,
    pub certificate: CertificateSummary,
    certified_key: Arc<CertifiedKey>,
    client_roots: Option<Arc<RootCertStore>>,
    /// CA certificates in `tls.client_ca_file`.
    pub client_ca_count: usize,
}

/// The provider every configuration is built on: ring, never the process default (which
/// panics when none or both providers are compiled in).
pub fn provider() -> Arc<CryptoProvider> {
    // rustls 0.23.48 deprecates ring's provider because it has no post-quantum key exchange,
    // to steer users to aws-lc-rs; chute takes ring knowingly (build time on small machines),
    // a trade-off docs/SECURITY.md states.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

impl Material {
    /// Reads and checks the files `settings` names, at the current time.
    pub fn load(settings: &TlsSettings) -> Result<Material, Vec<MaterialProblem>> {
        let files = Files::read(settings)?;
        Material::check(settings, files, unix_now_s())
    }

    /// Checks `files` (read for `settings`) at `now_unix_s`: every problem, not only the first.
    pub fn check(
        settings: &TlsSettings,
        files: Files,
        now_unix_s: i64,
    ) -> Result<Material, Vec<MaterialProblem>> {
        let mut problems = Vec::new();
        let cert_path = settings.cert_file.as_deref().unwrap_or(Path::new(""));
        let key_path = settings.key_file.as_deref().unwrap_or(Path::new(""));
        let chain = read_chain(cert_path, &files.cert, now_unix_s).map_err(|p| problems.push(p));
        let key = read_key(key_path, &files.key).map_err(|p| problems.push(p));
        let client_roots = match (&settings.client_ca_file, &files.client_ca) {
            (Some(path), Some(bytes)) => read_roots(path, bytes).map_err(|p| problems.push(p)).ok(),
            _ => None,
        };
        let (Ok((chain, certificate)), Ok(key)) = (chain, key) else { return Err(problems) };
        let certified_key = match CertifiedKey::from_der(chain, key, &provider()) {
            Ok(certified_key) => certified_key,
            Err(rustls::Error::InconsistentKeys(_)) => {
                let message = "the key does not match the certificate in tls.cert_file (a certificate and key from different pairs: were both files replaced?)";
                problems.push(problem("tls.key_file", key_path, message.into()));
                return Err(problems);
            }
            Err(error) => {
                problems.push(problem(
                    "tls.key_file",
                    key_path,
                    format!("the key cannot be used: {error}"),
                ));
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let client_ca_count = client_roots.as_ref().map_or(0, |roots| roots.len());
        Ok(Material {
            files,
            certificate,
            certified_key: Arc::new(certified_key),
            client_roots: client_roots.map(Arc::new),
            client_ca_count,
        })
    }

    /// The configuration of the client listener: client certificates as `tls.client_auth`
    /// says.
    pub fn client_config(
        &self,
        settings: &TlsSettings,
    ) -> Result<Arc<ServerConfig>, MaterialProblem> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.3 and 1.2");
        let verifier = match (settings.client_auth, &self.client_roots) {
            (ClientAuth::None, _) | (_, None) => None,
            (auth, Some(roots)) => {
                let builder =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
                let builder = match auth {
                    ClientAuth::Optional => builder.allow_unauthenticated(),
                    _ => builder,
                };
                let verifier = builder.build().map_err(|error| MaterialProblem {
                    key: "tls.client_ca_file",
                    path: settings.client_ca_file.clone(),
                    message: format!("cannot verify client certificates with it: {error}"),
                })?;
                Some(verifier)
            }
        };
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(builder.with_cert_resolver(self.resolver())))
    }

    /// The admin endpoint's configuration: the same certificate, no client certificate (its
    /// clients are probes and scrapers; docs/SECURITY.md).
    pub fn admin_config(&self) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.3 and 1.2")
            .with_no_client_auth()
            .with_cert_resolver(self.resolver());
        Arc::new(config)
    }

    fn resolver(&self) -> Arc<SingleCertAndKey> {
        Arc::new(SingleCertAndKey::from(self.certified_key.clone()))
    }
}

fn problem(key: &'static str, path: &Path, message: String) -> MaterialProblem {
    MaterialProblem { key, path: Some(path.to_path_buf()), message }
}

pub fn unix_now_s() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// The chain in `bytes` (leaf first) and what its leaf is; refused when it has expired.
fn read_chain(
    path: &Path,
    bytes: &[u8],
    now_unix_s: i64,
) -> Result<(Vec<CertificateDer<'static>>, CertificateSummary), MaterialProblem> {
    let key = "tls.cert_file";
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| problem(key, path, format!("not PEM certificates: {error}")))?;
    let Some(leaf) = chain.first() else {
        return Err(problem(key, path, "holds no certificate (a PEM CERTIFICATE block)".into()));
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|error| {
        problem(key, path, format!("the first certificate does not parse: {error}"))
    })?;
    let not_after = parsed.validity().not_after;
    let certificate = CertificateSummary {
        subject: parsed.subject().to_string(),
        serial: parsed.raw_serial_as_string(),
        not_after_unix_s: not_after.timestamp(),
        not_after: not_after.to_string(),
    };
    if certificate.not_after_unix_s <= now_unix_s {
        let message = format!(
            "the certificate ({}) expired on {}: renew it",
            certificate.subject, certificate.not_after
        );
        return Err(problem(key, path, message));
    }
    Ok((chain, certificate))
}

fn read_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, MaterialProblem> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|error| {
        let message = match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
                    .to_string()
            }
            other => format!("not a PEM private key: {other}"),
        };
        problem("tls.key_file", path, message)
    })
}

fn read_roots(path: &Path, bytes: &[u8]) -> Result<RootCertStore, MaterialProblem> {
    let key = "tls.client_ca_file";
    let mut roots = RootCertStore::empty();
    for (index, certificate) in CertificateDer::pem_slice_iter(bytes).enumerate() {
        let certificate = certificate
            .map_err(|error| problem(key, path, format!("not PEM certificates: {error}")))?;
        roots.add(certificate).map_err(|error| {
            problem(key, path, format!("certificate {} is not a usable CA: {error}", index + 1))
        })?;
    }
    if roots.is_empty() {
        return Err(problem(key, path, "holds no certificate (a PEM CERTIFICATE block)".into()));
    }
    Ok(roots)
}

#[cfg(test)]
pub(crate) mod tests {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    use super::*;
    use crate::config::Listen;

    /// A CA, and a server certificate for `localhost` it issued, valid until `not_after`.
    pub struct Pki {
        pub ca_pem: String,
        pub cert_pem: String,
        pub key_pem: String,
    }

    pub fn pki(not_after: (i32, u8, u8)) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Pki { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    fn settings() -> TlsSettings {
        TlsSettings {
            listen: Listen::At("127.0.0.1:0".parse().unwrap()),
            cert_file: Some("cert.pem".into()),
            key_file: Some("key.pem".into()),
            client_ca_file: Some("ca.pem".into()),
            client_auth: ClientAuth::Required,
            ..TlsSettings::default()
        }
    }

    fn files(pki: &Pki) -> Files {
        Files {
            cert: pki.cert_pem.clone().into(),
            key: pki.key_pem.clone().into(),
            client_ca: Some(pki.ca_pem.clone().into()),
        }
    }

    const NOW: i64 = 1_800_000_000; // 2027-01-15

    fn messages(result: Result<Material, Vec<MaterialProblem>>) -> Vec<String> {
        result.unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn good_material_builds_both_configurations() {
        let pki = pki((2030, 1, 1));
        let material = Material::check(&settings(), files(&pki), NOW).unwrap();
        assert_eq!(material.certificate.subject, "CN=localhost");
        assert!(material.certificate.not_after.contains("2030"), "{:?}", material.certificate);
        assert_eq!(material.client_ca_count, 1);
        material.client_config(&settings()).unwrap();
        material.admin_config();
    }

    #[test]
    fn an_expired_certificate_is_refused_naming_the_key() {
        let pki = pki((2026, 1, 1));
        let lines = messages(Material::check(&settings(), files(&pki), NOW));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "tls.cert_file = \"cert.pem\": the certificate (CN=localhost) expired on Jan  1"
            ),
            "{lines:?}"
        );
        assert!(lines[0].ends_with(": renew it"), "{lines:?}");
    }

    #[test]
    fn a_key_of_another_pair_is_refused() {
        let (one, other) = (pki((2030, 1, 1)), pki((2030, 1, 1)));
        let files = Files { key: other.key_pem.into(), ..files(&one) };
        let lines = messages(Material::check(&settings(), files, NOW));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("tls.key_file = \"key.pem\": the key does not match the certificate in tls.cert_file"), "{lines:?}");
    }

    /// Every file's problem is reported at once, each naming its key.
    #[test]
    fn unreadable_pem_names_each_file() {
        let files = Files {
            cert: b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
            key: b"just text".to_vec(),
            client_ca: Some(Vec::new()),
        };
        let lines = messages(Material::check(&settings(), files, NOW));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "tls.cert_file = \"cert.pem\": not PEM certificates: base64 decode error"
            ),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("tls.key_file = \"key.pem\": holds no private key"),
            "{lines:?}"
        );
        assert_eq!(
            lines[2],
            "tls.client_ca_file = \"ca.pem\": holds no certificate (a PEM CERTIFICATE block)"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let mut settings = settings();
        settings.cert_file = Some("/nonexistent/cert.pem".into());
        let problems = Files::read(&settings).unwrap_err();
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            lines[0].starts_with(
                "tls.cert_file = \"/nonexistent/cert.pem\": cannot read it: No such file"
            ),
            "{lines:?}"
        );
    }
}
