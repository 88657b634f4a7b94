//! The scorer: loads the ONNX graph and its model card, checks they belong together, and scores
//! batches of rows natively.
//!
//! - [`card`]: the model card's types.
//! - [`onnx`]: compiles the graph (parsed with tract-onnx) into the native evaluator.
//! - [`ensemble`]: the evaluator itself.
//! - [`fallback`]: any other graph, run by tract-onnx (slower, no contributions).
//! - [`shap`]: exact TreeSHAP contributions of each sensor to a verdict, from the trees themselves.
//! - [`decide`]: the rule that makes a verdict: the fixed threshold or an alarm budget.
//!
//! A [`Model`] is immutable and `Sync`: share it behind an `Arc` and call [`Model::score`] from a
//! blocking worker, never from inside an async task's poll.

pub mod card;
pub mod decide;
pub mod ensemble;
pub mod fallback;
pub mod live;
pub mod onnx;
pub mod settings;
pub mod shap;
pub mod synthetic;

use crate::row::RowBatch;
use card::ModelCard;
pub use decide::{Budget, Decider, Rule};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Robust z-scores divide by IQR / 1.349, which equals the standard deviation for normal data, so a
/// |z| of 3 means what an engineer expects it to mean.
const IQR_TO_SIGMA: f64 = 1.349;

/// How many unusual sensors a verdict names.
pub const TOP_SENSORS: usize = 3;

/// A batch of at least this many rows is scored and explained on two threads.
const PARALLEL_ROWS: usize = 2048;

/// How many contributions a verdict carries unless configured (`[model] contributions_top_k`).
pub const DEFAULT_TOP_CONTRIBUTIONS: usize = 5;

/// Largest P(fault) difference accepted between this scorer and the golden rows' onnxruntime values.
pub const PARITY_TOLERANCE: f32 = 1e-5;

/// The model the binary carries, trained by `training/train.py` and committed under `models/`.
const EMBEDDED_ONNX: &[u8] = include_bytes!("../../models/wafer-fault/model.onnx");
/// The embedded model's card.
const EMBEDDED_CARD: &[u8] = include_bytes!("../../models/wafer-fault/model.json");
/// The embedded model's golden rows.
const EMBEDDED_GOLDEN: &[u8] = include_bytes!("../../models/wafer-fault/golden.csv");

/// Why a model could not be loaded. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The card is not valid JSON of the expected shape.
    #[error("the model card {origin} is not valid: {source}")]
    Card {
        /// Where the card came from.
        origin: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The graph cannot be compiled.
    #[error("the ONNX graph {origin} cannot be served: {source}")]
    Graph {
        /// Where the graph came from.
        origin: String,
        /// Why.
        source: onnx::GraphError,
    },
    /// The graph and card disagree, or a golden row scores differently.
    #[error("{0}")]
    Mismatch(String),
}

/// One sensor that stands out in a row: how far it sits from its training median.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Deviation {
    /// Index of the sensor in the model's feature order.
    pub index: usize,
    /// The row's value.
    pub value: f32,
    /// Robust z-score: (value - median) / (IQR / 1.349).
    pub z: f32,
}

/// One sensor's exact share of a verdict's log-odds (TreeSHAP).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Contribution {
    /// Index of the sensor in the model's feature order.
    pub index: usize,
    /// The row's value (NaN when missing: the model then used the training median).
    pub value: f32,
    /// How far this sensor moved the log-odds from `base`.
    pub contribution: f32,
}

/// Why the model scored a row as it did: `base + Σ contributions = logit(P(fault))`.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The expected log-odds over the training rows.
    pub base: f32,
    /// The largest contributions by magnitude (at most the configured top k; never a sensor the
    /// model does not read, never a zero).
    pub contributions: Vec<Contribution>,
    /// Sum of the contributions left out of the list, so the listed ones still add up.
    pub rest: f32,
}

/// Which verdicts carry contributions, and how many.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Explain {
    /// Contributions per verdict, largest first; 0 lists none.
    pub top_k: usize,
    /// Explain every verdict, not only faults (costs a TreeSHAP walk per row).
    pub all_rows: bool,
    /// List the sensors furthest from their medians on every verdict, not only on faults (about
    /// a microsecond a row). The stream turns it off when it publishes faults alone, since the
    /// other verdicts go nowhere.
    pub unusual_all_rows: bool,
}

impl Default for Explain {
    fn default() -> Explain {
        Explain {
            top_k: DEFAULT_TOP_CONTRIBUTIONS,
            all_rows: false,
            unusual_all_rows: true,
        }
    }
}

/// The scorer's judgement of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Row id as received.
    pub id: String,
    /// P(fault).
    pub probability: f32,
    /// `probability >= threshold`.
    pub fault: bool,
    /// The threshold the verdict used (the fixed one, or the alarm budget's quantile).
    pub threshold: f32,
    /// Which rule made the verdict.
    pub rule: Rule,
    /// The model's own explanation (faults, or every row when configured); `None` when not asked
    /// for or the graph cannot be explained.
    pub explanation: Option<Explanation>,
    /// Up to [`TOP_SENSORS`] sensors furthest from their training median, largest |z| first: how
    /// unusual the row is, not what the model used.
    pub unusual_sensors: Vec<Deviation>,
}

/// What scores a model's graph.
#[derive(Debug)]
enum Scorer {
    /// The native trees (what training exports): fast, and explained by exact TreeSHAP.
    Native(Box<onnx::CompiledGraph>),
    /// Any other graph, run by tract-onnx.
    Tract(fallback::TractGraph),
}

/// The configured decision policy applied to every model loaded (`[model]`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Policy {
    /// Threshold override (`None`: the card's).
    pub threshold: Option<f32>,
    /// Alarm budget (`None`: the fixed threshold decides).
    pub budget: Option<Budget>,
    /// Which verdicts carry contributions.
    pub explain: Explain,
}

/// A loaded, validated model. Cheap to share (`Arc<Model>`), safe to call from many threads.
#[derive(Debug)]
pub struct Model {
    /// The card as loaded.
    card: ModelCard,
    /// What scores the graph.
    graph: Scorer,
    /// Features per row.
    width: usize,
    /// Decision threshold in force (the card's unless overridden).
    threshold: f32,
    /// The alarm budget, when configured.
    budget: Option<Budget>,
    /// Which verdicts carry contributions.
    explain: Explain,
    /// Per feature: training median and 1/scale for robust z-scores (0 when the scale is unknown).
    deviation: Vec<(f32, f32)>,
    /// Where the model came from, for logs and `faultline model`.
    origin: String,
    /// Its directory's files as they were when loading began (`None` unless loaded from one):
    /// files replaced while loading show as a different [`files_fingerprint`].
    files: Option<Fingerprint>,
}

/// The sizes and modification times of a model directory's three files (0 and the epoch for one
/// that is missing): what the model watch compares to notice new files.
pub type Fingerprint = Vec<(u64, std::time::SystemTime)>;

/// The [`Fingerprint`] of the model files in `dir` now.
pub fn files_fingerprint(dir: &Path) -> Fingerprint {
    use std::time::SystemTime;
    ["model.onnx", "model.json", "golden.csv"]
        .iter()
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
                .unwrap_or((0, SystemTime::UNIX_EPOCH))
        })
        .collect()
}

/// Runs `a` here and `b` on a scoped thread at the same time; a panic in `b` is resumed here.
/// Without a second thread (the system refuses one), `b` runs here after `a`.
pub(crate) fn on_two_threads<A, B: Send>(
    a: impl FnOnce() -> A,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    let b = std::sync::Mutex::new(Some(b));
    let take = || {
        b.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    };
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new().spawn_scoped(s, || take().map(|b| b()));
        let a = a();
        let done = match thread {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(_) => None,
        };
        // `b` was taken only by a thread that ran it.
        let b = done.unwrap_or_else(|| take().map(|b| b()).expect("b runs once"));
        (a, b)
    })
}

/// Appends `items` to `out`, each written by `item`, separated by `; `.
fn write_joined<T>(
    out: &mut String,
    items: &[T],
    mut item: impl FnMut(&mut String, &T) -> std::fmt::Result,
) {
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        // Writing into a String cannot fail.
        let _ = item(out, x);
    }
}

/// sha256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Model {
    /// The model compiled into the binary.
    pub fn embedded() -> Result<Model, ModelError> {
        Model::from_parts(
            EMBEDDED_ONNX,
            EMBEDDED_CARD,
            Some(EMBEDDED_GOLDEN),
            "embedded model".into(),
        )
    }

    /// Loads `model.onnx`, `model.json` and `golden.csv` from `dir`. The golden rows are required:
    /// they are the one check that the graph scores here as onnxruntime scored it in training.
    pub fn load_dir(dir: &Path) -> Result<Model, ModelError> {
        // Taken before the files are read: one replaced meanwhile shows as changed.
        let files = files_fingerprint(dir);
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| ModelError::Read { path, source })
        };
        let onnx = read("model.onnx")?;
        let card = read("model.json")?;
        let golden = match std::fs::read(dir.join("golden.csv")) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ModelError::Read {
                    path: dir.join("golden.csv"),
                    source,
                })
            }
        };
        let mut model =
            Model::from_parts(&onnx, &card, golden.as_deref(), dir.display().to_string())?;
        model.files = Some(files);
        if golden.is_none() {
            // Checked after the rest, so a card that does not match its graph says so first.
            return Err(ModelError::Mismatch(format!(
                "{}: golden.csv is missing: faultline serves a model only once it has scored the \
                 rows of golden.csv (an id, the card's features, expected_probability from \
                 onnxruntime) as onnxruntime did; training/train.py writes it beside model.onnx",
                dir.display()
            )));
        }
        Ok(model)
    }

    /// Loads the model in `dir`, or the embedded one when `dir` is `None`.
    pub fn load(dir: Option<&Path>) -> Result<Model, ModelError> {
        match dir {
            Some(dir) => Model::load_dir(dir),
            None => Model::embedded(),
        }
    }

    /// Builds a model from the bytes of its files, checking that they belong together.
    pub fn from_parts(
        onnx_bytes: &[u8],
        card_bytes: &[u8],
        golden: Option<&[u8]>,
        origin: String,
    ) -> Result<Model, ModelError> {
        let card: ModelCard =
            serde_json::from_slice(card_bytes).map_err(|source| ModelError::Card {
                origin: origin.clone(),
                source,
            })?;
        let mismatch = |msg: String| Err(ModelError::Mismatch(format!("{origin}: {msg}")));
        let sha = sha256_hex(onnx_bytes);
        if card.onnx_sha256 != sha {
            return mismatch(format!(
                "model.onnx (sha256 {sha}) is not the graph its card describes (sha256 {}); copy model.onnx \
                 and model.json together from one training run",
                card.onnx_sha256
            ));
        }
        let expected_version = format!("wf-{}", &sha[..12]);
        if card.version != expected_version {
            return mismatch(format!(
                "the card's version {} is not derived from the graph's hash (expected {expected_version})",
                card.version
            ));
        }
        let graph_error = |source| ModelError::Graph {
            origin: origin.clone(),
            source,
        };
        // Native trees when the graph is what training exports; any other graph on tract-onnx,
        // trees the native evaluator cannot build among them (LightGBM's shared children, which
        // onnxruntime accepts).
        let compiled = onnx::compile(onnx_bytes).map_err(|e| match e {
            onnx::GraphError::Trees(b) => onnx::GraphError::Unsupported(format!(
                "the native evaluator cannot build these trees: {b}"
            )),
            other => other,
        });
        let (graph, interface, probabilities_name) = match compiled {
            Ok(g) => {
                let interface = onnx::Interface {
                    opsets: g.opsets.clone(),
                    input_name: g.input_name.clone(),
                    width: g.width,
                    outputs: vec![g.probabilities_name.clone()],
                };
                let name = g.probabilities_name.clone();
                (Scorer::Native(Box::new(g)), interface, name)
            }
            // tract-onnx departs from onnxruntime in places (see tests/model.rs), so a graph it runs
            // must bring golden rows to be checked against.
            Err(onnx::GraphError::Unsupported(native)) if golden.is_none() => {
                return Err(graph_error(onnx::GraphError::Unsupported(format!(
                    "{native}; faultline runs such a graph on tract-onnx only with a golden.csv beside it \
                     (rows with onnxruntime's P(fault)) to check it against"
                ))));
            }
            Err(onnx::GraphError::Unsupported(native)) => {
                let interface = onnx::interface(onnx_bytes).map_err(graph_error)?;
                let name = card.output.name.clone();
                if !interface.outputs.contains(&name) {
                    return mismatch(format!(
                        "the card says P(fault) is output '{name}', but the graph outputs {:?}",
                        interface.outputs
                    ));
                }
                let tract = fallback::TractGraph::load(onnx_bytes, interface.width, &name)
                    .map_err(|e| {
                        graph_error(onnx::GraphError::Unsupported(format!(
                            "{native}; and tract-onnx cannot run it either: {e:#}"
                        )))
                    })?;
                (Scorer::Tract(tract), interface, name)
            }
            Err(e) => return Err(graph_error(e)),
        };
        let width = card.input.width;
        if interface.width != width
            || card.input.features.len() != width
            || card.sensors.len() != width
        {
            return mismatch(format!(
                "the graph takes {} features but the card says width {width} with {} feature names and {} \
                 sensor statistics",
                interface.width,
                card.input.features.len(),
                card.sensors.len()
            ));
        }
        for (i, (f, s)) in card.input.features.iter().zip(&card.sensors).enumerate() {
            if f != &s.name {
                return mismatch(format!(
                    "feature {i} is '{f}' in the input list but '{}' in the sensor statistics",
                    s.name
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = card
            .input
            .features
            .iter()
            .find(|f| !seen.insert(f.as_str()))
        {
            return mismatch(format!("the card names feature '{dup}' twice"));
        }
        if interface.input_name != card.input.name || probabilities_name != card.output.name {
            return mismatch(format!(
                "the graph's input/output are '{}'/'{}' but the card says '{}'/'{}'",
                interface.input_name, probabilities_name, card.input.name, card.output.name
            ));
        }
        if card.output.fault_column != 1 {
            return mismatch(format!(
                "the card says P(fault) is column {}; faultline expects column 1",
                card.output.fault_column
            ));
        }
        for (domain, version) in &card.opsets {
            if interface.opsets.get(domain) != Some(version) {
                return mismatch(format!(
                    "the card says opset {domain} {version} but the graph imports {:?}",
                    interface.opsets.get(domain)
                ));
            }
        }
        for (domain, version) in &interface.opsets {
            if card.opsets.get(domain) != Some(version) {
                return mismatch(format!(
                    "the graph imports opset {domain} {version}, which the card does not list"
                ));
            }
        }
        if !(card.threshold > 0.0 && card.threshold < 1.0) {
            return mismatch(format!(
                "the card's threshold {} is not between 0 and 1",
                card.threshold
            ));
        }
        let explain = card
            .sensors
            .iter()
            .map(|s| match (s.median, s.iqr) {
                (Some(m), Some(iqr)) if iqr > 0.0 && m.is_finite() => {
                    (m as f32, (IQR_TO_SIGMA / iqr) as f32)
                }
                (Some(m), _) => (m as f32, 0.0),
                _ => (0.0, 0.0),
            })
            .collect();
        let threshold = card.threshold;
        let model = Model {
            card,
            graph,
            width,
            threshold,
            budget: None,
            explain: Explain::default(),
            deviation: explain,
            origin,
            files: None,
        };
        if let Some(golden) = golden {
            model.check_golden(golden)?;
        }
        Ok(model)
    }

    /// Scores the golden rows and compares with the probabilities training recorded.
    fn check_golden(&self, bytes: &[u8]) -> Result<(), ModelError> {
        let fail =
            |msg: String| ModelError::Mismatch(format!("{}: golden.csv: {msg}", self.origin));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(bytes);
        let header = reader.headers().map_err(|e| fail(e.to_string()))?.clone();
        let width = self.width();
        if header.len() != width + 2 || header.get(width + 1) != Some("expected_probability") {
            return Err(fail(format!(
                "expected id, {width} features and expected_probability columns"
            )));
        }
        for (i, name) in self.features().iter().enumerate() {
            if header.get(i + 1) != Some(name.as_str()) {
                return Err(fail(format!("column {} should be {name}", i + 2)));
            }
        }
        let mut rows = Vec::new();
        let mut expected = Vec::new();
        let mut ids = Vec::new();
        for rec in reader.records() {
            let rec = rec.map_err(|e| fail(e.to_string()))?;
            ids.push(rec.get(0).unwrap_or_default().to_string());
            for j in 0..=width {
                let cell = rec.get(j + 1).unwrap_or_default();
                let v = if cell.is_empty() {
                    f32::NAN
                } else {
                    cell.parse::<f64>()
                        .map_err(|_| fail(format!("cell '{cell}' is not a number")))?
                        as f32
                };
                if j < width {
                    rows.push(v);
                } else {
                    expected.push(v);
                }
            }
        }
        if expected.is_empty() {
            return Err(fail(
                "holds no rows; it needs at least one (training writes 64) to check the graph against"
                    .into(),
            ));
        }
        let mut got = vec![0.0; expected.len()];
        match &self.graph {
            // tract's own reason, not a score mismatch: an output of another shape, an operator
            // it cannot run on these rows.
            Scorer::Tract(t) => t
                .probabilities(&rows, &mut got)
                .map_err(|e| fail(format!("tract-onnx could not run the graph on them: {e:#}")))?,
            Scorer::Native(_) => self.probabilities(&rows, &mut got),
        }
        for ((id, e), g) in ids.iter().zip(&expected).zip(&got) {
            if (e - g).abs() > PARITY_TOLERANCE || e.is_nan() != g.is_nan() {
                return Err(fail(format!(
                    "row {id} scores {g} here but {e} in onnxruntime; the graph uses a feature this scorer \
                     evaluates differently"
                )));
            }
        }
        Ok(())
    }

    /// Overrides the card's decision threshold.
    pub fn with_threshold(mut self, threshold: f32) -> Model {
        self.threshold = threshold;
        self
    }

    /// Applies the configured decision policy: threshold override, alarm budget, explanations.
    pub fn with_policy(mut self, policy: &Policy) -> Model {
        if let Some(t) = policy.threshold {
            self.threshold = t;
        }
        self.explain = policy.explain;
        self.with_budget(policy.budget)
    }

    /// Replaces the alarm budget (`None`: the fixed threshold decides).
    pub fn with_budget(mut self, budget: Option<Budget>) -> Model {
        self.budget = budget;
        self
    }

    /// The alarm budget in force, if any.
    pub fn budget(&self) -> Option<Budget> {
        self.budget
    }

    /// A fresh decider for this model's rule (an empty alarm-budget window).
    pub fn decider(&self) -> Decider {
        Decider::new(self.budget)
    }

    /// Which verdicts carry contributions.
    pub fn explain_settings(&self) -> Explain {
        self.explain
    }

    /// Whether verdicts can carry contributions; the error says why not.
    pub fn explainable(&self) -> Result<(), String> {
        match &self.graph {
            Scorer::Native(g) => g.shap.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            Scorer::Tract(_) => Err("the graph runs on tract-onnx, and contributions need the native trees (a TreeEnsembleClassifier as training exports it)".into()),
        }
    }

    /// What scores the graph: `native trees` or `tract-onnx`.
    pub fn scorer(&self) -> &'static str {
        match self.graph {
            Scorer::Native(_) => "native trees",
            Scorer::Tract(_) => "tract-onnx",
        }
    }

    /// The exact contributions of every sensor to `row`'s log-odds, and the base (expected log-odds),
    /// or `None` when the graph cannot be explained. `base + Σ phi = logit(P(fault))`.
    pub fn contributions(&self, row: &[f32]) -> Option<(f64, Vec<f64>)> {
        let Scorer::Native(g) = &self.graph else {
            return None;
        };
        let shap = g.shap.as_ref().ok()?;
        let mut phi = vec![0.0; self.width()];
        shap.contributions(row, &mut phi);
        Some((g.base_margin as f64 + shap.expected(), phi))
    }

    /// The largest `top_k` contributions of `row` (all non-zero ones when `top_k` is 0), largest first.
    pub fn explain(&self, row: &[f32], top_k: usize) -> Option<Explanation> {
        let (base, phi) = self.contributions(row)?;
        let mut order: Vec<usize> = (0..phi.len()).filter(|&i| phi[i] != 0.0).collect();
        let larger = |a: &usize, b: &usize| phi[*b].abs().total_cmp(&phi[*a].abs()).then(a.cmp(b));
        let keep = if top_k == 0 {
            order.len()
        } else {
            top_k.min(order.len())
        };
        // Only the listed ones need an order: pick them first, then sort just those.
        if keep > 0 && keep < order.len() {
            order.select_nth_unstable_by(keep - 1, larger);
        }
        order[..keep].sort_unstable_by(larger);
        let rest: f64 = order[keep..].iter().map(|&i| phi[i]).sum();
        Some(Explanation {
            base: base as f32,
            contributions: order[..keep]
                .iter()
                .map(|&index| Contribution {
                    index,
                    value: row[index],
                    contribution: phi[index] as f32,
                })
                .collect(),
            rest: rest as f32,
        })
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The version stamped on every verdict.
    pub fn version(&self) -> &str {
        &self.card.version
    }

    /// Its directory's files as they were when loading began; `None` unless loaded from one.
    pub fn files(&self) -> Option<&Fingerprint> {
        self.files.as_ref()
    }

    /// The decision threshold in force.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Feature names, in the order rows must hold them.
    pub fn features(&self) -> &[String] {
        &self.card.input.features
    }

    /// Features per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Where the model was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of trees in the ensemble (0 for a graph on tract-onnx).
    pub fn tree_count(&self) -> usize {
        match &self.graph {
            Scorer::Native(g) => g.ensemble.tree_count(),
            Scorer::Tract(_) => 0,
        }
    }

    /// Writes P(fault) of each row (`rows` is row-major, `width` values a row, NaN = missing) to `out`.
    ///
    /// A graph on tract-onnx that fails on a batch (its golden rows passed at load, so this is not
    /// expected) gives NaN, which no threshold flags, and logs the reason.
    pub fn probabilities(&self, rows: &[f32], out: &mut [f32]) {
        match &self.graph {
            Scorer::Native(g) => {
                out.fill(0.0);
                g.ensemble.margins(rows, out);
                for p in out.iter_mut() {
                    *p = g.probability(*p);
                }
            }
            Scorer::Tract(t) => {
                if let Err(e) = t.probabilities(rows, out) {
                    out.fill(f32::NAN);
                    tracing::error!(version = %self.version(), reason = %format!("{e:#}"), "tract-onnx could not score a batch; its rows get no verdict of fault.");
                    let mut failures = t.failures.lock().unwrap_or_else(|p| p.into_inner());
                    failures.0 += out.len() as u64;
                    failures.1 = Some(format!("{e:#}"));
                }
            }
        }
    }

    /// Rows tract-onnx could not score since this model was loaded (they got NaN), and the last
    /// reason; `None` when there were none (always for the native trees). For a model loaded
    /// for one run (the CLI): a daemon's model is shared by every request and the stream.
    pub fn scoring_failures(&self) -> Option<(u64, String)> {
        match &self.graph {
            Scorer::Native(_) => None,
            Scorer::Tract(t) => {
                let failures = t.failures.lock().unwrap_or_else(|p| p.into_inner());
                (failures.0 > 0).then(|| (failures.0, failures.1.clone().unwrap_or_default()))
            }
        }
    }

    /// The sensors of `row` furthest from their training medians (missing values and sensors
    /// without a known spread are skipped), largest |z| first.
    pub fn top_sensors(&self, row: &[f32]) -> Vec<Deviation> {
        const CHUNK: usize = 8;
        let mut top: [Option<Deviation>; TOP_SENSORS] = [None; TOP_SENSORS];
        // The |z| a sensor must exceed to enter: the last one's once the list is full.
        let mut floor = -1.0f32;
        let consider = |top: &mut [Option<Deviation>; TOP_SENSORS],
                        floor: &mut f32,
                        index: usize,
                        value: f32,
                        (median, inv_scale): (f32, f32)| {
            if inv_scale == 0.0 || value.is_nan() {
                return;
            }
            let z = (value - median) * inv_scale;
            if z.abs() <= *floor {
                return;
            }
            let d = Deviation { index, value, z };
            // Insertion into a tiny sorted array; ties keep the lower sensor index first.
            let mut slot = TOP_SENSORS;
            while slot > 0 && top[slot - 1].is_none_or(|t| z.abs() > t.z.abs()) {
                slot -= 1;
            }
            if slot < TOP_SENSORS {
                top.copy_within(slot..TOP_SENSORS - 1, slot + 1);
                top[slot] = Some(d);
                *floor = top[TOP_SENSORS - 1].map_or(-1.0, |t| t.z.abs());
            }
        };
        let row = &row[..self.deviation.len().min(row.len())];
        let whole = row.len() / CHUNK * CHUNK;
        for (c, (values, deviation)) in row[..whole]
            .chunks_exact(CHUNK)
            .zip(self.deviation.chunks_exact(CHUNK))
            .enumerate()
        {
            // Most chunks hold no sensor above the floor: one branch-free test (NaN and sensors
            // without a spread never pass it once the list is full) skips all eight.
            let mut above = false;
            for (&v, &(median, inv_scale)) in values.iter().zip(deviation) {
                above |= ((v - median) * inv_scale).abs() > floor;
            }
            if above {
                for (k, (&v, &d)) in values.iter().zip(deviation).enumerate() {
                    consider(&mut top, &mut floor, c * CHUNK + k, v, d);
                }
            }
        }
        for (k, (&v, &d)) in row[whole..]
            .iter()
            .zip(&self.deviation[whole..])
            .enumerate()
        {
            consider(&mut top, &mut floor, whole + k, v, d);
        }
        top.into_iter().flatten().collect()
    }

    /// Scores a batch on its own (a fresh alarm-budget window): probability, verdict and explanation
    /// for every row.
    pub fn score(&self, batch: &RowBatch) -> Vec<Verdict> {
        self.score_with(batch, &mut self.decider())
    }

    /// Scores a batch, deciding each row in order with `decider` (which keeps a stream's recent
    /// scores across batches for the alarm budget).
    pub fn score_with(&self, batch: &RowBatch, decider: &mut Decider) -> Vec<Verdict> {
        self.score_explaining(batch, decider, self.explain)
    }

    /// [`Model::score_with`], explaining the verdicts `explain` asks for instead of the configured ones.
    pub fn score_explaining(
        &self,
        batch: &RowBatch,
        decider: &mut Decider,
        explain: Explain,
    ) -> Vec<Verdict> {
        let n = batch.len();
        // A large batch (an upload, `faultline score`'s batches) is scored and explained on two
        // threads, each a contiguous half; the stream's micro-batches stay on their own thread.
        let half = if n >= PARALLEL_ROWS { n / 2 } else { n };
        let mut probs = vec![0.0; n];
        if half == n {
            self.probabilities(&batch.values, &mut probs);
        } else {
            let (front, back) = probs.split_at_mut(half);
            let (front_rows, back_rows) = batch.values.split_at(half * batch.width);
            on_two_threads(
                || self.probabilities(front_rows, front),
                || self.probabilities(back_rows, back),
            );
        }
        // The alarm budget decides in input order.
        let decisions: Vec<(bool, f32, Rule)> = probs
            .iter()
            .map(|&p| decider.decide(p, self.threshold))
            .collect();
        let verdicts = |range: std::ops::Range<usize>| -> Vec<Verdict> {
            range
                .map(|i| {
                    let (fault, threshold, rule) = decisions[i];
                    let row = batch.row(i);
                    let explanation = (explain.top_k > 0 && (fault || explain.all_rows))
                        .then(|| self.explain(row, explain.top_k))
                        .flatten();
                    Verdict {
                        id: batch.ids[i].clone(),
                        probability: probs[i],
                        fault,
                        threshold,
                        rule,
                        explanation,
                        unusual_sensors: if fault || explain.unusual_all_rows {
                            self.top_sensors(row)
                        } else {
                            Vec::new()
                        },
                    }
                })
                .collect()
        };
        if half == n {
            return verdicts(0..n);
        }
        let (mut all, back) = on_two_threads(|| verdicts(0..half), || verdicts(half..n));
        all.extend(back);
        all
    }

    /// Appends contributions as `Sensor-59=2.31 (+0.412); ...` to `out`, for CSV output (log-odds).
    pub fn write_contributions(&self, out: &mut String, e: Option<&Explanation>) {
        let contributions = e.map_or(&[][..], |e| &e.contributions);
        write_joined(out, contributions, |out, c| {
            let name = &self.features()[c.index];
            write!(out, "{name}={} ({:+.4})", c.value, c.contribution)
        });
    }

    /// Appends a verdict's unusual sensors as `Sensor-59=2.31 (z=+6.20); ...` to `out`, for CSV
    /// output.
    pub fn write_sensors(&self, out: &mut String, top: &[Deviation]) {
        write_joined(out, top, |out, d| {
            let name = &self.features()[d.index];
            write!(out, "{name}={} (z={:+.2})", d.value, d.z)
        });
    }
}
