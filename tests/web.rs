//! The HTTP router, request by request (`tower::ServiceExt::oneshot`): every endpoint and error.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use faultline::metrics::Metrics;
use faultline::model::{synthetic, Model};
use faultline::web::api::WebLimits;
use faultline::web::{router, WebState};
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

fn state(limits: WebLimits) -> WebState {
    WebState::new(
        Arc::new(Model::embedded().unwrap()),
        Arc::new(Metrics::new()),
        limits,
    )
}

async fn send(state: &WebState, req: Request<Body>) -> (StatusCode, String, String) {
    let res = router(state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let ct = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/api/score")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn sample_csv(model: &Model, n: usize) -> (String, faultline::row::RowBatch) {
    let batch = synthetic::rows(model.card(), n, 17);
    let mut out = Vec::new();
    synthetic::write_csv(&batch, model.features(), &mut out).unwrap();
    (String::from_utf8(out).unwrap(), batch)
}

#[tokio::test]
async fn health_readiness_model_and_metrics_answer() {
    let s = state(WebLimits::default());
    let (status, _, body) = send(&s, get("/healthz")).await;
    assert_eq!((status, body.contains("ok")), (StatusCode::OK, true));
    let (status, _, body) = send(&s, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("the source is not connected"), "{body}");
    let (status, _, body) = send(&s, get("/api/model")).await;
    assert_eq!(status, StatusCode::OK);
    let card: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(card["version"], s.model.current().version());
    let (status, _, body) = send(&s, get("/api/drift")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"judged\":false"), "{body}");
    let (status, ct, body) = send(&s, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/plain"));
    assert!(
        body.contains("faultline_http_requests_total{path=\"/healthz\",status=\"200\"} 1"),
        "{body}"
    );
}

#[tokio::test]
async fn a_csv_scores_like_the_library_as_json_or_csv() {
    let s = state(WebLimits::default());
    let (csv, batch) = sample_csv(&s.model.current(), 40);
    let expected = s.model.current().score(&batch);
    let (status, ct, body) = send(&s, post("text/csv", csv.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model_version"], s.model.current().version());
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 40);
    for (r, e) in results.iter().zip(&expected) {
        assert_eq!(r["id"], e.id.as_str());
        assert_eq!(r["probability"].as_f64().unwrap() as f32, e.probability);
        assert_eq!(r["fault"], e.fault);
        assert_eq!(
            r["top_sensors"].as_array().unwrap().len(),
            e.top_sensors.len()
        );
    }

    let req = Request::post("/api/score")
        .header(header::CONTENT_TYPE, "text/csv")
        .header(header::ACCEPT, "text/csv")
        .body(Body::from(csv))
        .unwrap();
    let (status, ct, body) = send(&s, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("text/csv"));
    assert!(
        body.starts_with("id,probability,fault,top_sensors,model_version\n"),
        "{body}"
    );
    assert_eq!(body.lines().count(), 41);
}

#[tokio::test]
async fn a_json_array_scores_too() {
    let s = state(WebLimits::default());
    let batch = synthetic::rows(s.model.current().card(), 3, 2);
    let rows: Vec<String> = (0..3)
        .map(|i| {
            faultline::row::json::encode_row(
                &batch.ids[i],
                batch.row(i),
                s.model.current().features(),
            )
        })
        .collect();
    let (status, _, body) = send(
        &s,
        post("application/json", format!("[{}]", rows.join(","))),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn input_errors_are_located_json() {
    let s = state(WebLimits::default());
    let (csv, _) = sample_csv(&s.model.current(), 3);
    let bad = csv.replacen("\nSynthetic-2,", "\nSynthetic-2,abc", 1);
    let (status, _, body) = send(&s, post("text/csv", bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["details"][0]["row"], 2);
    assert_eq!(v["details"][0]["column"], "Sensor-1");
    assert!(v["details"][0]["value"]
        .as_str()
        .unwrap()
        .starts_with("abc"));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("line 3 (Synthetic-2), column Sensor-1"),
        "{body}"
    );

    let header_only_two = ",Sensor-1,Sensor-2\nW,1,2\n";
    let (status, _, body) = send(&s, post("text/csv", header_only_two)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["details"].as_array().unwrap().len(), 588);
    assert_eq!(v["details"][0]["column"], "Sensor-3");
    assert_eq!(v["details"][0]["reason"], "missing");

    let (status, _, body) = send(
        &s,
        post("application/json", r#"[{"id": "a", "Sensor-5": "x"}]"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("Sensor-5"), "{body}");

    let (status, _, body) = send(&s, post("application/pdf", "%PDF")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body.contains("text/csv"), "{body}");
}

#[tokio::test]
async fn limits_refuse_with_a_reason() {
    let s = state(WebLimits {
        max_rows: 5,
        max_body_bytes: 200_000,
        ..WebLimits::default()
    });
    let (csv, _) = sample_csv(&s.model.current(), 6);
    let (status, _, body) = send(&s, post("text/csv", csv)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("more than 5 rows"), "{body}");

    let (csv, _) = sample_csv(&s.model.current(), 5);
    let big = format!("{csv}{}", " ".repeat(200_000));
    let (status, _, body) = send(&s, post("text/csv", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("larger than the limit"), "{body}");

    // Every scoring slot busy: shed load at once instead of queueing.
    let s = state(WebLimits {
        max_concurrent: 1,
        ..WebLimits::default()
    });
    let _held = s.score_slots.clone().try_acquire_owned().unwrap();
    let (csv, _) = sample_csv(&s.model.current(), 1);
    let (status, _, body) = send(&s, post("text/csv", csv)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn a_configured_token_guards_the_api_but_not_health() {
    let s = state(WebLimits {
        token: Some("s3cret".into()),
        ..WebLimits::default()
    });
    let (csv, _) = sample_csv(&s.model.current(), 2);
    let (status, _, body) = send(&s, post("text/csv", csv.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let req = |token: &str| {
        Request::post("/api/score")
            .header(header::CONTENT_TYPE, "text/csv")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from(csv.clone()))
            .unwrap()
    };
    assert_eq!(send(&s, req("wrong")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&s, req("s3cret")).await.0, StatusCode::OK);
    assert_eq!(
        send(&s, get("/api/model")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&s, get("/healthz")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_real_batch_file_scores_and_flags_faulty_wafers() {
    let Some(data) = common::data_dir("a_real_batch_file_scores_and_flags_faulty_wafers") else {
        return;
    };
    let s = state(WebLimits::default());
    let csv =
        std::fs::read(data.join("wafer/Training_Batch_Files/wafer_20012020_090819.csv")).unwrap();
    let (status, _, body) = send(&s, post("text/csv", csv)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 100);
    assert!(results.iter().any(|r| r["fault"] == true));
}

#[tokio::test]
async fn the_page_is_served_with_security_headers_and_nothing_else_is() {
    let s = state(WebLimits::default());
    for (path, ct) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/quality.js", "text/javascript"),
        ("/style.css", "text/css"),
    ] {
        let res = router(s.clone()).oneshot(get(path)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let h = res.headers();
        assert!(
            h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ct),
            "{path}"
        );
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let index = send(&s, get("/")).await.2;
    assert!(
        !index.contains("<script>") && index.contains("src=\"/app.js\""),
        "no inline script: {index}"
    );
    for path in [
        "/../Cargo.toml",
        "/static/app.js",
        "/%2e%2e/Cargo.toml",
        "/app.js/../../x",
    ] {
        let (status, _, _) = send(&s, get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn a_request_past_its_time_limit_is_answered_with_a_reason() {
    // 1 ms cannot cover parsing 2,000 rows of 590 sensors: the answer is a 503 that says why.
    let s = state(WebLimits {
        request_timeout: std::time::Duration::from_millis(1),
        ..WebLimits::default()
    });
    let (csv, _) = sample_csv(&s.model.current(), 2000);
    let (status, _, body) = send(&s, post("text/csv", csv)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("longer than 1 ms"), "{body}");
}
