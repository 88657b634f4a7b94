//! `POST /api/score`: a CSV or a JSON array of rows in, one verdict per row out (JSON, or CSV with
//! `Accept: text/csv`), scored by the model and rule the stream uses.

use super::api::{too_large, ApiError, Detail, Media};
use super::WebState;
use crate::bus::messages::VerdictMessage;
use crate::row::csv::{CsvOptions, CsvRows};
use crate::row::{json as json_rows, RowBatch, Schema};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
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
///
/// A CSV is parsed as it arrives: the body's chunks go to the parsing thread as they come, so
/// the first rows are parsed while the last are still on the wire, and the body is never held
/// whole. The request's scoring slot is taken before the body is read, and its time limit
/// (`[web] request_timeout_ms`) counts from the body's last byte, as it did when the body was
/// read first; before that, `[web] upload_idle_ms` bounds each pause in the body and
/// `upload_timeout_ms` the whole of it, the parser's time included (a stalled or trickling upload
/// is answered 408 and frees its slot).
pub async fn score(
    State(s): State<WebState>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<ScoreQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let query = query?;
    // A request that could never be scored is told so, whether or not a slot is free.
    let media = super::api::media(&headers).map_err(|kind| unsupported(&kind))?;
    // The slot goes with the work: released when the parsing and scoring end, not when this
    // handler returns (after a time-out, the work runs on to its end).
    let slot = s.upload_slot()?;
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(prefers_csv);
    let model = s.model.current();
    let limits = s.limits.clone();
    let allow_extra = s.allow_extra_columns;
    let explain_all = query.explain.as_deref() == Some("all");
    let started = std::time::Instant::now();
    let mut upload = Upload::new(body, &s.limits);
    let work = match media {
        Media::Csv => {
            let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_CHUNKS_AHEAD);
            let work = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let schema = Schema::new(model.features());
                let chunks = Chunks {
                    rx,
                    current: Bytes::new(),
                    ended: false,
                };
                let scored = read_and_score_csv(
                    chunks,
                    &schema,
                    allow_extra,
                    limits.max_rows,
                    &model,
                    explain_all,
                )?;
                tracing::debug!(
                    read_ms = started.elapsed().as_secs_f64() * 1e3,
                    "read and scored an upload's rows"
                );
                Ok(answer(&model, scored, wants_csv))
            });
            // Feed the parser until the body ends. If it stops early (a bad cell, too many
            // rows), the rest of the body is still read and dropped, so the client, which may
            // still be sending, gets the answer rather than a reset connection.
            let mut parser = Some(tx);
            let received = async {
                while let Some(chunk) = upload.next(&s).await? {
                    if let Some(tx) = &parser {
                        if tx.send(Piece::Data(chunk)).await.is_err() {
                            parser = None;
                        }
                    }
                }
                Ok::<(), ApiError>(())
            }
            .await;
            tracing::debug!(
                bytes = upload.received,
                received_ms = started.elapsed().as_secs_f64() * 1e3,
                "received an upload"
            );
            match (received, parser) {
                // Dropping the sender without `End` makes the parser stop with an error. It is
                // waited for (briefly: it only drains what was queued), so that its scoring slot
                // is free by the time the client reads this answer and sends again.
                (Err(e), parser) => {
                    drop(parser);
                    let _ = tokio::time::timeout(s.limits.request_timeout, work).await;
                    return Err(e);
                }
                (Ok(()), Some(tx)) => {
                    let _ = tx.send(Piece::End).await;
                }
                (Ok(()), None) => {}
            }
            work
        }
        Media::Json => {
            let body = upload.read_all(&s).await?;
            tokio::task::spawn_blocking(move || {
                let _slot = slot;
                let schema = Schema::new(model.features());
                let rows = read_json(&body, &schema, limits.max_rows, allow_extra)?;
                let labelled = rows.labels.iter().any(Option::is_some);
                let mut scored = Scored::new(&model, labelled);
                scored.add(&model, &rows, explain_all);
                Ok(answer(&model, scored, wants_csv))
            })
        }
    };
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

/// How many of the body's chunks may wait for the CSV parser before receiving pauses.
const UPLOAD_CHUNKS_AHEAD: usize = 64;

/// An upload's body, read chunk by chunk against the size limit.
pub(super) struct Upload {
    body: Body,
    received: usize,
    limit: usize,
    /// Longest the body may send nothing: a stalled upload (a client asleep or cut off without a
    /// word) would otherwise hold its scoring slot for as long as its connection lives.
    idle: std::time::Duration,
    /// When the whole body must have arrived: an upload trickling a byte at a time, each pause
    /// within `idle`, would otherwise hold its slot as long as it likes.
    deadline: tokio::time::Instant,
    /// `[web] upload_timeout_ms`, for the message.
    timeout: std::time::Duration,
}

impl Upload {
    /// `body`, to be read within `[web] max_body_bytes`, `upload_idle_ms` and
    /// `upload_timeout_ms` (counted from now).
    pub(super) fn new(body: Body, limits: &super::api::WebLimits) -> Upload {
        Upload {
            body,
            received: 0,
            limit: limits.max_body_bytes,
            idle: limits.upload_idle,
            deadline: tokio::time::Instant::now() + limits.upload_timeout,
            timeout: limits.upload_timeout,
        }
    }

    /// The whole body, read within the limits.
    pub(super) async fn read_all(mut self, s: &WebState) -> Result<Vec<u8>, ApiError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next(s).await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    /// Why an upload still arriving at its deadline is cut off.
    fn too_slow(&self) -> String {
        format!(
            "the upload was still arriving after {} ms, with {} bytes received ([web] \
             upload_timeout_ms); raise that limit for a slow link",
            self.timeout.as_millis(),
            self.received
        )
    }

    /// The next chunk of the body, `None` at its end.
    pub(super) async fn next(&mut self, s: &WebState) -> Result<Option<Bytes>, ApiError> {
        loop {
            let now = tokio::time::Instant::now();
            let idle_end = now + self.idle;
            let Ok(frame) =
                tokio::time::timeout_at(idle_end.min(self.deadline), self.body.frame()).await
            else {
                let message = if idle_end <= self.deadline {
                    format!(
                        "the upload sent nothing for {} ms after {} bytes ([web] upload_idle_ms); \
                         send the whole body without pausing",
                        self.idle.as_millis(),
                        self.received
                    )
                } else {
                    self.too_slow()
                };
                return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, message));
            };
            let Some(frame) = frame else {
                return Ok(None);
            };
            // A body that keeps sending, a byte at a time, is cut off all the same.
            if tokio::time::Instant::now() >= self.deadline {
                return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, self.too_slow()));
            }
            let frame = frame.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the request body cannot be read: {e}"),
                )
            })?;
            // Trailers carry no rows.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.received += data.len();
            if self.received > self.limit {
                return Err(too_large(s));
            }
            return Ok(Some(data));
        }
    }
}

/// What the receiving side hands the CSV parser.
enum Piece {
    Data(Bytes),
    /// The body ended here. A channel closed without it means the upload failed.
    End,
}

/// The parser's side of a CSV upload: the body's chunks as one `Read`.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<Piece>,
    current: Bytes,
    /// `End` came: every later read is the end too.
    ended: bool,
}

impl std::io::Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(chunk)) => self.current = chunk,
                Some(Piece::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::other(
                        "the upload stopped before the end of its body",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// An upload's rows scored so far, in their order: the verdicts, the file's labels and checks,
/// and one decider (an alarm budget rolls over the whole file). The rows themselves are not
/// kept: a CSV upload is scored a few thousand rows at a time as it is parsed, so a request holds
/// its verdicts, not a matrix of every sensor (236 MB at 100,000 rows).
struct Scored {
    verdicts: Vec<crate::model::Verdict>,
    labels: Vec<Option<i8>>,
    labelled: bool,
    check: crate::score::FileCheck,
    decider: crate::model::Decider,
    /// Time spent scoring, explaining and checking.
    busy: std::time::Duration,
}

impl Scored {
    fn new(model: &crate::model::Model, labelled: bool) -> Scored {
        Scored {
            verdicts: Vec::new(),
            labels: Vec::new(),
            labelled,
            check: crate::score::FileCheck::new(model),
            decider: model.decider(),
            busy: std::time::Duration::ZERO,
        }
    }

    /// Scores `rows`, the next of the upload.
    fn add(&mut self, model: &crate::model::Model, rows: &RowBatch, explain_all: bool) {
        let started = std::time::Instant::now();
        let explain = crate::model::Explain {
            all_rows: explain_all,
            ..model.explain_settings()
        };
        let verdicts = model.score_explaining(rows, &mut self.decider, explain);
        self.check.add(rows, &verdicts);
        self.verdicts.extend(verdicts);
        self.labels.extend_from_slice(&rows.labels);
        self.busy += started.elapsed();
    }
}

/// Writes the answer for an upload `scored`: JSON with the file's checks, or CSV (with `Good/Bad`
/// when the upload is labelled, as `faultline score` writes it) whose checks travel in the
/// headers [`EVALUATION_HEADER`] and [`WARNING_HEADER`].
fn answer(model: &crate::model::Model, scored: Scored, wants_csv: bool) -> Response {
    let started = std::time::Instant::now();
    let Scored {
        verdicts,
        labels,
        labelled,
        check,
        busy,
        ..
    } = scored;
    let checks = check.finish(model);
    if wants_csv {
        let mut out = Vec::new();
        let mut w = csv::Writer::from_writer(&mut out);
        let mut head = crate::score::VERDICT_COLUMNS.to_vec();
        if labelled {
            head.push(crate::row::csv::LABEL_COLUMN);
        }
        let _ = w.write_record(head);
        let mut records = crate::score::VerdictRecords::default();
        for (v, label) in verdicts.iter().zip(&labels) {
            let _ = w.write_record(records.record(model, v, labelled.then_some(*label)));
        }
        drop(w);
        let mut response =
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
        // What the JSON answer says beside its results, as `faultline score` says it on stderr.
        let sentences = [
            (
                EVALUATION_HEADER,
                checks
                    .evaluation
                    .as_ref()
                    .map(crate::score::describe_evaluation),
            ),
            (WARNING_HEADER, checks.warning),
        ];
        for (name, sentence) in sentences {
            if let Some(value) = sentence.and_then(|t| HeaderValue::from_str(&visible(&t)).ok()) {
                response.headers_mut().insert(name, value);
            }
        }
        return response;
    }
    let results: Vec<VerdictMessage> = verdicts
        .iter()
        .map(|v| VerdictMessage::result(v, model))
        .collect();
    let checked = started.elapsed();
    let rows = verdicts.len();
    // A typed body, not json!: json! widens f32 to f64 and prints 0.19673949480056763 where
    // the CLI and the stream print the f32 0.1967395.
    let response = Json(ScoreResponse {
        model_version: model.version(),
        threshold: model.threshold(),
        alarm_rate: model.budget().map(|b| b.rate),
        results,
        checks,
    })
    .into_response();
    tracing::debug!(
        rows,
        score_ms = busy.as_secs_f64() * 1e3,
        checks_ms = checked.as_secs_f64() * 1e3,
        json_ms = (started.elapsed() - checked).as_secs_f64() * 1e3,
        "scored an upload"
    );
    response
}

/// `text` in the characters a header value may hold everywhere (visible ASCII and spaces): the
/// sentences are ASCII but for sensor names, which the model card may spell otherwise; any other
/// character is written as Rust escapes it (`\u{e9}`), so the header is never dropped.
fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == ' ' || c.is_ascii_graphic() {
            out.push(c);
        } else {
            out.extend(c.escape_unicode());
        }
    }
    out
}

/// The CSV answer's header with the upload's evaluation against its own `Good/Bad` labels.
pub const EVALUATION_HEADER: &str = "faultline-evaluation";
/// The CSV answer's header with the upload's warnings: wafers the model was trained on, sensors off
/// their training distribution.
pub const WARNING_HEADER: &str = "faultline-warning";

fn too_many(max_rows: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request holds more than {max_rows} rows; split it ([web] max_rows)"),
    )
}

/// Reads a CSV upload and scores it as it is parsed, [`SCORE_ROWS`] rows at a time.
fn read_and_score_csv(
    body: impl std::io::Read,
    schema: &Schema,
    allow_extra: bool,
    max_rows: usize,
    model: &crate::model::Model,
    explain_all: bool,
) -> Result<Scored, ApiError> {
    let mut reader = CsvRows::new(
        body,
        schema,
        CsvOptions {
            allow_extra_columns: allow_extra,
            batch_rows: SCORE_ROWS,
        },
    )?;
    let mut scored = Scored::new(model, reader.has_labels());
    let mut batch = RowBatch::new(schema.width());
    loop {
        batch.clear();
        if reader.read_into(&mut batch)? == 0 {
            break;
        }
        if scored.verdicts.len() + batch.len() > max_rows {
            return Err(too_many(max_rows));
        }
        scored.add(model, &batch, explain_all);
    }
    Ok(scored)
}

/// Whether an `Accept` header asks for CSV: `text/csv` listed with a weight above 0 and at least
/// that of `application/json` (or of `*/*`, `application/*`, when JSON is not named). Weights
/// are read (`q=`): `application/json, text/csv;q=0.1` prefers JSON, and `text/csv;q=0` refuses
/// CSV.
fn prefers_csv(accept: &str) -> bool {
    let weight = |wanted: &[&str]| -> Option<f32> {
        accept
            .split(',')
            .filter_map(|entry| {
                let mut parts = entry.split(';');
                let kind = parts.next()?.trim().to_ascii_lowercase();
                if !wanted.contains(&kind.as_str()) {
                    return None;
                }
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some(q)
            })
            .reduce(f32::max)
    };
    let Some(csv) = weight(&["text/csv"]).filter(|q| *q > 0.0) else {
        return false;
    };
    let json = weight(&["application/json"])
        .or_else(|| weight(&["application/*", "*/*"]))
        .unwrap_or(0.0);
    csv >= json
}

/// Rows of a CSV upload scored at a time: enough for the two scoring threads (a batch of at
/// least 2,048 rows is split between them), few enough to hold (9.7 MB at 590 sensors).
const SCORE_ROWS: usize = 4096;

fn read_json(
    body: &[u8],
    schema: &Schema,
    max_rows: usize,
    allow_extra: bool,
) -> Result<RowBatch, ApiError> {
    // At most max_rows rows decoded: an array of sparse rows decodes to far more than its body
    // (a 900 KB array of 100,000 ids to 236 MB of sensors).
    let decoded = json_rows::decode_at_most(body, schema, max_rows);
    // An array past what one JSON message may hold is too large, like one past max_rows.
    if decoded
        .rejects
        .iter()
        .any(json_rows::Reject::is_too_many_rows)
    {
        return Err(if max_rows < json_rows::MAX_ROWS {
            too_many(max_rows)
        } else {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "one JSON request holds at most {} rows; split it, or send the rows as CSV",
                    json_rows::MAX_ROWS
                ),
            )
        });
    }
    // A body that is not JSON (or not UTF-8) is a malformed request, not a bad cell.
    if let Some(r) = decoded.rejects.iter().find(|r| {
        r.row.is_none()
            && matches!(
                r.reason,
                json_rows::RejectReason::MalformedJson | json_rows::RejectReason::NotUtf8
            )
    }) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, r.error.clone()));
    }
    if !decoded.rejects.is_empty() {
        // As a CSV error's: row and column apart, the value itself, the reason without them.
        let details = decoded
            .rejects
            .iter()
            .map(|r| Detail {
                row: r.row,
                column: r.column.clone(),
                value: r.value.clone(),
                reason: match r.row {
                    Some(n) => r
                        .error
                        .strip_prefix(&format!("row {n}: "))
                        .unwrap_or(&r.error)
                        .to_string(),
                    None => r.error.clone(),
                },
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
    // A key the model does not read is refused, as an unknown CSV column is: a misspelt sensor
    // (`sensor-1`) would otherwise be scored as missing, its training median standing in, without
    // a word. (On the bus such keys are ignored and counted.)
    if decoded.unknown_keys > 0 && !allow_extra {
        // Read again for the names (the decoder only counts them): paid by refused requests.
        let (names, rows) = json_rows::unknown_keys(body, schema, 100);
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: format!(
                "{rows} row(s) hold keys the model does not read: {}; nothing was scored (a row's keys are the model's sensors, \"id\", \"values\" and \"{}\"; remove the others, or set [input] allow_extra_columns)",
                names
                    .iter()
                    .take(5)
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if names.len() > 5 { ", ..." } else { "" },
                crate::row::csv::LABEL_COLUMN,
            ),
            details: names
                .into_iter()
                .map(|n| Detail {
                    row: None,
                    column: Some(n),
                    value: None,
                    reason: "unknown key".into(),
                })
                .collect(),
        });
    }
    Ok(decoded.rows)
}

/// 415 for a body that is neither a CSV nor JSON rows.
fn unsupported(kind: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "send the rows as text/csv (a wafer CSV) or application/json (an array of row objects); got '{kind}'"
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_is_answered_when_the_accept_header_prefers_it() {
        for (accept, csv) in [
            ("text/csv", true),
            ("text/csv; charset=utf-8", true),
            ("text/csv, application/json", true),
            ("application/json, text/csv", true),
            ("application/json, text/csv;q=0.1", false),
            ("text/csv;q=0", false),
            ("text/csv;q=0.5, */*;q=0.1", true),
            ("text/csv;q=0.5, */*", false),
            ("TEXT/CSV", true),
            ("*/*", false),
            ("application/json", false),
            ("", false),
        ] {
            assert_eq!(super::prefers_csv(accept), csv, "{accept:?}");
        }
    }

    #[test]
    fn header_sentences_keep_visible_ascii_and_escape_the_rest() {
        let t = super::visible("Sensor-\u{e9}t\u{e9} (median +3.1 robust sigmas),\ttab\n");
        assert_eq!(
            t,
            "Sensor-\\u{e9}t\\u{e9} (median +3.1 robust sigmas),\\u{9}tab\\u{a}"
        );
        assert!(axum::http::HeaderValue::from_str(&t).is_ok());
    }
}
