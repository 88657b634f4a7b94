//! The scoring stage: each micro-batch is scored by the serving model (and its shadow) off the
//! runtime, remembered (the drift window, the store), counted, and published: a verdict per row
//! to the faults topic (and the scores topic when configured), a dead letter per unreadable row.
//! Its acknowledgements then go to the [`super::ack`] stage, which releases them once the broker
//! has the outputs.

use super::ack::Pending;
use super::error::AppError;
use crate::bus::messages::{now_rfc3339, DeadLetter, VerdictMessage};
use crate::bus::{Incoming, Output, PublishError, Publisher};
use crate::drift::DriftWindow;
use crate::metrics::Metrics;
use crate::model::live::LiveModel;
use crate::model::{Decider, Explain, Model, Rule, Verdict};
use crate::row::RowBatch;
use crate::store::segment::ScoredBatch;
use crate::store::Store;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tracing::warn;

/// Where outputs go.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Every fault.
    pub faults: String,
    /// Every verdict, when set.
    pub scores: Option<String>,
    /// Unreadable rows.
    pub dead_letter: String,
}

/// The scoring stage of `faultline serve`.
pub struct ScoringStage {
    /// The serving model and its shadow, swapped between batches by reloads and promotions.
    pub live: LiveModel,
    /// Where outputs go.
    pub topics: Topics,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
    /// Recent rows, for drift.
    pub drift: Arc<Mutex<DriftWindow>>,
    /// Every scored row, for the join with labels.
    pub store: Arc<Store>,
    /// How many dead letters have been logged lately, so a stream of them does not flood the log.
    pub dead_letter_lines: Mutex<LineBudget>,
}

/// Log lines for a kind of event: the first [`LineBudget::LINES`] of each minute are written, the
/// rest counted and summed up in the next line written (the metric counts every one).
#[derive(Debug, Default)]
pub struct LineBudget {
    minute: Option<std::time::Instant>,
    written: u32,
    held: u64,
}

impl LineBudget {
    /// Lines written a minute.
    pub const LINES: u32 = 10;

    /// Whether to write a line for an event at `now`, and how many events went without one
    /// since the last line written.
    pub fn take(&mut self, now: std::time::Instant) -> Option<u64> {
        let fresh = self
            .minute
            .is_none_or(|m| now.duration_since(m) >= std::time::Duration::from_secs(60));
        if fresh {
            self.minute = Some(now);
            self.written = 0;
        }
        if self.written >= Self::LINES {
            self.held += 1;
            return None;
        }
        self.written += 1;
        Some(std::mem::take(&mut self.held))
    }
}

/// One batch scored: its verdicts and how long the model took.
struct Scored {
    verdicts: Vec<Verdict>,
    seconds: f64,
    rows: usize,
}

impl ScoringStage {
    /// Scores each batch from `batches`, publishes its outputs on `publisher` and hands its
    /// acknowledgements to `pending`. Returns the publisher when the batches end (shutdown) so
    /// that it can deliver what is queued; fails when the publisher stops for good.
    pub async fn run(
        self,
        mut batches: mpsc::Receiver<Vec<Incoming>>,
        mut publisher: Publisher,
        pending: mpsc::Sender<Pending>,
    ) -> Result<Publisher, AppError> {
        // The alarm budget's window of recent scores lives as long as the stream, while the
        // model's version does.
        let mut decider = self.live.current().decider();
        let mut decided_for = self.live.current().version().to_string();
        while let Some(mut batch) = batches.recv().await {
            // Rows per message, counted before the rows move into the scoring batch.
            let counts: Vec<usize> = batch.iter().map(Incoming::rows).collect();
            // One model per batch (and its shadow): a reload or promotion takes effect between
            // batches.
            let (model, shadow) = self.live.both();
            if model.version() != decided_for {
                // Another model's scores sit on another scale: judged against the last model's
                // window it would flag nearly every wafer, or nearly none, until the window
                // turned over. Its budget starts afresh (warm-up, at its threshold).
                decider = model.decider();
                decided_for = model.version().to_string();
            }
            let mut rows = RowBatch::with_capacity(model.width(), counts.iter().sum());
            for incoming in &mut batch {
                rows.append(std::mem::take(&mut incoming.decoded.rows));
            }
            let scored;
            (scored, decider) = self.score(model.clone(), shadow, rows, decider).await?;
            self.count(&scored);
            self.publish_verdicts(&mut publisher, &model, &scored.verdicts)
                .await?;
            let mut acks = Vec::with_capacity(batch.len());
            for (incoming, rows) in batch.into_iter().zip(counts) {
                self.dead_letter(&mut publisher, &incoming).await?;
                acks.push((incoming.ack, incoming.permit, incoming.received, rows));
            }
            let seq_end = publisher.sent();
            if pending.send(Pending { seq_end, acks }).await.is_err() {
                break;
            }
        }
        Ok(publisher)
    }

    /// Scores `rows` on the blocking pool with `model` and the shadow, and remembers them in the
    /// drift window and the store.
    async fn score(
        &self,
        model: Arc<Model>,
        shadow: Option<Arc<Model>>,
        rows: RowBatch,
        mut decider: Decider,
    ) -> Result<(Scored, Decider), AppError> {
        let (window, store) = (self.drift.clone(), self.store.clone());
        // Without a scores topic only the faults are published: the other verdicts need no
        // unusual sensors.
        let explain = Explain {
            unusual_all_rows: self.topics.scores.is_some(),
            ..model.explain_settings()
        };
        tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            let verdicts = model.score_explaining(&rows, &mut decider, explain);
            let seconds = t.elapsed().as_secs_f64();
            let probabilities: Vec<f32> = verdicts.iter().map(|v| v.probability).collect();
            if let Ok(mut w) = window.lock() {
                w.push(&rows.values, &probabilities);
            }
            let shadow = shadow.map(|s| {
                let mut p = vec![0.0; rows.len()];
                s.probabilities(&rows.values, &mut p);
                (Arc::from(s.version()), p)
            });
            let n = rows.len();
            if n > 0 {
                store.record_scored(ScoredBatch {
                    faults: verdicts.iter().map(|v| v.fault).collect(),
                    probabilities,
                    version: Arc::from(model.version()),
                    shadow,
                    width: rows.width,
                    ids: rows.ids,
                    values: rows.values,
                    at_ms: crate::store::now_ms(),
                });
            }
            let scored = Scored {
                verdicts,
                seconds,
                rows: n,
            };
            (scored, decider)
        })
        .await
        .map_err(|e| AppError::Pipeline(format!("scoring panicked: {e}")))
    }

    /// Counts a scored batch: rows, faults, verdicts by rule, the time the model took.
    fn count(&self, scored: &Scored) {
        if scored.rows == 0 {
            return;
        }
        let (m, verdicts) = (&self.metrics, &scored.verdicts);
        m.batch_rows.observe(scored.rows as f64);
        m.score_seconds.observe(scored.seconds);
        m.rows_scored.inc_by(scored.rows as u64);
        // Only a graph on tract-onnx that fails on a batch gives NaN (the native trees never do).
        let unscored = verdicts.iter().filter(|v| v.probability.is_nan()).count();
        if unscored > 0 {
            m.rows_unscored.inc_by(unscored as u64);
        }
        m.faults
            .inc_by(verdicts.iter().filter(|v| v.fault).count() as u64);
        // One counter update per rule and batch, not per row.
        for rule in [Rule::Threshold, Rule::AlarmRate, Rule::Warmup] {
            let k = verdicts.iter().filter(|v| v.rule == rule).count();
            if k > 0 {
                m.verdicts
                    .with_label_values(&[rule.as_str()])
                    .inc_by(k as u64);
            }
        }
        if let Some(last) = verdicts.last() {
            m.model_threshold.set(last.threshold as f64);
        }
    }

    /// Publishes each verdict to the scores topic (when set) and each fault to the faults topic.
    async fn publish_verdicts(
        &self,
        publisher: &mut Publisher,
        model: &Model,
        verdicts: &[Verdict],
    ) -> Result<(), AppError> {
        let scored_at = now_rfc3339();
        for v in verdicts {
            // Without a scores topic a verdict that is not a fault goes nowhere: not even its
            // message is built.
            if !v.fault && self.topics.scores.is_none() {
                continue;
            }
            let message = serde_json::to_vec(&VerdictMessage::new(v, model, &scored_at))
                .map_err(|e| AppError::Pipeline(e.to_string()))?;
            let output = |topic, payload| Output {
                topic,
                key: Some(&v.id),
                model_version: Some(model.version()),
                payload,
            };
            if let Some(scores) = &self.topics.scores {
                let r = publisher.publish(output(scores, message.clone())).await;
                r.map_err(|e| self.failed(publisher, e))?;
            }
            if v.fault {
                let r = publisher
                    .publish(output(&self.topics.faults, message))
                    .await;
                r.map_err(|e| self.failed(publisher, e))?;
            }
        }
        Ok(())
    }

    /// Sends each of a message's unreadable rows to the dead-letter topic.
    async fn dead_letter(
        &self,
        publisher: &mut Publisher,
        incoming: &Incoming,
    ) -> Result<(), AppError> {
        // Most messages have no unreadable row: their arrival time is never formatted.
        if incoming.decoded.rejects.is_empty() {
            return Ok(());
        }
        let received_at = incoming
            .received_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for reject in &incoming.decoded.rejects {
            let payload = crate::bus::messages::dead_letter_payload(&reject.payload);
            let letter = DeadLetter {
                error: &reject.error,
                reason: reject.reason.as_str(),
                column: reject.column.as_deref(),
                payload: &payload,
                topic: &incoming.topic,
                received_at: &received_at,
            };
            self.metrics
                .rows_dead_lettered
                .with_label_values(&[reject.reason.as_str()])
                .inc();
            let line = self
                .dead_letter_lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(std::time::Instant::now());
            match line {
                Some(0) => {
                    warn!(topic = %incoming.topic, reason = reject.reason.as_str(), error = %reject.error, "Sent an unreadable row to the dead-letter topic.")
                }
                Some(held) => {
                    warn!(topic = %incoming.topic, reason = reject.reason.as_str(), error = %reject.error, without_a_line = held, "Sent an unreadable row to the dead-letter topic, and {held} more since the last such line (at most {} lines a minute; faultline_rows_dead_lettered_total counts them all).", LineBudget::LINES)
                }
                None => {}
            }
            let payload =
                serde_json::to_vec(&letter).map_err(|e| AppError::Pipeline(e.to_string()))?;
            let r = publisher
                .publish(Output {
                    topic: &self.topics.dead_letter,
                    key: None,
                    model_version: None,
                    payload,
                })
                .await;
            r.map_err(|e| self.failed(publisher, e))?;
        }
        Ok(())
    }

    /// Counts a publish that failed for good (unless the publisher counted the failure behind
    /// it) and turns it into the pipeline's error.
    fn failed(&self, publisher: &Publisher, e: PublishError) -> AppError {
        if !publisher.failure_counted() {
            self.metrics
                .publish_errors
                .with_label_values(&[publisher.label()])
                .inc();
        }
        AppError::Pipeline(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::LineBudget;
    use std::time::{Duration, Instant};

    /// A stream of dead letters (a producer sending the wrong thing at bus rates) writes ten
    /// lines a minute, not one a row; the next line says how many went without one.
    #[test]
    fn dead_letter_lines_are_ten_a_minute_then_summed_up() {
        let mut budget = LineBudget::default();
        let start = Instant::now();
        let lines: Vec<Option<u64>> = (0..1000).map(|_| budget.take(start)).collect();
        assert_eq!(lines.iter().filter(|l| l.is_some()).count(), 10);
        assert!(lines[..10].iter().all(|l| *l == Some(0)));
        assert_eq!(budget.take(start + Duration::from_secs(59)), None);
        assert_eq!(budget.take(start + Duration::from_secs(60)), Some(991));
        assert_eq!(budget.take(start + Duration::from_secs(61)), Some(0));
    }
}
