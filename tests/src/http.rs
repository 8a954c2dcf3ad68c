//! Plain HTTP/1.1 requests to a server's admin endpoint, one connection each, spoken over a
//! TCP socket as any client would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A response: its status, headers (names in lower case) and body.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON; panics, showing the answer, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }

    /// The `code` of a JSON error answer.
    pub fn error_code(&self) -> String {
        let json = self.json();
        json["error"]["code"].as_str().unwrap_or_else(|| panic!("no error code: {self:?}")).into()
    }
}

/// Sends `method path` with `body` (if any) and reads the whole answer.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> HttpAnswer {
    http_with(addr, method, path, &[], body)
}

/// [`http`] with extra request headers (`Authorization`, ...).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpAnswer {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to admin");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send the request head");
    // A server that refuses the body (413) may answer before reading it; the answer counts.
    let _ = stream.write_all(body.unwrap_or_default());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an incomplete answer to {method} {path}: {response:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split(' ').nth(1)?.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    HttpAnswer { status: status.expect("a status line"), headers, body: body.to_string() }
}

pub fn get(addr: SocketAddr, path: &str) -> HttpAnswer {
    http(addr, "GET", path, None)
}
