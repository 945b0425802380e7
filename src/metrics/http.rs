//! The worker's HTTP: a request head read from bytes, the route it asks for (with the token
//! and loopback checks), and responses (pure). One request per connection
//! (`Connection: close`), which is how Prometheus scrapes anyway.

use super::expose::Format;

/// Most bytes of a request head; longer ones are refused (431).
pub const MAX_HEAD: usize = 8192;

#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub accept: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics(Format),
    Health,
    Ready,
    Dashboard(Range),
}

/// How far back the dashboard's charts look: `?range=day` (the default) or `?range=week`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
}

impl Range {
    fn parse(query: &str) -> Result<Range, Refusal> {
        let value = query.split('&').find_map(|kv| kv.strip_prefix("range="));
        match value {
            None | Some("day") => Ok(Range::Day),
            Some("week") => Ok(Range::Week),
            Some(_) => Err(Refusal { status: 400, message: "range is day or week" }),
        }
    }

    /// The window as a Postgres interval.
    pub fn interval(self) -> &'static str {
        match self {
            Range::Day => "1 day",
            Range::Week => "7 days",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Range::Day => "day",
            Range::Week => "week",
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: &'static str,
}

/// Whether `buf` holds a whole request head yet.
pub fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// Reads a request head (the request line and headers; a GET has no body).
pub fn parse(buf: &[u8]) -> Result<Request, Refusal> {
    let bad = Refusal { status: 400, message: "malformed request" };
    let text = std::str::from_utf8(buf).map_err(|_| Refusal { status: 400, message: "request head is not UTF-8" })?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut first = lines.next().ok_or(Refusal { status: 400, message: "empty request" })?.split(' ');
    let (method, target, version) = (first.next(), first.next(), first.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(bad);
    };
    if first.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(bad);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        accept: None,
        authorization: None,
    };
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(Refusal { status: 400, message: "malformed header" })?;
        if name.eq_ignore_ascii_case("accept") {
            req.accept = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            req.authorization = Some(value.trim().to_string());
        }
    }
    Ok(req)
}

/// Equal in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the request may see. With a token, every path needs `Authorization: Bearer <token>`;
/// without one, the dashboard (which shows business figures) is served to loopback clients
/// only.
pub fn route(req: &Request, token: Option<&str>, peer_loopback: bool) -> Result<Route, Refusal> {
    if req.method != "GET" && req.method != "HEAD" {
        return Err(Refusal { status: 405, message: "only GET and HEAD" });
    }
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let given = req.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        if !same_secret(given.trim().as_bytes(), token.as_bytes()) {
            return Err(Refusal { status: 401, message: "a valid bearer token is required" });
        }
    }
    let route = match req.path.as_str() {
        "/metrics" => Route::Metrics(Format::from_accept(req.accept.as_deref())),
        "/health" => Route::Health,
        "/ready" => Route::Ready,
        "/" | "/dashboard" => Route::Dashboard(Range::parse(&req.query)?),
        _ => return Err(Refusal { status: 404, message: "not found: try /metrics, /health, /ready or /dashboard" }),
    };
    if matches!(route, Route::Dashboard(_)) && token.is_none_or(str::is_empty) && !peer_loopback {
        return Err(Refusal {
            status: 403,
            message: "the dashboard is served to loopback clients only unless booking_engine.metrics_token is set",
        });
    }
    Ok(route)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response. HEAD gets the headers of the same response without its body.
pub fn response(status: u16, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n{}\r\n",
        reason(status),
        body.len(),
        if status == 401 { "WWW-Authenticate: Bearer\r\n" } else { "" },
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Request {
        parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_scrape_request_is_read() {
        let r = req("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text\r\nAuthorization: Bearer s3\r\n\r\n");
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.query, "x=1");
        assert_eq!(route(&r, Some("s3"), false), Ok(Route::Metrics(Format::OpenMetrics)));
    }

    #[test]
    fn malformed_heads_are_400() {
        for bad in ["", "GET\r\n\r\n", "GET /x\r\n\r\n", "GET x HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nNoColon\r\n\r\n"]
        {
            assert_eq!(parse(bad.as_bytes()).unwrap_err().status, 400, "{bad:?}");
        }
        assert_eq!(parse(&[0xff, 0xfe]).unwrap_err().status, 400);
        assert!(head_complete(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"));
    }

    #[test]
    fn the_token_is_required_when_set() {
        let r = req("GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(route(&r, Some("s3"), true).unwrap_err().status, 401);
        let wrong = req("GET /metrics HTTP/1.1\r\nAuthorization: Bearer s4\r\n\r\n");
        assert_eq!(route(&wrong, Some("s3"), true).unwrap_err().status, 401);
        assert_eq!(route(&r, None, false), Ok(Route::Metrics(Format::Prometheus)));
        assert_eq!(route(&r, Some(""), false), Ok(Route::Metrics(Format::Prometheus)), "empty: no token");
    }

    #[test]
    fn the_dashboard_without_a_token_is_loopback_only() {
        let r = req("GET / HTTP/1.1\r\n\r\n");
        assert_eq!(route(&r, None, true), Ok(Route::Dashboard(Range::Day)));
        assert_eq!(route(&r, None, false).unwrap_err().status, 403);
        let with = req("GET /dashboard HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n");
        assert_eq!(route(&with, Some("t"), false), Ok(Route::Dashboard(Range::Day)));
    }

    #[test]
    fn the_dashboard_range_is_a_day_or_a_week() {
        let week = req("GET /dashboard?range=week HTTP/1.1\r\n\r\n");
        assert_eq!(route(&week, None, true), Ok(Route::Dashboard(Range::Week)));
        assert_eq!(Range::Week.interval(), "7 days");
        let bad = req("GET /dashboard?range=year HTTP/1.1\r\n\r\n");
        assert_eq!(route(&bad, None, true).unwrap_err().status, 400);
    }

    #[test]
    fn other_methods_and_paths_are_refused() {
        assert_eq!(route(&req("POST /metrics HTTP/1.1\r\n\r\n"), None, true).unwrap_err().status, 405);
        assert_eq!(route(&req("GET /nope HTTP/1.1\r\n\r\n"), None, true).unwrap_err().status, 404);
        assert_eq!(route(&req("HEAD /ready HTTP/1.1\r\n\r\n"), None, true), Ok(Route::Ready));
    }

    #[test]
    fn responses_carry_length_and_head_has_no_body() {
        let r = String::from_utf8(response(200, "text/plain", b"hello", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 5\r\n") && r.ends_with("\r\n\r\nhello"));
        let h = String::from_utf8(response(200, "text/plain", b"hello", true)).unwrap();
        assert!(h.contains("Content-Length: 5\r\n") && h.ends_with("\r\n\r\n"));
        assert!(String::from_utf8(response(401, "text/plain", b"", false))
            .unwrap()
            .contains("WWW-Authenticate: Bearer"));
    }
}
