//! Health, readiness and metrics: `GET /healthz` (the process answers), `GET /readyz` (the model
//! is loaded and every bus connection is up, the source's and the labels reader's subscriptions
//! confirmed by their broker, with the reasons when not) and `GET /metrics`
//! (Prometheus). None of them needs the API token.

use super::WebState;
use crate::bus::link::Refused;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// `GET /metrics`
pub async fn metrics(State(s): State<WebState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// `GET /healthz`
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`
pub async fn readyz(State(s): State<WebState>) -> Response {
    let labels = s.labels.as_ref();
    let mut ready = true;
    let mut reasons = vec![];
    for (link, who) in [
        (Some(&s.source), "source"),
        (Some(&s.sink), "publisher"),
        (labels, "labels reader"),
    ] {
        let Some(link) = link else { continue };
        let up = link.is_up();
        ready &= up;
        match link.refusal() {
            Some((Refused::Connection, why)) => {
                reasons.push(format!("the {who} cannot connect: {why}"))
            }
            Some((Refused::Subscription, why)) => {
                reasons.push(format!("the {who} cannot subscribe: {why}"))
            }
            None if !up => reasons.push(format!(
                "the {who} is not connected to its broker (or not subscribed yet)"
            )),
            None => {}
        }
    }
    let state = |link: &crate::bus::link::Link| json!({"connected": link.is_up(), "refused": link.refused(), "session_lost": link.session_lost()});
    let body = json!({
        "ready": ready,
        "model": {
            "loaded": true,
            "version": s.model.current().version(),
            "last_reload": s.model.last_reload(),
        },
        "source": state(&s.source),
        "sink": state(&s.sink),
        "labels": labels.map(state),
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
