//! The JSON API the page (and scripts) use: `POST /api/score`, plus the bearer-token check.
//!
//! Every error is JSON — `{"error": "...", "details": [{"row", "column", "value", "reason"}]}` —
//! with a message a person can act on.

use super::WebState;
use crate::row::csv::CsvError;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

/// Limits on the HTTP API.
#[derive(Debug, Clone)]
pub struct WebLimits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most rows one request may score.
    pub max_rows: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Longest an upload may send nothing before it is answered 408 (its slot freed).
    pub upload_idle: Duration,
    /// Longest a whole upload may take to arrive before it is answered 408 (its slot freed).
    pub upload_timeout: Duration,
    /// Scoring requests served at once; more are refused with 503 (load shedding).
    pub max_concurrent: usize,
    /// Bearer token required on `/api/*` when set.
    pub token: Option<crate::secret::Secret>,
    /// The host names a request may be addressed to besides `localhost` and IP addresses
    /// (against DNS rebinding); `None` for any name.
    pub allowed_hosts: Option<std::sync::Arc<[String]>>,
}

/// `[web]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// HTTP listen address.
    pub listen: String,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most rows per scoring request.
    pub max_rows: usize,
    /// Request timeout in milliseconds.
    pub request_timeout_ms: u64,
    /// Longest pause in an upload's body, in milliseconds.
    pub upload_idle_ms: u64,
    /// Longest an upload's whole body may take to arrive, in milliseconds.
    pub upload_timeout_ms: u64,
    /// Scoring requests at once.
    pub max_concurrent: usize,
    /// Bearer token for /api/*; empty for none.
    pub token: String,
    /// File holding the bearer token (instead of `token`); empty for none.
    #[serde(default)]
    pub token_file: String,
    /// Host names the server may be reached by besides `localhost` and IP addresses, separated
    /// by commas; `*` for any. Empty: none on a loopback `listen` address, any on another.
    #[serde(default)]
    pub allowed_hosts: String,
}

impl WebLimits {
    /// Checks `[web]`'s limits and reads its token (from `token` or `token_file`).
    pub fn from_section(web: &WebSection) -> Result<WebLimits, String> {
        if web.max_body_bytes == 0
            || web.max_rows == 0
            || web.max_concurrent == 0
            || web.request_timeout_ms == 0
            || web.upload_idle_ms == 0
            || web.upload_timeout_ms == 0
        {
            return Err(
                "web.max_body_bytes, web.max_rows, web.max_concurrent, web.request_timeout_ms, web.upload_idle_ms and web.upload_timeout_ms must all be above 0"
                    .into(),
            );
        }
        if web.upload_timeout_ms < web.upload_idle_ms {
            return Err(format!(
                "web.upload_timeout_ms ({}) is below web.upload_idle_ms ({}); the whole upload cannot take less time than one pause in it",
                web.upload_timeout_ms, web.upload_idle_ms
            ));
        }
        let token = match (web.token.trim(), web.token_file.trim()) {
            (t, "") => Some(t.to_string()).filter(|t| !t.is_empty()),
            ("", file) => Some(crate::secret::read_secret("web.token_file", file)?),
            _ => {
                return Err(
                    "web.token and web.token_file are both set; keep one (the file keeps the token out of the configuration)"
                        .into(),
                )
            }
        };
        // A client sends it in an HTTP header, which faultline reads as visible ASCII and
        // spaces: a token with other characters could never be matched, and every request would
        // get a 401.
        if let Some(bad) = token
            .as_deref()
            .and_then(|t| t.chars().find(|&c| !(c.is_ascii_graphic() || c == ' ')))
        {
            return Err(format!(
                "web.token holds {bad:?}; a token travels in an HTTP header, so use visible ASCII only (letters, digits, punctuation and spaces)"
            ));
        }
        let allowed_hosts = allowed_hosts(web)?;
        Ok(WebLimits {
            max_body_bytes: web.max_body_bytes,
            max_rows: web.max_rows,
            request_timeout: Duration::from_millis(web.request_timeout_ms),
            upload_idle: Duration::from_millis(web.upload_idle_ms),
            upload_timeout: Duration::from_millis(web.upload_timeout_ms),
            max_concurrent: web.max_concurrent,
            token: token.map(crate::secret::Secret::from),
            allowed_hosts,
        })
    }
}

/// `[web] allowed_hosts` as the check takes it: `None` for any name.
fn allowed_hosts(web: &WebSection) -> Result<Option<std::sync::Arc<[String]>>, String> {
    let mut names = Vec::new();
    for name in web.allowed_hosts.split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        if name == "*" {
            return Ok(None);
        }
        let plain = name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_');
        if !plain {
            return Err(format!(
                "web.allowed_hosts holds \"{name}\"; list host names without a scheme or port, \
                 separated by commas (such as \"fab-box,fab-box.plant.example\"), or \"*\" for any"
            ));
        }
        names.push(name.trim_end_matches('.').to_ascii_lowercase());
    }
    let loopback = web
        .listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    Ok((loopback || !names.is_empty()).then(|| names.into()))
}

/// Whether a request addressed to `host` (its `Host` header: a name or address, and perhaps a
/// port) may be answered. An IP address or `localhost` always may: a page that DNS rebinding
/// points at faultline's address sends its own name, which must be listed.
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 address, perhaps with a zone and a port.
        let address = rest.split(']').next().unwrap_or_default();
        let address = address.split('%').next().unwrap_or_default();
        return address.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed.contains(&name)
}

/// Refuses a request addressed to a host name faultline is not known by (`[web]
/// allowed_hosts`): a page of another site that DNS rebinding points at faultline's address is
/// same-origin to the browser, so neither `Sec-Fetch-Site` nor CORS stops it; its `Host` gives
/// it away. Every route runs it.
pub async fn check_host(
    State(s): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(allowed) = &s.limits.allowed_hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("\u{fffd}"))
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        // A request without a host is not a browser's (browsers always send one).
        if let Some(host) = host.filter(|h| !host_allowed(allowed, h)) {
            let shown: String = host.chars().take(100).collect();
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "faultline is not known as \"{shown}\" (the request's Host): it answers \
                     localhost, IP addresses and the names in [web] allowed_hosts, so that \
                     another site's page cannot reach it by DNS rebinding; add the name there"
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

impl Default for WebLimits {
    fn default() -> Self {
        WebLimits {
            max_body_bytes: 64 * 1024 * 1024,
            max_rows: 100_000,
            request_timeout: Duration::from_secs(30),
            upload_idle: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(600),
            max_concurrent: 4,
            token: None,
            // As the default configuration has it (a loopback address): no names listed.
            allowed_hosts: Some(std::sync::Arc::from([])),
        }
    }
}

/// One problem with the input, located.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Detail {
    /// 1-based data row, when known.
    pub row: Option<usize>,
    /// Column (or JSON key), when known.
    pub column: Option<String>,
    /// The offending value, when known.
    pub value: Option<String>,
    /// Why it is refused.
    pub reason: String,
}

/// An API error: a status, a sentence, and the located details.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, as a sentence.
    pub error: String,
    /// Where, when the input is at fault.
    pub details: Vec<Detail>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            details: vec![],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "details": self.details})),
        )
            .into_response()
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    /// A query string that does not parse: a JSON error like every other (axum's own is text).
    fn from(e: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<CsvError> for ApiError {
    fn from(e: CsvError) -> ApiError {
        let error = e.to_string();
        let (status, details) = match &e {
            CsvError::BadCell {
                row,
                column,
                value,
                reason,
                ..
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                vec![Detail {
                    row: Some(*row),
                    column: Some(column.clone()),
                    value: Some(value.clone()),
                    reason: reason.to_string(),
                }],
            ),
            CsvError::MissingColumns(cols)
            | CsvError::UnknownColumns(cols)
            | CsvError::DuplicateColumns(cols) => {
                let reason = match &e {
                    CsvError::MissingColumns(_) => "missing",
                    CsvError::UnknownColumns(_) => "unknown column",
                    _ => "duplicate column",
                };
                (
                    StatusCode::BAD_REQUEST,
                    cols.iter()
                        .map(|c| Detail {
                            row: None,
                            column: Some(c.clone()),
                            value: None,
                            reason: reason.into(),
                        })
                        .collect(),
                )
            }
            CsvError::Ragged { row, .. } => (
                StatusCode::BAD_REQUEST,
                vec![Detail {
                    row: Some(*row),
                    column: None,
                    value: None,
                    reason: error.clone(),
                }],
            ),
            CsvError::Io(_) => (StatusCode::BAD_REQUEST, vec![]),
            _ => (StatusCode::BAD_REQUEST, vec![]),
        };
        ApiError {
            status,
            error,
            details,
        }
    }
}

/// Checks `Authorization: Bearer <token>` when a token is configured (constant-time compare).
pub fn authorize(state: &WebState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.limits.token else {
        return Ok(());
    };
    // The scheme in any case and blanks around the token, as RFC 9110 and 6750 allow.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this faultline requires a token: send the header 'Authorization: Bearer <token>' ([web] token)",
        ))
    }
}

/// The API's token check as a layer: every `/api/` route runs it before its handler (and before
/// an upload's body is read), so no handler can forget it.
pub async fn require_token(
    State(s): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(e) = same_site_only(&request) {
        return e.into_response();
    }
    match authorize(&s, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"faultline\""),
                );
            }
            response
        }
    }
}

/// Refuses a request that changes something when a browser says a page of another origin sent it
/// (`Sec-Fetch-Site: cross-site`, or `same-site`: another port of the same host, or a sibling
/// subdomain). Without a token, `POST /api/model/promote` and `/reload` take
/// an empty body, which any page open in the operator's browser may send to faultline's address
/// without asking first; scripts and faultline's own page are not affected.
fn same_site_only(request: &axum::extract::Request) -> Result<(), ApiError> {
    let reads = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let cross_site = request.headers().get("sec-fetch-site").is_some_and(|v| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"cross-site") || v.eq_ignore_ascii_case(b"same-site")
    });
    if cross_site && !reads {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "another site's page may not change faultline (Sec-Fetch-Site: cross-site or \
             same-site); use faultline's own page or a script",
        ));
    }
    Ok(())
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for (i, &x) in b.iter().enumerate() {
        diff |= x ^ a.get(i).copied().unwrap_or(0);
    }
    diff == 0 && a.len() == b.len()
}

/// `GET /api/limits`: what one upload may hold, so that the page refuses a file the daemon would
/// refuse before sending it, naming the setting.
pub async fn limits(State(s): State<WebState>) -> Response {
    Json(json!({
        "max_body_bytes": s.limits.max_body_bytes,
        "max_rows": s.limits.max_rows,
        "allow_extra_columns": s.allow_extra_columns,
    }))
    .into_response()
}

/// The answer to a body over `[web] max_body_bytes`.
pub(crate) fn too_large(s: &WebState) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is larger than the limit of {} ([web] max_body_bytes); split the file",
            size(s.limits.max_body_bytes)
        ),
    )
}

/// What an upload (rows or labels) is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    /// `text/csv` or `application/csv`.
    Csv,
    /// `application/json`.
    Json,
}

/// The request's media type, from its Content-Type without parameters (`text/csv;
/// charset=utf-8` is CSV); any other, lower-cased (empty when none is given), as the error.
pub(crate) fn media(headers: &axum::http::HeaderMap) -> Result<Media, String> {
    let kind = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match kind.as_str() {
        "text/csv" | "application/csv" => Ok(Media::Csv),
        "application/json" => Ok(Media::Json),
        _ => Err(kind),
    }
}

/// A byte count as people read it: whole MiB when it is one, else KiB or bytes (a limit of
/// 500,000 bytes is not "0 MiB").
fn size(bytes: usize) -> String {
    const MIB: usize = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB ({bytes} bytes)", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// Runs before an upload's body is read (after [`require_token`]): refuses a request whose
/// declared `Content-Length` is over the limit at once, instead of waiting for a body that may
/// never come.
pub async fn guard_upload(
    State(s): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if declared_too_long(&s, request.headers()) {
        return too_large(&s).into_response();
    }
    next.run(request).await
}

/// Whether the request declares a body longer than `[web] max_body_bytes`.
fn declared_too_long(s: &WebState, headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > s.limits.max_body_bytes as u64)
}

/// Reads and drops what a request still sends once its answer is decided, then answers.
///
/// hyper closes a connection whose request body was not read to its end, and a client still
/// sending (a 30 MB upload refused for its token, its type or a busy server) then gets a broken
/// pipe or a reset connection instead of the answer. So the body is lent to the handler, and
/// what it left unread is read here, within `[web] max_body_bytes` and `upload_idle_ms`, and
/// for at most [`DRAIN_AT_MOST`] (or `upload_timeout_ms` if shorter); past them the connection
/// closes as before. Any client may make the server read that much of what it sends, as it
/// could before by uploading. Not after 408 or 413, which refuse to read more; not for a body
/// declared longer than `max_body_bytes`, which would be cut off anyway; not while work the
/// handler left running still holds the body; and not when the client asked first (`Expect:
/// 100-continue`, as hyper reads it) and nothing asked for the body, since it has not sent it.
pub async fn finish_reading(
    State(s): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body::Body as _;
    let (parts, body) = request.into_parts();
    if body.is_end_stream() || declared_too_long(&s, &parts.headers) {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    // hyper waits to be asked for the body only on HTTP/1.1 and later, and reads the last
    // Expect header.
    let asked_first = parts.version >= axum::http::Version::HTTP_11
        && parts
            .headers
            .get_all(header::EXPECT)
            .iter()
            .next_back()
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let lent = std::sync::Arc::new(Lent {
        body: std::sync::Mutex::new(body),
        asked_for: std::sync::atomic::AtomicBool::new(false),
    });
    let request =
        axum::extract::Request::from_parts(parts, axum::body::Body::new(Lending(lent.clone())));
    let response = next.run(request).await;
    if matches!(
        response.status(),
        StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE
    ) {
        return response;
    }
    let Ok(lent) = std::sync::Arc::try_unwrap(lent) else {
        return response;
    };
    if asked_first && !lent.asked_for.into_inner() {
        return response;
    }
    let body = lent
        .body
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !body.is_end_stream() {
        let limits = WebLimits {
            upload_timeout: s.limits.upload_timeout.min(DRAIN_AT_MOST),
            ..s.limits.clone()
        };
        let mut rest = super::score::Upload::new(body, &limits);
        while let Ok(Some(_)) = rest.next(&s).await {}
    }
    response
}

/// The longest [`finish_reading`] reads what a request still sends after its answer is decided.
pub const DRAIN_AT_MOST: Duration = Duration::from_secs(30);

/// A request's body while its handler reads it, with whether it has asked for any of it.
struct Lent {
    body: std::sync::Mutex<axum::body::Body>,
    asked_for: std::sync::atomic::AtomicBool,
}

/// The handler's side of a [`Lent`] body.
struct Lending(std::sync::Arc<Lent>);

impl Lending {
    fn body(&self) -> std::sync::MutexGuard<'_, axum::body::Body> {
        self.0
            .body
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl http_body::Body for Lending {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .asked_for
            .store(true, std::sync::atomic::Ordering::Relaxed);
        std::pin::Pin::new(&mut *self.body()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body().is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body().size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_a_header_cannot_carry_is_refused_at_start() {
        let with = |token: &str| WebSection {
            token: token.into(),
            ..section("127.0.0.1:8080", "")
        };
        for bad in ["cl\u{e9}-secr\u{e8}te", "tab\tbed", "zero\u{200b}width"] {
            let e = WebLimits::from_section(&with(bad)).unwrap_err();
            assert!(
                e.contains("web.token holds") && e.contains("visible ASCII"),
                "{e}"
            );
        }
        assert!(WebLimits::from_section(&with("s3cret-T0ken_!~")).is_ok());
        // Spaces inside pass (a header carries them, and such tokens worked before).
        assert!(WebLimits::from_section(&with("two words")).is_ok());
    }

    #[test]
    fn the_upload_limit_is_said_in_units_that_do_not_round_it_away() {
        assert_eq!(size(64 << 20), "64 MiB");
        assert_eq!(size(500_000), "488.3 KiB (500000 bytes)");
        assert_eq!(size(100), "100 bytes");
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret1", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    fn section(listen: &str, hosts: &str) -> WebSection {
        WebSection {
            listen: listen.into(),
            max_body_bytes: 1,
            max_rows: 1,
            request_timeout_ms: 1,
            upload_idle_ms: 1,
            upload_timeout_ms: 1,
            max_concurrent: 1,
            token: String::new(),
            token_file: String::new(),
            allowed_hosts: hosts.into(),
        }
    }

    #[test]
    fn host_names_are_checked_on_a_loopback_address_or_when_listed() {
        let names = |listen: &str, hosts: &str| {
            allowed_hosts(&section(listen, hosts)).map(|n| n.map(|n| n.to_vec()))
        };
        assert_eq!(names("127.0.0.1:8080", ""), Ok(Some(vec![])));
        assert_eq!(names("[::1]:8080", " "), Ok(Some(vec![])));
        assert_eq!(names("0.0.0.0:8080", ""), Ok(None));
        assert_eq!(names("127.0.0.1:8080", "fab-box, *"), Ok(None));
        assert_eq!(
            names("0.0.0.0:8080", "Fab-Box, fab-box.plant.example."),
            Ok(Some(vec!["fab-box".into(), "fab-box.plant.example".into()]))
        );
        for bad in ["http://fab-box", "fab-box:8080", "fab box"] {
            let e = names("127.0.0.1:8080", bad).unwrap_err();
            assert!(
                e.contains(bad) && e.contains("without a scheme or port"),
                "{e}"
            );
        }
        let listed = ["fab-box".to_string()];
        for ok in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "a.localhost:1",
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "[2001:db8::1]",
            "[fe80::1%25eth0]:8080",
            "fab-box",
            "Fab-Box:8080",
        ] {
            assert!(host_allowed(&listed, ok), "{ok}");
        }
        for refused in [
            "rebound.example",
            "rebound.example:8080",
            "localhost.rebound.example",
            "fab-box.rebound.example",
            "127.0.0.1.nip.io",
            "[x].rebound.example",
            "",
        ] {
            assert!(!host_allowed(&listed, refused), "{refused}");
        }
    }
}
