//! `chute://host[:port]` addresses (and lists of them, `chute://a:4770,b:4770`), read by the
//! `url` crate. The CLI reads its `http://` admin
//! endpoint through [`ServerUrl::parse_with_path`] too, so both follow the same rules (IPv6
//! literals in brackets, the same errors).

use ::url::{Host, ParseError, Url};

/// The default protocol port.
pub const DEFAULT_PORT: u16 = 4770;

/// A parsed server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    /// A name or an IP address; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
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

    /// Parses `chute://host[:port][,host[:port]...]`: a list of servers to connect to (in
    /// order, or shuffled), the scheme once at the front. A single address is a list of one;
    /// each address follows [`ServerUrl::parse`]'s rules.
    pub fn parse_list(url: &str) -> Result<Vec<ServerUrl>, String> {
        let (scheme, list) = match url.split_once("://") {
            Some((scheme, list)) => (format!("{scheme}://"), list),
            None => (String::new(), url),
        };
        if !list.contains(',') {
            return Ok(vec![ServerUrl::parse(url)?]);
        }
        let mut servers = Vec::new();
        for address in list.split(',') {
            if address.is_empty() {
                return Err(format!("{url:?} has an empty address in its list"));
            }
            servers.push(ServerUrl::parse(&format!("{scheme}{address}"))?);
        }
        Ok(servers)
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
            return Err(format!("{url:?}: credentials in URLs are not supported yet"));
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
        assert!(credentials.contains("credentials in URLs are not supported yet"), "{credentials}");
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
        assert!(refused("chute://u:p@a,b").contains("credentials"));
    }

    /// Another scheme with its own default port, and a path kept for the caller.
    #[test]
    fn other_schemes_and_paths() {
        let (server, path) = ServerUrl::parse_with_path("http://[::1]/a/b/", "http", 80).unwrap();
        assert_eq!((server.authority(), path.as_str()), ("[::1]:80".to_string(), "/a/b"));
        let (server, path) = ServerUrl::parse_with_path("h:81", "http", 80).unwrap();
        assert_eq!((server.authority(), path.as_str()), ("h:81".to_string(), ""));
    }
}
