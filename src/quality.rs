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
//!
//! Each of ROC-AUC, recall and the false-alarm rate comes with a 95% interval, and two models'
//! ROC-AUC on the wafers both scored with the interval of their difference ([`compare`]): a
//! window of labelled wafers holds a few dozen faulty ones, so a figure alone says little, and a
//! promotion decided on two bare numbers would be decided on noise. The intervals are the card's
//! kind (training's `selection.py`): percentile bootstrap, wafers resampled with replacement,
//! from a fixed seed (the same wafers give the same interval on every poll). A resample without
//! both classes gives no value for the figures it leaves undefined.

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
    /// 95% bootstrap interval of `roc_auc`.
    pub roc_auc_ci95: Option<[f64; 2]>,
    /// 95% bootstrap interval of `recall`.
    pub recall_ci95: Option<[f64; 2]>,
    /// 95% bootstrap interval of `false_alarm_rate`.
    pub false_alarm_rate_ci95: Option<[f64; 2]>,
}

/// Two models' ROC-AUC on the labelled wafers both scored (the shadow's against the serving
/// model's), with the interval of the difference from the same resamples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Labelled wafers both models scored.
    pub labelled: usize,
    /// Of those, the faulty ones.
    pub positives: usize,
    /// The first model's ROC-AUC on them (the serving model's).
    pub roc_auc_a: Option<f64>,
    /// The second's (the shadow's).
    pub roc_auc_b: Option<f64>,
    /// `roc_auc_b - roc_auc_a`.
    pub difference: Option<f64>,
    /// 95% bootstrap interval of the difference (paired: both models on each resample).
    pub difference_ci95: Option<[f64; 2]>,
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

/// Whether a [`Quality`]'s intervals are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intervals {
    /// By bootstrap (see the module docs).
    Bootstrap,
    /// Not at all (`None`): for the gauges, which show none.
    Without,
}

/// The figures for `(P(fault), faulty)` pairs at `threshold`.
pub fn compute(pairs: &[(f32, bool)], threshold: f32) -> Quality {
    compute_with(pairs, threshold, Intervals::Bootstrap)
}

/// [`compute`], with intervals or not.
pub fn compute_with(pairs: &[(f32, bool)], threshold: f32, intervals: Intervals) -> Quality {
    let flagged = pairs.iter().map(|&(p, _)| p >= threshold);
    counted(pairs, flagged, Some(threshold), Basis::Threshold, intervals)
}

/// The figures for `(P(fault), faulty, flagged)`: the areas from P(fault), the counts from the
/// verdicts as published.
pub fn compute_verdicts(rows: &[(f32, bool, bool)]) -> Quality {
    compute_verdicts_with(rows, Intervals::Bootstrap)
}

/// [`compute_verdicts`], with intervals or not.
pub fn compute_verdicts_with(rows: &[(f32, bool, bool)], intervals: Intervals) -> Quality {
    let pairs: Vec<(f32, bool)> = rows.iter().map(|&(p, y, _)| (p, y)).collect();
    counted(
        &pairs,
        rows.iter().map(|r| r.2),
        None,
        Basis::Verdicts,
        intervals,
    )
}

fn counted(
    pairs: &[(f32, bool)],
    flagged: impl Iterator<Item = bool>,
    threshold: Option<f32>,
    basis: Basis,
    intervals: Intervals,
) -> Quality {
    let flagged: Vec<bool> = flagged.collect();
    let positives = pairs.iter().filter(|(_, y)| *y).count();
    let negatives = pairs.len() - positives;
    let (mut tp, mut fp) = (0usize, 0usize);
    for (&(_, y), &flag) in pairs.iter().zip(&flagged) {
        if flag {
            if y {
                tp += 1;
            } else {
                fp += 1;
            }
        }
    }
    let (roc_auc, pr_auc) = areas(pairs, positives, negatives);
    let [roc_auc_ci95, recall_ci95, false_alarm_rate_ci95] = match intervals {
        Intervals::Bootstrap => bootstrap(pairs, &flagged),
        Intervals::Without => [None; 3],
    };
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
        roc_auc_ci95,
        recall_ci95,
        false_alarm_rate_ci95,
    }
}

/// Compares two models on the same labelled wafers: `(P(fault) by a, P(fault) by b, faulty)`.
pub fn compare(rows: &[(f32, f32, bool)]) -> Comparison {
    let positives = rows.iter().filter(|r| r.2).count();
    let negatives = rows.len() - positives;
    let a: Vec<(f32, bool)> = rows.iter().map(|r| (r.0, r.2)).collect();
    let b: Vec<(f32, bool)> = rows.iter().map(|r| (r.1, r.2)).collect();
    let roc_auc_a = areas(&a, positives, negatives).0;
    let roc_auc_b = areas(&b, positives, negatives).0;
    let (ra, rb) = (Ranked::new(&a), Ranked::new(&b));
    let mut differences: Vec<f64> = resample(rows.len(), |w| {
        ra.roc_auc(w).zip(rb.roc_auc(w)).map(|(x, y)| y - x)
    })
    .into_iter()
    .flatten()
    .collect();
    Comparison {
        labelled: rows.len(),
        positives,
        roc_auc_a,
        roc_auc_b,
        difference: roc_auc_a.zip(roc_auc_b).map(|(x, y)| y - x),
        difference_ci95: interval(&mut differences),
    }
}

/// Bootstrap resamples behind an interval, as many as training's cards use; fewer for a window so
/// large that they would take more than [`MAX_DRAWS`] draws (`/api/quality` computes them again
/// whenever a label has changed the window; the gauges compute no intervals).
const RESAMPLES: usize = 1000;
const MIN_RESAMPLES: usize = 200;
const MAX_DRAWS: usize = 4_000_000;

/// The generator's seed: the same wafers give the same intervals on every call.
const SEED: u64 = 0x5eed_0000_0000_002a;
/// Resampling at least this many draws in all is split over two threads.
const PARALLEL_DRAWS: usize = 200_000;

/// What `each` gives for the weights of every resample (how many times each row was drawn), in
/// the resamples' order.
///
/// With enough draws, the second half of the resamples is drawn on a second thread. The
/// generator is a counter (SplitMix64's state after `k` draws is the seed plus `k` times its
/// step), so that thread starts where one thread would have been by then: the weights, and so
/// the intervals, are the same bit for bit.
fn resample<T: Send>(n: usize, each: impl Fn(&[u32]) -> T + Sync) -> Vec<T> {
    if n == 0 {
        return Vec::new();
    }
    let times = (MAX_DRAWS / n).clamp(MIN_RESAMPLES, RESAMPLES);
    let run = |resamples: std::ops::Range<usize>| -> Vec<T> {
        let mut rng = SplitMix64::after(SEED, resamples.start as u64 * n as u64);
        let mut w = vec![0u32; n];
        resamples
            .map(|_| {
                w.fill(0);
                for _ in 0..n {
                    w[rng.below(n)] += 1;
                }
                each(&w)
            })
            .collect()
    };
    if n * times < PARALLEL_DRAWS {
        return run(0..times);
    }
    let half = times / 2;
    let (mut first, second) = crate::model::on_two_threads(|| run(0..half), || run(half..times));
    first.extend(second);
    first
}

/// The 95% intervals of ROC-AUC, recall and the false-alarm rate of `pairs` flagged as `flagged`.
fn bootstrap(pairs: &[(f32, bool)], flagged: &[bool]) -> [Option<[f64; 2]>; 3] {
    let ranked = Ranked::new(pairs);
    // Per row, whether it is faulty (1) and flagged (2).
    let kinds: Vec<u8> = pairs
        .iter()
        .zip(flagged)
        .map(|(&(_, y), &flag)| u8::from(y) | u8::from(flag) << 1)
        .collect();
    let n = u32::try_from(pairs.len()).expect("fewer than 2^32 labelled wafers");
    let figures = resample(pairs.len(), |w| {
        // No branch: the compiler sums eight rows at a time. The weights add up to `n`.
        let (mut pos, mut tp, mut fp) = (0u32, 0u32, 0u32);
        for (&k, &kind) in w.iter().zip(&kinds) {
            pos += k * u32::from(kind & 1);
            tp += k * u32::from(kind == 3);
            fp += k * u32::from(kind == 2);
        }
        let neg = n - pos;
        [
            ranked.roc_auc(w),
            (pos > 0).then(|| f64::from(tp) / f64::from(pos)),
            (neg > 0).then(|| f64::from(fp) / f64::from(neg)),
        ]
    });
    let each = |figure: usize| -> Vec<f64> { figures.iter().filter_map(|f| f[figure]).collect() };
    let (mut aucs, mut recalls, mut rates) = (each(0), each(1), each(2));
    [
        interval(&mut aucs),
        interval(&mut recalls),
        interval(&mut rates),
    ]
}

/// The 2.5th and 97.5th percentiles of `values` (numpy's default, linear between the two
/// nearest); `None` without values.
fn interval(values: &mut [f64]) -> Option<[f64; 2]> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let x = q * (values.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (x - lo as f64)
    };
    Some([at(0.025), at(0.975)])
}

/// Rows ordered by score, highest first, in runs of equal scores: ROC-AUC of any weighting of
/// them in one pass.
struct Ranked {
    /// Row indices, highest score first.
    order: Vec<u32>,
    /// In `order`'s order, whether each row is faulty (1) and whether a run of equal scores
    /// ends with it (2).
    kinds: Vec<u8>,
}

impl Ranked {
    fn new(pairs: &[(f32, bool)]) -> Ranked {
        let n = u32::try_from(pairs.len()).expect("fewer than 2^32 labelled wafers");
        let mut order: Vec<u32> = (0..n).collect();
        order.sort_by(|&a, &b| pairs[b as usize].0.total_cmp(&pairs[a as usize].0));
        let score = |k: usize| pairs[order[k] as usize].0;
        let kinds = (0..order.len())
            .map(|k| {
                let ends = k + 1 == order.len() || score(k + 1) != score(k);
                u8::from(pairs[order[k] as usize].1) | u8::from(ends) << 1
            })
            .collect();
        Ranked { order, kinds }
    }

    /// ROC-AUC with row `i` counted `w[i]` times (ties count half); `None` without both classes.
    ///
    /// Each good wafer wins a pair against each faulty one ranked above it, and half a pair
    /// against each tied with it. The pairs won are counted twice over, in integers: every
    /// count is exact, as the sum of halves in `f64` it replaces was (below 2^53), and the area
    /// is the same bit for bit.
    fn roc_auc(&self, w: &[u32]) -> Option<f64> {
        let (mut above, mut twice_won, mut neg_total) = (0u64, 0u64, 0u64);
        let (mut pos, mut neg) = (0u64, 0u64);
        for (&i, &kind) in self.order.iter().zip(&self.kinds) {
            let k = u64::from(w[i as usize]);
            let faulty = u64::from(kind & 1);
            pos += k * faulty;
            neg += k - k * faulty;
            if kind & 2 != 0 {
                twice_won += neg * (2 * above + pos);
                above += pos;
                neg_total += neg;
                (pos, neg) = (0, 0);
            }
        }
        (above > 0 && neg_total > 0)
            .then(|| twice_won as f64 / 2.0 / (above as f64 * neg_total as f64))
    }
}

/// A small, fast, seeded generator (SplitMix64): the resamples need speed and repeatability,
/// not cryptographic quality.
struct SplitMix64(u64);

impl SplitMix64 {
    /// What the state is added at each draw.
    const STEP: u64 = 0x9e37_79b9_7f4a_7c15;

    /// The generator seeded with `seed`, after `draws` draws.
    fn after(seed: u64, draws: u64) -> SplitMix64 {
        SplitMix64(seed.wrapping_add(draws.wrapping_mul(Self::STEP)))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(Self::STEP);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (multiply-shift; its bias is far below what a percentile can show).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
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

    /// The bootstrap as first written, on one thread, summing halves in `f64`: what the intervals
    /// must stay, bit for bit, however they are computed.
    fn plain_intervals(pairs: &[(f32, bool)], flagged: &[bool]) -> [Option<[f64; 2]>; 3] {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by(|&a, &b| pairs[b].0.total_cmp(&pairs[a].0));
        let auc = |w: &[u32]| -> Option<f64> {
            let (mut above, mut won, mut neg_total) = (0u64, 0f64, 0u64);
            let mut k = 0;
            while k < order.len() {
                let (mut pos, mut neg) = (0u64, 0u64);
                let score = pairs[order[k]].0;
                while k < order.len() && pairs[order[k]].0 == score {
                    let i = order[k];
                    if pairs[i].1 {
                        pos += u64::from(w[i]);
                    } else {
                        neg += u64::from(w[i]);
                    }
                    k += 1;
                }
                won += neg as f64 * (above as f64 + pos as f64 / 2.0);
                above += pos;
                neg_total += neg;
            }
            (above > 0 && neg_total > 0).then(|| won / (above as f64 * neg_total as f64))
        };
        let n = pairs.len();
        let times = (MAX_DRAWS / n).clamp(MIN_RESAMPLES, RESAMPLES);
        let mut rng = SplitMix64(SEED);
        let (mut aucs, mut recalls, mut rates) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..times {
            let mut w = vec![0u32; n];
            for _ in 0..n {
                w[rng.below(n)] += 1;
            }
            let (mut pos, mut neg, mut tp, mut fp) = (0u64, 0u64, 0u64, 0u64);
            for ((&(_, y), &flag), &k) in pairs.iter().zip(flagged).zip(&w) {
                let k = u64::from(k);
                match (y, flag) {
                    (true, true) => (pos, tp) = (pos + k, tp + k),
                    (true, false) => pos += k,
                    (false, true) => (neg, fp) = (neg + k, fp + k),
                    (false, false) => neg += k,
                }
            }
            if pos > 0 {
                recalls.push(tp as f64 / pos as f64);
            }
            if neg > 0 {
                rates.push(fp as f64 / neg as f64);
            }
            if let Some(a) = auc(&w) {
                aucs.push(a);
            }
        }
        [
            interval(&mut aucs),
            interval(&mut recalls),
            interval(&mut rates),
        ]
    }

    /// The intervals are the plain bootstrap's bit for bit: drawn on one thread (150 rows) or two
    /// (1,000 and 30,000), with ties (scores rounded to 0.05) or without, and with one class
    /// only.
    #[test]
    fn the_fast_bootstrap_gives_the_plain_one_s_intervals_bit_for_bit() {
        let mut rng = SplitMix64(11);
        let mut rows = |n: usize, tied: bool, faulty_share: f32| -> Vec<(f32, bool)> {
            (0..n)
                .map(|_| {
                    let u = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                    let faulty = u < faulty_share;
                    let noise = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                    let p = (noise + if faulty { 0.3 } else { 0.0 }).min(1.0);
                    (if tied { (p * 20.0).round() / 20.0 } else { p }, faulty)
                })
                .collect()
        };
        for (n, tied, share) in [
            (150, false, 0.1),
            (150, true, 0.1),
            (1_000, false, 0.06),
            (1_000, true, 0.06),
            (30_000, false, 0.06),
            (500, false, 0.0),
        ] {
            let pairs = rows(n, tied, share);
            let flagged: Vec<bool> = pairs.iter().map(|&(p, _)| p >= 0.5).collect();
            let fast = bootstrap(&pairs, &flagged);
            let plain = plain_intervals(&pairs, &flagged);
            let bits =
                |x: [Option<[f64; 2]>; 3]| x.map(|i| i.map(|[a, b]| [a.to_bits(), b.to_bits()]));
            assert_eq!(
                bits(fast),
                bits(plain),
                "{n} rows, tied {tied}: {fast:?} {plain:?}"
            );
            assert_eq!(fast[0].is_some(), share > 0.0);
        }
    }

    /// Unit weights give the same ROC-AUC as the walk over the curve (ties included).
    #[test]
    fn the_weighted_area_agrees_with_the_curve() {
        let pairs = [
            (0.5, true),
            (0.5, false),
            (0.7, true),
            (0.1, false),
            (0.7, false),
            (0.2, true),
        ];
        let ranked = Ranked::new(&pairs);
        let curve = compute(&pairs, 0.5).roc_auc.unwrap();
        assert!((ranked.roc_auc(&[1; 6]).unwrap() - curve).abs() < 1e-12);
        // Counting each row twice changes nothing; leaving out a class leaves no area.
        assert!((ranked.roc_auc(&[2; 6]).unwrap() - curve).abs() < 1e-12);
        assert_eq!(ranked.roc_auc(&[1, 0, 1, 0, 0, 1]), None);
    }

    /// The intervals hold the figure, narrow as wafers are added, and are the same on every call
    /// (a fixed seed); a difference between a model and itself is exactly 0.
    #[test]
    fn intervals_hold_the_figure_and_narrow_with_more_wafers() {
        // Faulty wafers score higher on average, with overlap: ROC-AUC about 0.75.
        let rows = |n: usize| -> Vec<(f32, bool)> {
            let mut rng = SplitMix64(7);
            (0..n)
                .map(|i| {
                    let faulty = i % 10 == 0;
                    let noise = (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                    (noise + if faulty { 0.5 } else { 0.0 }, faulty)
                })
                .collect()
        };
        let small = compute(&rows(200), 0.8);
        let large = compute(&rows(5_000), 0.8);
        for q in [&small, &large] {
            let [lo, hi] = q.roc_auc_ci95.unwrap();
            assert!(lo < q.roc_auc.unwrap() && q.roc_auc.unwrap() < hi, "{q:?}");
            let [lo, hi] = q.recall_ci95.unwrap();
            assert!(lo <= q.recall.unwrap() && q.recall.unwrap() <= hi, "{q:?}");
            let [lo, hi] = q.false_alarm_rate_ci95.unwrap();
            assert!(lo <= q.false_alarm_rate.unwrap() && q.false_alarm_rate.unwrap() <= hi);
        }
        let width = |q: &Quality| q.roc_auc_ci95.map(|[lo, hi]| hi - lo).unwrap();
        assert!(
            width(&large) < width(&small) / 2.0,
            "{} {}",
            width(&large),
            width(&small)
        );
        assert_eq!(compute(&rows(200), 0.8), small);
        let same: Vec<(f32, f32, bool)> = rows(200).iter().map(|&(p, y)| (p, p, y)).collect();
        let c = compare(&same);
        assert_eq!(
            (c.difference, c.difference_ci95),
            (Some(0.0), Some([0.0, 0.0]))
        );
        assert_eq!((c.labelled, c.positives), (200, 20));
    }

    /// Against a model that ranks every faulty wafer first, a noisy one's difference is
    /// negative with an interval below 0.
    #[test]
    fn a_clearly_better_model_shows_a_difference_whose_interval_excludes_zero() {
        let rows: Vec<(f32, f32, bool)> = (0..400)
            .map(|i| {
                let faulty = i % 8 == 0;
                let perfect = if faulty { 0.9 } else { 0.1 };
                let noisy = ((i * 37) % 100) as f32 / 100.0;
                (perfect, noisy, faulty)
            })
            .collect();
        let c = compare(&rows);
        assert_eq!(c.roc_auc_a, Some(1.0));
        let [lo, hi] = c.difference_ci95.unwrap();
        assert!(hi < 0.0 && lo <= c.difference.unwrap(), "{c:?}");
    }

    #[test]
    fn undefined_figures_are_none() {
        let good_only = compute(&[(0.3, false), (0.9, false)], 0.5);
        assert_eq!(good_only.roc_auc, None);
        assert_eq!(good_only.pr_auc, None);
        assert_eq!(good_only.recall, None);
        assert_eq!(good_only.false_alarm_rate, Some(0.5));
        assert_eq!(good_only.roc_auc_ci95, None);
        assert_eq!(good_only.recall_ci95, None);
        let empty = compute(&[], 0.5);
        assert_eq!(empty.labelled, 0);
        assert_eq!(empty.false_alarm_rate, None);
        assert_eq!(empty.false_alarm_rate_ci95, None);
    }
}
