//! The page: five static files compiled into the binary (no build step, no CDN), served with a
//! Content-Security-Policy that allows no inline script and nothing from elsewhere.
//!
//! Only these fixed routes exist, so there is no path to traverse.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The page.
const INDEX_HTML: &str = include_str!("static/index.html");
/// Its script.
const APP_JS: &str = include_str!("static/app.js");
/// The live-quality panel's script (labels upload, shadow promotion).
const QUALITY_JS: &str = include_str!("static/quality.js");
/// The explanation view's script (a wafer's contributions as a chart).
const EXPLAIN_JS: &str = include_str!("static/explain.js");
/// Its styles.
const STYLE_CSS: &str = include_str!("static/style.css");

/// The policy for every response: scripts, styles and requests only from this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `GET /`
pub async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

/// `GET /app.js`
pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

/// `GET /quality.js`
pub async fn quality_script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        QUALITY_JS,
    )
        .into_response()
}

/// `GET /explain.js`
pub async fn explain_script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        EXPLAIN_JS,
    )
        .into_response()
}

/// `GET /style.css`
pub async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}

/// Adds the security headers to every response.
pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
