//! The model in service: `GET /api/model` (its card), `POST /api/model/reload`, `POST
//! /api/model/promote` (the shadow becomes the serving model) and `GET /api/drift` (recent rows
//! against the card's training distribution).

use super::api::ApiError;
use super::WebState;
use crate::model::live::Expected;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `GET /api/drift`
pub async fn drift(State(s): State<WebState>) -> Response {
    match s.drift.read() {
        Ok(report) => Json(report.clone()).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "the drift report is unavailable"})),
        )
            .into_response(),
    }
}

/// `GET /api/model`
pub async fn model_card(State(s): State<WebState>) -> Response {
    /// The card, and how verdicts are decided: the card's threshold is the one chosen on its
    /// validation predictions, and `[model] threshold` may set another; under `[model]
    /// alarm_rate` the budget decides and the fixed threshold only while its window warms up.
    #[derive(serde::Serialize)]
    struct Served<'a> {
        #[serde(flatten)]
        card: &'a crate::model::card::ModelCard,
        threshold_in_force: f32,
        /// The alarm budget in force (`null`: the fixed threshold decides every verdict).
        alarm_budget_in_force: Option<serde_json::Value>,
    }
    let model = s.model.current();
    Json(Served {
        card: model.card(),
        threshold_in_force: model.threshold(),
        alarm_budget_in_force: model.budget().map(
            |b| json!({"rate": b.rate, "window_rows": b.window_rows, "warmup_rows": b.warmup_rows}),
        ),
    })
    .into_response()
}

/// `POST /api/model/reload`: loads `[model] dir` again, checks it and swaps it in. 200 with the
/// outcome when the new model runs (serving; after a promotion, as the shadow: `shadow_version`);
/// 422 with the reason when it was refused (the old model keeps
/// serving); 409 when faultline serves its embedded model (nothing to reload from).
pub async fn reload_model(State(s): State<WebState>) -> Response {
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

/// `POST /api/model/promote[?serving=V&shadow=V]`: the shadow model serves and the serving one
/// becomes the shadow (promote again to roll back). With `serving` or `shadow`, only if those are
/// the versions in place: two operators pressing the button at once, or one after a reload,
/// would otherwise roll back or serve a model neither looked at. 200 with the outcome; 409 when
/// no shadow runs or the versions are not the ones expected; 400 for another query.
pub async fn promote(
    State(s): State<WebState>,
    query: Result<Query<Expected>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(expect) = query?;
    // Off the async runtime: a reload running now holds the lock promote takes while it compiles
    // and checks the new model (seconds), and with one task thread the bus would wait too.
    let live = s.model.clone();
    let status = tokio::task::spawn_blocking(move || live.promote("api", &expect))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the promotion panicked: {e}"),
            )
        })?;
    let code = if status.ok {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    Ok((code, Json(status)).into_response())
}
