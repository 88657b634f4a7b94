//! Synthetic wafer rows drawn from a model card's training distribution.
//!
//! The real wafer data never ships with faultline, so demos, benchmarks and tests that need
//! plausible rows draw them here: each sensor around its training median with IQR-scaled noise,
//! missing as often as it was in training, deterministic for a seed.

use super::card::ModelCard;
use crate::row::RowBatch;

/// A small, fast, deterministic generator (SplitMix64); not for anything but test data.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// `n` rows named `Synthetic-1..n`, drawn from the card's per-sensor medians, IQRs and missing rates.
pub fn rows(card: &ModelCard, n: usize, seed: u64) -> RowBatch {
    let mut rng = SplitMix::new(seed);
    let width = card.sensors.len();
    let mut batch = RowBatch::new(width);
    let mut row = vec![0f32; width];
    for i in 0..n {
        for (v, s) in row.iter_mut().zip(&card.sensors) {
            *v = match s.median {
                Some(m) if rng.unit() >= s.missing_ratio => {
                    let spread = s.iqr.unwrap_or(0.0).max(m.abs() * 0.01);
                    (m + rng.normal() * spread / 1.349) as f32
                }
                _ => f32::NAN,
            };
        }
        batch.push(format!("Synthetic-{}", i + 1), &row, None);
    }
    batch
}

/// Moves sensors of `row` to their training 1st or 99th percentile, one at a time in feature order,
/// wherever that raises `model`'s P(fault), until P(fault) reaches `until` (1.0: a full pass): a
/// wafer the model reads as faulty, built from the card alone (for demos and tests).
pub fn towards_fault(model: &super::Model, row: &[f32], until: f32) -> Vec<f32> {
    let mut row = row.to_vec();
    let mut best = [0f32];
    model.probabilities(&row, &mut best);
    for (i, s) in model.card().sensors.iter().enumerate() {
        if best[0] >= until {
            break;
        }
        for v in [s.p01, s.p99].into_iter().flatten() {
            let old = row[i];
            row[i] = v as f32;
            let mut p = [0f32];
            model.probabilities(&row, &mut p);
            if p[0] > best[0] {
                best = p;
            } else {
                row[i] = old;
            }
        }
    }
    row
}

/// Writes `batch` as a CSV in the wafer schema (blank first header cell, features, no label).
pub fn write_csv(
    batch: &RowBatch,
    features: &[String],
    out: impl std::io::Write,
) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec![String::new()];
    header.extend(features.iter().cloned());
    w.write_record(&header)?;
    for i in 0..batch.len() {
        let mut rec = vec![batch.ids[i].clone()];
        rec.extend(batch.row(i).iter().map(|v| {
            if v.is_nan() {
                String::new()
            } else {
                v.to_string()
            }
        }));
        w.write_record(&rec)?;
    }
    w.flush()
}
