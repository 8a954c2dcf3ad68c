//! `chute://host[:port]` addresses.

/// The default protocol port.
pub const DEFAULT_PORT: u16 = 4770;

/// A parsed server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    /// Parses `chute://host[:port]`; a bare `host[:port]` is accepted too.
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let rest = match url.split_once("://") {
            Some(("chute", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!("unsupported scheme {scheme:?} in {url:?}; use chute://"))
            }
            None => url,
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(format!("{url:?} is not of the form chute://host[:port]"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| format!("bad port in {url:?}"))?;
        Ok(ServerUrl { host: host.to_string(), port })
    }

    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, port.parse().ok()?)),
            None if after.is_empty() => Some((host, DEFAULT_PORT)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, DEFAULT_PORT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let url = ServerUrl::parse("chute://127.0.0.1:4771").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 4771));
        assert_eq!(ServerUrl::parse("chute://example.com").unwrap().port, DEFAULT_PORT);
        assert_eq!(ServerUrl::parse("localhost:9").unwrap().port, 9);
        let v6 = ServerUrl::parse("chute://[::1]:5").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.authority()), ("::1", 5, "[::1]:5".to_string()));
    }

    #[test]
    fn refuses_bad_urls() {
        assert!(ServerUrl::parse("http://x").unwrap_err().contains("unsupported scheme"));
        assert!(ServerUrl::parse("chute://x:notaport").is_err());
        assert!(ServerUrl::parse("chute://").is_err());
        assert!(ServerUrl::parse("chute://x/y").is_err());
    }
}
