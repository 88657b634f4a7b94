//! Health, readiness and metrics: `GET /healthz` (the process answers), `GET /readyz` (the model
//! is loaded and every bus connection is up, the source's and the labels reader's subscriptions
//! confirmed by their broker, and no output held, with the reasons when not) and `GET /metrics`
//! (Prometheus). None of them needs the API token.

use super::WebState;
use crate::bus::link::{Link, Refused};
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
    // Each link read once, so that the answer agrees with itself.
    let read = |link: &Link| LinkState {
        up: link.is_up(),
        refusal: link.refusal(),
        session_lost: link.session_lost(),
        held: link.held(),
    };
    let (source, sink) = (read(&s.source), read(&s.sink));
    let labels = s.labels.as_ref().map(read);
    let mut ready = true;
    let mut reasons = vec![];
    for (link, who) in [
        (Some(&source), "source"),
        (Some(&sink), "publisher"),
        (labels.as_ref(), "labels reader"),
    ] {
        let Some(link) = link else { continue };
        ready &= link.up && link.held.is_none();
        if let Some(why) = &link.held {
            // The source publishes nothing: what it holds is its reading. The labels reader's
            // hold is its reading (a labels topic Kafka does not have) or its dead letters.
            reasons.push(match who {
                "source" => format!("the {who} reads nothing: {why}"),
                "labels reader" => format!("the {who} waits: {why}"),
                _ => format!("the {who} holds its outputs: {why}"),
            });
        }
        match &link.refusal {
            Some((Refused::Connection, why)) => {
                reasons.push(format!("the {who} cannot connect: {why}"))
            }
            Some((Refused::Subscription, why)) => {
                reasons.push(format!("the {who} cannot subscribe: {why}"))
            }
            None if !link.up => reasons.push(format!(
                "the {who} is not connected to its broker (or not subscribed yet)"
            )),
            None => {}
        }
    }
    let body = json!({
        "ready": ready,
        "model": {
            "loaded": true,
            "version": s.model.current().version(),
            "last_reload": s.model.last_reload(),
            "last_promotion": s.model.last_promotion(),
        },
        "source": source.json(),
        "sink": sink.json(),
        "labels": labels.as_ref().map(LinkState::json),
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

/// One connection's state, as `/readyz` read it.
struct LinkState {
    up: bool,
    refusal: Option<(Refused, String)>,
    session_lost: Option<String>,
    held: Option<String>,
}

impl LinkState {
    fn json(&self) -> serde_json::Value {
        json!({
            "connected": self.up,
            "refused": self.refusal.as_ref().map(|(_, why)| why),
            "session_lost": self.session_lost,
            "held": self.held,
        })
    }
}
