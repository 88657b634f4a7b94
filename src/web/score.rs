//! `POST /api/score`: a CSV or a JSON array of rows in, one verdict per row out (JSON, or CSV with
//! `Accept: text/csv`), scored by the model and rule the stream uses.

use super::api::{too_large, ApiError, Detail};
use super::WebState;
use crate::bus::messages::VerdictMessage;
use crate::row::csv::{CsvOptions, CsvRows};
use crate::row::{json as json_rows, RowBatch, Schema};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The body of a successful `POST /api/score`.
#[derive(Debug, Serialize)]
struct ScoreResponse<'a> {
    model_version: &'a str,
    threshold: f32,
    /// The alarm budget's share, when one decides (each result says its rule and threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    alarm_rate: Option<f64>,
    results: Vec<VerdictMessage<'a>>,
    /// The upload's own labels against its verdicts, its drift, and a warning if it needs one.
    #[serde(flatten)]
    checks: crate::score::FileChecks,
}

/// Query parameters of `POST /api/score`.
#[derive(Debug, serde::Deserialize)]
pub struct ScoreQuery {
    /// `all` explains every row; otherwise faults only (as configured).
    explain: Option<String>,
}

/// `POST /api/score`: a CSV (`text/csv`) or a JSON array of row objects (`application/json`) in;
/// JSON verdicts out, or CSV with `Accept: text/csv`. Same model and threshold as the stream.
/// `?explain=all` explains every row, not only faults (the page asks for it: its threshold control
/// can flag rows the model's threshold did not).
pub async fn score(
    State(s): State<WebState>,
    headers: HeaderMap,
    query: axum::extract::Query<ScoreQuery>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(&s)
        } else {
            ApiError::new(e.status(), format!("the request body cannot be read: {e}"))
        }
    })?;
    let Ok(_slot) = s.score_slots.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "faultline is already scoring {} requests; try again shortly",
                s.limits.max_concurrent
            ),
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/csv")));
    let model = s.model.current();
    let limits = s.limits.clone();
    let allow_extra = s.allow_extra_columns;
    let work = tokio::task::spawn_blocking(move || -> Result<Response, ApiError> {
        let schema = Schema::new(model.features());
        let rows = match kind.as_str() {
            "text/csv" | "application/csv" => read_csv(&body, &schema, allow_extra, limits.max_rows)?,
            "application/json" => read_json(&body, &schema, limits.max_rows)?,
            other => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "send the rows as text/csv (a wafer CSV) or application/json (an array of row objects); got '{other}'"
                    ),
                ))
            }
        };
        let explain = crate::model::Explain {
            all_rows: query.explain.as_deref() == Some("all"),
            ..model.explain_settings()
        };
        let verdicts = model.score_explaining(&rows, &mut model.decider(), explain);
        if wants_csv {
            let mut out = Vec::new();
            let mut w = csv::Writer::from_writer(&mut out);
            let _ = w.write_record(crate::score::VERDICT_COLUMNS);
            for v in &verdicts {
                let _ = w.write_record(crate::score::verdict_record(&model, v));
            }
            drop(w);
            return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
        }
        // The file's checks travel in the JSON answer only (the CSV is one verdict per row).
        let mut check = crate::score::FileCheck::new(&model);
        check.add(&rows, &verdicts);
        let checks = check.finish(&model);
        let results: Vec<VerdictMessage> = verdicts
            .iter()
            .map(|v| VerdictMessage::result(v, &model))
            .collect();
        // A typed body, not json!: json! widens f32 to f64 and prints 0.19673949480056763 where
        // the CLI and the stream print the f32 0.1967395.
        Ok(Json(ScoreResponse {
            model_version: model.version(),
            threshold: model.threshold(),
            alarm_rate: model.budget().map(|b| b.rate),
            results,
            checks,
        })
        .into_response())
    });
    match tokio::time::timeout(s.limits.request_timeout, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scoring failed: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "scoring took longer than {} ms; send fewer rows per request",
                s.limits.request_timeout.as_millis()
            ),
        )),
    }
}

fn too_many(max_rows: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request holds more than {max_rows} rows; split it ([web] max_rows)"),
    )
}

fn read_csv(
    body: &[u8],
    schema: &Schema,
    allow_extra: bool,
    max_rows: usize,
) -> Result<RowBatch, ApiError> {
    let mut reader = CsvRows::new(
        body,
        schema,
        CsvOptions {
            allow_extra_columns: allow_extra,
            batch_rows: 4096,
        },
    )?;
    let mut all = RowBatch::new(schema.width());
    while reader.read_into(&mut all)? > 0 {
        if all.len() > max_rows {
            return Err(too_many(max_rows));
        }
    }
    Ok(all)
}

fn read_json(body: &[u8], schema: &Schema, max_rows: usize) -> Result<RowBatch, ApiError> {
    let decoded = json_rows::decode(body, schema);
    if !decoded.rejects.is_empty() {
        let details = decoded
            .rejects
            .iter()
            .map(|r| Detail {
                row: r.row,
                column: None,
                value: Some(r.payload.chars().take(120).collect()),
                reason: r.error.clone(),
            })
            .collect();
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: format!(
                "{} row(s) cannot be read; nothing was scored",
                decoded.rejects.len()
            ),
            details,
        });
    }
    if decoded.rows.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the request holds no rows",
        ));
    }
    if decoded.rows.len() > max_rows {
        return Err(too_many(max_rows));
    }
    Ok(decoded.rows)
}
