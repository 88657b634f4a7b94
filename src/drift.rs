//! Drift against the training distribution, over a sliding window of recently scored rows.
//!
//! The model card records every sensor's training median, IQR and missing rate. A sensor is *out
//! of range* when, over the window, its median has moved more than [`Z_LIMIT`] robust standard
//! deviations (IQR / 1.349) from the training median, or its missing rate differs from training by
//! more than [`MISSING_DELTA`]. Sensors whose training IQR is 0 are judged on their missing rate
//! only (a median shift has no scale there).
//!
//! The window is a ring buffer the scorer appends to; a background task recomputes the report
//! every few seconds and sets the gauges, so a `/metrics` scrape never recomputes anything.

use crate::model::card::ModelCard;
use serde::Serialize;

/// Median shift, in robust standard deviations, beyond which a sensor is out of range.
pub const Z_LIMIT: f64 = 3.0;
/// Missing-rate difference beyond which a sensor is out of range.
pub const MISSING_DELTA: f64 = 0.2;
/// Rows the window must hold before any sensor is judged.
pub const MIN_ROWS: usize = 50;

/// The widest window `[drift] window_rows` may ask for (about 236 MB at 590 sensors).
pub const MAX_ROWS: usize = 100_000;

/// The most recent rows and their P(fault), oldest overwritten first.
#[derive(Debug, Clone)]
pub struct DriftWindow {
    /// Features per row.
    width: usize,
    /// Rows the window holds when full.
    capacity: usize,
    /// `capacity * width` values, row-major.
    values: Vec<f32>,
    /// P(fault) per slot.
    probs: Vec<f32>,
    /// Slot the next row goes to.
    next: usize,
    /// Filled slots.
    len: usize,
    /// Rows ever pushed.
    seen: u64,
}

/// One sensor that moved.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SensorDrift {
    /// Sensor name.
    pub sensor: String,
    /// Median over the window (`None` when always missing there).
    pub median: Option<f64>,
    /// Training median.
    pub training_median: Option<f64>,
    /// (median - training median) / (training IQR / 1.349), when both exist and the IQR is not 0.
    pub shift_z: Option<f64>,
    /// Share of the window's rows where the sensor is missing.
    pub missing_ratio: f64,
    /// Share of training rows where it was missing.
    pub training_missing_ratio: f64,
    /// Why it is out of range: `median_shift`, `missing_rate`.
    pub reasons: Vec<&'static str>,
}

/// What the window says now.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct DriftReport {
    /// Rows in the window.
    pub window_rows: usize,
    /// Rows scored since start.
    pub rows_seen: u64,
    /// Share of missing sensor cells in the window.
    pub missing_ratio: f64,
    /// Mean P(fault) over the window.
    pub score_mean: f64,
    /// How many sensors are out of range.
    pub sensors_out_of_range: usize,
    /// The out-of-range sensors, largest |shift_z| first, then by missing-rate change.
    pub sensors: Vec<SensorDrift>,
    /// False until the window holds [`MIN_ROWS`] rows; no sensor is judged before.
    pub judged: bool,
}

impl DriftWindow {
    /// A window of `capacity` rows (at least 1) of `width` features.
    pub fn new(width: usize, capacity: usize) -> DriftWindow {
        let capacity = capacity.max(1);
        DriftWindow {
            width,
            capacity,
            values: vec![f32::NAN; capacity * width],
            probs: vec![0.0; capacity],
            next: 0,
            len: 0,
            seen: 0,
        }
    }

    /// Appends scored rows (row-major) and their probabilities.
    pub fn push(&mut self, rows: &[f32], probs: &[f32]) {
        debug_assert_eq!(rows.len(), probs.len() * self.width);
        // Rows the window would overwrite before this call ends are never copied: only the last
        // `capacity` rows are, into the slots they would have had.
        let skip = probs.len().saturating_sub(self.capacity);
        self.next = (self.next + skip) % self.capacity;
        self.len = (self.len + skip).min(self.capacity);
        self.seen += skip as u64;
        let (rows, probs) = (&rows[skip * self.width..], &probs[skip..]);
        for (row, &p) in rows.chunks_exact(self.width).zip(probs) {
            let at = self.next;
            self.values[at * self.width..(at + 1) * self.width].copy_from_slice(row);
            self.probs[at] = p;
            self.next = (at + 1) % self.capacity;
            self.len = (self.len + 1).min(self.capacity);
            self.seen += 1;
        }
    }

    /// Compares the window with the card's training statistics.
    pub fn report(&self, card: &ModelCard) -> DriftReport {
        let n = self.len;
        let mut report = DriftReport {
            window_rows: n,
            rows_seen: self.seen,
            ..DriftReport::default()
        };
        if n == 0 {
            return report;
        }
        let rows = &self.values[..n * self.width];
        let missing = rows.iter().filter(|v| v.is_nan()).count();
        report.missing_ratio = missing as f64 / rows.len() as f64;
        report.score_mean = self.probs[..n].iter().map(|&p| p as f64).sum::<f64>() / n as f64;
        if n < MIN_ROWS {
            return report;
        }
        report.judged = true;
        // Columns are gathered BLOCK at a time: one pass over the rows fills BLOCK columns from
        // each row's adjacent values (a strided pass per column reads a cache line per value).
        const BLOCK: usize = 16;
        let sensors = card.sensors.len().min(self.width);
        let mut columns: Vec<Vec<f32>> = (0..BLOCK).map(|_| Vec::with_capacity(n)).collect();
        for first in (0..sensors).step_by(BLOCK) {
            let last = (first + BLOCK).min(sensors);
            columns.iter_mut().for_each(Vec::clear);
            for row in rows.chunks_exact(self.width) {
                for (column, &v) in columns.iter_mut().zip(&row[first..last]) {
                    if !v.is_nan() {
                        column.push(v);
                    }
                }
            }
            for (column, stats) in columns.iter_mut().zip(&card.sensors[first..last]) {
                let missing_ratio = 1.0 - column.len() as f64 / n as f64;
                let median = median(column);
                let shift_z = match (median, stats.median, stats.iqr) {
                    (Some(m), Some(t), Some(iqr)) if iqr > 0.0 => Some((m - t) / (iqr / 1.349)),
                    _ => None,
                };
                let mut reasons = vec![];
                if shift_z.is_some_and(|z| z.abs() > Z_LIMIT) {
                    reasons.push("median_shift");
                }
                if (missing_ratio - stats.missing_ratio).abs() > MISSING_DELTA {
                    reasons.push("missing_rate");
                }
                if !reasons.is_empty() {
                    report.sensors.push(SensorDrift {
                        sensor: stats.name.clone(),
                        median,
                        training_median: stats.median,
                        shift_z,
                        missing_ratio,
                        training_missing_ratio: stats.missing_ratio,
                        reasons,
                    });
                }
            }
        }
        report.sensors.sort_by(|a, b| {
            let za = a.shift_z.map(f64::abs).unwrap_or(0.0);
            let zb = b.shift_z.map(f64::abs).unwrap_or(0.0);
            zb.total_cmp(&za).then_with(|| {
                let da = (a.missing_ratio - a.training_missing_ratio).abs();
                let db = (b.missing_ratio - b.training_missing_ratio).abs();
                db.total_cmp(&da)
            })
        });
        report.sensors_out_of_range = report.sensors.len();
        report
    }
}

/// Median of `values` (reordered in place); `None` when empty.
fn median(values: &mut [f32]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let (_, &mut upper, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    if values.len() % 2 == 1 {
        Some(upper as f64)
    } else {
        let lower = values[..mid]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        Some((lower as f64 + upper as f64) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    #[test]
    fn pushing_many_rows_at_once_leaves_the_window_row_by_row_pushes_leave() {
        // push skips the rows it would overwrite; the ring must end exactly as one row at a time.
        let w = 3;
        let rows: Vec<f32> = (0..40 * w).map(|i| i as f32).collect();
        let probs: Vec<f32> = (0..40).map(|i| i as f32 / 40.0).collect();
        for (capacity, first) in [(7, 0), (7, 5), (7, 12), (40, 3), (50, 9), (1, 2)] {
            let (mut one, mut all) = (DriftWindow::new(w, capacity), DriftWindow::new(w, capacity));
            for window in [&mut one, &mut all] {
                window.push(&rows[..first * w], &probs[..first]);
            }
            for i in first..40 {
                one.push(&rows[i * w..(i + 1) * w], &probs[i..i + 1]);
            }
            all.push(&rows[first * w..], &probs[first..]);
            // Bit for bit: slots never written hold NaN.
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let state = |d: &DriftWindow| (bits(&d.values), bits(&d.probs), d.next, d.len, d.seen);
            assert!(
                state(&one) == state(&all),
                "capacity {capacity}, {first} rows first"
            );
        }
    }

    #[test]
    fn medians_are_exact() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn training_like_rows_do_not_drift_and_shifted_or_missing_sensors_do() {
        let model = Model::embedded().unwrap();
        let card = model.card();
        let w = model.width();
        let batch = crate::model::synthetic::rows(card, 400, 9);
        let probs = vec![0.1f32; batch.len()];
        let mut window = DriftWindow::new(w, 300);
        window.push(&batch.values, &probs);
        let calm = window.report(card);
        assert!(calm.judged);
        assert_eq!(calm.window_rows, 300);
        assert_eq!(calm.rows_seen, 400);
        assert!((calm.score_mean - 0.1).abs() < 1e-6);
        // Synthetic rows come from the training distribution: nothing (or next to nothing) moves.
        assert!(calm.sensors_out_of_range <= 2, "{:?}", calm.sensors);

        // Shift one sensor by 10 robust sigmas and blank another in every row.
        let shifted = card
            .sensors
            .iter()
            .position(|s| s.iqr.is_some_and(|q| q > 0.0))
            .unwrap();
        let blanked = (0..w)
            .find(|&i| i != shifted && card.sensors[i].missing_ratio < 0.05)
            .unwrap();
        let mut moved = batch.values.clone();
        let iqr = card.sensors[shifted].iqr.unwrap();
        for row in moved.chunks_exact_mut(w) {
            row[shifted] += (10.0 * iqr / 1.349) as f32;
            row[blanked] = f32::NAN;
        }
        window.push(&moved, &probs);
        let r = window.report(card);
        let names: Vec<&str> = r.sensors.iter().map(|s| s.sensor.as_str()).collect();
        assert!(
            names.contains(&card.sensors[shifted].name.as_str()),
            "{names:?}"
        );
        assert!(
            names.contains(&card.sensors[blanked].name.as_str()),
            "{names:?}"
        );
        let s = r
            .sensors
            .iter()
            .find(|s| s.sensor == card.sensors[shifted].name)
            .unwrap();
        assert_eq!(s.reasons, ["median_shift"]);
        assert!(s.shift_z.unwrap() > 8.0, "{s:?}");
        assert!(r.missing_ratio > calm.missing_ratio);
    }

    #[test]
    fn a_small_window_is_not_judged() {
        let model = Model::embedded().unwrap();
        let mut window = DriftWindow::new(model.width(), 1000);
        let batch = crate::model::synthetic::rows(model.card(), 10, 1);
        window.push(&batch.values, &[0.5; 10]);
        let r = window.report(model.card());
        assert!(!r.judged);
        assert_eq!(r.sensors_out_of_range, 0);
        assert_eq!(r.window_rows, 10);
    }
}
