//! The HTTP side of the admin endpoint's answers: text and JSON responses, JSON errors, and
//! reading a request's query and body within limits.

use std::str::FromStr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub type Body = Full<Bytes>;

/// The most a request body may take (queue options are a few hundred bytes); a larger one is
/// answered `413` without reading the rest.
pub const ADMIN_REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;

/// A refused request: its HTTP status, a code (the chute error label where one applies, as
/// `no-such-queue`) and a message, sent as `{"error": {"code": ..., "message": ...}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Headers the answer carries besides the body's (`WWW-Authenticate` on a `401`).
    pub headers: Vec<(&'static str, &'static str)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// `400 invalid-argument`: a parameter or body the endpoint cannot use.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-argument", message)
    }

    /// `503 unavailable`: the broker task is not serving or did not answer.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn into_response(self) -> Response<Body> {
        let error = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = json(self.status, &error);
        for (name, value) in self.headers {
            response.headers_mut().insert(name, hyper::header::HeaderValue::from_static(value));
        }
        response
    }
}

/// A handler's outcome: a response, or why not.
pub type Answer = Result<Response<Body>, ApiError>;

/// `line` and a newline, as plain text.
pub fn text(status: StatusCode, line: &str) -> Response<Body> {
    body(status, "text/plain; charset=utf-8", format!("{line}\n"))
}

/// `value` as JSON, and a newline.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    body(status, "application/json", format!("{value}\n"))
}

pub fn body(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The whole request body, at most [`ADMIN_REQUEST_BODY_BYTES_MAX`]. How long the client may
/// take to send it is bounded by the connection's lifetime.
pub async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, ADMIN_REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the request body is over {ADMIN_REQUEST_BODY_BYTES_MAX} bytes"),
        )),
        Err(error) => Err(ApiError::bad_request(format!("cannot read the request body: {error}"))),
    }
}

/// A request's query parameters, each named at most once and each one the endpoint knows.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `query` (`a=1&b=x%20y`), refusing a parameter not in `known` or given twice.
    pub fn parse(query: Option<&str>, known: &[&str]) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if !known.contains(&name.as_ref()) {
                let expected = match known {
                    [] => "this endpoint takes none".to_string(),
                    _ => format!("this endpoint takes {}", known.join(", ")),
                };
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {name:?}; {expected}"
                )));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(ApiError::bad_request(format!("parameter {name:?} is given twice")));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Query { pairs })
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(seen, _)| seen == name).map(|(_, value)| value.as_str())
    }

    /// `true` or `false`; absent is `false`.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.text(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => {
                Err(ApiError::bad_request(format!("{name} must be true or false, not {other:?}")))
            }
        }
    }

    /// A number of type `T`, if given.
    pub fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        let Some(text) = self.text(name) else { return Ok(None) };
        text.parse().map(Some).map_err(|error| {
            ApiError::bad_request(format!("{name} must be a whole number: {text:?}: {error}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_decode_and_are_checked() {
        let query = Query::parse(
            Some("reason=disk%20full+now&if_empty=true"),
            &["reason", "if_empty", "if_unused"],
        )
        .unwrap();
        assert_eq!(query.text("reason"), Some("disk full now"));
        assert_eq!(query.flag("if_empty"), Ok(true));
        assert_eq!(query.flag("if_unused"), Ok(false), "absent is false");
        assert_eq!(Query::parse(None, &[]).unwrap().text("x"), None);
    }

    #[test]
    fn bad_query_parameters_are_400_naming_them() {
        let unknown = Query::parse(Some("if_empt=true"), &["if_empty"]).unwrap_err();
        assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
        assert!(unknown.message.contains("\"if_empt\"") && unknown.message.contains("if_empty"));
        let none_taken = Query::parse(Some("x=1"), &[]).unwrap_err();
        assert!(none_taken.message.contains("takes none"), "{}", none_taken.message);
        let twice = Query::parse(Some("a=1&a=2"), &["a"]).unwrap_err();
        assert!(twice.message.contains("twice"));
        let query =
            Query::parse(Some("if_empty=yes&window_ms=-5"), &["if_empty", "window_ms"]).unwrap();
        assert!(query.flag("if_empty").unwrap_err().message.contains("true or false"));
        assert!(query.number::<u32>("window_ms").unwrap_err().message.contains("window_ms"));
    }

    #[test]
    fn errors_are_json_with_a_code_and_a_message() {
        let response = ApiError::bad_request("no").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    }
}
