//! Which rule turns P(fault) into a verdict: the card's fixed threshold, or an alarm budget.
//!
//! Score levels drift between production periods while the ranking of wafers held better (measured
//! on later wafers outside this repository by the issue behind the model), so a fixed threshold can
//! flag almost nothing (or almost everything) on later wafers. An alarm budget
//! (`[model] alarm_rate`, e.g. 0.1) flags a wafer when its P(fault) is among the top `alarm_rate` share
//! of the last `alarm_window_rows` scored wafers (itself included): a rolling quantile. Scores tied at
//! the cutoff are flagged only while all of them fit the share, or when the fixed threshold flags
//! them too: a run of identical low scores (a feed sending rows without readings scores every
//! wafer alike) would otherwise be flagged whole, up to every wafer. Until the window
//! holds `alarm_warmup_rows` wafers the fixed threshold decides (the warm-up), and every verdict says
//! which rule made it and the threshold it used.
//!
//! For `faultline score` and uploads the window rolls over the file itself, in its order, from empty.

use serde::Serialize;
use std::collections::VecDeque;

/// The rule that made a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// P(fault) >= the model's fixed threshold (the card's, or `[model] threshold`).
    Threshold,
    /// P(fault) is in the top `alarm_rate` share of the recent wafers.
    AlarmRate,
    /// An alarm budget is set but its window is still filling: the fixed threshold decided.
    Warmup,
}

impl Rule {
    /// The name used in messages, CSV output and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Threshold => "threshold",
            Rule::AlarmRate => "alarm_rate",
            Rule::Warmup => "warmup",
        }
    }
}

/// The widest alarm window: it is kept sorted, so each wafer's score moves part of it (at this
/// size up to 400 KB a wafer), and it is held in memory from the start.
pub const MAX_WINDOW_ROWS: usize = 100_000;

/// Settings of an alarm budget; [`Budget::new`] checks them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Share of recent wafers to flag, in (0, 1).
    pub rate: f64,
    /// How many recent wafers the quantile is taken over.
    pub window_rows: usize,
    /// Wafers the window must hold before the budget decides.
    pub warmup_rows: usize,
}

impl Budget {
    /// A budget flagging `rate` of the last `window_rows` wafers once `warmup_rows` were scored. The
    /// error is a sentence naming the `[model]` key to change.
    pub fn new(rate: f64, window_rows: usize, warmup_rows: usize) -> Result<Budget, String> {
        if !(rate > 0.0 && rate < 1.0) {
            return Err(format!(
                "model.alarm_rate is {rate}; set the share of recent wafers to flag between 0 and 1 (exclusive, e.g. 0.1), or 0 to decide by the threshold alone"
            ));
        }
        if window_rows == 0 || warmup_rows > window_rows {
            return Err(format!(
                "model.alarm_window_rows is {window_rows} and model.alarm_warmup_rows {warmup_rows}; the window must hold at least one row and at least the warm-up"
            ));
        }
        if window_rows > MAX_WINDOW_ROWS {
            return Err(format!(
                "model.alarm_window_rows is {window_rows}; set at most {MAX_WINDOW_ROWS}: the window is kept sorted in memory and each wafer's score moves part of it"
            ));
        }
        if rate * (window_rows as f64) < 1.0 {
            return Err(format!(
                "model.alarm_rate {rate} of model.alarm_window_rows {window_rows} is less than one wafer; widen the window to at least {} rows",
                (1.0 / rate).ceil()
            ));
        }
        Ok(Budget {
            rate,
            window_rows,
            warmup_rows,
        })
    }

    /// A warning when the warm-up ends before the window holds `1 / rate` wafers: from then on
    /// the budget flags at least one wafer of fewer, more than its share (every one at a warm-up
    /// of 1); `None` otherwise.
    pub fn short_warmup(&self) -> Option<String> {
        let whole = (1.0 / self.rate - 1e-9).ceil() as usize;
        let warmup = self.warmup_rows.max(1);
        (warmup < whole).then(|| {
            format!(
                "model.alarm_warmup_rows is {} at model.alarm_rate {}: from wafer {warmup} on, until the window holds {whole}, \
                 the budget flags at least one wafer of fewer than {whole}, up to 1 in {warmup} rather than {}; \
                 set alarm_warmup_rows to at least {whole} to let the fixed threshold decide until then",
                self.warmup_rows, self.rate, self.rate
            )
        })
    }
}

/// Decides verdicts row by row, keeping the recent scores an alarm budget needs.
#[derive(Debug, Clone)]
pub struct Decider {
    /// The budget, when one is set.
    budget: Option<Budget>,
    /// Recent scores in arrival order (to drop the oldest).
    recent: VecDeque<f32>,
    /// The same scores sorted (to read the quantile).
    sorted: Vec<f32>,
}

impl Decider {
    /// A decider for the fixed threshold only, or with an alarm budget.
    pub fn new(budget: Option<Budget>) -> Decider {
        let cap = budget.map_or(0, |b| b.window_rows);
        Decider {
            budget,
            recent: VecDeque::with_capacity(cap),
            sorted: Vec::with_capacity(cap),
        }
    }

    /// Decides one wafer scored `p` given the model's fixed `threshold`: (fault, threshold used, rule).
    pub fn decide(&mut self, p: f32, threshold: f32) -> (bool, f32, Rule) {
        let Some(b) = self.budget else {
            return (p >= threshold, threshold, Rule::Threshold);
        };
        if p.is_nan() {
            return (false, threshold, Rule::Threshold);
        }
        if self.recent.len() == b.window_rows {
            if let Some(old) = self.recent.pop_front() {
                let at = self.sorted.partition_point(|&x| x < old);
                self.sorted.remove(at);
            }
        }
        self.recent.push_back(p);
        let at = self.sorted.partition_point(|&x| x < p);
        self.sorted.insert(at, p);
        let n = self.sorted.len();
        if n < b.warmup_rows.max(1) {
            return (p >= threshold, threshold, Rule::Warmup);
        }
        // The smallest score among the top `rate` share (at least one wafer, unless ties at
        // the top exceed the share, below).
        // The product is rounded down by a hair first: 0.07 * 200 is 14.000000000000002 in
        // binary floating point, and its ceiling would flag 15.
        let flagged = ((b.rate * n as f64 - 1e-9).ceil() as usize).clamp(1, n);
        let t = self.sorted[n - flagged];
        // More scores at or above it than the share holds (ties at the cutoff): only those above
        // it are flagged, and the threshold said is the next float up, so that `p >= threshold`
        // stays the verdict; unless the fixed threshold flags the tie itself (a run of wafers
        // so faulty that P(fault) rounds to 1.0 is still caught, every one of them).
        // (`sorted` ascends: more than `flagged` at or above `t` is the one before it equal.)
        let tied_past = n > flagged && self.sorted[n - flagged - 1] == t;
        let t = if !tied_past || t >= threshold {
            t
        } else {
            t.next_up()
        };
        (p >= t, t, Rule::AlarmRate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A warm-up shorter than 1/rate wafers is warned about, naming the warm-up that avoids it;
    /// one long enough is not (0.07: 15 wafers, as 0.07 × 14 is less than one).
    #[test]
    fn a_warm_up_shorter_than_one_over_the_rate_is_warned_about() {
        let warn = |rate, warmup| Budget::new(rate, 200, warmup).unwrap().short_warmup();
        let w = warn(0.07, 1).expect("a warm-up of 1 at 0.07");
        assert!(w.contains("at least 15"), "{w}");
        assert!(w.contains("up to 1 in 1 rather than 0.07"), "{w}");
        assert!(warn(0.07, 14).is_some());
        assert!(warn(0.07, 15).is_none());
        assert!(
            warn(0.01, 100).is_none(),
            "1/0.01 is 100 in decimal, not 100.000…01"
        );
        assert!(warn(0.01, 99).is_some());
        assert!(
            warn(0.2, 100).is_none(),
            "the defaults' warm-up at a plausible rate"
        );
    }

    #[test]
    fn without_a_budget_the_fixed_threshold_decides() {
        let mut d = Decider::new(None);
        assert_eq!(d.decide(0.3, 0.2), (true, 0.2, Rule::Threshold));
        assert_eq!(d.decide(0.1, 0.2), (false, 0.2, Rule::Threshold));
    }

    #[test]
    fn a_budget_flags_the_top_share_of_the_window_after_warm_up() {
        let mut d = Decider::new(Some(Budget::new(0.1, 100, 20).unwrap()));
        // Warm-up: the fixed threshold (0.5) decides, whatever the scores.
        for i in 0..19 {
            let (fault, t, rule) = d.decide(0.01 * i as f32, 0.5);
            assert_eq!((fault, t, rule), (false, 0.5, Rule::Warmup));
        }
        // Scores far below the fixed threshold: the budget still flags about 10% of them.
        let mut flagged = 0;
        for i in 0..1000 {
            let p = ((i * 37) % 100) as f32 / 1000.0; // 0.000 .. 0.099, levels repeat
            let (fault, t, rule) = d.decide(p, 0.5);
            assert_eq!(rule, Rule::AlarmRate);
            assert!(t < 0.5);
            flagged += fault as usize;
        }
        assert!((90..=130).contains(&flagged), "{flagged} of 1000 flagged");
    }

    #[test]
    fn a_window_too_wide_is_refused_naming_the_limit() {
        assert!(Budget::new(0.1, MAX_WINDOW_ROWS, 200).is_ok());
        let e = Budget::new(0.1, MAX_WINDOW_ROWS + 1, 200).unwrap_err();
        assert!(
            e.contains("model.alarm_window_rows is 100001; set at most 100000"),
            "{e}"
        );
    }

    #[test]
    fn a_share_that_is_a_whole_number_of_wafers_flags_that_many() {
        // 7% of 200 is 14 wafers, though 0.07 * 200 is 14.000000000000002 in floating point.
        let mut d = Decider::new(Some(Budget::new(0.07, 200, 1).unwrap()));
        let mut last = None;
        for i in 1..=200 {
            last = Some(d.decide(i as f32 / 1000.0, 0.5));
        }
        assert_eq!(
            last,
            Some((true, 0.187, Rule::AlarmRate)),
            "the 14th highest of 200"
        );
    }

    #[test]
    fn ties_at_the_cutoff_are_flagged_while_they_fit_the_share_or_the_threshold_flags_them() {
        // A feed sending rows without readings: every wafer scores the same. The old rule flagged
        // every one of them (each was its own window's cutoff).
        let mut d = Decider::new(Some(Budget::new(0.1, 200, 20).unwrap()));
        let mut flagged = 0;
        for _ in 0..300 {
            let (fault, t, rule) = d.decide(0.05, 0.5);
            if rule == Rule::AlarmRate {
                assert!(t > 0.05, "{t}");
            }
            flagged += fault as usize;
        }
        assert_eq!(flagged, 0);
        // A wafer above the run is flagged (at the float just above the run's score).
        assert_eq!(
            d.decide(0.2, 0.5),
            (true, 0.05f32.next_up(), Rule::AlarmRate)
        );
        // A run tied at the top, and flagged by the fixed threshold too (P(fault) rounding to
        // 1.0): every one of its wafers is flagged.
        for _ in 0..300 {
            let (fault, _, rule) = d.decide(1.0, 0.5);
            assert!(fault && rule == Rule::AlarmRate);
        }
        // The run fills the window: its own score is the cutoff, and the verdict's threshold.
        assert_eq!(d.decide(1.0, 0.5), (true, 1.0, Rule::AlarmRate));
        // Ties that fit the share are flagged: two at the top of ten, with a share of 20% (the
        // fixed threshold, 0.95, above them).
        let mut d = Decider::new(Some(Budget::new(0.2, 10, 1).unwrap()));
        for p in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] {
            d.decide(p, 0.95);
        }
        assert_eq!(d.decide(0.9, 0.95), (true, 0.8, Rule::AlarmRate));
        assert_eq!(d.decide(0.9, 0.95), (true, 0.9, Rule::AlarmRate));
        // A third would not fit: neither is the tie flagged now...
        let mut again = d.clone();
        assert_eq!(
            d.decide(0.9, 0.95),
            (false, 0.9f32.next_up(), Rule::AlarmRate)
        );
        // ...unless the fixed threshold flags it too.
        assert_eq!(again.decide(0.9, 0.5), (true, 0.9, Rule::AlarmRate));
    }

    #[test]
    fn the_window_forgets_old_scores() {
        let mut d = Decider::new(Some(Budget::new(0.5, 4, 1).unwrap()));
        for p in [0.9, 0.9, 0.9, 0.9] {
            d.decide(p, 0.5);
        }
        // After four low scores the highs are gone: the threshold is the window's median.
        for p in [0.1, 0.2, 0.3, 0.4] {
            d.decide(p, 0.5);
        }
        assert_eq!(d.decide(0.35, 0.5), (true, 0.35, Rule::AlarmRate));
    }
}
