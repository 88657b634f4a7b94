//! `faultline score`: a wafer CSV in, one verdict per row out, streamed in bounded batches.
//!
//! Output columns: `id,probability,fault,threshold,rule,base,contributions,unusual_sensors,
//! model_version`, plus `Good/Bad` when the input has it. `contributions` are the model's own (exact
//! TreeSHAP, in log-odds: `base + Σ = logit(probability)` over all sensors; the listed ones are the
//! largest); `unusual_sensors` only says which values sit far from their training medians. Memory
//! does not grow with the file: rows are read, scored and written a batch at a time.

use crate::drift::{DriftReport, DriftWindow};
use crate::model::{Model, Verdict};
use crate::quality::Quality;
use crate::row::csv::{CsvError, CsvOptions, CsvRows, LABEL_COLUMN};
use crate::row::{RowBatch, Schema};
use serde::Serialize;
use std::io::{Read, Write};

/// Why scoring a CSV stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The input is not a usable wafer CSV.
    #[error(transparent)]
    Input(#[from] CsvError),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The graph (run by tract-onnx) could not score some rows: they have no verdict.
    #[error("tract-onnx could not score {0} row(s) of the file ({1}): they have no verdict, so an output file is not written (to standard output or a pipe every row was, the unscored ones with probability NaN and fault false)")]
    Scorer(u64, String),
}

impl From<csv::Error> for ScoreError {
    fn from(e: csv::Error) -> Self {
        ScoreError::Output(std::io::Error::other(e))
    }
}

/// What a run of [`score_csv`] did.
#[derive(Debug, Clone, Default)]
pub struct ScoreSummary {
    /// Rows scored.
    pub rows: usize,
    /// Rows at or above the threshold.
    pub faults: usize,
    /// The file's own labels against its verdicts, and its sensors against training.
    pub checks: FileChecks,
}

/// Rows of a scored file its drift is judged on: its last this many (all of a smaller file).
pub const FILE_DRIFT_ROWS: usize = 2000;
/// Sensors off their training distribution beyond which a scored file gets a warning (the same
/// count the shipped `FaultlineDrift` alert uses for the stream).
pub const MANY_SENSORS_OFF: usize = 20;
/// Out-of-range sensors a file's checks name (the count says how many there are in all).
const SENSORS_NAMED: usize = 20;

/// What a scored file says beyond its verdicts: how the verdicts did against the file's own
/// `Good/Bad` labels (live quality's definitions, scikit-learn's), and how far its sensors sit
/// from the training distribution (the stream's drift test, on the file).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileChecks {
    /// Over the rows that carry a label; `None` when none does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Quality>,
    /// The file's last [`FILE_DRIFT_ROWS`] rows against the card (the worst sensors first, at
    /// most 20 named; `sensors_out_of_range` counts them all).
    pub drift: DriftReport,
    /// Sentences when wafers of the file were in the model's training data (its card lists their
    /// ids), and when more than [`MANY_SENSORS_OFF`] sensors are off their training range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Fewer faulty wafers than this in a file's labels: its figures are said to be rough.
const FEW_FAULTS: usize = 20;

/// One sentence for a file's evaluation against its own labels.
pub fn describe_evaluation(q: &Quality) -> String {
    let figure = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.2}"));
    let rough = if q.positives < FEW_FAULTS {
        format!(
            " With {} faulty wafer{} these figures are rough.",
            q.positives,
            if q.positives == 1 { "" } else { "s" }
        )
    } else {
        String::new()
    };
    let at = q.threshold.map_or("by the verdicts".to_string(), |t| {
        format!("at threshold {t}")
    });
    format!(
        "Against the file's Good/Bad labels ({} wafers, {} faulty), {at}: caught {} of {} \
         faulty wafers (recall {}), {} false alarms among {} good wafers (false-alarm rate {}), \
         precision {}, ROC-AUC {}, PR-AUC {}.{rough}",
        q.labelled,
        q.positives,
        q.true_positives,
        q.positives,
        figure(q.recall),
        q.false_positives,
        q.negatives,
        figure(q.false_alarm_rate),
        figure(q.precision),
        figure(q.roc_auc),
        figure(q.pr_auc)
    )
}

/// Collects a file's [`FileChecks`] as its batches are scored; memory is bounded.
#[derive(Debug)]
pub struct FileCheck {
    window: DriftWindow,
    probabilities: Vec<f32>,
    pairs: Vec<(f32, bool)>,
    threshold: f32,
    /// The ids of the wafers the model was trained on, from its card (empty when it lists none).
    training_ids: std::collections::HashSet<String>,
    rows: usize,
    in_training: usize,
}

impl FileCheck {
    /// For files scored by `model`.
    pub fn new(model: &Model) -> FileCheck {
        let training_ids = model
            .card()
            .training
            .get("ids")
            .and_then(|ids| ids.as_array())
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        FileCheck {
            window: DriftWindow::new(model.width(), FILE_DRIFT_ROWS),
            probabilities: Vec::new(),
            pairs: Vec::new(),
            threshold: model.threshold(),
            training_ids,
            rows: 0,
            in_training: 0,
        }
    }

    /// Adds a scored batch.
    pub fn add(&mut self, batch: &RowBatch, verdicts: &[Verdict]) {
        self.probabilities.clear();
        self.probabilities
            .extend(verdicts.iter().map(|v| v.probability));
        self.window.push(&batch.values, &self.probabilities);
        self.rows += batch.len();
        if !self.training_ids.is_empty() {
            self.in_training += batch
                .ids
                .iter()
                .filter(|id| self.training_ids.contains(id.as_str()))
                .count();
        }
        for (v, label) in verdicts.iter().zip(&batch.labels) {
            if let Some(label) = label {
                self.pairs.push((v.probability, *label == 1));
            }
        }
    }

    /// The checks, against `model`'s card.
    pub fn finish(self, model: &Model) -> FileChecks {
        let mut drift = self.window.report(model.card());
        let drifted = (drift.sensors_out_of_range > MANY_SENSORS_OFF).then(|| {
            let named: Vec<String> = drift
                .sensors
                .iter()
                .take(3)
                .map(|d| match d.shift_z {
                    Some(z) if d.reasons.contains(&"median_shift") => {
                        format!("{} (median {z:+.1} robust sigmas)", d.sensor)
                    }
                    _ => format!(
                        "{} (missing {:.0}% vs {:.0}% in training)",
                        d.sensor,
                        100.0 * d.missing_ratio,
                        100.0 * d.training_missing_ratio
                    ),
                })
                .collect();
            format!(
                "{} of {} sensors in this file are off their training distribution ({}, ...): \
                 the model was not trained on inputs like these, so its scores may not mean what \
                 its card says",
                drift.sensors_out_of_range,
                model.width(),
                named.join(", ")
            )
        });
        // Wafers the model was fitted on score better than new ones: figures against their
        // labels say little about what to expect.
        let trained = (self.in_training > 0).then(|| {
            format!(
                "{} of this file's {} wafers were in the model's training data, so its scores and any \
                 figures against their labels are optimistic there (the card's time-ordered validation \
                 figures say more about new wafers)",
                self.in_training, self.rows
            )
        });
        let warning = [trained, drifted]
            .into_iter()
            .flatten()
            .reduce(|a, b| format!("{a}. {b}"));
        drift.sensors.truncate(SENSORS_NAMED);
        FileChecks {
            evaluation: (!self.pairs.is_empty())
                .then(|| crate::quality::compute(&self.pairs, self.threshold)),
            drift,
            warning,
        }
    }
}

/// Makes a text cell safe to open in a spreadsheet: a cell that starts with `=`, `+`, `-` or `@`
/// (and is not a plain number) is prefixed with `'` so it is never evaluated as a formula.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    // A finite number stays as it is; `-inf` or `+NaN`, which Rust parses, a spreadsheet reads
    // as a formula.
    if risky && !cell.parse::<f64>().is_ok_and(f64::is_finite) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// The columns of a verdict in CSV (`faultline score` and `POST /api/score` with `Accept: text/csv`).
pub const VERDICT_COLUMNS: [&str; 9] = [
    "id",
    "probability",
    "fault",
    "threshold",
    "rule",
    "base",
    "contributions",
    "unusual_sensors",
    "model_version",
];

/// Writes verdicts as CSV records in [`VERDICT_COLUMNS`] order (and the label, for a labelled
/// file) into buffers it keeps: once warm it allocates nothing per row, where a record of fresh
/// strings cost about twenty allocations. The id is made spreadsheet-safe. `base` and
/// `contributions` are log-odds (empty when the verdict carries no explanation).
#[derive(Debug, Default)]
pub struct VerdictRecords {
    fields: [String; 10],
    /// The last threshold written (its bits) and its text: every row of a file usually shares
    /// one, so it is formatted once while it holds.
    threshold_bits: Option<u32>,
    threshold_text: String,
}

impl VerdictRecords {
    /// `v` as a record; `label` adds the `Good/Bad` column (`Some(None)`: an empty cell).
    pub fn record(&mut self, model: &Model, v: &Verdict, label: Option<Option<i8>>) -> &[String] {
        use std::fmt::Write;
        self.fields.iter_mut().for_each(String::clear);
        let [id, probability, fault, threshold, rule, base, contributions, sensors, version, good_bad] =
            &mut self.fields;
        id.push_str(&spreadsheet_safe(&v.id));
        let _ = write!(probability, "{}", v.probability);
        fault.push_str(if v.fault { "true" } else { "false" });
        if self.threshold_bits != Some(v.threshold.to_bits()) {
            self.threshold_text.clear();
            let _ = write!(self.threshold_text, "{}", v.threshold);
            self.threshold_bits = Some(v.threshold.to_bits());
        }
        threshold.push_str(&self.threshold_text);
        rule.push_str(v.rule.as_str());
        if let Some(e) = &v.explanation {
            let _ = write!(base, "{}", e.base);
        }
        model.write_contributions(contributions, v.explanation.as_ref());
        model.write_sensors(sensors, &v.unusual_sensors);
        version.push_str(model.version());
        match label {
            None => &self.fields[..9],
            Some(label) => {
                if let Some(l) = label {
                    let _ = write!(good_bad, "{l}");
                }
                &self.fields[..]
            }
        }
    }
}

/// Scores every row of `input` and writes the verdicts to `output` as CSV.
pub fn score_csv<R: Read, W: Write>(
    model: &Model,
    input: R,
    output: W,
    options: CsvOptions,
) -> Result<ScoreSummary, ScoreError> {
    let schema = Schema::new(model.features());
    let mut rows = CsvRows::new(input, &schema, options)?;
    let labelled = rows.has_labels();
    let mut out = csv::Writer::from_writer(output);
    let mut header = VERDICT_COLUMNS.to_vec();
    if labelled {
        header.push(LABEL_COLUMN);
    }
    out.write_record(&header)?;
    let mut summary = ScoreSummary::default();
    let mut check = FileCheck::new(model);
    // One decider for the whole file: an alarm budget's window rolls over the file in its order.
    let mut decider = model.decider();
    // One batch, cleared and refilled: its memory is allocated once for the whole file.
    let mut batch = RowBatch::new(model.width());
    let mut records = VerdictRecords::default();
    loop {
        batch.clear();
        if rows.read_into(&mut batch)? == 0 {
            break;
        }
        let verdicts = model.score_with(&batch, &mut decider);
        check.add(&batch, &verdicts);
        for (v, label) in verdicts.iter().zip(&batch.labels) {
            out.write_record(records.record(model, v, labelled.then_some(*label)))?;
            summary.faults += usize::from(v.fault);
        }
        summary.rows += verdicts.len();
    }
    if let Some((rows, why)) = model.scoring_failures() {
        return Err(ScoreError::Scorer(rows, why));
    }
    out.flush()?;
    summary.checks = check.finish(model);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record as it was written before the buffers were reused: fresh strings, format!.
    fn fresh_record(model: &Model, v: &Verdict, label: Option<Option<i8>>) -> Vec<String> {
        let contributions = v.explanation.as_ref().map_or(String::new(), |e| {
            e.contributions
                .iter()
                .map(|c| {
                    format!(
                        "{}={} ({:+.4})",
                        model.features()[c.index],
                        c.value,
                        c.contribution
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        });
        let sensors = v
            .unusual_sensors
            .iter()
            .map(|d| format!("{}={} (z={:+.2})", model.features()[d.index], d.value, d.z))
            .collect::<Vec<_>>()
            .join("; ");
        let mut record = vec![
            spreadsheet_safe(&v.id).into_owned(),
            v.probability.to_string(),
            v.fault.to_string(),
            v.threshold.to_string(),
            v.rule.as_str().to_string(),
            v.explanation
                .as_ref()
                .map(|e| e.base.to_string())
                .unwrap_or_default(),
            contributions,
            sensors,
            model.version().to_string(),
        ];
        if let Some(label) = label {
            record.push(label.map(|l| l.to_string()).unwrap_or_default());
        }
        record
    }

    #[test]
    fn reused_record_buffers_write_what_fresh_strings_wrote() {
        // Faults (explained) and good rows interleaved, thresholds moving under an alarm budget,
        // formula-like ids, labels present and absent: nothing of one row leaks into the next.
        let budget = crate::model::Budget::new(0.2, 50, 10).unwrap();
        let model = Model::embedded().unwrap().with_budget(Some(budget));
        let mut batch = crate::model::synthetic::rows(model.card(), 400, 5);
        batch.ids[3] = "=SUM(A1)".into();
        let verdicts = model.score(&batch);
        assert!(verdicts.iter().any(|v| v.explanation.is_some()));
        assert!(verdicts.iter().any(|v| v.explanation.is_none()));
        let thresholds: std::collections::BTreeSet<u32> =
            verdicts.iter().map(|v| v.threshold.to_bits()).collect();
        assert!(thresholds.len() > 5, "the thresholds must move");
        let mut records = VerdictRecords::default();
        for (i, v) in verdicts.iter().enumerate() {
            let label = match i % 3 {
                0 => None,
                1 => Some(None),
                _ => Some(Some(if i % 2 == 0 { 1 } else { -1 })),
            };
            assert_eq!(
                records.record(&model, v, label),
                fresh_record(&model, v, label).as_slice(),
                "row {i}"
            );
        }
    }

    #[test]
    fn formula_cells_are_escaped_but_numbers_are_not() {
        assert_eq!(spreadsheet_safe("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(spreadsheet_safe("@cmd"), "'@cmd");
        assert_eq!(spreadsheet_safe("+1+1"), "'+1+1");
        assert_eq!(spreadsheet_safe("-3.5"), "-3.5");
        assert_eq!(spreadsheet_safe("-1e5"), "-1e5");
        for named in ["-inf", "+NaN", "-Infinity", "-1e999"] {
            assert_eq!(spreadsheet_safe(named), format!("'{named}"), "{named}");
        }
        assert_eq!(spreadsheet_safe("Wafer-1"), "Wafer-1");
    }
}
