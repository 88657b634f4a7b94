//! The HTTP server, one file per thing it serves: [`health`] (`/healthz`, `/readyz`, `/metrics`),
//! [`score`] (`POST /api/score`), [`model`] (the card, reload, promotion, drift), [`quality`]
//! (labels in, live quality out) and [`page`] (the page's static files). [`api`] holds what the
//! API routes share: the token layer, upload limits and JSON errors.

pub mod api;
pub mod health;
pub mod model;
pub mod page;
pub mod quality;
pub mod score;

use crate::model::live::LiveModel;
use crate::model::Model;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
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
    /// The labels reader's connection, when it reads labels.
    pub labels: Option<crate::bus::link::Link>,
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
    /// The live-quality figures last computed, kept while nothing they rest on has changed.
    pub(crate) quality_figures: quality::FiguresMemo,
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
            labels: None,
            metrics,
            drift: Arc::default(),
            limits,
            score_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            allow_extra_columns: false,
            store: None,
            quality_figures: Default::default(),
        }
    }
}

impl WebState {
    /// How many times `GET /api/quality` computed its figures instead of taking those kept from
    /// an earlier poll of the same window and models (for the tests).
    #[doc(hidden)]
    pub fn quality_computations(&self) -> u64 {
        self.quality_figures.computed()
    }

    /// One of the `[web] max_concurrent` upload slots (scoring and label uploads share them),
    /// held until the permit drops; 503 saying so when every one is taken.
    pub(crate) fn upload_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, api::ApiError> {
        self.score_slots.clone().try_acquire_owned().map_err(|_| {
            api::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "faultline is already handling {} upload(s) (scoring and labels, [web] max_concurrent); try again shortly",
                    self.limits.max_concurrent
                ),
            )
        })
    }
}

/// The routes.
pub fn router(state: WebState) -> Router {
    // Everything under /api/ needs the token (when one is configured); the page, health,
    // readiness and /metrics do not.
    let api = Router::new()
        .route("/api/model", get(model::model_card))
        .route(
            "/api/model/reload",
            axum::routing::post(model::reload_model),
        )
        .route("/api/model/promote", axum::routing::post(model::promote))
        .route("/api/quality", get(quality::quality))
        .route("/api/recent", get(quality::recent))
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
        .route("/api/drift", get(model::drift))
        .route("/api/limits", get(api::limits))
        .route(
            "/api/score",
            axum::routing::post(score::score)
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
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(api)
        // Before anything else (after the headers every answer gets, the count, and the reading
        // of what a refused request still sends).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::check_host,
        ))
        // A refusal is answered once the body is read, not with a reset connection.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::finish_reading,
        ))
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
