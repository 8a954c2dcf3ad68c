//! `chute://host[:port]` and `chutes://host[:port]` (TLS) addresses, lists of them
//! (`chute://a:4770,b:4770`), and credentials in them (`chute://user:password@host`), read by
//! the `url` crate. The CLI reads its `http://` admin endpoint through
//! [`ServerUrl::parse_with_path`] too, so both follow the same rules (IPv6 literals in
//! brackets, the same errors).

use ::url::{Host, ParseError, Url};
use percent_encoding::percent_decode_str;

/// The default protocol port.
pub const DEFAULT_PORT: u16 = 4770;

/// The default port of `chutes://`: the TLS listener's in the documentation's examples.
pub const DEFAULT_TLS_PORT: u16 = 4773;

/// A parsed server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    /// A name or an IP address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
}

/// Everything a connection URL says: the servers, whether to speak TLS, and who to log in as.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub servers: Vec<ServerUrl>,
    /// `chutes://`.
    pub tls: bool,
    /// From `user[:password]@`, percent-decoded.
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("servers", &self.servers)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Target {
    /// Parses `chute[s]://[user[:password]@]host[:port][,host[:port]...]`; without a scheme,
    /// `chute://`. The credentials, percent-decoded (`%40` for `@`, `%3A` for `:`), are given
    /// once, before the first address, and apply to every server.
    pub fn parse(url: &str) -> Result<Target, String> {
        // Messages show the URL without its password.
        let shown = redacted(url);
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("chute", url),
        };
        let (tls, port) = match scheme {
            "chute" => (false, DEFAULT_PORT),
            "chutes" => (true, DEFAULT_TLS_PORT),
            other => {
                return Err(format!(
                    "unsupported scheme {other:?} in {shown:?}; use chute:// (or chutes:// for TLS)"
                ))
            }
        };
        // The userinfo ends at the last `@` (a raw `@` in a password is taken as part of it).
        let (username, password, list) = match rest.rsplit_once('@') {
            Some((userinfo, list)) => {
                let (username, password) = split_userinfo(&shown, userinfo)?;
                (Some(username), password, list)
            }
            None => (None, None, rest),
        };
        let mut servers = Vec::new();
        for address in list.split(',') {
            if address.is_empty() {
                return Err(format!("{shown:?} has an empty address in its list"));
            }
            let (server, path) =
                ServerUrl::parse_with_path(&format!("{scheme}://{address}"), scheme, port)?;
            if !path.is_empty() {
                return Err(format!("{shown:?} has a path ({path}); use {scheme}://host[:port]"));
            }
            servers.push(server);
        }
        Ok(Target { servers, tls, username, password })
    }
}

/// `url` with the password in its userinfo replaced by `***`, for messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.rsplit_once('@') {
        Some((userinfo, list)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{list}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// `user[:password]`, each percent-decoded to UTF-8.
fn split_userinfo(shown: &str, userinfo: &str) -> Result<(String, Option<String>), String> {
    let decode = |part: &str, what: &str| {
        percent_decode_str(part)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| format!("the {what} in {shown:?} is not UTF-8 once percent-decoded"))
    };
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (userinfo, None),
    };
    if user.is_empty() {
        return Err(format!("{shown:?} has credentials without a user name"));
    }
    let password = password.map(|password| decode(password, "password")).transpose()?;
    Ok((decode(user, "user name")?, password))
}

impl ServerUrl {
    /// Parses `chute://host[:port]`; a bare `host[:port]` is accepted too. A trailing `/` is
    /// ignored; a path, query or fragment is refused.
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let (server, path) = ServerUrl::parse_with_path(url, "chute", DEFAULT_PORT)?;
        if !path.is_empty() {
            return Err(format!("{url:?} has a path ({path}); use chute://host[:port]"));
        }
        Ok(server)
    }

    /// Parses `chute[s]://host[:port][,host[:port]...]`: a list of servers to connect to (in
    /// order, or shuffled), the scheme once at the front. A single address is a list of one.
    /// Credentials are refused here: [`Target::parse`] reads them.
    pub fn parse_list(url: &str) -> Result<Vec<ServerUrl>, String> {
        let target = Target::parse(url)?;
        if target.username.is_some() {
            return Err(format!("{url:?}: credentials are not expected here"));
        }
        Ok(target.servers)
    }

    /// Parses `SCHEME://host[:port][/path]`, or the same without `SCHEME://`, and returns the
    /// path without its trailing `/` (empty when there is none). A query, a fragment and
    /// credentials (`user:pass@`) are refused.
    pub fn parse_with_path(
        url: &str,
        scheme: &str,
        default_port: u16,
    ) -> Result<(ServerUrl, String), String> {
        let parsed = if url.contains("://") {
            Url::parse(url)
        } else {
            // Without a scheme, `host:port` would read as scheme `host`.
            Url::parse(&format!("{scheme}://{url}"))
        };
        let parsed = parsed.map_err(|error| {
            let hint = if url.contains("::") && !url.contains('[') {
                " (an IPv6 address goes in brackets: [::1]:4770)"
            } else {
                ""
            };
            match error {
                ParseError::InvalidPort => format!("bad port in {url:?}{hint}"),
                ParseError::EmptyHost => format!("no host in {url:?}{hint}"),
                other => format!("{url:?} is not a valid address: {other}{hint}"),
            }
        })?;
        if parsed.scheme() != scheme {
            let found = parsed.scheme();
            return Err(format!("unsupported scheme {found:?} in {url:?}; use {scheme}://"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(format!("{url:?}: credentials are not accepted in this address"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!("{url:?}: a query or fragment is not supported"));
        }
        let host = match parsed.host() {
            Some(Host::Domain(name)) if !name.is_empty() => name.to_string(),
            Some(Host::Ipv4(address)) => address.to_string(),
            Some(Host::Ipv6(address)) => address.to_string(),
            Some(Host::Domain(_)) | None => return Err(format!("no host in {url:?}")),
        };
        let port = parsed.port().unwrap_or(default_port);
        let path = parsed.path().trim_end_matches('/').to_string();
        Ok((ServerUrl { host, port }, path))
    }

    /// `host:port`, with an IPv6 host in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> (String, u16) {
        let url = ServerUrl::parse(url).unwrap();
        (url.host, url.port)
    }

    fn refusal(url: &str) -> String {
        ServerUrl::parse(url).unwrap_err()
    }

    #[test]
    fn parses_forms() {
        assert_eq!(parsed("chute://127.0.0.1:4771"), ("127.0.0.1".into(), 4771));
        assert_eq!(parsed("chute://example.com"), ("example.com".into(), DEFAULT_PORT));
        assert_eq!(parsed("chute://example.com/"), ("example.com".into(), DEFAULT_PORT));
        assert_eq!(parsed("localhost:9"), ("localhost".into(), 9));
        assert_eq!(parsed("localhost"), ("localhost".into(), DEFAULT_PORT));
        let v6 = ServerUrl::parse("chute://[::1]:5").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.authority()), ("::1", 5, "[::1]:5".to_string()));
    }

    /// IPv6 literals go in brackets, with or without a port, with or without the scheme.
    #[test]
    fn ipv6_literals() {
        assert_eq!(parsed("chute://[::1]"), ("::1".into(), DEFAULT_PORT));
        assert_eq!(parsed("[fe80::2]:7"), ("fe80::2".into(), 7));
        assert_eq!(parsed("chute://[2001:DB8::1]:8").0, "2001:db8::1", "written in normal form");
        assert!(refusal("chute://::1").contains("in brackets"), "{}", refusal("chute://::1"));
        assert!(refusal("::1").contains("in brackets"), "{}", refusal("::1"));
        assert!(ServerUrl::parse("chute://[::1").is_err(), "an unclosed bracket is refused");
    }

    #[test]
    fn refuses_bad_urls() {
        assert!(refusal("http://x").contains("unsupported scheme \"http\""));
        assert!(refusal("chute://x:notaport").contains("bad port"));
        assert!(refusal("chute://x:70000").contains("bad port"));
        assert!(refusal("chute://").contains("no host"), "{}", refusal("chute://"));
        assert!(refusal("chute://:5").contains("no host"), "{}", refusal("chute://:5"));
        assert!(refusal("chute://x/y").contains("has a path"));
        assert!(refusal("chute://x?tls=1").contains("query"));
        assert!(refusal("chute://x#frag").contains("fragment"));
        let credentials = refusal("chute://user:secret@x:1");
        assert!(credentials.contains("credentials are not accepted"), "{credentials}");
        assert!(refusal("chute://user@x").contains("credentials"));
    }

    /// A list of servers, each with the rules of one; a single address is a list of one.
    #[test]
    fn lists_of_servers() {
        let authorities = |url: &str| -> Vec<String> {
            ServerUrl::parse_list(url).unwrap().iter().map(ServerUrl::authority).collect()
        };
        assert_eq!(authorities("chute://a:1,b:2"), ["a:1", "b:2"]);
        assert_eq!(authorities("chute://a,[::1]:3,c"), ["a:4770", "[::1]:3", "c:4770"]);
        assert_eq!(authorities("a:1,b"), ["a:1", "b:4770"]);
        assert_eq!(authorities("chute://a:1"), ["a:1"]);
        assert_eq!(authorities("chute://a:1,b:2/"), ["a:1", "b:2"]);
        let refused = |url: &str| ServerUrl::parse_list(url).unwrap_err();
        assert!(
            refused("chute://a:1,,b").contains("empty address"),
            "{}",
            refused("chute://a:1,,b")
        );
        assert!(refused("chute://a:1,b:x").contains("bad port"));
        assert!(refused("http://a,b").contains("unsupported scheme"));
        assert!(refused("chute://u:p@a,b").contains("credentials are not expected"));
    }

    /// Another scheme with its own default port, and a path kept for the caller.
    #[test]
    fn other_schemes_and_paths() {
        let (server, path) = ServerUrl::parse_with_path("http://[::1]/a/b/", "http", 80).unwrap();
        assert_eq!((server.authority(), path.as_str()), ("[::1]:80".to_string(), "/a/b"));
        let (server, path) = ServerUrl::parse_with_path("h:81", "http", 80).unwrap();
        assert_eq!((server.authority(), path.as_str()), ("h:81".to_string(), ""));
    }

    /// `chutes://` is TLS, on 4773 unless a port is given; `chute://` is not.
    #[test]
    fn tls_scheme() {
        let target = Target::parse("chutes://a,b:5").unwrap();
        assert!(target.tls);
        let authorities: Vec<String> = target.servers.iter().map(ServerUrl::authority).collect();
        assert_eq!(authorities, ["a:4773", "b:5"]);
        assert!(!Target::parse("chute://a").unwrap().tls);
        assert!(!Target::parse("a:1").unwrap().tls);
        let refused = Target::parse("chutex://a").unwrap_err();
        assert!(refused.contains("use chute:// (or chutes:// for TLS)"), "{refused}");
    }

    /// Credentials before the first address, percent-decoded, for every server; never shown
    /// in an error.
    #[test]
    fn credentials_in_the_url() {
        let target = Target::parse("chute://al%40ice:p%3Ass%2Fw@a:1,b:2").unwrap();
        assert_eq!(target.username.as_deref(), Some("al@ice"));
        assert_eq!(target.password.as_deref(), Some("p:ss/w"));
        assert_eq!(target.servers.len(), 2);
        let user_only = Target::parse("chutes://bob@h").unwrap();
        assert_eq!((user_only.username.as_deref(), user_only.password), (Some("bob"), None));
        let no_user = Target::parse("chute://:pw@h").unwrap_err();
        assert!(no_user.contains("without a user name"), "{no_user}");
        for bad in ["chute://u:secret@h:notaport", "chute://u:secret@h/x", "ftp://u:secret@h"] {
            let error = Target::parse(bad).unwrap_err();
            assert!(!error.contains("secret"), "{bad}: {error}");
        }
        assert!(!format!("{target:?}").contains("p:ss/w"), "Debug hides the password");
        let not_utf8 = Target::parse("chute://u:%ff@h").unwrap_err();
        assert!(not_utf8.contains("not UTF-8"), "{not_utf8}");
    }
}
