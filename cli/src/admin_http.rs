//! The server's admin endpoint over plain HTTP (ureq; no TLS, no compression): its address
//! (`--admin-url`), and the requests `chute admin`, `chute queue alter` and `chute bench`
//! make. The JSON API's refusals (`{"error": {"code": ..., "message": ...}}`) become one line,
//! `MESSAGE (CODE)`.

use std::time::Duration;

use chute_client::ServerUrl;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Where `chuted` serves its admin endpoint unless told otherwise.
pub const ADMIN_URL_DEFAULT: &str = "http://127.0.0.1:4771";

const HTTP_PORT: u16 = 80;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than the server's own wait for a command (20 s, which may include an fsync).
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer larger than this is not one we understand (a metrics page or a connection list
/// names every queue or connection, so allow for many).
const ANSWER_BYTES_MAX: u64 = 64 << 20;

/// What a path segment may hold as is; everything else is percent-encoded (a queue name's `/`
/// and `:` included, so a name is always one segment).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_');

/// Where the admin endpoint is: `http://host:port`, with an optional path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminEndpoint {
    server: ServerUrl,
    prefix: String,
    /// The `Authorization` header, once a server has users (`--admin-token`, or
    /// `--admin-user` with `CHUTE_ADMIN_PASSWORD`).
    authorization: Option<String>,
}

/// An API request: the method, with its body where it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Get,
    Put(String),
    Post,
    Delete,
}

impl AdminEndpoint {
    /// Parses `--admin-url` (by the client's own address parser, so IPv6 literals and errors
    /// read as for `--url`); `off` means "no admin endpoint".
    pub fn parse(url: &str) -> Result<Option<AdminEndpoint>, String> {
        if url == "off" {
            return Ok(None);
        }
        let (server, prefix) = ServerUrl::parse_with_path(url, "http", HTTP_PORT)
            .map_err(|e| format!("--admin-url: {e} (or off)"))?;
        Ok(Some(AdminEndpoint { server, prefix, authorization: None }))
    }

    /// Sends `Authorization` with every request: a bearer token, or HTTP basic.
    pub fn with_credentials(mut self, credentials: AdminCredentials) -> AdminEndpoint {
        use base64::Engine;
        self.authorization = match credentials {
            AdminCredentials::None => None,
            AdminCredentials::Token(token) => Some(format!("Bearer {token}")),
            AdminCredentials::Basic { user, password } => {
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {pair}"))
            }
        };
        self
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    /// Parses `--admin-url` for a command that cannot do without the endpoint.
    pub fn parse_required(url: &str) -> Result<AdminEndpoint, String> {
        match url {
            "off" => Err("--admin-url: this command needs the admin endpoint, not off".into()),
            url => Ok(AdminEndpoint::parse(url)?.expect("only off is None")),
        }
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.server.authority(), self.prefix)
    }

    /// The body of a `200` answer to a GET of `path`, as text.
    pub fn get_text(&self, path: &str) -> Result<String, String> {
        let url = self.url(path);
        let mut response = self
            .authorize(agent(true).get(&url))
            .header("Accept", "text/plain")
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        read_body(&mut response).map_err(|e| format!("{url}: {e}"))
    }

    /// Sends an API request and returns the JSON answer, or the server's refusal as one line.
    pub fn call(&self, request: Request, path: &str) -> Result<Value, String> {
        let url = self.url(path);
        let agent = agent(false);
        let sent = match request {
            Request::Get => {
                self.authorize(agent.get(&url)).header("Accept", "application/json").call()
            }
            Request::Delete => self.authorize(agent.delete(&url)).call(),
            Request::Post => self.authorize(agent.post(&url)).send_empty(),
            Request::Put(body) => self
                .authorize(agent.put(&url))
                .header("Content-Type", "application/json")
                .send(body),
        };
        let mut response =
            sent.map_err(|e| format!("cannot reach the admin endpoint at {url}: {e}"))?;
        let status = response.status().as_u16();
        let body = read_body(&mut response).map_err(|e| format!("{url}: {e}"))?;
        answer(status, &body).map_err(|refusal| match refusal {
            Refusal::Api(line) => line,
            Refusal::Http(line) => format!("{url}: {line}"),
        })
    }
}

/// Who `chute` says it is to the admin endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCredentials {
    None,
    Token(String),
    Basic { user: String, password: String },
}

/// A path segment, percent-encoded: `a/b` is `a%2Fb`.
pub fn segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// `?name=value&...`, encoded; empty without parameters.
pub fn query(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut query = form_urlencoded::Serializer::for_suffix(String::from("?"), 1);
    query.extend_pairs(pairs);
    query.finish()
}

fn agent(status_as_error: bool) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(IO_TIMEOUT))
        // The endpoint is the broker's, usually on loopback: never through an HTTP_PROXY.
        .proxy(None)
        .http_status_as_error(status_as_error)
        .build()
        .into()
}

fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> Result<String, ureq::Error> {
    response.body_mut().with_config().limit(ANSWER_BYTES_MAX).read_to_string()
}

/// Why an answer is not a success.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The API's JSON error: `MESSAGE (CODE)`.
    Api(String),
    /// Something else answered: the status and the start of what it said.
    Http(String),
}

/// The JSON of a `2xx` answer, or why not.
fn answer(status: u16, body: &str) -> Result<Value, Refusal> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    if (200..300).contains(&status) {
        return json.ok_or_else(|| {
            Refusal::Http(format!("HTTP {status} without JSON: {}", first_line(body)))
        });
    }
    let error = json.as_ref().and_then(|json| json.get("error"));
    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str);
    let code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
    match (message, code) {
        (Some(message), Some(code)) => Err(Refusal::Api(format!("{message} ({code})"))),
        _ => Err(Refusal::Http(format!("HTTP {status}: {}", first_line(body)))),
    }
}

fn first_line(body: &str) -> &str {
    body.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::test_server::serve_once;
    use super::*;

    #[test]
    fn admin_urls() {
        let at = |host: &str, port, prefix: &str| {
            let server = ServerUrl { host: host.into(), port };
            Ok(Some(AdminEndpoint { server, prefix: prefix.into(), authorization: None }))
        };
        assert_eq!(AdminEndpoint::parse("http://127.0.0.1:4771"), at("127.0.0.1", 4771, ""));
        assert_eq!(AdminEndpoint::parse("http://localhost:9/chute/"), at("localhost", 9, "/chute"));
        assert_eq!(AdminEndpoint::parse("http://[::1]:4771"), at("::1", 4771, ""));
        assert_eq!(AdminEndpoint::parse("http://[::1]"), at("::1", 80, ""));
        assert_eq!(AdminEndpoint::parse("http://example"), at("example", 80, ""));
        assert_eq!(AdminEndpoint::parse("127.0.0.1:4771"), at("127.0.0.1", 4771, ""));
        assert_eq!(AdminEndpoint::parse("off"), Ok(None));
        let refusal = |url: &str| AdminEndpoint::parse(url).unwrap_err();
        assert!(
            refusal("https://x:1").contains("unsupported scheme"),
            "{}",
            refusal("https://x:1")
        );
        assert!(refusal("http://:1").contains("no host"), "{}", refusal("http://:1"));
        assert!(refusal("http://x:y").contains("bad port"), "{}", refusal("http://x:y"));
        assert!(refusal("http://u:p@x:1").contains("credentials"), "{}", refusal("http://u:p@x:1"));
        assert!(refusal("http://x:1/m?q").contains("query"));
        let endpoint = AdminEndpoint::parse("http://[::1]:4771/x").unwrap().unwrap();
        assert_eq!(endpoint.url("/metrics"), "http://[::1]:4771/x/metrics");
        assert!(AdminEndpoint::parse_required("off").unwrap_err().contains("needs the admin"));
    }

    /// A queue name is one path segment whatever it holds; a reason is query-encoded.
    #[test]
    fn names_and_parameters_are_encoded() {
        assert_eq!(segment("orders.eu-west_1"), "orders.eu-west_1");
        assert_eq!(segment("a/b:c"), "a%2Fb%3Ac");
        assert_eq!(query(&[]), "");
        assert_eq!(
            query(&[("reason", "disk full & more"), ("x", "1")]),
            "?reason=disk+full+%26+more&x=1"
        );
    }

    /// The API's errors are one line with the server's message and code; anything else names
    /// the HTTP status.
    #[test]
    fn answers_and_refusals() {
        assert_eq!(answer(201, r#"{"created": true}"#), Ok(serde_json::json!({"created": true})));
        let api =
            r#"{"error": {"code": "no-such-queue", "message": "queue \"q\" does not exist"}}"#;
        assert_eq!(
            answer(404, api),
            Err(Refusal::Api("queue \"q\" does not exist (no-such-queue)".into()))
        );
        assert_eq!(
            answer(502, "Bad Gateway\nproxy"),
            Err(Refusal::Http("HTTP 502: Bad Gateway".into()))
        );
        assert_eq!(answer(200, "ok"), Err(Refusal::Http("HTTP 200 without JSON: ok".into())));
    }

    /// A PUT carries its JSON body, and an error answer's body is read, not just its status.
    #[test]
    fn a_put_sends_its_body_and_reads_the_refusal() {
        let body = r#"{"error":{"code":"queue-in-use","message":"queue \"q\" holds 3 messages"}}"#;
        let response = format!(
            "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (endpoint, server) = serve_once(response);
        let refusal =
            endpoint.call(Request::Put("{\"ttl_ms\":5}".into()), "/api/queues/q").unwrap_err();
        assert_eq!(refusal, "queue \"q\" holds 3 messages (queue-in-use)");
        let request = server.join().unwrap();
        assert!(request.starts_with("PUT /api/queues/q HTTP/1.1"), "{request}");
        assert!(request.ends_with("{\"ttl_ms\":5}"), "{request}");
    }

    #[test]
    fn an_unreachable_endpoint_is_an_error_not_a_hang() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = AdminEndpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap().unwrap();
        let error = endpoint.call(Request::Get, "/api/overview").unwrap_err();
        assert!(
            error.starts_with("cannot reach the admin endpoint at http://127.0.0.1:"),
            "{error}"
        );
    }
}

/// A one-shot HTTP server for the tests of the endpoint's users.
#[cfg(test)]
pub mod test_server {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::AdminEndpoint;

    /// Serves one canned HTTP response on a loopback port; returns the endpoint and the
    /// request the server saw.
    pub fn serve_once(response: String) -> (AdminEndpoint, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(&mut stream);
            stream.write_all(response.as_bytes()).unwrap();
            request
        });
        let endpoint = AdminEndpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap().unwrap();
        (endpoint, server)
    }

    /// A request's head and as much body as its `Content-Length` says.
    fn read_request(stream: &mut std::net::TcpStream) -> String {
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).unwrap();
            request.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&request).into_owned();
            if n == 0 {
                return text;
            }
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase().strip_prefix("content-length: ")?.parse().ok()
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return text;
                }
            }
        }
    }
}
