//! TLS for `chutes://`: the trusted CAs, the client certificate for mutual TLS, and the name
//! the server's certificate must carry. rustls on the ring provider, as the servers
//! (docs/SECURITY.md); built once per connection and used for every handshake, reconnects
//! included.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_rustls::TlsConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// How to speak TLS to a `chutes://` server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CAs the server's certificate must chain to. Required: the client does
    /// not read the system's trust store, since a chute server's certificate usually comes
    /// from a CA of its own.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (then its chain) presented to a server that asks for one (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, and the one sent by SNI, instead of the
    /// URL's host: for a certificate without the address connected to (an IP address, say).
    pub server_name: Option<String>,
}

/// A built TLS client: one rustls configuration for every handshake of a connection.
#[derive(Clone)]
pub(crate) struct TlsClient {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("server_name", &self.server_name).finish()
    }
}

impl TlsOptions {
    /// Whether a client certificate is configured (half of one is an error of `build`).
    pub(crate) fn has_client_certificate(&self) -> bool {
        self.cert_file.is_some()
    }

    /// Reads the files and builds the rustls configuration; each problem names its file.
    pub(crate) fn build(&self) -> Result<TlsClient, String> {
        let ca_file = self.ca_file.as_deref().ok_or(
            "chutes:// needs the CA that signed the server's certificate (ConnectOptions::tls.ca_file, --ca, CHUTE_CA)",
        )?;
        let mut roots = RootCertStore::empty();
        for cert in read_certificates(ca_file, "CA file")? {
            roots.add(cert).map_err(|error| format!("CA file {}: {error}", ca_file.display()))?;
        }
        #[allow(deprecated)] // ring, as the servers: see docs/SECURITY.md
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let chain = read_certificates(cert_file, "certificate file")?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
                    format!("key file {}: no usable private key: {error}", key_file.display())
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    format!(
                        "certificate {} and key {}: {error}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err("a client certificate needs its key file too".into()),
            (None, Some(_)) => return Err("a client key needs its certificate file too".into()),
        };
        let server_name = match &self.server_name {
            Some(name) => Some(parse_server_name(name)?),
            None => None,
        };
        Ok(TlsClient { connector: TlsConnector::from(Arc::new(config)), server_name })
    }
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("{what} {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{what} {}: no PEM certificate in it", path.display()));
    }
    Ok(certificates)
}

fn parse_server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a valid server name for TLS"))
}

impl TlsClient {
    /// Runs the handshake over `stream`, to `host` (or the configured server name).
    pub(crate) async fn handshake<S>(
        &self,
        host: &str,
        stream: S,
    ) -> Result<futures_rustls::client::TlsStream<S>, String>
    where
        S: futures::io::AsyncRead + futures::io::AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => parse_server_name(host)?,
        };
        self.connector
            .connect(name.clone(), stream)
            .await
            .map_err(|error| format!("TLS handshake with {} failed: {error}", name.to_str()))
    }
}
