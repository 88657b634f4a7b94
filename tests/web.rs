//! The HTTP router, request by request (`tower::ServiceExt::oneshot`): every endpoint and error.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use faultline::metrics::Metrics;
use faultline::model::{synthetic, Budget, Model};
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

/// `body` posted to `/api/score` asking for a CSV answer: its status, headers and text.
async fn score_as_csv(
    state: &WebState,
    body: impl Into<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::post("/api/score")
        .header(header::CONTENT_TYPE, "text/csv")
        .header(header::ACCEPT, "text/csv")
        .body(body.into())
        .unwrap();
    let res = router(state.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
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
    assert_eq!(card["threshold_in_force"], card["threshold"], "{card}");
    // A threshold set in the configuration is the one in force; the card keeps its own.
    let model = Model::embedded().unwrap();
    let trained = model.threshold();
    let set = WebState::new(
        Arc::new(model.with_threshold(0.25)),
        Arc::new(Metrics::new()),
        WebLimits::default(),
    );
    let (_, _, body) = send(&set, get("/api/model")).await;
    let card: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(card["threshold_in_force"], 0.25, "{card}");
    assert_eq!(card["threshold"], trained, "{card}");
    assert!(card["alarm_budget_in_force"].is_null(), "{card}");
    // Under an alarm budget the card says so: the fixed threshold decides only while it warms up.
    let budget = Budget::new(0.1, 300, 50).unwrap();
    let set = WebState::new(
        Arc::new(Model::embedded().unwrap().with_budget(Some(budget))),
        Arc::new(Metrics::new()),
        WebLimits::default(),
    );
    let (_, _, body) = send(&set, get("/api/model")).await;
    let card: Value = serde_json::from_str(&body).unwrap();
    let b = &card["alarm_budget_in_force"];
    assert_eq!(
        (
            b["rate"].as_f64(),
            b["window_rows"].as_u64(),
            b["warmup_rows"].as_u64()
        ),
        (Some(0.1), Some(300), Some(50)),
        "{card}"
    );
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
            r["unusual_sensors"].as_array().unwrap().len(),
            e.unusual_sensors.len()
        );
        assert_eq!(r["rule"], "threshold");
        let listed = r["contributions"].as_array().map_or(0, Vec::len);
        assert_eq!(
            listed,
            e.explanation.as_ref().map_or(0, |x| x.contributions.len())
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
        body.starts_with(
            "id,probability,fault,threshold,rule,base,contributions,unusual_sensors,model_version\n"
        ),
        "{body}"
    );
    assert_eq!(body.lines().count(), 41);
}

/// A request body that arrives as `pieces`, an error where a piece is `None`; `taken` counts the
/// pieces the server has read.
fn arriving(pieces: Vec<Option<Vec<u8>>>, taken: Arc<std::sync::atomic::AtomicUsize>) -> Body {
    Body::from_stream(futures_util::stream::iter(pieces.into_iter().map(
        move |piece| {
            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            piece.ok_or_else(|| std::io::Error::other("the client went away"))
        },
    )))
}

/// `text` cut at pseudo-random places, 1 to `most` bytes a piece.
fn cut(text: &[u8], most: usize, mut seed: u64) -> Vec<Option<Vec<u8>>> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < text.len() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let n = (1 + seed as usize % most).min(text.len() - at);
        pieces.push(Some(text[at..at + n].to_vec()));
        at += n;
    }
    pieces
}

#[tokio::test]
async fn a_csv_arriving_in_pieces_scores_like_one_sent_whole() {
    // The CSV is parsed as its body arrives: pieces that split lines, cells, numbers and CRLF
    // pairs anywhere give the answer the whole body gives, byte for byte.
    let s = state(WebLimits::default());
    let (csv, _) = sample_csv(&s.model.current(), 300);
    let crlf = csv.replace('\n', "\r\n");
    for text in [csv, crlf] {
        let (status, _, whole) = send(&s, post("text/csv", text.clone())).await;
        assert_eq!(status, StatusCode::OK, "{whole}");
        for (most, seed) in [(7, 1), (4_000, 2), (70_000, 3)] {
            let pieces = cut(text.as_bytes(), most, seed);
            let n = pieces.len();
            let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let body = arriving(pieces, taken.clone());
            let (status, _, answer) = send(&s, post("text/csv", body)).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert!(
                answer == whole,
                "{n} pieces of up to {most} bytes: the answers differ"
            );
        }
    }
}

#[tokio::test]
async fn a_bad_cell_or_header_early_in_a_long_upload_is_named_after_the_whole_body_is_read() {
    // The parser stops at the first bad cell (here in the first of two batches) or at the
    // header; the rest of the body is still read (a client still sending gets the answer, not
    // a reset connection) and the answer names what is wrong.
    let s = state(WebLimits::default());
    let (csv, _) = sample_csv(&s.model.current(), 1500);
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    let header = lines[0].clone();
    let column = header.split(',').nth(3).unwrap().to_string();
    let mut cells: Vec<String> = lines[2].split(',').map(str::to_string).collect();
    cells[3] = "125x".to_string();
    lines[2] = cells.join(",");
    let bad_cell = lines.join("\n") + "\n";
    lines[0] = header.replacen(&format!(",{column}"), "", 1);
    let missing_column = lines.join("\n") + "\n";
    for (text, status, detail) in [
        (bad_cell, StatusCode::UNPROCESSABLE_ENTITY, (2, "125x")),
        (missing_column, StatusCode::BAD_REQUEST, (0, "")),
    ] {
        let pieces = cut(text.as_bytes(), 20_000, 4);
        let n = pieces.len();
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (got, _, body) = send(&s, post("text/csv", arriving(pieces, taken.clone()))).await;
        assert_eq!(got, status, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["details"][0]["column"], column.as_str(), "{body}");
        if detail.0 > 0 {
            assert_eq!(v["details"][0]["row"], detail.0, "{body}");
            assert_eq!(v["details"][0]["value"], detail.1, "{body}");
        } else {
            assert_eq!(v["details"][0]["reason"], "missing", "{body}");
        }
        assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), n, "{body}");
    }
}

#[tokio::test]
async fn an_upload_cut_short_is_refused_and_nothing_is_scored() {
    // The body fails after some whole rows: a 400 that says so, not verdicts for the rows that
    // came (the parser sees an error, never a clean end).
    let s = state(WebLimits::default());
    let (csv, _) = sample_csv(&s.model.current(), 50);
    let mut pieces = cut(csv.as_bytes(), 3_000, 5);
    pieces.truncate(pieces.len() / 2);
    pieces.push(None);
    let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (status, _, body) = send(&s, post("text/csv", arriving(pieces, taken))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("the request body cannot be read"), "{body}");
    assert!(body.contains("the client went away"), "{body}");
    assert!(!body.contains("results"), "{body}");
}

/// `batch` as a wafer CSV with a `Good/Bad` column: `label(i)` for row i.
fn labelled_csv(
    model: &Model,
    batch: &faultline::row::RowBatch,
    label: impl Fn(usize) -> i8,
) -> String {
    let mut out = Vec::new();
    synthetic::write_csv(batch, model.features(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    let mut csv = format!("{},Good/Bad\n", lines.next().unwrap());
    for (i, line) in lines.enumerate() {
        csv.push_str(&format!("{line},{}\n", label(i)));
    }
    csv
}

#[tokio::test]
async fn a_labelled_upload_is_evaluated_against_its_own_labels() {
    let s = state(WebLimits::default());
    let model = s.model.current();
    let mut batch = synthetic::rows(model.card(), 60, 23);
    // Every third wafer pushed towards a fault and labelled faulty, and two faulty wafers left
    // as they were (to be missed): the counts below come from the verdicts, not from the model.
    for i in (0..60).step_by(3) {
        let row = synthetic::towards_fault(&model, batch.row(i), 0.9);
        batch.values[i * batch.width..(i + 1) * batch.width].copy_from_slice(&row);
    }
    let faulty = |i: usize| i.is_multiple_of(3) || i == 1 || i == 4;
    let csv = labelled_csv(&model, &batch, |i| if faulty(i) { 1 } else { -1 });
    let (status, _, body) = send(&s, post("text/csv", csv.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let results = v["results"].as_array().unwrap();
    let flagged = |i: usize| results[i]["fault"] == true;
    let tp = (0..60).filter(|&i| faulty(i) && flagged(i)).count();
    let fp = (0..60).filter(|&i| !faulty(i) && flagged(i)).count();
    let e = &v["evaluation"];
    assert_eq!(e["labelled"], 60, "{e}");
    assert_eq!(e["positives"], 22);
    assert_eq!(
        (e["true_positives"].as_u64(), e["false_positives"].as_u64()),
        (Some(tp as u64), Some(fp as u64))
    );
    assert_eq!(e["false_negatives"], 22 - tp);
    assert!((e["recall"].as_f64().unwrap() - tp as f64 / 22.0).abs() < 1e-12);
    assert!((e["precision"].as_f64().unwrap() - tp as f64 / (tp + fp) as f64).abs() < 1e-12);
    assert!(tp >= 20, "the pushed wafers are flagged: {e}");
    // ROC-AUC from the returned probabilities, by pair counting (ties count a half).
    let p = |i: usize| results[i]["probability"].as_f64().unwrap();
    let (mut wins, mut pairs) = (0.0, 0.0);
    for i in (0..60).filter(|&i| faulty(i)) {
        for j in (0..60).filter(|&j| !faulty(j)) {
            pairs += 1.0;
            wins += if p(i) > p(j) {
                1.0
            } else if p(i) == p(j) {
                0.5
            } else {
                0.0
            };
        }
    }
    assert!(
        (e["roc_auc"].as_f64().unwrap() - wins / pairs).abs() < 1e-9,
        "{e}"
    );
    assert!(e["pr_auc"].as_f64().is_some());
    // Synthetic rows come from the training distribution: judged, and no warning.
    assert_eq!(v["drift"]["judged"], true);
    assert!(v.get("warning").is_none(), "{}", v["warning"]);

    // As CSV: the labels in a last column, as `faultline score` writes them, and the
    // evaluation in a header.
    let (status, headers, text) = score_as_csv(&s, csv).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let mut lines = text.lines();
    assert!(lines.next().unwrap().ends_with(",model_version,Good/Bad"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 60);
    for (i, line) in rows.iter().enumerate() {
        let want = if faulty(i) { ",1" } else { ",-1" };
        assert!(line.ends_with(want), "row {i}: {line}");
    }
    let evaluation = headers["faultline-evaluation"].to_str().unwrap();
    assert!(
        evaluation.contains(&format!("caught {tp} of 22 faulty wafers")),
        "{evaluation}"
    );
    assert!(!headers.contains_key("faultline-warning"));

    // Without labels there is no evaluation, nor a label column.
    let (csv, _) = sample_csv(&model, 10);
    let (_, _, body) = send(&s, post("text/csv", csv.clone())).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("evaluation").is_none(), "{body}");
    let (_, headers, text) = score_as_csv(&s, csv).await;
    assert!(text.lines().next().unwrap().ends_with(",model_version"));
    assert!(!headers.contains_key("faultline-evaluation"));
}

#[tokio::test]
async fn an_upload_far_from_the_training_data_gets_a_warning_naming_sensors() {
    let s = state(WebLimits::default());
    let model = s.model.current();
    let mut batch = synthetic::rows(model.card(), 80, 29);
    // 30 sensors moved 10 robust sigmas up in every row.
    let moved: Vec<usize> = model
        .card()
        .sensors
        .iter()
        .enumerate()
        .filter(|(_, st)| st.iqr.is_some_and(|q| q > 0.0) && st.median.is_some())
        .map(|(j, _)| j)
        .take(30)
        .collect();
    for i in 0..80 {
        for &j in &moved {
            let st = &model.card().sensors[j];
            batch.values[i * batch.width + j] =
                (st.median.unwrap() + 10.0 * st.iqr.unwrap() / 1.349) as f32;
        }
    }
    let mut out = Vec::new();
    synthetic::write_csv(&batch, model.features(), &mut out).unwrap();
    let (status, _, body) = send(&s, post("text/csv", out.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    // As CSV, the same warning travels in a header.
    let (_, headers, _) = score_as_csv(&s, out).await;
    assert_eq!(headers["faultline-warning"], v["warning"].as_str().unwrap());
    assert!(
        v["drift"]["sensors_out_of_range"].as_u64().unwrap() >= 30,
        "{}",
        v["drift"]
    );
    let warning = v["warning"].as_str().unwrap();
    let first = v["drift"]["sensors"][0]["sensor"].as_str().unwrap();
    assert!(
        warning.contains("sensors in this file are off their training distribution"),
        "{warning}"
    );
    assert!(warning.contains(first), "{warning}");
    assert_eq!(v["drift"]["sensors"].as_array().unwrap().len(), 20);
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

/// A key the model does not read (a misspelt sensor) is refused, naming it, as an unknown CSV
/// column is, rather than scored as a missing value; allowed, it is ignored.
#[tokio::test]
async fn a_json_row_with_a_key_the_model_does_not_read_is_refused_naming_it() {
    let mut s = state(WebLimits::default());
    let rows = r#"[{"id": "W1", "sensor-1": 3030.9, "Sensor-2": 2564, "Good/Bad": 1},
                   {"id": "W2", "Sensor-1": 1, "sensor-1": 2, "colour": "red"}]"#;
    let (status, _, body) = send(&s, post("application/json", rows)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("2 row(s) hold keys the model does not read: \"sensor-1\", \"colour\"")
            && error.contains("nothing was scored"),
        "{body}"
    );
    let columns: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["column"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["sensor-1", "colour"]);

    s.allow_extra_columns = true;
    let (status, _, body) = send(&s, post("application/json", rows)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
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
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["details"][0]["row"], 1);
    assert_eq!(v["details"][0]["column"], "Sensor-5", "{body}");

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
    // The page reads the limits to refuse a file before sending it.
    let (status, _, body) = send(&s, get("/api/limits")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let limits: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        limits,
        serde_json::json!({"max_body_bytes": 200_000, "max_rows": 5, "allow_extra_columns": false})
    );
    let (csv, _) = sample_csv(&s.model.current(), 6);
    let (status, _, body) = send(&s, post("text/csv", csv)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("more than 5 rows"), "{body}");

    let (csv, _) = sample_csv(&s.model.current(), 5);
    let big = format!("{csv}{}", " ".repeat(200_000));
    let (status, _, body) = send(&s, post("text/csv", big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("larger than the limit"), "{body}");

    // A JSON array is too large past the most rows one JSON request holds (100,000), even when
    // max_rows allows more, and says so: 413, not an unreadable row.
    let many = state(WebLimits {
        max_rows: 200_000,
        ..WebLimits::default()
    });
    let json = format!("[{}]", vec![r#"{"id":1}"#; 100_001].join(","));
    let (status, _, body) = send(&many, post("application/json", json)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body.contains("at most 100000 rows") && body.contains("CSV"),
        "{body}"
    );

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

/// Without a token, a page of another site open in the operator's browser could promote the
/// shadow or reload the model with an empty POST (no preflight is needed for one); the browser
/// says where such a request comes from, and faultline refuses it. Its own page and scripts are
/// unaffected.
#[tokio::test]
async fn another_sites_page_cannot_change_faultline() {
    let s = state(WebLimits::default());
    let post_from = |path: &str, site: Option<&str>| {
        let mut r = Request::post(path);
        if let Some(site) = site {
            r = r.header("Sec-Fetch-Site", site);
        }
        r.body(Body::empty()).unwrap()
    };
    for path in [
        "/api/model/reload",
        "/api/model/promote",
        "/api/labels",
        "/api/score",
    ] {
        for site in ["cross-site", "same-site"] {
            let (status, _, body) = send(&s, post_from(path, Some(site))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} {site}: {body}");
            assert!(body.contains("another site"), "{body}");
        }
        for site in [None, Some("same-origin"), Some("none")] {
            let (status, _, body) = send(&s, post_from(path, site)).await;
            assert_ne!(status, StatusCode::FORBIDDEN, "{path} {site:?}: {body}");
        }
    }
    // Reading is not refused (the browser keeps another site's page from seeing the answer).
    let r = Request::get("/api/model")
        .header("Sec-Fetch-Site", "cross-site")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&s, r).await.0, StatusCode::OK);
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
    let with = |authorization: &str| {
        Request::post("/api/score")
            .header(header::CONTENT_TYPE, "text/csv")
            .header(header::AUTHORIZATION, authorization)
            .body(Body::from(csv.clone()))
            .unwrap()
    };
    let req = |token: &str| with(&format!("Bearer {token}"));
    // A 401 names its scheme (RFC 9110), so a client knows what to send.
    let refused = router(s.clone()).oneshot(req("wrong")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"faultline\""
    );
    assert_eq!(send(&s, req("s3cret")).await.0, StatusCode::OK);
    // The scheme in any case, blanks around the token: the same token.
    for ok in ["bearer s3cret", "BEARER  s3cret ", "Bearer s3cret\t"] {
        assert_eq!(send(&s, with(ok)).await.0, StatusCode::OK, "{ok:?}");
    }
    for wrong in [
        "Basic s3cret",
        "Bearers3cret",
        "s3cret",
        "Bearer s3 cret",
        "Bearer",
    ] {
        assert_eq!(
            send(&s, with(wrong)).await.0,
            StatusCode::UNAUTHORIZED,
            "{wrong:?}"
        );
    }
    // Every /api/ route is behind the token (one layer on the API router), before any body is
    // read; the page, health, readiness and /metrics are not.
    for path in ["/api/model", "/api/drift", "/api/quality", "/api/limits"] {
        assert_eq!(
            send(&s, get(path)).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    for path in [
        "/api/model/reload",
        "/api/model/promote",
        "/api/labels",
        "/api/score",
    ] {
        let (status, _, body) = send(&s, post_to(path, "text/csv", "id,Good/Bad\nW,1\n")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    for path in ["/healthz", "/", "/metrics"] {
        assert_eq!(send(&s, get(path)).await.0, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn json_rejects_carry_their_row_number() {
    let s = state(WebLimits::default());
    let rows = r#"[{"id": "A", "Sensor-1": 1.5}, {"id": "B", "Sensor-1": "abc"}, {"id": "C"}]"#;
    let (status, _, body) = send(&s, post("application/json", rows)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["details"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(v["details"][0]["row"], 2, "{body}");
    // The cell's own value and a reason without the row, as a CSV error's (the value used to be
    // the start of the row's JSON, which for 590 keys seldom held the bad one).
    assert_eq!(v["details"][0]["column"], "Sensor-1", "{body}");
    assert_eq!(v["details"][0]["value"], "abc", "{body}");
    assert_eq!(
        v["details"][0]["reason"], "\"Sensor-1\" must be a number or null, not the string \"abc\"",
        "{body}"
    );
    let (status, _, body) = send(
        &s,
        post("application/json", r#"[{"id": "A", "Sensor-1": 1e39}]"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["details"][0]["value"], "1e39", "{body}");
    // A body that is not JSON is a bad request, not a bad cell.
    for bad in ["nope", "[{\"id\": \"A\", \"Sensor-1\": 1.5"] {
        let (status, _, body) = send(&s, post("application/json", bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("not valid JSON"), "{body}");
    }
    // A message that is not an array of rows has no row number.
    let (status, _, body) = send(
        &s,
        post("application/json", "{\"id\": 7, \"Sensor-1\": []}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["details"][0]["row"].is_null(), "{body}");
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
    // Every file of src/web/static is served as it is, each module as JavaScript (a module the
    // table of src/web/page.rs lacks would break the page); index.html is `/`.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/static");
    let mut files = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let (path, ct) = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("html") if name == "index.html" => ("/".to_string(), "text/html"),
            Some("js") => (format!("/{name}"), "text/javascript"),
            Some("css") => (format!("/{name}"), "text/css"),
            _ => panic!("a file of an unexpected kind in src/web/static: {name}"),
        };
        files.push((path, ct, std::fs::read_to_string(dir.join(&name)).unwrap()));
    }
    assert!(
        files.len() >= 5,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (path, ct, content) in &files {
        let path = path.as_str();
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
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body == content.as_bytes(), "{path} is not its file");
    }
    let index = send(&s, get("/")).await.2;
    assert!(
        !index.contains("<script>") && index.contains("<script type=\"module\" src=\"/main.js\">"),
        "no inline script: {index}"
    );
    for path in [
        "/../Cargo.toml",
        "/static/main.js",
        "/%2e%2e/Cargo.toml",
        "/main.js/../../x",
        "/main.js/",
        "/index.html",
        "/web.rs",
    ] {
        let (status, _, _) = send(&s, get(path)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

/// A line with too few fields is located by its data row in `details` (the header and blank lines
/// not counted) and by its file line in the message.
#[tokio::test]
async fn a_ragged_line_is_located_by_its_data_row() {
    let s = state(WebLimits::default());
    let (csv, _) = sample_csv(&s.model.current(), 4);
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    // Data row 3: cut after its fourth field.
    lines[3] = lines[3].split(',').take(4).collect::<Vec<_>>().join(",");
    lines.insert(1, String::new()); // a blank line 2: data row 3 is on line 5
    let (status, _, body) = send(&s, post("text/csv", lines.join("\n") + "\n")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["details"][0]["row"], 3, "{body}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("line 5 has 4 fields"),
        "{body}"
    );
}

/// A body that could never be scored gets 415 even while every scoring slot is taken (not 503,
/// which says to try again).
#[tokio::test]
async fn a_wrong_content_type_is_refused_as_such_when_every_slot_is_busy() {
    let s = state(WebLimits {
        max_concurrent: 1,
        ..WebLimits::default()
    });
    let busy = s.score_slots.clone().try_acquire_owned().unwrap();
    let (status, _, body) = send(&s, post("text/plain", "Wafer,Sensor-1\nW,1\n")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, _, body) = send(&s, post("text/csv", "Wafer,Sensor-1\nW,1\n")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    drop(busy);
}

/// Label uploads take the same slots as scoring ones: each may hold [web] max_body_bytes, and
/// they had no bound at all.
#[tokio::test]
async fn label_uploads_share_the_upload_slots() {
    let s = state_with_store(
        WebLimits {
            max_concurrent: 1,
            ..WebLimits::default()
        },
        &[("W-1", 0.9)],
    );
    let labels = || post_to("/api/labels", "text/csv", "id,Good/Bad\nW-1,1\n");
    let busy = s.score_slots.clone().try_acquire_owned().unwrap();
    let (status, _, body) = send(&s, labels()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("already handling 1 upload(s)"), "{body}");
    drop(busy);
    let (status, _, body) = send(&s, labels()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Its slot is free again once it is answered.
    assert_eq!(s.score_slots.available_permits(), 1);
}

#[tokio::test]
async fn a_request_past_its_time_limit_is_answered_with_a_reason() {
    // 1 ms cannot cover parsing 2,000 rows of 590 sensors: the answer is a 503 that says why.
    let s = state(WebLimits {
        request_timeout: std::time::Duration::from_millis(1),
        max_concurrent: 1,
        ..WebLimits::default()
    });
    let (csv, _) = sample_csv(&s.model.current(), 2000);
    let (status, _, body) = send(&s, post("text/csv", csv.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("longer than 1 ms"), "{body}");
    // The work it started goes on after that answer, and holds the one scoring slot until it
    // ends: more requests are shed meanwhile, not started beside it. Then the slot is free.
    let (status, _, body) = send(&s, post("text/csv", csv.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("already handling 1 upload(s)"), "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, _, body) = send(&s, post("text/csv", csv.clone())).await;
        if body.contains("longer than 1 ms") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A state with an in-memory store (no directory) holding `ids` scored by the embedded model.
fn state_with_store(limits: WebLimits, ids: &[(&str, f32)]) -> WebState {
    let threshold = Model::embedded().unwrap().threshold();
    let rows: Vec<(&str, f32, bool)> = ids.iter().map(|&(id, p)| (id, p, p >= threshold)).collect();
    state_with_verdicts(limits, &rows, None)
}

/// A daemon's web state with a store holding rows scored and flagged as given, its model under
/// `budget`.
fn state_with_verdicts(
    limits: WebLimits,
    ids: &[(&str, f32, bool)],
    budget: Option<Budget>,
) -> WebState {
    use faultline::store::{ledger::LedgerLimits, segment::ScoredBatch, Store, StoreSettings};
    let mut s = state(limits);
    s.model = faultline::model::live::LiveModel::fixed(Arc::new(
        Model::embedded().unwrap().with_budget(budget),
    ));
    let store = Store::open(
        StoreSettings {
            dir: None,
            max_rows: 1000,
            max_days: None,
            segment_rows: 100,
            ledger: LedgerLimits {
                max_rows: 1000,
                window: 100,
                max_pending: 10,
                pending_ttl_ms: 60_000,
            },
        },
        s.model.current().features().to_vec(),
        s.metrics.clone(),
    )
    .unwrap();
    let model = s.model.current();
    store.record_scored(ScoredBatch {
        ids: ids.iter().map(|(id, _, _)| id.to_string()).collect(),
        values: vec![f32::NAN; ids.len() * model.width()],
        width: model.width(),
        probabilities: ids.iter().map(|(_, p, _)| *p).collect(),
        faults: ids.iter().map(|(_, _, f)| *f).collect(),
        version: Arc::from(model.version()),
        shadow: None,
        at_ms: 0,
    });
    s.store = Some(Arc::new(store));
    s
}

fn post_to(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn labels_join_and_quality_reports_them() {
    let s = state_with_store(
        WebLimits::default(),
        &[("W-1", 0.9), ("W-2", 0.8), ("W-3", 0.1), ("W-4", 0.01)],
    );
    // A label as pandas writes it, one refused, one unknown (left out, not refused).
    let csv = "id,Good/Bad\nW-1,1\nW-2,-1.0\nW-3,1\nW-x,-1\nW-4,maybe\nW-5,\n";
    let (status, _, body) = send(&s, post_to("/api/labels", "text/csv", csv)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&v["accepted"], &v["joined"], &v["pending"]),
        (&Value::from(4), &Value::from(3), &Value::from(1)),
        "{v}"
    );
    assert_eq!(v["rejected"][0]["row"], 5, "{v}");
    assert_eq!(v["rejected"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["unlabelled"], 1, "{v}");
    assert!(v["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("maybe"));
    // Readings without an id column are refused, not taken as ids that would join nothing.
    let first = s.model.current().features()[0].clone();
    let readings = format!("{first},Good/Bad\n3030.93,1\n");
    let (status, _, body) = send(&s, post_to("/api/labels", "text/csv", readings)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("no wafer id column"), "{body}");
    let json = r#"[{"id": "W-4", "label": "pass", "at": "2026-11-26T10:00:00Z"}]"#;
    let (status, _, body) = send(&s, post_to("/api/labels", "application/json", json)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, body) = send(&s, get("/api/quality")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let q: Value = serde_json::from_str(&body).unwrap();
    let serving = &q["models"][0];
    assert_eq!(serving["role"], "serving");
    assert_eq!(serving["quality"]["labelled"], 4, "{q}");
    assert_eq!(serving["quality"]["positives"], 2, "{q}");
    // Faulty 0.9 and 0.1 against good 0.8 and 0.01: 3 of 4 pairs ranked right.
    assert_eq!(serving["quality"]["roc_auc"], 0.75, "{q}");
    assert_eq!(q["labels"]["pending"], 1, "{q}");
    assert_eq!(q["models"].as_array().unwrap().len(), 1, "no shadow: {q}");
    assert!(q["comparison"].is_null(), "no shadow: {q}");
    // Each figure comes with its 95% interval; on 4 wafers it is wide.
    let ci = &serving["quality"]["roc_auc_ci95"];
    assert!(ci[0].as_f64().unwrap() <= 0.5 && ci[1] == 1.0, "{q}");

    // Polled again with nothing changed: the same figures (kept, not computed again). A wafer
    // relabelled (W-3 was good after all) changes them: faulty 0.9 above good 0.8, 0.1, 0.01.
    let quality = || async {
        let (status, _, body) = send(&s, get("/api/quality")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let computed = s.quality_computations();
    assert_eq!(computed, 1);
    assert_eq!(quality().await["models"], q["models"]);
    assert_eq!(
        s.quality_computations(),
        computed,
        "polled again, computed again"
    );
    let (status, _, body) = send(
        &s,
        post_to("/api/labels", "text/csv", "id,Good/Bad\nW-3,-1\n"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = quality().await;
    let serving = &again["models"][0]["quality"];
    assert_eq!(
        (&serving["roc_auc"], &serving["positives"]),
        (&Value::from(1.0), &Value::from(1)),
        "{again}"
    );
    assert_eq!(s.quality_computations(), computed + 1);
}

/// Under an alarm budget the serving model's live recall and false alarms are those of the
/// verdicts it published (the budget flagged wafers far below the fixed threshold), not of
/// P >= threshold, and the answer says so.
#[tokio::test]
async fn under_an_alarm_budget_live_quality_counts_the_verdicts_published() {
    let budget = faultline::model::Budget::new(0.5, 10, 1).unwrap();
    let rows = [
        ("W-1", 0.03, true),
        ("W-2", 0.02, true),
        ("W-3", 0.01, false),
        ("W-4", 0.005, false),
    ];
    let labels = "id,Good/Bad\nW-1,1\nW-2,-1\nW-3,1\nW-4,-1\n";
    let quality = |s: WebState| async move {
        let (status, _, body) = send(&s, post_to("/api/labels", "text/csv", labels)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, _, body) = send(&s, get("/api/quality")).await;
        let q: Value = serde_json::from_str(&body).unwrap();
        q["models"][0]["quality"].clone()
    };
    let q = quality(state_with_verdicts(
        WebLimits::default(),
        &rows,
        Some(budget),
    ))
    .await;
    assert_eq!(
        (&q["basis"], &q["threshold"]),
        (&Value::from("verdicts"), &Value::Null),
        "{q}"
    );
    assert_eq!(
        (&q["true_positives"], &q["false_positives"]),
        (&Value::from(1), &Value::from(1)),
        "{q}"
    );
    assert_eq!(q["recall"], 0.5, "{q}");
    // Without a budget the same rows count at the model's threshold, which flags none of them.
    let q = quality(state_with_verdicts(WebLimits::default(), &rows, None)).await;
    assert_eq!(q["basis"], "threshold", "{q}");
    assert_eq!(
        (&q["true_positives"], &q["false_positives"]),
        (&Value::from(0), &Value::from(0)),
        "{q}"
    );
}

/// Labels of a content type faultline does not read are refused at once, before their body is
/// read: here one that never finishes is answered 415 (reading it first would end in 408, after
/// the idle limit).
#[tokio::test]
async fn labels_of_the_wrong_content_type_are_refused_before_their_body_is_read() {
    let s = state_with_store(WebLimits::default(), &[("W-1", 0.5)]);
    let never = Body::from_stream(futures_util::stream::pending::<
        Result<axum::body::Bytes, std::io::Error>,
    >());
    let (status, _, body) = send(&s, post_to("/api/labels", "text/plain", never)).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
}

#[tokio::test]
async fn bad_label_uploads_are_refused_with_a_reason() {
    let s = state_with_store(
        WebLimits {
            max_body_bytes: 1000,
            max_rows: 50,
            token: Some("t0k".into()),
            ..WebLimits::default()
        },
        &[],
    );
    let auth = |mut r: Request<Body>| {
        r.headers_mut()
            .insert(header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        r
    };
    let (status, _, _) = send(&s, post_to("/api/labels", "text/csv", "id,Good/Bad\n")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (ct, body, code, says) in [
        (
            "text/csv",
            "id,score\nW,1\n".to_string(),
            StatusCode::BAD_REQUEST,
            "Good/Bad",
        ),
        (
            "text/plain",
            "W,1".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/csv",
        ),
        (
            "application/json",
            "{".into(),
            StatusCode::BAD_REQUEST,
            "not JSON",
        ),
        (
            "application/json",
            r#"[{"id": "W"}]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no \\\"label\\\"",
        ),
        (
            "text/csv",
            format!("id,Good/Bad\n{}", "W,1\n".repeat(400)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit",
        ),
        (
            "text/csv",
            format!("id,Good/Bad\n{}", "W,1\n".repeat(51)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "more than 50 labels",
        ),
    ] {
        let (status, _, text) = send(&s, auth(post_to("/api/labels", ct, body))).await;
        assert_eq!(status, code, "{ct}: {text}");
        assert!(text.contains(says), "{ct}: {text} should say {says}");
    }
    // Promotion without a shadow: 409 with the reason; nothing changes.
    let (status, _, body) = send(
        &s,
        auth(
            Request::post("/api/model/promote")
                .body(Body::empty())
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("[shadow] model"), "{body}");
}

#[tokio::test]
async fn recent_returns_the_last_streamed_rows_oldest_first() {
    let s = state_with_store(
        WebLimits::default(),
        &[("a", 0.9), ("b", 0.01), ("c", 0.1967395)],
    );
    let (status, _, body) = send(&s, get("/api/recent?rows=2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An f32's own digits, as the faults topic and POST /api/score write them (not
    // 0.19673949480056763).
    assert!(body.contains(r#""probability":0.1967395,"#), "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["b", "c"]);
    assert_eq!(rows[1]["probability"].as_f64().unwrap() as f32, 0.1967395);
    assert_eq!(rows[0]["at"], "1970-01-01T00:00:00.000Z");
    assert_eq!(v["model_version"], s.model.current().version());
    let (_, _, body) = send(&s, get("/api/recent")).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 3);
    // Without the daemon's store (a bare API), it says whose it is.
    let (status, _, _) = send(&state(WebLimits::default()), get("/api/recent")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A query that does not parse is a JSON error, as every other.
    for (req, says) in [
        (get("/api/recent?rows=many"), "rows"),
        (
            Request::post("/api/score?explain=all&explain=all")
                .header(header::CONTENT_TYPE, "text/csv")
                .body(Body::from("id\n"))
                .unwrap(),
            "explain",
        ),
    ] {
        let (status, _, body) = send(&s, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        assert!(v["error"].as_str().unwrap().contains(says), "{body}");
    }
}
