//! Exact contributions of each sensor to one row's margin: path-dependent TreeSHAP (Lundberg et al.,
//! "Consistent individualized feature attribution for tree ensembles", algorithm 2), as XGBoost's
//! `pred_contribs` computes it.
//!
//! It needs every node's training cover (ONNX `nodes_hitrates`, which `training/train.py` writes:
//! rows, or XGBoost's hessian sum, reaching the node). For a row, `base + Σ contributions` equals the
//! margin (log-odds) exactly up to float rounding (local accuracy), and a sensor no split reads gets 0.
//! A tree that splits on one sensor only (what the logistic-rank recipe exports: one step function per
//! sensor) contributes `leaf(x) - E[tree]` to that sensor, which is what the general algorithm returns
//! for it, in O(depth).
//!
//! Missing values follow the same routing as scoring (the graph's median imputation is folded into
//! each split), and the contribution is credited to the sensor whose value was missing.

use super::ensemble::{as_step_function, NodeSpec, TreeSpec};

/// Deepest tree explained; deeper ones (never produced by training) leave the model without contributions.
pub const MAX_DEPTH: usize = 64;

/// A tree with its training cover and expected value.
#[derive(Debug, Clone)]
struct Tree {
    /// The nodes as compiled (`nodes[0]` is the root).
    nodes: Vec<NodeSpec>,
    /// Training cover of each node.
    cover: Vec<f64>,
    /// Cover-weighted mean leaf value (XGBoost's node mean value at the root).
    expected: f64,
    /// The one feature the tree reads, when it reads exactly one.
    single: Option<usize>,
    /// The tree as a step function of that feature (ascending thresholds, leaf values, the leaf a
    /// NaN reaches), when it is one: its leaf is a count, not a walk.
    steps: Option<(Vec<f32>, Vec<f32>, usize)>,
}

impl Tree {
    /// A leaf's value (0 for a branch).
    fn value(&self, at: usize) -> f64 {
        match self.nodes[at] {
            NodeSpec::Leaf { weight } => weight as f64,
            NodeSpec::Branch { .. } => 0.0,
        }
    }

    /// The feature a branch reads.
    fn feature(&self, at: usize) -> Option<usize> {
        match self.nodes[at] {
            NodeSpec::Branch { feature, .. } => Some(feature),
            NodeSpec::Leaf { .. } => None,
        }
    }

    /// The value of the leaf `row` reaches.
    fn leaf_value(&self, row: &[f32]) -> f64 {
        match (&self.steps, self.single) {
            (Some((thresholds, leaves, nan)), Some(f)) => {
                let x = row[f];
                let k = if x.is_nan() {
                    *nan
                } else {
                    thresholds.iter().filter(|&&t| t <= x).count()
                };
                leaves[k] as f64
            }
            _ => self.value(self.walk(row)),
        }
    }

    /// The leaf `row` reaches.
    fn walk(&self, row: &[f32]) -> usize {
        let mut at = 0;
        while let Some((hot, _)) = self.nodes[at].route(row) {
            at = hot;
        }
        at
    }
}

/// The explainer for a whole ensemble.
#[derive(Debug, Clone)]
pub struct TreeShap {
    trees: Vec<Tree>,
    /// Σ of the trees' expected values (the base margin is added by the model).
    expected: f64,
}

/// Why an ensemble cannot be explained.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ShapError {
    /// The graph carries no cover.
    #[error("the graph carries no node cover (nodes_hitrates), which exact TreeSHAP needs")]
    NoCover,
    /// Cover of the wrong length or a bad value.
    #[error("tree {0} has an unusable node cover: {1}")]
    BadCover(usize, String),
    /// A tree too deep to walk recursively.
    #[error("tree {0} is deeper than {MAX_DEPTH} levels")]
    TooDeep(usize),
    /// The trees' sum is P(fault) itself (`post_transform` NONE), not log-odds: contributions to
    /// it would be in probability units where every reader of a verdict expects log-odds.
    #[error("the graph's post_transform is NONE: its trees sum to P(fault) itself, not to log-odds, so it has no contributions in log-odds to give")]
    NotLogOdds,
}

#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    feature: isize,
    zero: f64,
    one: f64,
    weight: f64,
}

impl TreeShap {
    /// Builds the explainer from the compiled trees and each tree's per-node cover (same positions).
    pub fn build(specs: &[TreeSpec], covers: &[Vec<f32>]) -> Result<TreeShap, ShapError> {
        if covers.len() != specs.len() {
            return Err(ShapError::NoCover);
        }
        let mut trees = Vec::with_capacity(specs.len());
        for (t, (spec, cover)) in specs.iter().zip(covers).enumerate() {
            if cover.len() != spec.nodes.len() {
                return Err(ShapError::BadCover(
                    t,
                    format!("{} values for {} nodes", cover.len(), spec.nodes.len()),
                ));
            }
            if let Some(c) = cover.iter().find(|c| !c.is_finite() || **c < 0.0) {
                return Err(ShapError::BadCover(t, format!("cover {c}")));
            }
            // A branch's cover is its children's together (the training rows through it), which
            // the expected values and path weights assume. Some exporters write 1.0 for every
            // node (sklearn-onnx): contributions would still add up to the margin, measured from
            // a base that is no training expectation, so they are refused, not reported.
            for (at, node) in spec.nodes.iter().enumerate() {
                if let NodeSpec::Branch { yes, no, .. } = *node {
                    let (c, sum) = (cover[at] as f64, cover[yes] as f64 + cover[no] as f64);
                    if (c - sum).abs() > 1e-3 * c.max(sum) + 1e-9 {
                        return Err(ShapError::BadCover(
                            t,
                            format!(
                                "node {at} has cover {c} but its children {sum} together: not the training rows through each node"
                            ),
                        ));
                    }
                }
            }
            let mut tree = Tree {
                nodes: spec.nodes.clone(),
                cover: cover.iter().map(|&c| c as f64).collect(),
                expected: 0.0,
                single: None,
                steps: as_step_function(spec).map(|(_, t, l, nan)| (t, l, nan as usize)),
            };
            tree.expected = mean_value(&tree, 0, 0, t)?;
            let mut features = (0..tree.nodes.len()).filter_map(|i| tree.feature(i));
            if let Some(first) = features.next() {
                if features.all(|f| f == first) {
                    tree.single = Some(first);
                }
            }
            trees.push(tree);
        }
        let expected = trees.iter().map(|t| t.expected).sum();
        Ok(TreeShap { trees, expected })
    }

    /// The ensemble's expected margin over the training cover (without the graph's base margin).
    pub fn expected(&self) -> f64 {
        self.expected
    }

    /// Adds each feature's contribution for `row` to `phi` (one entry per feature).
    pub fn contributions(&self, row: &[f32], phi: &mut [f64]) {
        // Path copies for the general algorithm; grown on first use (never for single-sensor trees).
        let mut path = Vec::new();
        for tree in &self.trees {
            if let Some(f) = tree.single {
                phi[f] += tree.leaf_value(row) - tree.expected;
            } else if tree.feature(0).is_some() {
                recurse(tree, row, phi, 0, &mut path, 0, 0, 1.0, 1.0, -1);
            }
        }
    }
}

/// XGBoost's node mean values: a leaf's value, or the children's means weighted by their cover over the
/// node's own cover.
fn mean_value(tree: &Tree, at: usize, depth: usize, index: usize) -> Result<f64, ShapError> {
    if depth > MAX_DEPTH {
        return Err(ShapError::TooDeep(index));
    }
    let NodeSpec::Branch { yes, no, .. } = tree.nodes[at] else {
        return Ok(tree.value(at));
    };
    let my = mean_value(tree, yes, depth + 1, index)?;
    let mn = mean_value(tree, no, depth + 1, index)?;
    Ok(if tree.cover[at] > 0.0 {
        (my * tree.cover[yes] + mn * tree.cover[no]) / tree.cover[at]
    } else {
        (my + mn) / 2.0
    })
}

fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: isize) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let d = depth as f64;
    for i in (0..depth).rev() {
        path[i + 1].weight += one * path[i].weight * (i as f64 + 1.0) / (d + 1.0);
        path[i].weight = zero * path[i].weight * (d - i as f64) / (d + 1.0);
    }
}

fn unwind(path: &mut [PathElement], depth: usize, index: usize) {
    let one = path[index].one;
    let zero = path[index].zero;
    let d = depth as f64;
    let mut next_one = path[depth].weight;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = path[i].weight;
            path[i].weight = next_one * (d + 1.0) / ((i as f64 + 1.0) * one);
            next_one = tmp - path[i].weight * zero * (d - i as f64) / (d + 1.0);
        } else {
            path[i].weight = path[i].weight * (d + 1.0) / (zero * (d - i as f64));
        }
    }
    for i in index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

fn unwound_sum(path: &[PathElement], depth: usize, index: usize) -> f64 {
    let one = path[index].one;
    let zero = path[index].zero;
    let d = depth as f64;
    let mut next_one = path[depth].weight;
    let mut total = 0.0;
    for i in (0..depth).rev() {
        if one != 0.0 {
            let tmp = next_one * (d + 1.0) / ((i as f64 + 1.0) * one);
            total += tmp;
            next_one = path[i].weight - tmp * zero * ((d - i as f64) / (d + 1.0));
        } else if zero != 0.0 {
            total += (path[i].weight / zero) / ((d - i as f64) / (d + 1.0));
        }
    }
    total
}

/// One step of algorithm 2. `path` is a stack of path copies: this call's copy starts at `offset`.
#[allow(clippy::too_many_arguments)]
fn recurse(
    tree: &Tree,
    row: &[f32],
    phi: &mut [f64],
    at: usize,
    path: &mut Vec<PathElement>,
    offset: usize,
    depth: usize,
    zero: f64,
    one: f64,
    feature: isize,
) {
    // Copy the parent's path (depth elements) to this level's slot, then extend it.
    let mine = offset + depth;
    if path.len() < mine + depth + 2 {
        path.resize(mine + depth + 2, PathElement::default());
    }
    if depth > 0 {
        path.copy_within(offset..offset + depth, mine);
    }
    let (_, cur) = path.split_at_mut(mine);
    extend(cur, depth, zero, one, feature);
    let (Some((hot, cold)), Some(split)) = (tree.nodes[at].route(row), tree.feature(at)) else {
        let value = tree.value(at);
        for i in 1..=depth {
            let w = unwound_sum(cur, depth, i);
            let el = cur[i];
            phi[el.feature as usize] += w * (el.one - el.zero) * value;
        }
        return;
    };
    let cover = tree.cover[at];
    let frac = |c: usize| {
        if cover > 0.0 {
            tree.cover[c] / cover
        } else {
            0.5
        }
    };
    let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
    let mut depth = depth;
    if let Some(k) = (1..=depth).find(|&k| cur[k].feature == split as isize) {
        incoming_zero = cur[k].zero;
        incoming_one = cur[k].one;
        unwind(cur, depth, k);
        depth -= 1;
    }
    // The branch the row takes keeps the incoming "one" fraction; the other gets none of it.
    for (child, one) in [(hot, incoming_one), (cold, 0.0)] {
        let zero = frac(child) * incoming_zero;
        recurse(
            tree,
            row,
            phi,
            child,
            path,
            mine,
            depth + 1,
            zero,
            one,
            split as isize,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ensemble::BranchMode;

    fn branch(feature: usize, threshold: f32, yes: usize, no: usize) -> NodeSpec {
        NodeSpec::Branch {
            feature,
            mode: BranchMode::Lt,
            threshold,
            nan_yes: true,
            yes,
            no,
        }
    }

    fn leaf(weight: f32) -> NodeSpec {
        NodeSpec::Leaf { weight }
    }

    /// A depth-2 tree over two features with uneven cover.
    fn two_feature_tree() -> (TreeSpec, Vec<f32>) {
        let nodes = vec![
            branch(0, 0.5, 1, 2),
            branch(1, 1.0, 3, 4),
            branch(1, 2.0, 5, 6),
            leaf(1.0),
            leaf(-2.0),
            leaf(3.0),
            leaf(0.5),
        ];
        (
            TreeSpec { nodes },
            vec![100.0, 60.0, 40.0, 20.0, 40.0, 10.0, 30.0],
        )
    }

    /// Brute-force Shapley values with the path-dependent value function: E[f | x_S] where features
    /// outside S follow the cover split.
    fn brute(spec: &TreeSpec, cover: &[f32], row: &[f32], width: usize) -> Vec<f64> {
        fn value(spec: &TreeSpec, cover: &[f32], at: usize, row: &[f32], s: u32) -> f64 {
            match spec.nodes[at] {
                NodeSpec::Leaf { weight } => weight as f64,
                NodeSpec::Branch {
                    feature,
                    mode,
                    threshold,
                    yes,
                    no,
                    ..
                } => {
                    if s & (1 << feature) != 0 {
                        let c = if mode.holds(row[feature], threshold) {
                            yes
                        } else {
                            no
                        };
                        value(spec, cover, c, row, s)
                    } else {
                        let (cy, cn) = (cover[yes] as f64, cover[no] as f64);
                        (cy * value(spec, cover, yes, row, s) + cn * value(spec, cover, no, row, s))
                            / cover[at] as f64
                    }
                }
            }
        }
        let fact = |k: usize| (1..=k).product::<usize>() as f64;
        let mut phi = vec![0.0; width];
        for (i, p) in phi.iter_mut().enumerate() {
            for s in 0u32..(1 << width) {
                if s & (1 << i) != 0 {
                    continue;
                }
                let k = s.count_ones() as usize;
                let w = fact(k) * fact(width - k - 1) / fact(width);
                *p +=
                    w * (value(spec, cover, 0, row, s | (1 << i)) - value(spec, cover, 0, row, s));
            }
        }
        phi
    }

    #[test]
    fn matches_brute_force_shapley_values_and_sums_to_the_margin() {
        let (spec, cover) = two_feature_tree();
        let shap =
            TreeShap::build(std::slice::from_ref(&spec), std::slice::from_ref(&cover)).unwrap();
        for row in [
            [0.2f32, 0.5, 9.0],
            [0.2, 1.5, 9.0],
            [0.9, 1.0, 9.0],
            [0.9, 3.0, -1.0],
        ] {
            let mut phi = vec![0.0; 3];
            shap.contributions(&row, &mut phi);
            let want = brute(&spec, &cover, &row, 3);
            for (a, b) in phi.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "{phi:?} vs {want:?} for {row:?}");
            }
            let tree = &shap.trees[0];
            let margin = tree.value(tree.walk(&row));
            assert!((shap.expected() + phi.iter().sum::<f64>() - margin).abs() < 1e-12);
            assert_eq!(phi[2], 0.0, "a feature no split reads gets nothing");
        }
    }

    #[test]
    fn a_feature_split_twice_on_a_path_is_credited_once() {
        // Root and its left child both split on feature 0; the right side splits on feature 1.
        let nodes = vec![
            branch(0, 0.5, 1, 2),
            branch(0, 0.2, 3, 4),
            branch(1, 0.0, 5, 6),
            leaf(2.0),
            leaf(-1.0),
            leaf(0.25),
            leaf(4.0),
        ];
        let spec = TreeSpec { nodes };
        let cover = vec![10.0, 6.0, 4.0, 2.0, 4.0, 1.0, 3.0];
        let shap =
            TreeShap::build(std::slice::from_ref(&spec), std::slice::from_ref(&cover)).unwrap();
        for row in [
            [0.1f32, -1.0],
            [0.3, 1.0],
            [0.7, -1.0],
            [0.7, 1.0],
            [f32::NAN, 1.0],
        ] {
            let mut phi = vec![0.0; 2];
            shap.contributions(&row, &mut phi);
            let r = [if row[0].is_nan() { 0.0 } else { row[0] }, row[1]];
            let want = brute(&spec, &cover, &r, 2);
            for (a, b) in phi.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "{phi:?} vs {want:?} for {row:?}");
            }
        }
    }

    #[test]
    fn a_single_feature_tree_takes_the_shortcut_with_the_same_answer() {
        let nodes = vec![
            branch(1, 0.0, 1, 2),
            branch(1, -1.0, 3, 4),
            leaf(2.0),
            leaf(-1.0),
            leaf(0.5),
        ];
        let spec = TreeSpec { nodes };
        let cover = vec![8.0, 5.0, 3.0, 1.0, 4.0];
        let shap =
            TreeShap::build(std::slice::from_ref(&spec), std::slice::from_ref(&cover)).unwrap();
        assert_eq!(shap.trees[0].single, Some(1));
        for row in [[5.0f32, -2.0], [5.0, -0.5], [5.0, 1.0]] {
            let mut phi = vec![0.0; 2];
            shap.contributions(&row, &mut phi);
            let want = brute(&spec, &cover, &row, 2);
            assert!((phi[1] - want[1]).abs() < 1e-12 && phi[0] == 0.0);
        }
    }

    #[test]
    fn refuses_missing_or_bad_cover() {
        let (spec, cover) = two_feature_tree();
        assert_eq!(
            TreeShap::build(std::slice::from_ref(&spec), &[]).unwrap_err(),
            ShapError::NoCover
        );
        let mut bad = cover.clone();
        bad[2] = f32::NAN;
        assert!(matches!(
            TreeShap::build(std::slice::from_ref(&spec), &[bad]),
            Err(ShapError::BadCover(0, _))
        ));
        assert!(matches!(
            TreeShap::build(std::slice::from_ref(&spec), &[cover[..3].to_vec()]),
            Err(ShapError::BadCover(0, _))
        ));
        // 1.0 at every node (as sklearn-onnx writes nodes_hitrates): not a cover of rows.
        let ones = vec![1.0; cover.len()];
        let e = TreeShap::build(std::slice::from_ref(&spec), &[ones]).unwrap_err();
        assert!(
            matches!(&e, ShapError::BadCover(0, why) if why.contains("children")),
            "{e}"
        );
    }
}
