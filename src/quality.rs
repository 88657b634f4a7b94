//! Live model quality: how well a model's probabilities matched the outcomes fabs reported later.
//!
//! The definitions are scikit-learn's, so a Python check on the same rows gives the same numbers:
//! - ROC-AUC: the area under the ROC curve with one point per distinct score (ties count half),
//!   as `sklearn.metrics.roc_auc_score`;
//! - PR-AUC: average precision, `sum((R_k - R_{k-1}) * P_k)` over the distinct scores from the
//!   highest down, as `sklearn.metrics.average_precision_score` (no interpolation);
//! - recall and false-alarm rate at the threshold in force (`P(fault) >= threshold` is a fault),
//!   or, for a serving model under an alarm budget, of the verdicts it published ([`compute_verdicts`]:
//!   the budget's threshold moves, so no one threshold gives them).
//!
//! A figure that is undefined on the rows at hand (ROC-AUC with one class only, recall without a
//! faulty wafer) is `None`, never a made-up 0 or 1.

use serde::Serialize;

/// One model's figures over a window of labelled wafers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Labelled wafers the figures are computed over.
    pub labelled: usize,
    /// Of those, the faulty ones (label +1).
    pub positives: usize,
    /// And the good ones (label -1).
    pub negatives: usize,
    /// Area under the ROC curve; `None` unless both classes are present.
    pub roc_auc: Option<f64>,
    /// Average precision; `None` without a faulty wafer.
    pub pr_auc: Option<f64>,
    /// The threshold the counts below use; `None` when they count published verdicts.
    pub threshold: Option<f32>,
    /// What the counts below count: wafers at or above `threshold`, or the published verdicts.
    pub basis: Basis,
    /// Faulty wafers flagged.
    pub true_positives: usize,
    /// Good wafers flagged.
    pub false_positives: usize,
    /// Faulty wafers missed.
    pub false_negatives: usize,
    /// Good wafers passed.
    pub true_negatives: usize,
    /// Faulty wafers flagged / faulty wafers; `None` without a faulty wafer.
    pub recall: Option<f64>,
    /// Good wafers flagged / good wafers; `None` without a good wafer.
    pub false_alarm_rate: Option<f64>,
    /// Faulty wafers flagged / wafers flagged; `None` when none is flagged.
    pub precision: Option<f64>,
}

/// What a [`Quality`]'s confusion counts count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Wafers whose P(fault) is at or above the threshold.
    Threshold,
    /// The verdicts published (under an alarm budget).
    Verdicts,
}

/// The figures for `(P(fault), faulty)` pairs at `threshold`.
pub fn compute(pairs: &[(f32, bool)], threshold: f32) -> Quality {
    let flagged = pairs.iter().map(|&(p, _)| p >= threshold);
    counted(pairs, flagged, Some(threshold), Basis::Threshold)
}

/// The figures for `(P(fault), faulty, flagged)`: the areas from P(fault), the counts from the
/// verdicts as published.
pub fn compute_verdicts(rows: &[(f32, bool, bool)]) -> Quality {
    let pairs: Vec<(f32, bool)> = rows.iter().map(|&(p, y, _)| (p, y)).collect();
    counted(&pairs, rows.iter().map(|r| r.2), None, Basis::Verdicts)
}

fn counted(
    pairs: &[(f32, bool)],
    flagged: impl Iterator<Item = bool>,
    threshold: Option<f32>,
    basis: Basis,
) -> Quality {
    let positives = pairs.iter().filter(|(_, y)| *y).count();
    let negatives = pairs.len() - positives;
    let (mut tp, mut fp) = (0usize, 0usize);
    for (&(_, y), flag) in pairs.iter().zip(flagged) {
        if flag {
            if y {
                tp += 1;
            } else {
                fp += 1;
            }
        }
    }
    let (roc_auc, pr_auc) = areas(pairs, positives, negatives);
    Quality {
        labelled: pairs.len(),
        positives,
        negatives,
        roc_auc,
        pr_auc,
        threshold,
        basis,
        true_positives: tp,
        false_positives: fp,
        false_negatives: positives - tp,
        true_negatives: negatives - fp,
        recall: (positives > 0).then(|| tp as f64 / positives as f64),
        false_alarm_rate: (negatives > 0).then(|| fp as f64 / negatives as f64),
        precision: (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64),
    }
}

/// ROC-AUC and average precision, walking the distinct scores from the highest down.
fn areas(pairs: &[(f32, bool)], positives: usize, negatives: usize) -> (Option<f64>, Option<f64>) {
    let mut sorted: Vec<(f32, bool)> = pairs.to_vec();
    // NaN probabilities never come out of the scorer; total_cmp keeps the sort total anyway.
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (p, n) = (positives as f64, negatives as f64);
    let (mut tp, mut fp) = (0usize, 0usize);
    let (mut roc, mut ap) = (0.0f64, 0.0f64);
    let (mut prev_tpr, mut prev_fpr, mut prev_recall) = (0.0f64, 0.0f64, 0.0f64);
    let mut i = 0;
    while i < sorted.len() {
        let score = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == score {
            if sorted[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        if positives > 0 && negatives > 0 {
            let (tpr, fpr) = (tp as f64 / p, fp as f64 / n);
            roc += (fpr - prev_fpr) * (tpr + prev_tpr) / 2.0;
            prev_tpr = tpr;
            prev_fpr = fpr;
        }
        if positives > 0 {
            let recall = tp as f64 / p;
            let precision = tp as f64 / (tp + fp) as f64;
            ap += (recall - prev_recall) * precision;
            prev_recall = recall;
        }
    }
    (
        (positives > 0 && negatives > 0).then_some(roc),
        (positives > 0).then_some(ap),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_inverted_rankings() {
        let perfect = compute(&[(0.9, true), (0.8, true), (0.2, false), (0.1, false)], 0.5);
        assert_eq!(perfect.roc_auc, Some(1.0));
        assert_eq!(perfect.pr_auc, Some(1.0));
        assert_eq!(perfect.recall, Some(1.0));
        assert_eq!(perfect.false_alarm_rate, Some(0.0));
        let inverted = compute(&[(0.1, true), (0.2, true), (0.8, false), (0.9, false)], 0.5);
        assert_eq!(inverted.roc_auc, Some(0.0));
        // Precision is 1/3 when the first faulty wafer is reached and 2/4 at the second.
        assert_eq!(inverted.pr_auc, Some(0.5 * (1.0 / 3.0) + 0.5 * 0.5));
        assert_eq!(inverted.recall, Some(0.0));
        assert_eq!(inverted.false_alarm_rate, Some(1.0));
    }

    #[test]
    fn ties_count_half_like_scikit_learn() {
        // sklearn: roc_auc_score([1, 0, 1, 0], [0.5, 0.5, 0.7, 0.1]) == 0.875,
        // average_precision_score(...) == 0.8333333333333333.
        let q = compute(&[(0.5, true), (0.5, false), (0.7, true), (0.1, false)], 0.6);
        assert!((q.roc_auc.unwrap() - 0.875).abs() < 1e-15);
        assert!((q.pr_auc.unwrap() - 0.833_333_333_333_333_3).abs() < 1e-15);
        assert_eq!(
            (
                q.true_positives,
                q.false_positives,
                q.false_negatives,
                q.true_negatives
            ),
            (1, 0, 1, 2)
        );
        assert_eq!(q.recall, Some(0.5));
        assert_eq!(q.precision, Some(1.0));
        let q = compute(&[(0.5, true), (0.5, false), (0.7, true), (0.1, false)], 0.5);
        assert_eq!(q.precision, Some(2.0 / 3.0));
        assert_eq!(compute(&[(0.1, true)], 0.5).precision, None);
    }

    #[test]
    fn undefined_figures_are_none() {
        let good_only = compute(&[(0.3, false), (0.9, false)], 0.5);
        assert_eq!(good_only.roc_auc, None);
        assert_eq!(good_only.pr_auc, None);
        assert_eq!(good_only.recall, None);
        assert_eq!(good_only.false_alarm_rate, Some(0.5));
        let empty = compute(&[], 0.5);
        assert_eq!(empty.labelled, 0);
        assert_eq!(empty.false_alarm_rate, None);
    }
}
