//! `faultline score`: a wafer CSV in, one verdict per row out, streamed in bounded batches.
//!
//! Output columns: `id,probability,fault,threshold,rule,base,contributions,unusual_sensors,
//! model_version`, plus `Good/Bad` when the input has it. `contributions` are the model's own (exact
//! TreeSHAP, in log-odds: `base + Σ = logit(probability)` over all sensors; the listed ones are the
//! largest); `unusual_sensors` only says which values sit far from their training medians. Memory
//! does not grow with the file: rows are read, scored and written a batch at a time.

use crate::model::{Model, Verdict};
use crate::row::csv::{CsvError, CsvOptions, CsvRows, LABEL_COLUMN};
use crate::row::Schema;
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
}

impl From<csv::Error> for ScoreError {
    fn from(e: csv::Error) -> Self {
        ScoreError::Output(std::io::Error::other(e))
    }
}

/// What a run of [`score_csv`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScoreSummary {
    /// Rows scored.
    pub rows: usize,
    /// Rows at or above the threshold.
    pub faults: usize,
}

/// Makes a text cell safe to open in a spreadsheet: a cell that starts with `=`, `+`, `-` or `@`
/// (and is not a plain number) is prefixed with `'` so it is never evaluated as a formula.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    if risky && cell.parse::<f64>().is_err() {
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

/// One verdict as a CSV record in [`VERDICT_COLUMNS`] order; the id is made spreadsheet-safe.
/// `base` and `contributions` are log-odds (empty when the verdict carries no explanation).
pub fn verdict_record(model: &Model, v: &Verdict) -> [String; 9] {
    [
        spreadsheet_safe(&v.id).into_owned(),
        v.probability.to_string(),
        v.fault.to_string(),
        v.threshold.to_string(),
        v.rule.as_str().to_string(),
        v.explanation
            .as_ref()
            .map(|e| e.base.to_string())
            .unwrap_or_default(),
        model.describe_contributions(v.explanation.as_ref()),
        model.describe_sensors(&v.unusual_sensors),
        model.version().to_string(),
    ]
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
    // One decider for the whole file: an alarm budget's window rolls over the file in its order.
    let mut decider = model.decider();
    while let Some(batch) = rows.next_batch()? {
        let verdicts = model.score_with(&batch, &mut decider);
        for (v, label) in verdicts.iter().zip(&batch.labels) {
            let mut record = verdict_record(model, v).to_vec();
            if labelled {
                record.push(label.map(|l| l.to_string()).unwrap_or_default());
            }
            out.write_record(&record)?;
            summary.faults += usize::from(v.fault);
        }
        summary.rows += verdicts.len();
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_escaped_but_numbers_are_not() {
        assert_eq!(spreadsheet_safe("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(spreadsheet_safe("@cmd"), "'@cmd");
        assert_eq!(spreadsheet_safe("+1+1"), "'+1+1");
        assert_eq!(spreadsheet_safe("-3.5"), "-3.5");
        assert_eq!(spreadsheet_safe("Wafer-1"), "Wafer-1");
    }
}
