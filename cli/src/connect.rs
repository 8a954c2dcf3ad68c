//! Where the commands that speak the protocol connect, and as whom: the server URL
//! (`chutes://` for TLS), the TLS files, and the credentials. Secrets are never taken on the
//! command line, where other users of the host can read them: a password comes from a file or
//! `CHUTE_PASSWORD`, a token from a file or `CHUTE_TOKEN`.

use std::path::{Path, PathBuf};

use chute_client::{ConnectOptions, TlsOptions};

#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Server address: chute://host[:port] (plain), chutes://host[:port] (TLS, port 4773 by
    /// default), a list (chute://a,b), credentials in it (chute://user:password@host).
    #[arg(long, global = true, env = "CHUTE_URL", default_value = "chute://127.0.0.1:4770")]
    pub url: String,
    /// PEM file of the CA that signed the server's certificate (chutes://).
    #[arg(long, global = true, env = "CHUTE_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --key).
    #[arg(long, global = true, env = "CHUTE_CERT", value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, global = true, env = "CHUTE_KEY", value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// The name the server's certificate must carry, instead of the URL's host (for an IP
    /// address, or a name the certificate does not list).
    #[arg(long, global = true, env = "CHUTE_SERVER_NAME", value_name = "NAME")]
    server_name: Option<String>,
    /// Log in as this user (SCRAM-SHA-256: the password is proven, never sent). The password
    /// comes from --password-file or CHUTE_PASSWORD.
    #[arg(long, global = true, env = "CHUTE_USER", value_name = "NAME")]
    user: Option<String>,
    /// File whose first line is the password of --user.
    #[arg(long, global = true, env = "CHUTE_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// File whose first line is a token to log in with (chutes:// only). Or CHUTE_TOKEN.
    #[arg(
        long,
        global = true,
        env = "CHUTE_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "user"
    )]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The client's default options with these TLS files and credentials.
    pub fn options(&self) -> Result<ConnectOptions, String> {
        let mut options = ConnectOptions {
            tls: TlsOptions {
                ca_file: self.ca.clone(),
                cert_file: self.cert.clone(),
                key_file: self.key.clone(),
                server_name: self.server_name.clone(),
            },
            ..ConnectOptions::default()
        };
        if let Some(user) = &self.user {
            let password = match &self.password_file {
                Some(path) => first_line(path, "--password-file")?,
                None => std::env::var("CHUTE_PASSWORD").map_err(|_| {
                    format!(
                        "--user {user} needs a password: --password-file FILE or CHUTE_PASSWORD"
                    )
                })?,
            };
            options = options.with_password(user, &password);
        } else if self.password_file.is_some() {
            return Err("--password-file needs --user".into());
        }
        let token = match &self.token_file {
            Some(path) => Some(first_line(path, "--token-file")?),
            None if self.user.is_none() => std::env::var("CHUTE_TOKEN").ok(),
            None => None,
        };
        if let Some(token) = token {
            options = options.with_token(&token);
        }
        Ok(options)
    }
}

/// The first line of a secret's file, without its line ending.
fn first_line(path: &Path, flag: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("{flag} {}: {error}", path.display()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!("{flag} {}: the first line is empty", path.display()));
    }
    Ok(line.to_string())
}
