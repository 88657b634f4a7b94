//! The HTTP server: health, readiness, the model card, drift, metrics and the scoring API.
//! (The page comes with its own issue.)

pub mod api;
pub mod page;
pub mod quality;

use crate::model::live::LiveModel;
use crate::model::Model;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct WebState {
    /// The model being served (reloadable).
    pub model: LiveModel,
    /// The source's connection.
    pub source: crate::bus::link::Link,
    /// The publisher's connection.
    pub sink: crate::bus::link::Link,
    /// The metrics `/metrics` renders.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The latest drift report (recomputed in the background).
    pub drift: Arc<std::sync::RwLock<crate::drift::DriftReport>>,
    /// Body, row, time and concurrency limits, and the optional token.
    pub limits: api::WebLimits,
    /// Free scoring slots (`limits.max_concurrent` of them).
    pub score_slots: Arc<tokio::sync::Semaphore>,
    /// Ignore unknown CSV columns instead of refusing the file.
    pub allow_extra_columns: bool,
    /// Scored rows and labels (the daemon's; `None` for `faultline` without a bus).
    pub store: Option<Arc<crate::store::Store>>,
}

impl WebState {
    /// State for `model` with nothing connected yet and an empty drift report.
    pub fn new(
        model: Arc<Model>,
        metrics: Arc<crate::metrics::Metrics>,
        limits: api::WebLimits,
    ) -> WebState {
        let slots = limits.max_concurrent.max(1);
        WebState {
            model: LiveModel::fixed(model),
            source: Default::default(),
            sink: Default::default(),
            metrics,
            drift: Arc::default(),
            limits,
            score_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            allow_extra_columns: false,
            store: None,
        }
    }
}

/// The routes.
pub fn router(state: WebState) -> Router {
    // Everything under /api/ needs the token (when one is configured); the page, health,
    // readiness and /metrics do not.
    let api = Router::new()
        .route("/api/model", get(model_card))
        .route("/api/model/reload", axum::routing::post(reload_model))
        .route("/api/model/promote", axum::routing::post(quality::promote))
        .route("/api/quality", get(quality::quality))
        .route(
            "/api/labels",
            axum::routing::post(quality::labels)
                .layer(axum::extract::DefaultBodyLimit::max(
                    state.limits.max_body_bytes,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    api::guard_upload,
                )),
        )
        .route("/api/drift", get(drift))
        .route(
            "/api/score",
            axum::routing::post(api::score)
                .layer(axum::extract::DefaultBodyLimit::max(
                    state.limits.max_body_bytes,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    api::guard_upload,
                )),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ));
    Router::new()
        .merge(page::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(axum::middleware::from_fn(page::security_headers))
        .with_state(state)
}

/// Counts every request by its route (never by its raw path: that would be unbounded) and status.
async fn count_requests(
    State(s): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    s.metrics
        .http_requests
        .with_label_values(&[path.as_str(), response.status().as_str()])
        .inc();
    s.metrics
        .http_seconds
        .with_label_values(&[path.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn drift(State(s): State<WebState>) -> Response {
    match s.drift.read() {
        Ok(report) => Json(report.clone()).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "the drift report is unavailable"})),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<WebState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(s): State<WebState>) -> Response {
    let (source, sink) = (s.source.is_up(), s.sink.is_up());
    let (source_refused, sink_refused) = (s.source.refused(), s.sink.refused());
    let ready = source && sink;
    let mut reasons = vec![];
    for (up, refused, who) in [
        (source, &source_refused, "source"),
        (sink, &sink_refused, "publisher"),
    ] {
        match refused {
            Some(why) => reasons.push(format!("the {who} cannot connect: {why}")),
            None if !up => reasons.push(format!("the {who} is not connected to its broker")),
            None => {}
        }
    }
    let body = json!({
        "ready": ready,
        "model": {
            "loaded": true,
            "version": s.model.current().version(),
            "last_reload": s.model.last_reload(),
        },
        "source": {"connected": source, "refused": source_refused, "session_lost": s.source.session_lost()},
        "sink": {"connected": sink, "refused": sink_refused, "session_lost": s.sink.session_lost()},
        "shadow": s.model.shadow().map(|m| m.version().to_string()),
        "store": s.store.as_ref().map(|st| st.status()),
        "reasons": reasons,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn model_card(State(s): State<WebState>) -> Response {
    Json(s.model.current().card().clone()).into_response()
}

/// `POST /api/model/reload`: loads `[model] dir` again, checks it and swaps it in. 200 with the
/// outcome when the new model serves; 422 with the reason when it was refused (the old model keeps
/// serving); 409 when faultline serves its embedded model (nothing to reload from).
async fn reload_model(State(s): State<WebState>) -> Response {
    let embedded = s.model.dir().is_none();
    let live = s.model.clone();
    let status = match tokio::task::spawn_blocking(move || live.reload("api")).await {
        Ok(status) => status,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": format!("the reload panicked: {e}")})),
            )
                .into_response()
        }
    };
    let code = match (status.ok, embedded) {
        (true, _) => StatusCode::OK,
        (false, true) => StatusCode::CONFLICT,
        (false, false) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    (code, Json(status)).into_response()
}
