//! The JSON API the page (and scripts) use: `POST /api/score`, plus the bearer-token check.
//!
//! Every error is JSON — `{"error": "...", "details": [{"row", "column", "value", "reason"}]}` —
//! with a message a person can act on.

use super::WebState;
use crate::bus::messages::VerdictMessage;
use crate::row::csv::{CsvError, CsvOptions, CsvRows};
use crate::row::{json as json_rows, RowBatch, Schema};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

/// Limits on the HTTP API.
#[derive(Debug, Clone)]
pub struct WebLimits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most rows one request may score.
    pub max_rows: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Scoring requests served at once; more are refused with 503 (load shedding).
    pub max_concurrent: usize,
    /// Bearer token required on `/api/*` when set.
    pub token: Option<crate::secret::Secret>,
}

impl Default for WebLimits {
    fn default() -> Self {
        WebLimits {
            max_body_bytes: 64 * 1024 * 1024,
            max_rows: 100_000,
            request_timeout: Duration::from_secs(30),
            max_concurrent: 4,
            token: None,
        }
    }
}

/// One problem with the input, located.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Detail {
    /// 1-based data row, when known.
    pub row: Option<usize>,
    /// Column (or JSON key), when known.
    pub column: Option<String>,
    /// The offending value, when known.
    pub value: Option<String>,
    /// Why it is refused.
    pub reason: String,
}

/// An API error: a status, a sentence, and the located details.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, as a sentence.
    pub error: String,
    /// Where, when the input is at fault.
    pub details: Vec<Detail>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            details: vec![],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "details": self.details})),
        )
            .into_response()
    }
}

impl From<CsvError> for ApiError {
    fn from(e: CsvError) -> ApiError {
        let error = e.to_string();
        let (status, details) = match &e {
            CsvError::BadCell {
                row,
                column,
                value,
                reason,
                ..
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                vec![Detail {
                    row: Some(*row),
                    column: Some(column.clone()),
                    value: Some(value.clone()),
                    reason: reason.to_string(),
                }],
            ),
            CsvError::MissingColumns(cols)
            | CsvError::UnknownColumns(cols)
            | CsvError::DuplicateColumns(cols) => {
                let reason = match &e {
                    CsvError::MissingColumns(_) => "missing",
                    CsvError::UnknownColumns(_) => "unknown column",
                    _ => "duplicate column",
                };
                (
                    StatusCode::BAD_REQUEST,
                    cols.iter()
                        .map(|c| Detail {
                            row: None,
                            column: Some(c.clone()),
                            value: None,
                            reason: reason.into(),
                        })
                        .collect(),
                )
            }
            CsvError::Ragged { line, .. } => (
                StatusCode::BAD_REQUEST,
                vec![Detail {
                    row: line.checked_sub(1),
                    column: None,
                    value: None,
                    reason: error.clone(),
                }],
            ),
            CsvError::Io(_) => (StatusCode::BAD_REQUEST, vec![]),
            _ => (StatusCode::BAD_REQUEST, vec![]),
        };
        ApiError {
            status,
            error,
            details,
        }
    }
}

/// Checks `Authorization: Bearer <token>` when a token is configured (constant-time compare).
pub fn authorize(state: &WebState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.limits.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this faultline requires a token: send the header 'Authorization: Bearer <token>' ([web] token)",
        ))
    }
}

/// The API's token check as a layer: every `/api/` route runs it before its handler (and before
/// an upload's body is read), so no handler can forget it.
pub async fn require_token(
    State(s): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&s, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for (i, &x) in b.iter().enumerate() {
        diff |= x ^ a.get(i).copied().unwrap_or(0);
    }
    diff == 0 && a.len() == b.len()
}

/// The body of a successful `POST /api/score`.
#[derive(Debug, Serialize)]
struct ScoreResponse<'a> {
    model_version: &'a str,
    threshold: f32,
    /// The alarm budget's share, when one decides (each result says its rule and threshold).
    #[serde(skip_serializing_if = "Option::is_none")]
    alarm_rate: Option<f64>,
    results: Vec<VerdictMessage<'a>>,
}

/// Query parameters of `POST /api/score`.
#[derive(Debug, serde::Deserialize)]
pub struct ScoreQuery {
    /// `all` explains every row; otherwise faults only (as configured).
    explain: Option<String>,
}

/// The answer to a body over `[web] max_body_bytes`.
pub(crate) fn too_large(s: &WebState) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is larger than the limit of {} MiB ([web] max_body_bytes); split the file",
            s.limits.max_body_bytes / (1024 * 1024)
        ),
    )
}

/// Runs before an upload's body is read (after [`require_token`]): refuses a request whose
/// declared `Content-Length` is over the limit at once, instead of waiting for a body that may
/// never come.
pub async fn guard_upload(
    State(s): State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.limits.max_body_bytes as u64) {
        return too_large(&s).into_response();
    }
    next.run(request).await
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
    while let Some(b) = reader.next_batch()? {
        all.append(b);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret1", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
