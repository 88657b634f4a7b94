//! `[model]`: the section as written, checked into the [`Policy`] every loaded model decides and
//! explains with, and how often its files are watched.

use super::{Budget, Explain, Policy};
use serde::Deserialize;
use std::time::Duration;

/// `[model]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model directory; empty for the embedded model.
    pub dir: String,
    /// Threshold override; negative for the card's.
    pub threshold: f64,
    /// How often to look for changed model files, in milliseconds; 0 for never.
    pub watch_ms: u64,
    /// Alarm budget: the share of recent wafers to flag, in (0, 1); 0 for the fixed threshold.
    pub alarm_rate: f64,
    /// Recent wafers the alarm budget's quantile is taken over.
    pub alarm_window_rows: usize,
    /// Wafers the window must hold before the budget decides (the fixed threshold decides until then).
    pub alarm_warmup_rows: usize,
    /// Contributions listed per explained verdict; 0 for none.
    pub contributions_top_k: usize,
    /// Explain every verdict, not only faults.
    pub explain_all_rows: bool,
}

impl Policy {
    /// This policy for a model other than `[model] dir`'s (a shadow, `--model OTHER`): without
    /// `[model] threshold`, a number on `[model] dir`'s model's scale (another's scores sit on
    /// another), so that model decides at its own card's threshold; the rest applies alike.
    pub fn for_other_model(self) -> Policy {
        Policy {
            threshold: None,
            ..self
        }
    }

    /// Checks `[model]`'s threshold override, alarm budget and explanations.
    pub fn from_section(md: &ModelSection) -> Result<Policy, String> {
        let threshold = if md.threshold < 0.0 {
            None
        } else if md.threshold > 0.0 && md.threshold < 1.0 {
            Some(md.threshold as f32)
        } else {
            return Err(format!(
                "model.threshold is {}; set it between 0 and 1 (exclusive), or to -1 to use the model card's threshold",
                md.threshold
            ));
        };
        let alarm = if md.alarm_rate == 0.0 {
            None
        } else {
            let budget = Budget::new(md.alarm_rate, md.alarm_window_rows, md.alarm_warmup_rows)?;
            Some(budget)
        };
        let explain = Explain {
            top_k: md.contributions_top_k,
            all_rows: md.explain_all_rows,
            unusual_all_rows: true,
        };
        Ok(Policy {
            threshold,
            budget: alarm,
            explain,
        })
    }
}

impl ModelSection {
    /// How often to look for changed model files (`None`: never).
    pub fn watch(&self) -> Result<Option<Duration>, String> {
        if self.watch_ms > 0 && self.watch_ms < 100 {
            return Err(format!(
                "model.watch_ms is {}; set at least 100, or 0 to not watch the model files",
                self.watch_ms
            ));
        }
        Ok((self.watch_ms > 0).then(|| Duration::from_millis(self.watch_ms)))
    }
}
