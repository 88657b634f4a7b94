//! Health, readiness and metrics: `GET /healthz` (the process answers), `GET /readyz` (the model
//! is loaded and both bus connections are up, the source's subscription confirmed by its broker,
//! with the reasons when not) and `GET /metrics`
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
    let (source, sink) = (s.source.is_up(), s.sink.is_up());
    let (source_refused, sink_refused) = (s.source.refusal(), s.sink.refusal());
    let ready = source && sink;
    let mut reasons = vec![];
    for (up, refused, who) in [
        (source, &source_refused, "source"),
        (sink, &sink_refused, "publisher"),
    ] {
        match refused {
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
    let (source_refused, sink_refused) = (
        source_refused.map(|(_, why)| why),
        sink_refused.map(|(_, why)| why),
    );
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
