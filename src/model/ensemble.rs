//! The native tree-ensemble evaluator that the ONNX graph is compiled into at load time.
//!
//! tract executes `TreeEnsembleClassifier` correctly but slowly (about 50 rows/s on the wafer model),
//! so `model::onnx` reads the graph's attributes and builds this flat, cache-friendly form instead:
//!
//! - every tree's nodes live in one array; a node is 16 bytes (feature + flags, threshold, two children);
//! - a leaf points to itself on both sides, so a row walks each tree for exactly the tree's depth with
//!   no branch on "is this a leaf", and [`Ensemble::margins`] walks [`LANES`] rows through a tree at
//!   once, which lets the CPU overlap their memory loads;
//! - the six ONNX branch modes are folded into three comparison flags (`<`, `==`, or both) plus a flag
//!   for where a missing (NaN) value goes, so one loop handles every mode without a `match`;
//! - a tree that splits one feature with `<` at thresholds increasing from left to right is a step
//!   function (what training exports for a rank-mapped linear model: one per sensor). It is kept as
//!   its sorted thresholds and leaf values and evaluated by a branch-free search over a few
//!   contiguous floats instead of a walk through scattered nodes.
//!
//! tract's own execution of the same graph stays the reference in the tests.

/// How many rows walk a tree together. Eight hides most load latency without spilling registers.
pub const LANES: usize = 8;

/// Node flag: a NaN feature value takes the `yes` branch.
const NAN_YES: u32 = 1 << 31;
/// Node flag: `x < threshold` takes the `yes` branch.
const CMP_LT: u32 = 1 << 30;
/// Node flag: `x == threshold` takes the `yes` branch.
const CMP_EQ: u32 = 1 << 29;
/// The bits of `Node::feature` that hold the feature index.
const FEATURE_MASK: u32 = (1 << 29) - 1;

/// A branch or leaf in the flat node array.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Node {
    /// Feature index in the low bits, comparison and missing-value flags in the high bits.
    feature: u32,
    /// Split threshold (unused for leaves).
    threshold: f32,
    /// Absolute index of the child taken when the comparison holds.
    yes: u32,
    /// Absolute index of the child taken otherwise.
    no: u32,
}

/// A tree kept as a step function of one feature: its leaf for `x` is the one after the last
/// threshold `<= x` (the walk sends `x < t` to the lower side).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Steps {
    /// Compacted feature index (into `Ensemble::used`).
    feature: u32,
    /// First threshold in `step_thresholds`.
    start: u32,
    /// Thresholds, padded with NaN (never `<= x`) to a multiple of [`STEP_CHUNK`].
    len: u32,
    /// First leaf in `step_leaves`.
    leaves: u32,
    /// The leaf (0..=thresholds) a NaN reaches, as the walk would send it.
    nan_leaf: u32,
}

/// Thresholds compared at once: a step function's leaf index is a count of `t <= x` over its
/// thresholds, which the compiler turns into a few vector compares.
const STEP_CHUNK: usize = 8;

/// The thresholds and leaves (in order from the lowest values up) of a tree that splits one feature
/// with `<` only and whose thresholds increase from left to right, and the leaf a NaN reaches; `None`
/// for any other tree.
pub(crate) fn as_step_function(spec: &TreeSpec) -> Option<(usize, Vec<f32>, Vec<f32>, u32)> {
    let mut feature = None;
    let (mut thresholds, mut leaves) = (Vec::new(), Vec::new());
    let mut nan_leaf = None;
    // In-order walk with an explicit stack; `nan` marks the nodes on the path a NaN takes.
    let mut stack = vec![(0usize, true, false)];
    while let Some((at, nan, expanded)) = stack.pop() {
        match spec.nodes[at] {
            NodeSpec::Leaf { weight } => {
                if nan {
                    nan_leaf = Some(leaves.len() as u32);
                }
                leaves.push(weight);
            }
            NodeSpec::Branch {
                feature: f,
                mode,
                threshold,
                nan_yes,
                yes,
                no,
            } => {
                if mode != BranchMode::Lt || *feature.get_or_insert(f) != f || threshold.is_nan() {
                    return None;
                }
                if expanded {
                    if thresholds.last().is_some_and(|&t| t >= threshold) {
                        return None;
                    }
                    thresholds.push(threshold);
                    stack.push((no, nan && !nan_yes, false));
                } else {
                    stack.push((at, nan, true));
                    stack.push((yes, nan && nan_yes, false));
                }
            }
        }
    }
    Some((feature?, thresholds, leaves, nan_leaf?))
}

/// A branch's comparison, as ONNX's `nodes_modes` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchMode {
    /// `BRANCH_LT`: yes when `x < t`.
    Lt,
    /// `BRANCH_LEQ`: yes when `x <= t`.
    Leq,
    /// `BRANCH_GT`: yes when `x > t`.
    Gt,
    /// `BRANCH_GTE`: yes when `x >= t`.
    Gte,
    /// `BRANCH_EQ`: yes when `x == t`.
    Eq,
    /// `BRANCH_NEQ`: yes when `x != t`.
    Neq,
}

impl BranchMode {
    /// Parses an ONNX mode string; `LEAF` is not a branch and returns `None`.
    pub fn parse(mode: &str) -> Option<BranchMode> {
        Some(match mode {
            "BRANCH_LT" => BranchMode::Lt,
            "BRANCH_LEQ" => BranchMode::Leq,
            "BRANCH_GT" => BranchMode::Gt,
            "BRANCH_GTE" => BranchMode::Gte,
            "BRANCH_EQ" => BranchMode::Eq,
            "BRANCH_NEQ" => BranchMode::Neq,
            _ => return None,
        })
    }

    /// Whether `x` takes the `yes` branch of a split at `t` (NaN compares false, except for `!=`).
    pub fn holds(self, x: f32, t: f32) -> bool {
        match self {
            BranchMode::Lt => x < t,
            BranchMode::Leq => x <= t,
            BranchMode::Gt => x > t,
            BranchMode::Gte => x >= t,
            BranchMode::Eq => x == t,
            BranchMode::Neq => x != t,
        }
    }

    /// Where ONNX sends a NaN: the `yes` branch if the node's missing track says so, else wherever
    /// the comparison sends it (false for every mode but `!=`).
    pub fn onnx_nan_yes(self, missing_track_true: bool) -> bool {
        missing_track_true || self.holds(f32::NAN, 0.0)
    }
}

/// One tree as the builder receives it: nodes in any order, children by position in `nodes`.
#[derive(Debug, Clone, Default)]
pub struct TreeSpec {
    /// The tree's nodes; `nodes[0]` is the root.
    pub nodes: Vec<NodeSpec>,
}

/// A node as the ONNX attributes describe it.
#[derive(Debug, Clone)]
pub enum NodeSpec {
    /// A split on one feature.
    Branch {
        /// Input column compared.
        feature: usize,
        /// The comparison.
        mode: BranchMode,
        /// The threshold.
        threshold: f32,
        /// Whether a NaN value takes the `yes` branch. The ONNX compiler resolves this from the missing
        /// track (see [`BranchMode::onnx_nan_yes`]) or, when the graph imputes the feature first,
        /// from where the imputed value goes.
        nan_yes: bool,
        /// Position of the child taken when the comparison holds.
        yes: usize,
        /// Position of the other child.
        no: usize,
    },
    /// A leaf adding `weight` to the row's margin.
    Leaf {
        /// Sum of the leaf's class weights that count towards the fault margin.
        weight: f32,
    },
}

impl NodeSpec {
    /// For a branch, the child `row` takes and the other one, as the compiled evaluator routes it
    /// (NaN by `nan_yes`, numbers by the comparison); `None` for a leaf.
    pub fn route(&self, row: &[f32]) -> Option<(usize, usize)> {
        let NodeSpec::Branch {
            feature,
            mode,
            threshold,
            nan_yes,
            yes,
            no,
        } = *self
        else {
            return None;
        };
        let x = row[feature];
        let go_yes = if x.is_nan() {
            nan_yes
        } else {
            mode.holds(x, threshold)
        };
        Some(if go_yes { (yes, no) } else { (no, yes) })
    }
}

/// Why a tree could not be compiled.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    /// A child index points outside the tree.
    #[error("tree {tree} node {node} points to child {child}, but the tree has {len} nodes")]
    ChildOutOfRange {
        /// Tree index.
        tree: usize,
        /// Node position.
        node: usize,
        /// The bad child position.
        child: usize,
        /// Nodes in the tree.
        len: usize,
    },
    /// The tree is not a tree: a node is reachable twice or the walk loops.
    #[error("tree {tree} is not a tree: node {node} is reached more than once")]
    NotATree {
        /// Tree index.
        tree: usize,
        /// The node reached twice.
        node: usize,
    },
    /// A branch reads a column past the input width.
    #[error("tree {tree} splits on feature {feature}, but rows have only {width} features")]
    FeatureOutOfRange {
        /// Tree index.
        tree: usize,
        /// The feature index.
        feature: usize,
        /// Input width.
        width: usize,
    },
    /// A tree without nodes.
    #[error("tree {tree} has no nodes")]
    EmptyTree {
        /// Tree index.
        tree: usize,
    },
    /// The node array would not fit 32-bit indices.
    #[error("the ensemble has more than 2^31 nodes")]
    TooLarge,
}

/// A compiled ensemble: sums leaf weights into one margin per row.
#[derive(Debug, Clone)]
pub struct Ensemble {
    /// Number of features in a row.
    width: usize,
    /// All trees' nodes; leaves point to themselves.
    nodes: Vec<Node>,
    /// Leaf weight by node index (0 for branches), kept apart so branch nodes stay 16 bytes.
    leaf_weight: Vec<f32>,
    /// Each walked tree's root index and depth (number of steps from root to its deepest leaf).
    trees: Vec<(u32, u32)>,
    /// The trees evaluated as step functions instead of walked.
    steps: Vec<Steps>,
    /// Thresholds of all step functions, each one's ascending.
    step_thresholds: Vec<f32>,
    /// Leaf values of all step functions (one more per function than thresholds).
    step_leaves: Vec<f32>,
    /// The input columns any split reads, ascending; nodes index into this list, not the row.
    used: Vec<u32>,
}

impl Ensemble {
    /// Compiles trees over rows of `width` features.
    pub fn build(width: usize, specs: &[TreeSpec]) -> Result<Ensemble, BuildError> {
        let total: usize = specs.iter().map(|t| t.nodes.len()).sum();
        if total >= (1usize << 31) || width > FEATURE_MASK as usize {
            return Err(BuildError::TooLarge);
        }
        let mut nodes = Vec::with_capacity(total);
        let mut leaf_weight = Vec::with_capacity(total);
        let mut trees = Vec::with_capacity(specs.len());
        let mut steps = Vec::new();
        let (mut step_thresholds, mut step_leaves) = (Vec::new(), Vec::new());
        for (t, spec) in specs.iter().enumerate() {
            let len = spec.nodes.len();
            if len == 0 {
                return Err(BuildError::EmptyTree { tree: t });
            }
            let base = nodes.len();
            // Validate children and compute depths with an explicit stack (no recursion on hostile input).
            let mut depth_of = vec![u32::MAX; len];
            depth_of[0] = 0;
            let mut stack = vec![0usize];
            let mut max_depth = 0u32;
            while let Some(i) = stack.pop() {
                if let NodeSpec::Branch { yes, no, .. } = spec.nodes[i] {
                    for child in [yes, no] {
                        if child >= len {
                            return Err(BuildError::ChildOutOfRange {
                                tree: t,
                                node: i,
                                child,
                                len,
                            });
                        }
                        if depth_of[child] != u32::MAX {
                            return Err(BuildError::NotATree {
                                tree: t,
                                node: child,
                            });
                        }
                        depth_of[child] = depth_of[i] + 1;
                        max_depth = max_depth.max(depth_of[child]);
                        stack.push(child);
                    }
                }
            }
            for (i, node) in spec.nodes.iter().enumerate() {
                let me = (base + i) as u32;
                match *node {
                    NodeSpec::Leaf { weight } => {
                        nodes.push(Node {
                            feature: 0,
                            threshold: 0.0,
                            yes: me,
                            no: me,
                        });
                        leaf_weight.push(weight);
                    }
                    NodeSpec::Branch {
                        feature,
                        mode,
                        threshold,
                        nan_yes,
                        yes,
                        no,
                    } => {
                        if feature >= width {
                            return Err(BuildError::FeatureOutOfRange {
                                tree: t,
                                feature,
                                width,
                            });
                        }
                        let (flags, swap) = match mode {
                            BranchMode::Lt => (CMP_LT, false),
                            BranchMode::Leq => (CMP_LT | CMP_EQ, false),
                            // x > t is !(x <= t) for numbers; NaN is handled by its own flag below.
                            BranchMode::Gt => (CMP_LT | CMP_EQ, true),
                            BranchMode::Gte => (CMP_LT, true),
                            BranchMode::Eq => (CMP_EQ, false),
                            BranchMode::Neq => (CMP_EQ, true),
                        };
                        let (y, n) = if swap { (no, yes) } else { (yes, no) };
                        // After a swap the "yes" side of our comparison is the ONNX "no" side.
                        let nan_to_our_yes = nan_yes != swap;
                        let flags = flags | if nan_to_our_yes { NAN_YES } else { 0 };
                        nodes.push(Node {
                            feature: feature as u32 | flags,
                            threshold,
                            yes: (base + y) as u32,
                            no: (base + n) as u32,
                        });
                        leaf_weight.push(0.0);
                    }
                }
            }
            match as_step_function(spec) {
                Some((feature, thresholds, leaves, nan_leaf)) if feature < width => {
                    let padded = thresholds.len().div_ceil(STEP_CHUNK) * STEP_CHUNK;
                    steps.push(Steps {
                        feature: feature as u32,
                        start: step_thresholds.len() as u32,
                        len: padded as u32,
                        leaves: step_leaves.len() as u32,
                        nan_leaf,
                    });
                    step_thresholds.extend(&thresholds);
                    step_thresholds
                        .resize(step_thresholds.len() + padded - thresholds.len(), f32::NAN);
                    step_leaves.extend(leaves);
                }
                _ => trees.push((base as u32, max_depth)),
            }
        }
        // Compact the features: a block of rows is first gathered into a small buffer holding only
        // the columns the trees read, so the walk touches a few KB instead of whole 590-wide rows.
        let is_leaf = |i: usize, n: &Node| n.yes == i as u32 && n.no == i as u32;
        let mut used: Vec<u32> = nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| !is_leaf(*i, n))
            .map(|(_, n)| n.feature & FEATURE_MASK)
            .collect();
        used.sort_unstable();
        used.dedup();
        for (i, n) in nodes.iter_mut().enumerate() {
            if !is_leaf(i, n) {
                let compact = used.binary_search(&(n.feature & FEATURE_MASK)).unwrap_or(0) as u32;
                n.feature = (n.feature & !FEATURE_MASK) | compact;
            }
        }
        for s in &mut steps {
            s.feature = used.binary_search(&s.feature).unwrap_or(0) as u32;
        }
        Ok(Ensemble {
            width,
            nodes,
            leaf_weight,
            trees,
            steps,
            step_thresholds,
            step_leaves,
            used,
        })
    }

    /// Number of features a row must have.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of trees.
    pub fn tree_count(&self) -> usize {
        self.trees.len() + self.steps.len()
    }

    /// Number of nodes over all trees.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds each row's sum of leaf weights to `out` (one entry per row of `rows`, row-major).
    ///
    /// `rows.len()` must be `out.len() * width`.
    pub fn margins(&self, rows: &[f32], out: &mut [f32]) {
        assert_eq!(
            rows.len(),
            out.len() * self.width,
            "rows and out disagree on the row count"
        );
        let u = self.used.len().max(1);
        // Feature-major: buf[k * LANES + lane] is used feature k of the block's row `lane`. Small
        // ensembles (the usual case) keep it on the stack: no allocation per call.
        const STACK: usize = 256 * LANES;
        let mut stack = [f32::NAN; STACK];
        let mut heap = Vec::new();
        let buf: &mut [f32] = if u * LANES <= STACK {
            &mut stack[..u * LANES]
        } else {
            heap.resize(u * LANES, f32::NAN);
            &mut heap
        };
        let w = self.width;
        for (out_block, row_block) in out.chunks_mut(LANES).zip(rows.chunks(LANES * w)) {
            let lanes = out_block.len();
            for lane in 0..lanes {
                let row = &row_block[lane * w..(lane + 1) * w];
                for (k, &f) in self.used.iter().enumerate() {
                    buf[k * LANES + lane] = row[f as usize];
                }
            }
            if lanes == LANES {
                let acc = self.walk::<LANES>(buf);
                for (o, a) in out_block.iter_mut().zip(acc) {
                    *o += a;
                }
            } else {
                for (lane, o) in out_block.iter_mut().enumerate() {
                    *o += self.walk_one(buf, lane);
                }
            }
        }
    }

    /// Walks every tree for `N` lanes at once; the lanes' loads overlap.
    #[inline(always)]
    fn walk<const N: usize>(&self, buf: &[f32]) -> [f32; N] {
        let mut acc = [0f32; N];
        for &(root, depth) in &self.trees {
            let mut at = [root; N];
            for _ in 0..depth {
                for (lane, a) in at.iter_mut().enumerate() {
                    *a = self.step(*a, lane, buf);
                }
            }
            for lane in 0..N {
                acc[lane] += self.leaf_weight[at[lane] as usize];
            }
        }
        // Step functions: count, for all lanes at once, the thresholds at or below each lane's
        // value (one threshold against N values: plain vector compares, no branch, no search).
        for s in &self.steps {
            let start = s.start as usize;
            let f = s.feature as usize * LANES;
            let x: [f32; N] = std::array::from_fn(|lane| buf[f + lane]);
            let mut count = [0u32; N];
            for &t in &self.step_thresholds[start..start + s.len as usize] {
                for lane in 0..N {
                    count[lane] += u32::from(t <= x[lane]);
                }
            }
            for lane in 0..N {
                let k = if x[lane].is_nan() {
                    s.nan_leaf
                } else {
                    count[lane]
                };
                acc[lane] += self.step_leaves[s.leaves as usize + k as usize];
            }
        }
        acc
    }

    /// The leaf value step function `s` gives lane `lane` of the gathered block: the leaf after
    /// the last threshold `<= x`, counted without branches (NaN padding never counts).
    #[inline(always)]
    fn step_value(&self, s: &Steps, lane: usize, buf: &[f32]) -> f32 {
        let x = buf[s.feature as usize * LANES + lane];
        let k = if x.is_nan() {
            s.nan_leaf as usize
        } else {
            let start = s.start as usize;
            let t = &self.step_thresholds[start..start + s.len as usize];
            let mut count = [0u32; STEP_CHUNK];
            for chunk in t.chunks_exact(STEP_CHUNK) {
                for (c, &v) in count.iter_mut().zip(chunk) {
                    *c += u32::from(v <= x);
                }
            }
            count.iter().sum::<u32>() as usize
        };
        self.step_leaves[s.leaves as usize + k]
    }

    /// Walks every tree for one lane (the tail of a batch).
    fn walk_one(&self, buf: &[f32], lane: usize) -> f32 {
        let mut acc = 0f32;
        for &(root, depth) in &self.trees {
            let mut at = root;
            for _ in 0..depth {
                at = self.step(at, lane, buf);
            }
            acc += self.leaf_weight[at as usize];
        }
        for s in &self.steps {
            acc += self.step_value(s, lane, buf);
        }
        acc
    }

    /// Takes one step down from node `at` for lane `lane` of the gathered block; a leaf stays put.
    #[inline(always)]
    fn step(&self, at: u32, lane: usize, buf: &[f32]) -> u32 {
        let node = self.nodes[at as usize];
        let x = buf[(node.feature & FEATURE_MASK) as usize * LANES + lane];
        let f = node.feature;
        let lt = (x < node.threshold) as u32 & (f >> 30);
        let eq = (x == node.threshold) as u32 & (f >> 29);
        let nan = (x.is_nan() as u32) & (f >> 31);
        if (lt | eq | nan) & 1 == 1 {
            node.yes
        } else {
            node.no
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump(mode: BranchMode, threshold: f32, missing_yes: bool) -> TreeSpec {
        TreeSpec {
            nodes: vec![
                NodeSpec::Branch {
                    feature: 0,
                    mode,
                    threshold,
                    nan_yes: mode.onnx_nan_yes(missing_yes),
                    yes: 1,
                    no: 2,
                },
                NodeSpec::Leaf { weight: 1.0 },
                NodeSpec::Leaf { weight: -1.0 },
            ],
        }
    }

    fn eval(e: &Ensemble, xs: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; xs.len() / e.width()];
        e.margins(xs, &mut out);
        out
    }

    /// A balanced `<` tree over `feature` with the given ascending thresholds; `nan_yes` per branch
    /// from `bits`; leaves numbered from the lowest values up.
    fn step_tree(feature: usize, thresholds: &[f32], bits: u64) -> TreeSpec {
        fn grow(
            nodes: &mut Vec<NodeSpec>,
            feature: usize,
            t: &[f32],
            leaf: &mut f32,
            bits: u64,
        ) -> usize {
            let at = nodes.len();
            if t.is_empty() {
                nodes.push(NodeSpec::Leaf { weight: *leaf });
                *leaf += 1.0;
                return at;
            }
            nodes.push(NodeSpec::Leaf { weight: 0.0 });
            let mid = t.len() / 2;
            let yes = grow(nodes, feature, &t[..mid], leaf, bits);
            let no = grow(nodes, feature, &t[mid + 1..], leaf, bits);
            nodes[at] = NodeSpec::Branch {
                feature,
                mode: BranchMode::Lt,
                threshold: t[mid],
                nan_yes: bits >> (at % 64) & 1 == 1,
                yes,
                no,
            };
            at
        }
        let mut nodes = Vec::new();
        grow(&mut nodes, feature, thresholds, &mut 0.0, bits);
        TreeSpec { nodes }
    }

    /// The leaf a row reaches by walking the spec itself.
    fn walk_spec(spec: &TreeSpec, row: &[f32]) -> f32 {
        let mut at = 0;
        while let Some((hot, _)) = spec.nodes[at].route(row) {
            at = hot;
        }
        match spec.nodes[at] {
            NodeSpec::Leaf { weight } => weight,
            NodeSpec::Branch { .. } => unreachable!(),
        }
    }

    /// `e` gives every row exactly the sum of the leaves the specs' own walks reach.
    fn scores_like_the_walk(e: &Ensemble, specs: &[TreeSpec], rows: &[f32]) {
        let got = eval(e, rows);
        for (row, g) in rows.chunks(e.width()).zip(&got) {
            let want: f32 = specs.iter().map(|t| walk_spec(t, row)).sum();
            assert_eq!(*g, want, "row {row:?}");
        }
    }

    #[test]
    fn step_functions_score_exactly_like_the_trees_they_replace() {
        let thresholds: Vec<Vec<f32>> = vec![
            vec![0.5],
            vec![-1.0, 0.0, 1.0],
            (0..31).map(|i| i as f32 * 0.25 - 4.0).collect(),
            (0..7).map(|i| (i * i) as f32).collect(),
        ];
        let specs: Vec<TreeSpec> = thresholds
            .iter()
            .enumerate()
            .map(|(f, t)| step_tree(f, t, 0x9e37_79b9_7f4a_7c15 >> f))
            .collect();
        let e = Ensemble::build(4, &specs).unwrap();
        assert_eq!((e.steps.len(), e.trees.len()), (4, 0));
        // Below, above, on and between every threshold, and NaN, in every column.
        let mut values: Vec<f32> = thresholds.iter().flatten().copied().collect();
        values.extend(values.clone().iter().map(|v| v + 0.1));
        values.extend([-100.0, 100.0, f32::NAN, -0.0]);
        let mut rows = Vec::new();
        for i in 0..values.len() {
            for f in 0..4 {
                rows.push(values[(i + 7 * f) % values.len()]);
            }
        }
        scores_like_the_walk(&e, &specs, &rows);
    }

    #[test]
    fn only_one_feature_lt_trees_with_ascending_thresholds_become_step_functions() {
        let mut two_features = step_tree(0, &[1.0, 2.0, 3.0], 0);
        if let NodeSpec::Branch { feature, .. } = &mut two_features.nodes[0] {
            *feature = 1;
        }
        let mut descending = step_tree(0, &[1.0, 2.0, 3.0], 0);
        if let NodeSpec::Branch { threshold, .. } = &mut descending.nodes[0] {
            *threshold = 9.0;
        }
        let specs = [
            two_features,
            descending,
            stump(BranchMode::Leq, 0.5, false),
            stump(BranchMode::Lt, 0.5, true),
        ];
        let e = Ensemble::build(2, &specs).unwrap();
        assert_eq!((e.steps.len(), e.trees.len(), e.tree_count()), (1, 3, 4));
        let rows = [0.4f32, 2.5, 9.5, 1.5, f32::NAN, 0.0, 2.0, f32::NAN];
        scores_like_the_walk(&e, &specs, &rows);
    }

    #[test]
    fn every_mode_matches_its_onnx_definition_including_nan() {
        let xs = [
            0.5f32,
            1.0,
            1.5,
            f32::NAN,
            -3.0,
            1.0,
            2.0,
            0.0,
            1.0,
            f32::NAN,
        ];
        for mode in [
            BranchMode::Lt,
            BranchMode::Leq,
            BranchMode::Gt,
            BranchMode::Gte,
            BranchMode::Eq,
            BranchMode::Neq,
        ] {
            for missing_yes in [false, true] {
                let e = Ensemble::build(1, &[stump(mode, 1.0, missing_yes)]).unwrap();
                let got = eval(&e, &xs);
                for (x, g) in xs.iter().zip(got) {
                    let yes = if x.is_nan() && missing_yes {
                        true
                    } else {
                        match mode {
                            BranchMode::Lt => *x < 1.0,
                            BranchMode::Leq => *x <= 1.0,
                            BranchMode::Gt => *x > 1.0,
                            BranchMode::Gte => *x >= 1.0,
                            BranchMode::Eq => *x == 1.0,
                            BranchMode::Neq => *x != 1.0,
                        }
                    };
                    assert_eq!(
                        g,
                        if yes { 1.0 } else { -1.0 },
                        "{mode:?} {missing_yes} x={x}"
                    );
                }
            }
        }
    }

    #[test]
    fn lanes_and_remainder_agree_with_one_row_at_a_time() {
        let trees: Vec<TreeSpec> = (0..5)
            .map(|i| TreeSpec {
                nodes: vec![
                    NodeSpec::Branch {
                        feature: i % 3,
                        mode: BranchMode::Lt,
                        threshold: i as f32 * 0.1,
                        nan_yes: i % 2 == 0,
                        yes: 1,
                        no: 2,
                    },
                    NodeSpec::Leaf {
                        weight: 0.25 * i as f32,
                    },
                    NodeSpec::Branch {
                        feature: 2,
                        mode: BranchMode::Leq,
                        threshold: 0.3,
                        nan_yes: false,
                        yes: 3,
                        no: 4,
                    },
                    NodeSpec::Leaf { weight: -0.5 },
                    NodeSpec::Leaf { weight: 0.75 },
                ],
            })
            .collect();
        let e = Ensemble::build(3, &trees).unwrap();
        let rows: Vec<f32> = (0..3 * 21)
            .map(|i| {
                if i % 7 == 0 {
                    f32::NAN
                } else {
                    (i as f32 * 0.37) % 1.0
                }
            })
            .collect();
        let all = eval(&e, &rows);
        for r in 0..21 {
            let one = eval(&e, &rows[r * 3..r * 3 + 3]);
            assert_eq!(one[0], all[r], "row {r}");
        }
    }

    #[test]
    fn malformed_trees_are_refused_with_the_reason() {
        let bad_child = TreeSpec {
            nodes: vec![NodeSpec::Branch {
                feature: 0,
                mode: BranchMode::Lt,
                threshold: 0.0,
                nan_yes: false,
                yes: 1,
                no: 5,
            }],
        };
        assert!(matches!(
            Ensemble::build(1, &[bad_child]),
            Err(BuildError::ChildOutOfRange { child: 1, .. })
                | Err(BuildError::ChildOutOfRange { child: 5, .. })
        ));
        let cycle = TreeSpec {
            nodes: vec![
                NodeSpec::Branch {
                    feature: 0,
                    mode: BranchMode::Lt,
                    threshold: 0.0,
                    nan_yes: false,
                    yes: 1,
                    no: 1,
                },
                NodeSpec::Leaf { weight: 1.0 },
            ],
        };
        assert_eq!(
            Ensemble::build(1, &[cycle]).unwrap_err(),
            BuildError::NotATree { tree: 0, node: 1 }
        );
        let wide = stump(BranchMode::Lt, 0.0, false);
        assert!(matches!(
            Ensemble::build(0, &[wide]),
            Err(BuildError::FeatureOutOfRange { .. })
        ));
        assert_eq!(
            Ensemble::build(1, &[TreeSpec::default()]).unwrap_err(),
            BuildError::EmptyTree { tree: 0 }
        );
    }
}
