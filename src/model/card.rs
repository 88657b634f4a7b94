//! The model card: the JSON file written by `training/train.py` beside `model.onnx`.
//!
//! The card is the contract between training and serving: it names the features in the order the
//! graph expects them, the decision threshold, the training distribution of every sensor (used for
//! explanations and drift) and the metrics the model earned on time-ordered validation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything `model.json` says about a trained model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    /// Short model family name, e.g. `wafer-fault`.
    pub name: String,
    /// `wf-` + the first 12 hex digits of the ONNX file's sha256; stamped on every verdict.
    pub version: String,
    /// When training wrote the card (RFC 3339).
    pub created_at: String,
    /// sha256 of `model.onnx`; loading refuses a graph whose hash differs.
    pub onnx_sha256: String,
    /// What the positive class means, in words.
    pub positive_class: String,
    /// Name, width and feature order of the graph's input.
    pub input: CardInput,
    /// Name of the probabilities output and which column is P(fault).
    pub output: CardOutput,
    /// Operator set versions the graph was exported with, by domain.
    pub opsets: BTreeMap<String, i64>,
    /// P(fault) at or above this is a fault.
    pub threshold: f32,
    /// How training chose the threshold, in one sentence.
    #[serde(default)]
    pub threshold_rule: String,
    /// Where the model came from: files, row counts, parameters. Kept as JSON: shown, never interpreted.
    #[serde(default)]
    pub training: serde_json::Value,
    /// Time-ordered validation metrics.
    #[serde(default)]
    pub validation: serde_json::Value,
    /// Training distribution of every input feature, in input order.
    pub sensors: Vec<SensorStats>,
    /// Package versions used by training.
    #[serde(default)]
    pub packages: serde_json::Value,
}

/// The graph input the card promises.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardInput {
    /// Graph input name (`input`).
    pub name: String,
    /// Number of features per row.
    pub width: usize,
    /// Feature names in the graph's column order.
    pub features: Vec<String>,
}

/// The graph output the card promises.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardOutput {
    /// Graph output holding `[N, 2]` class probabilities (`probabilities`).
    pub name: String,
    /// Column of that output that holds P(fault).
    pub fault_column: usize,
}

/// One sensor's distribution over the training rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SensorStats {
    /// Sensor (feature) name, e.g. `Sensor-59`.
    pub name: String,
    /// Median over non-missing training values; `None` when the sensor was always empty.
    pub median: Option<f64>,
    /// Inter-quartile range over non-missing training values; `None` when always empty.
    pub iqr: Option<f64>,
    /// Share of training rows where the sensor was missing.
    pub missing_ratio: f64,
    /// 1st percentile of the non-missing training values (the low end of its training range).
    #[serde(default)]
    pub p01: Option<f64>,
    /// 99th percentile of the non-missing training values (the high end of its training range).
    #[serde(default)]
    pub p99: Option<f64>,
}

impl ModelCard {
    /// A metric from the validation block, if training recorded it.
    pub fn validation_metric(&self, key: &str) -> Option<f64> {
        self.validation.get(key).and_then(serde_json::Value::as_f64)
    }

    /// What the card's time-ordered validation says of its fixed threshold against its alarm
    /// budget, in a sentence, when training recorded both (cards from 2026-12-07 on): the range
    /// of the share of a window's wafers the threshold flagged, and the budget's own figures.
    pub fn flag_share_note(&self) -> Option<String> {
        let shares: Vec<f64> = self
            .validation
            .get("windows")?
            .as_array()?
            .iter()
            .filter_map(|w| w.get("threshold_flagged")?.as_f64())
            .collect();
        let low = shares.iter().copied().reduce(f64::min)?;
        let high = shares.iter().copied().reduce(f64::max)?;
        let b = self.validation.get("alarm_budget")?;
        let num = |k: &str| b.get(k).and_then(serde_json::Value::as_f64);
        // The shipped model's own share at the threshold over the later half of the windows, where
        // training recorded it (cards from 2026-12-07 afternoon on).
        let shipped = self.shipped_late().map(|(flagged, rows, caught, faults)| {
            format!(
                "; the shipped model itself, at the card's threshold, flagged {flagged} of the later windows' {rows} wafers and caught {caught} of their {faults} faults although it was fitted on them"
            )
        });
        Some(format!(
            "in the card's time-ordered validation the fixed threshold flagged from {:.0}% to {:.0}% of a window's wafers; \
             an alarm budget of {} over {} wafers caught {} of {} faults (recall {:.2}) flagging {:.0}% of good wafers \
             ([model] alarm_rate; README, \"What to expect on new wafers\"){}",
            low * 100.0,
            high * 100.0,
            num("rate")?,
            num("window_rows")?,
            num("true_positives")?,
            num("faults")?,
            num("recall")?,
            num("false_alarm_rate")? * 100.0,
            shipped.unwrap_or_default(),
        ))
    }

    /// Over the later half of the validation windows (as the card's expectation counts them):
    /// the share of wafers the shipped model flags at the threshold, the faults it catches and
    /// the faults there.
    fn shipped_late(&self) -> Option<(u64, u64, u64, u64)> {
        let windows = self.validation.get("windows")?.as_array()?;
        let late = &windows[windows.len() / 2..];
        let (mut rows, mut flagged, mut caught, mut faults) = (0, 0.0, 0, 0);
        for w in late {
            let n = w.get("rows")?.as_u64()?;
            rows += n;
            // The card gives each window's share; times its wafers it is a count again.
            flagged += w.get("shipped_threshold_flagged")?.as_f64()? * n as f64;
            caught += w.get("shipped_threshold_caught")?.as_u64()?;
            faults += w.get("faults")?.as_u64()?;
        }
        (rows > 0).then(|| (flagged.round() as u64, rows, caught, faults))
    }
}
