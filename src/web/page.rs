//! The page: static files compiled into the binary (no build step, no bundler, no CDN), served
//! with a Content-Security-Policy that allows no inline script and nothing from elsewhere.
//!
//! `index.html` loads one ES module, `main.js`, which imports the others by relative path
//! (`./api.js`, …): one module per stage of the page's data flow (constants and shared state,
//! API access, model card and drift panel, cell rules and number formats, loading, the table,
//! the virtualized grid, scoring, download, errors and status), plus the live-quality panel
//! (`quality.js`) and the explanation view (`explain.js`). Modules must be served as
//! JavaScript (`text/javascript`), or the browser refuses them under `nosniff`.
//!
//! [`FILES`] lists every file with its path and content type; [`routes`] gives each one fixed
//! route and there is no directory serving, so there is no path to traverse. A new module needs
//! its line in [`FILES`] (tests/web.rs checks that every file of `static/` is served).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The content type of the page's modules.
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// Every file of the page: (path, content, content type). `/` is `index.html`.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        include_str!("static/index.html"),
        "text/html; charset=utf-8",
    ),
    (
        "/style.css",
        include_str!("static/style.css"),
        "text/css; charset=utf-8",
    ),
    // The entry module: wires the controls and starts the page.
    ("/main.js", include_str!("static/main.js"), JAVASCRIPT),
    // Constants, DOM handles, the state the modules share.
    ("/base.js", include_str!("static/base.js"), JAVASCRIPT),
    // The bearer token, JSON GETs, the CSV upload.
    ("/api.js", include_str!("static/api.js"), JAVASCRIPT),
    // The model card and the drift panel.
    ("/card.js", include_str!("static/card.js"), JAVASCRIPT),
    // Cell rules and the CLI's number formats.
    ("/cells.js", include_str!("static/cells.js"), JAVASCRIPT),
    // File checks, the chunked CSV parser, the header check.
    ("/load.js", include_str!("static/load.js"), JAVASCRIPT),
    // Cell access, edits, undo.
    ("/table.js", include_str!("static/table.js"), JAVASCRIPT),
    // The virtualized grid.
    ("/grid.js", include_str!("static/grid.js"), JAVASCRIPT),
    // Scoring, threshold, filter, sort, summary.
    ("/scoring.js", include_str!("static/scoring.js"), JAVASCRIPT),
    // The results as CSV.
    (
        "/download.js",
        include_str!("static/download.js"),
        JAVASCRIPT,
    ),
    // Errors, status bar, progress, controls.
    ("/status.js", include_str!("static/status.js"), JAVASCRIPT),
    // The live-quality panel: labels upload, shadow promotion.
    ("/quality.js", include_str!("static/quality.js"), JAVASCRIPT),
    // The explanation view: a wafer's contributions as a chart.
    ("/explain.js", include_str!("static/explain.js"), JAVASCRIPT),
    // The threshold's log scale and the histogram of an upload's scores.
    ("/chart.js", include_str!("static/chart.js"), JAVASCRIPT),
];

/// The policy for every response: scripts, styles and requests only from this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// One `GET` route for each of [`FILES`], answering its content with its content type.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, body, content_type)| {
            router.route(
                path,
                get(move || async move {
                    ([(header::CONTENT_TYPE, content_type)], body).into_response()
                }),
            )
        })
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
