//! The loop's endpoints: `POST /api/labels`, `GET /api/quality`, `POST /api/model/promote`.

use super::api::ApiError;
use super::WebState;
use crate::store::ledger::LabelOutcome;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

fn store(s: &WebState) -> Result<&std::sync::Arc<crate::store::Store>, ApiError> {
    s.store.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "labels and live quality belong to the daemon: run `faultline serve`",
        )
    })
}

/// `POST /api/labels`: CSV (an id column first and `Good/Bad`, or a labelled wafer file) or JSON
/// (`{"id", "label", "at"}` or an array of them). Good labels are applied even when others are
/// refused; the answer counts what each did and lists every refusal with its row and reason.
pub async fn labels(
    State(s): State<WebState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let store = store(&s)?.clone();
    // Refused before its body is read (up to max_body_bytes) for nothing.
    let media = super::api::media(&headers).map_err(|kind| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send labels as text/csv (id,Good/Bad) or application/json ({{\"id\", \"label\"}} objects); got '{kind}'"),
        )
    })?;
    // A slot of [web] max_concurrent, shared with scoring uploads: each upload holds up to
    // max_body_bytes in memory, so label uploads are not let in without a bound either.
    let slot = s.upload_slot()?;
    // Within [web] max_body_bytes, and answered 408 after upload_idle_ms without a byte or
    // upload_timeout_ms in all, as a scoring upload is: a stalled or trickling client does not
    // hold its connection and buffer for ever.
    let body = super::score::Upload::new(body, &s.limits)
        .read_all(&s)
        .await?;
    let max_rows = s.limits.max_rows;
    let metrics = s.metrics.clone();
    let model = s.model.current();
    // One wait for room in the store's queue and for the write, together.
    let deadline = std::time::Instant::now() + LABELS_WRITE_WAIT;
    let work = tokio::task::spawn_blocking(
        move || -> Result<(StatusCode, serde_json::Value, crate::store::Written), ApiError> {
            let parsed = match media {
                // At most one row past the limit is read: enough to refuse the request.
                super::api::Media::Csv => crate::labels::from_csv(&body, max_rows, |n| {
                    model.features().iter().any(|f| f == n)
                })
                .map(|r| (r.labels, r.errors, r.unlabelled)),
                super::api::Media::Json => {
                    crate::labels::from_json(&body, max_rows).map(|(l, e)| (l, e, 0))
                }
            };
            // The body is read: its memory and its slot go now, not after the labels wait for
            // room in the store's queue (a hung disk would hold every slot, scoring's too).
            drop(body);
            drop(slot);
            let (labels, rejected, unlabelled) =
                parsed.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
            if labels.len() + rejected.len() + unlabelled > max_rows {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "more than {max_rows} labels in one request ([web] max_rows); split them"
                    ),
                ));
            }
            // A failing disk already holds as many labels as faultline keeps for it: these are
            // refused, not applied, so that memory stays bounded.
            let status = store.status();
            if status.labels_waiting >= crate::store::MAX_UNWRITTEN_LABELS {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the store cannot write ({}) and {} labels already wait for it; these were not applied. Send them again once /readyz shows the store without an error",
                        status.error.as_deref().unwrap_or("the disk refuses them"),
                        status.labels_waiting
                    ),
                ));
            }
            let accepted = labels.len();
            // Refused while stopping: nothing is counted, so a client that sends again later is
            // counted once.
            let (outcomes, written) = store
                .record_labels_within(
                    labels,
                    Some(deadline.saturating_duration_since(std::time::Instant::now())),
                )
                .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
            metrics
                .labels
                .with_label_values(&["rejected"])
                .inc_by(rejected.len() as u64);
            let count = |o| outcomes.iter().filter(|x| **x == o).count();
            let status = if accepted == 0 && !rejected.is_empty() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            let body = json!({
                "accepted": accepted,
                "joined": count(LabelOutcome::Joined),
                "relabelled": count(LabelOutcome::Relabelled),
                "pending": count(LabelOutcome::Pending),
                "rejected": rejected,
                "unlabelled": unlabelled,
            });
            Ok((status, body, written))
        },
    );
    let (status, body, written) = work
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    // Answered once the labels are on disk, as a label from the bus is acknowledged: a 200
    // means a restart keeps them.
    let stored = tokio::time::timeout_at(deadline.into(), written).await;
    if stored != Ok(true) {
        let store = s.store.as_ref().map(|st| st.status()).unwrap_or_default();
        let again = "Send them again once /readyz shows the store without an error: a second label for a wafer replaces the first";
        let message = match (stored, store.error) {
            (Err(_), error) => format!(
                "the labels were applied but are not on disk after {} s ({}); faultline keeps trying to write them, but a restart before it succeeds loses them. {again}",
                LABELS_WRITE_WAIT.as_secs(),
                error.as_deref().unwrap_or("the store's writer is behind"),
            ),
            (Ok(_), error) => format!(
                "the labels were applied but the store gave them up unwritten ({}). {again}",
                error.as_deref().unwrap_or("faultline is stopping"),
            ),
        };
        // The counts go with it, and `applied`: the page and scripts must not read a 503 as a
        // refusal (these labels count in live quality now) nor as kept (a restart loses them).
        let mut body = body;
        body["applied"] = json!(true);
        body["error"] = json!(message);
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    Ok((status, Json(body)).into_response())
}

/// How long `POST /api/labels` waits for its labels to be written before it answers 503.
const LABELS_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /api/quality`: live quality of the serving model and the shadow, the label counts and
/// the store's health.
pub async fn quality(State(s): State<WebState>) -> Result<Response, ApiError> {
    let store = store(&s)?.clone();
    // One computation at a time, run by a task of its own that keeps the figures even if this
    // request goes away (their intervals resample the window up to a thousand times: about 4 ms
    // a model at the default 1,000 wafers, about 115 ms at 100,000; BENCHMARKS.md).
    let memo = s.quality_figures.kept.clone().lock_owned().await;
    // The models after the wait, so that figures are never kept under models that went.
    let (serving, shadow) = s.model.both();
    // The serving model's counts are of its verdicts under an alarm budget (no one threshold
    // gives them); a shadow publishes none, so its are at its threshold.
    let by_verdicts = serving.budget().is_some();
    let models: ModelsKey = (
        (
            serving.version().into(),
            serving.threshold().to_bits(),
            by_verdicts,
        ),
        shadow
            .as_ref()
            .map(|sh| (sh.version().into(), sh.threshold().to_bits())),
    );
    // The label counts and the window's stamp under one hold of the ledger's lock, with the
    // rows when the figures kept are not of this very window: the figures always agree with
    // the counts beside them. The figures are computed after the lock, off the runtime (the
    // scorer takes the lock for every batch).
    let (window, counts, remembered, key, kept) = {
        let ledger = store.ledger();
        let key = FiguresKey {
            stamp: ledger.window_stamp(),
            models,
        };
        // The figures kept, or the rows to compute them from.
        let kept = match memo.as_ref() {
            Some((k, figures)) if *k == key => Ok(figures.clone()),
            _ => Err((
                ledger.model_rows(serving.version(), serving.threshold(), by_verdicts),
                shadow
                    .as_ref()
                    .map(|sh| ledger.model_rows(sh.version(), sh.threshold(), false)),
                shadow
                    .as_ref()
                    .map(|sh| ledger.both_scored(serving.version(), sh.version())),
            )),
        };
        (
            ledger.limits().window,
            ledger.counts(),
            ledger.rows(),
            key,
            kept,
        )
    };
    let computed = s.quality_figures.computed.clone();
    let figures = match kept {
        Ok(figures) => figures,
        Err((serving_rows, shadow_rows, both)) => tokio::spawn(async move {
            let mut memo = memo;
            computed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let figures = tokio::task::spawn_blocking(move || {
                std::sync::Arc::new(Figures {
                    serving: serving_rows.compute(),
                    shadow: shadow_rows.map(|r| r.compute()),
                    comparison: both.map(|rows| crate::quality::compare(&rows)),
                })
            })
            .await?;
            *memo = Some((key, figures.clone()));
            Ok::<_, tokio::task::JoinError>(figures)
        })
        .await
        .and_then(|computed| computed)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("computing live quality failed: {e}"),
            )
        })?,
    };
    let model = |role: &str, m: &crate::model::Model, q: &crate::quality::Quality| json!({"role": role, "version": m.version(), "quality": q});
    let mut models = vec![model(
        crate::metrics::MODEL_SERVING,
        &serving,
        &figures.serving,
    )];
    if let (Some(sh), Some(q)) = (&shadow, &figures.shadow) {
        models.push(model(crate::metrics::MODEL_SHADOW, sh, q));
    }
    let body = json!({
        "window_rows": window,
        "models": models,
        // The shadow against the serving model on the wafers both scored (`roc_auc_b` the
        // shadow's, `difference` shadow minus serving), or null without a shadow.
        "comparison": &figures.comparison,
        "labels": counts,
        "rows_remembered": remembered,
        "store": store.status(),
    });
    Ok(Json(body).into_response())
}

/// What the live-quality figures were computed from: the ledger's window (its stamp) and each
/// model's version, threshold (as bits) and, for the serving model, whether its published
/// verdicts are counted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FiguresKey {
    stamp: u64,
    /// The serving model's (version, threshold bits, by verdicts), and the shadow's (version,
    /// threshold bits).
    models: ModelsKey,
}

type ModelsKey = (
    (std::sync::Arc<str>, u32, bool),
    Option<(std::sync::Arc<str>, u32)>,
);

/// The figures `GET /api/quality` shows for each model, and their comparison.
#[derive(Debug)]
pub(crate) struct Figures {
    serving: crate::quality::Quality,
    shadow: Option<crate::quality::Quality>,
    comparison: Option<crate::quality::Comparison>,
}

/// Figures, with what they were computed from.
type Kept = (FiguresKey, std::sync::Arc<Figures>);

/// The last figures computed, with what they were computed from, and how many times figures
/// were computed.
#[derive(Debug, Clone, Default)]
pub(crate) struct FiguresMemo {
    kept: std::sync::Arc<tokio::sync::Mutex<Option<Kept>>>,
    computed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FiguresMemo {
    /// How many times `GET /api/quality` computed its figures rather than taking kept ones.
    pub(crate) fn computed(&self) -> u64 {
        self.computed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Rows `GET /api/recent` returns at most (and by default).
pub const RECENT_ROWS: usize = 2000;

/// Query of `GET /api/recent`.
#[derive(Debug, serde::Deserialize)]
pub struct RecentQuery {
    /// How many of the last scored rows (at most [`RECENT_ROWS`]).
    rows: Option<usize>,
}

/// `GET /api/recent?rows=N`: the last rows the daemon scored from the bus, oldest first, with
/// when and the P(fault) of the model that served then; and the serving model's version and
/// threshold (a row is a fault at or above it; under an alarm budget the verdicts used the
/// budget's moving threshold instead).
pub async fn recent(
    State(s): State<WebState>,
    query: Result<axum::extract::Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query?;
    let store = store(&s)?.clone();
    let n = query.rows.unwrap_or(RECENT_ROWS).min(RECENT_ROWS);
    let model = s.model.current();
    // Copied out under the ledger's lock (the scorer takes it for every batch), rendered after.
    let recent: Vec<(String, i64, std::sync::Arc<str>, f32)> = store
        .ledger()
        .recent(n)
        .into_iter()
        .map(|(id, at, (version, p))| (id.to_string(), at, version.clone(), *p))
        .collect();
    let rows: Vec<RecentRow> = recent
        .iter()
        .map(|(id, at, version, p)| RecentRow {
            id,
            at: crate::clock::rfc3339_ms(*at),
            probability: *p,
            model_version: version,
        })
        .collect();
    Ok(Json(Recent {
        model_version: model.version(),
        threshold: model.threshold(),
        alarm_rate: model.budget().map(|b| b.rate),
        rows,
    })
    .into_response())
}

/// `GET /api/recent`'s answer. Typed rather than `json!`, which widens an f32 to f64 and writes
/// 0.19673949480056763 where the faults topic and `POST /api/score` write 0.1967395.
#[derive(serde::Serialize)]
struct Recent<'a> {
    model_version: &'a str,
    threshold: f32,
    alarm_rate: Option<f64>,
    rows: Vec<RecentRow<'a>>,
}

/// One row of [`Recent`].
#[derive(serde::Serialize)]
struct RecentRow<'a> {
    id: &'a str,
    at: String,
    probability: f32,
    model_version: &'a str,
}
