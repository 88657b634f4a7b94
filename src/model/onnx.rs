//! Compiles the ONNX graph that training exports into the native evaluator.
//!
//! The graph is parsed with tract-onnx's protobuf types (`proto_model_for_read`); nothing of it is
//! executed here. Only the operators the training exporter emits are accepted:
//!
//! ```text
//! input ─► IsNaN ─► Where(isnan, medians, input) ─► TreeEnsembleClassifier ─► probabilities
//! ```
//!
//! (`Identity` nodes are allowed anywhere, and the imputation step is optional.) Anything else is
//! refused with a message that names the node, so a graph that would be scored differently from how
//! it was trained never loads. Median imputation is folded into the trees: a NaN reaching a split on
//! feature `f` goes wherever the median of `f` would go, which is exactly what `Where` then the split
//! would do, without copying any row.

use super::ensemble::{BranchMode, BuildError, Ensemble, NodeSpec, TreeSpec};
use super::shap::{ShapError, TreeShap};
use std::borrow::Cow;
use std::collections::HashMap;
use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType};
use tract_onnx::prelude::Framework;

/// Why a graph cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The bytes are not an ONNX model.
    #[error("the file is not a readable ONNX model: {0}")]
    Decode(String),
    /// A structural problem, described in a sentence.
    #[error("{0}")]
    Unsupported(String),
    /// The tree attributes describe something that is not a set of trees.
    #[error("the tree ensemble is malformed: {0}")]
    Trees(#[from] BuildError),
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T, GraphError> {
    Err(GraphError::Unsupported(msg.into()))
}

/// How the summed tree margin becomes P(fault), as onnxruntime computes it for a binary
/// `TreeEnsembleClassifier` whose leaves all vote for class 0 (XGBoost's and onnxmltools' form).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Finalize {
    /// `post_transform = LOGISTIC`: P(fault) = sigmoid(margin).
    Logistic,
    /// `post_transform = NONE` with leaf weights of both signs: P(fault) = margin.
    Identity,
}

/// What the compiler learned from the graph.
#[derive(Debug, Clone)]
pub struct CompiledGraph {
    /// The trees, with imputation folded in.
    pub ensemble: Ensemble,
    /// Added to every row's margin before the post-transform (from `base_values`).
    pub base_margin: f32,
    /// How the margin becomes a probability.
    pub finalize: Finalize,
    /// Input width from the graph's input shape.
    pub width: usize,
    /// Graph input name.
    pub input_name: String,
    /// Name of the `[N, 2]` probabilities output.
    pub probabilities_name: String,
    /// Opset versions by domain (`ai.onnx` for the default domain).
    pub opsets: HashMap<String, i64>,
    /// Per-feature imputation values, when the graph imputes (NaN where it does not).
    pub impute: Option<Vec<f32>>,
    /// The exact TreeSHAP explainer, or why this graph cannot be explained (no node cover).
    pub shap: Result<TreeShap, ShapError>,
}

impl CompiledGraph {
    /// Turns one margin into P(fault).
    #[inline]
    pub fn probability(&self, margin: f32) -> f32 {
        let m = margin + self.base_margin;
        match self.finalize {
            Finalize::Logistic => logistic(m),
            Finalize::Identity => m,
        }
    }
}

/// The logistic function, computed as onnxruntime does (stable on both sides of zero).
#[inline]
pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 {
        1.0 - v
    } else {
        v
    }
}

/// What a value name in the graph holds, as far as the compiler follows it.
#[derive(Debug, Clone)]
enum Value {
    /// The raw graph input.
    Input,
    /// `IsNaN` of the raw input.
    InputIsNan,
    /// The input with NaN replaced by these per-feature values.
    Imputed(Vec<f32>),
    /// A constant float tensor (flattened) from an initializer.
    Const(Vec<f32>),
    /// The ensemble's label output (never read by faultline: tract inverts it for binary XGBoost).
    Label,
    /// The ensemble's probabilities output.
    Probabilities,
}

/// Reads and compiles an ONNX model from its bytes.
pub fn compile(bytes: &[u8]) -> Result<CompiledGraph, GraphError> {
    compile_proto(&parse(bytes)?)
}

/// What any graph faultline serves must offer, whichever scorer runs it.
#[derive(Debug, Clone)]
pub struct Interface {
    /// Opset versions by domain (`ai.onnx` for the default domain).
    pub opsets: HashMap<String, i64>,
    /// The one graph input (float32 `[N, width]`).
    pub input_name: String,
    /// Features per row.
    pub width: usize,
    /// The graph's output names.
    pub outputs: Vec<String>,
}

/// Reads the interface of an ONNX model from its bytes (for the tract-onnx fallback).
pub fn interface(bytes: &[u8]) -> Result<Interface, GraphError> {
    interface_of(&parse(bytes)?)
}

fn parse(bytes: &[u8]) -> Result<pb::ModelProto, GraphError> {
    let mut reader = bytes;
    tract_onnx::onnx()
        .proto_model_for_read(&mut reader)
        .map_err(|e| GraphError::Decode(e.to_string()))
}

fn interface_of(model: &pb::ModelProto) -> Result<Interface, GraphError> {
    let mut opsets = HashMap::new();
    for o in &model.opset_import {
        let domain = if o.domain.is_empty() {
            "ai.onnx"
        } else {
            o.domain.as_str()
        };
        opsets.insert(domain.to_string(), o.version);
    }
    let Some(graph) = &model.graph else {
        return unsupported("the ONNX model has no graph");
    };
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|i| i.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    let [input] = inputs.as_slice() else {
        return unsupported(format!(
            "the graph must have exactly one input, it has {}: {}",
            inputs.len(),
            inputs
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    Ok(Interface {
        opsets,
        input_name: input.name.clone(),
        width: input_width(input)?,
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
    })
}

fn compile_proto(model: &pb::ModelProto) -> Result<CompiledGraph, GraphError> {
    let Interface {
        opsets,
        input_name,
        width,
        outputs,
    } = interface_of(model)?;
    let Some(graph) = &model.graph else {
        return unsupported("the ONNX model has no graph");
    };
    let mut values: HashMap<String, Value> = HashMap::new();
    for init in &graph.initializer {
        let data = float_tensor(init)?;
        values.insert(init.name.clone(), Value::Const(data));
    }
    values.insert(input_name.clone(), Value::Input);

    let mut trees: Option<Parsed> = None;
    let mut imputed: Option<Vec<f32>> = None;
    let mut probabilities_name = None;
    for node in &graph.node {
        let get = |i: usize| -> Result<&Value, GraphError> {
            let name = node.input.get(i).ok_or_else(|| {
                GraphError::Unsupported(format!(
                    "node '{}' ({}) lacks input {i}",
                    node.name, node.op_type
                ))
            })?;
            values.get(name).ok_or_else(|| {
                GraphError::Unsupported(format!(
                    "node '{}' ({}) reads '{name}', which no earlier node or initializer produces",
                    node.name, node.op_type
                ))
            })
        };
        let domain = if node.domain.is_empty() {
            "ai.onnx"
        } else {
            node.domain.as_str()
        };
        let out = |i: usize| node.output.get(i).cloned().unwrap_or_default();
        match (domain, node.op_type.as_str()) {
            ("ai.onnx", "Identity") => {
                let v = get(0)?.clone();
                values.insert(out(0), v);
            }
            ("ai.onnx", "IsNaN") => match get(0)? {
                Value::Input => {
                    values.insert(out(0), Value::InputIsNan);
                }
                _ => return unsupported(format!("IsNaN node '{}' must read the graph input", node.name)),
            },
            ("ai.onnx", "Where") => {
                let (cond, fill, x) = (get(0)?, get(1)?, get(2)?);
                match (cond, fill, x) {
                    (Value::InputIsNan, Value::Const(fill), Value::Input) => {
                        let fill = broadcast_row(fill, width, &node.name)?;
                        values.insert(out(0), Value::Imputed(fill));
                    }
                    _ => {
                        return unsupported(format!(
                            "Where node '{}' is not the median imputation Where(IsNaN(input), medians, input)",
                            node.name
                        ))
                    }
                }
            }
            ("ai.onnx.ml", "TreeEnsembleClassifier") => {
                if trees.is_some() {
                    return unsupported("the graph has more than one TreeEnsembleClassifier");
                }
                let impute = match get(0)? {
                    Value::Input => None,
                    Value::Imputed(fill) => Some(fill.clone()),
                    _ => {
                        return unsupported(format!(
                            "TreeEnsembleClassifier '{}' must read the input or its imputed form",
                            node.name
                        ))
                    }
                };
                let parsed = parse_trees(node, width, impute.as_deref())?;
                trees = Some(parsed);
                imputed = impute;
                values.insert(out(0), Value::Label);
                if node.output.len() > 1 {
                    probabilities_name = Some(out(1));
                    values.insert(out(1), Value::Probabilities);
                }
            }
            (d, op) => {
                return unsupported(format!(
                    "the graph uses {d}.{op} (node '{}'); faultline compiles only Identity, IsNaN, Where \
                     and ai.onnx.ml.TreeEnsembleClassifier — export the model with training/train.py",
                    node.name
                ))
            }
        }
    }
    let Some((specs, base_margin, finalize, covers)) = trees else {
        return unsupported("the graph has no TreeEnsembleClassifier");
    };
    let Some(probabilities_name) = probabilities_name else {
        return unsupported("the TreeEnsembleClassifier has no probabilities output");
    };
    if !outputs.contains(&probabilities_name) {
        return unsupported(format!("the graph does not output '{probabilities_name}'"));
    }
    let shap = match covers {
        _ if finalize != Finalize::Logistic => Err(ShapError::NotLogOdds),
        Some(covers) => TreeShap::build(&specs, &covers),
        None => Err(ShapError::NoCover),
    };
    Ok(CompiledGraph {
        shap,
        ensemble: Ensemble::build(width, &specs)?,
        base_margin,
        finalize,
        width,
        input_name,
        probabilities_name,
        opsets,
        impute: imputed,
    })
}

/// The input must be float32 `[N, width]` with a symbolic or free batch dimension.
fn input_width(input: &pb::ValueInfoProto) -> Result<usize, GraphError> {
    use pb::type_proto::Value as T;
    let bad = |why: &str| {
        unsupported(format!(
            "graph input '{}' {why}; expected float32 [N, width]",
            input.name
        ))
    };
    let Some(T::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return bad("is not a tensor");
    };
    if t.elem_type != DataType::Float as i32 {
        return bad("is not float32");
    }
    let Some(shape) = &t.shape else {
        return bad("has no shape");
    };
    let [_, w] = shape.dim.as_slice() else {
        return bad("is not two-dimensional");
    };
    match w.value {
        Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => Ok(v as usize),
        _ => bad("has no fixed feature width"),
    }
}

/// Reads a float32 initializer (raw little-endian bytes or `float_data`).
fn float_tensor(t: &pb::TensorProto) -> Result<Vec<f32>, GraphError> {
    if t.data_type != DataType::Float as i32 {
        // Non-float initializers have no use in the graphs we accept; refuse them where they are read.
        return Ok(Vec::new());
    }
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) {
        return unsupported(format!(
            "initializer '{}' stores its data outside the ONNX file",
            t.name
        ));
    }
    let data = if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            return unsupported(format!(
                "initializer '{}' has a truncated float32 payload",
                t.name
            ));
        }
        t.raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    let expect: i64 = t.dims.iter().product();
    if expect as usize != data.len() {
        return unsupported(format!(
            "initializer '{}' has {} values for shape {:?}",
            t.name,
            data.len(),
            t.dims
        ));
    }
    Ok(data)
}

/// Accepts a fill value of shape `[width]` or `[1, width]`.
fn broadcast_row(fill: &[f32], width: usize, node: &str) -> Result<Vec<f32>, GraphError> {
    if fill.len() == width {
        Ok(fill.to_vec())
    } else {
        unsupported(format!(
            "Where node '{node}' fills {} values, but rows have {width} features",
            fill.len()
        ))
    }
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints<'a>(node: &'a pb::NodeProto, name: &str) -> Result<&'a [i64], GraphError> {
    match attr(node, name) {
        Some(a) if a.r#type == AttributeType::Ints as i32 || !a.ints.is_empty() => Ok(&a.ints),
        Some(_) => unsupported(format!(
            "attribute {name} of '{}' is not a list of integers",
            node.name
        )),
        None => unsupported(format!(
            "TreeEnsembleClassifier '{}' lacks attribute {name}",
            node.name
        )),
    }
}

fn floats<'a>(node: &'a pb::NodeProto, name: &str) -> Result<Option<&'a [f32]>, GraphError> {
    if attr(node, &format!("{name}_as_tensor")).is_some() {
        return unsupported(format!(
            "TreeEnsembleClassifier '{}' uses {name}_as_tensor (double precision), which faultline does not score",
            node.name
        ));
    }
    Ok(attr(node, name).map(|a| a.floats.as_slice()))
}

fn strings<'a>(node: &'a pb::NodeProto, name: &str) -> Result<Vec<Cow<'a, str>>, GraphError> {
    match attr(node, name) {
        // Borrowed unless a string is not UTF-8: one per tree node, so no copies.
        Some(a) => Ok(a
            .strings
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect()),
        None => unsupported(format!(
            "TreeEnsembleClassifier '{}' lacks attribute {name}",
            node.name
        )),
    }
}

/// The trees, base margin, post-transform and (when the graph has `nodes_hitrates`) each tree's node
/// cover in the trees' node order.
type Parsed = (Vec<TreeSpec>, f32, Finalize, Option<Vec<Vec<f32>>>);

/// The tree parser's maps, keyed by tree and node ids.
type NodeMap<K, V> = foldhash::HashMap<K, V>;

/// Builds tree specs from a `TreeEnsembleClassifier` node.
fn parse_trees(
    node: &pb::NodeProto,
    width: usize,
    impute: Option<&[f32]>,
) -> Result<Parsed, GraphError> {
    let labels = attr(node, "classlabels_int64s")
        .map(|a| a.ints.clone())
        .unwrap_or_default();
    if labels != [0, 1] {
        return unsupported(format!(
            "TreeEnsembleClassifier '{}' must have classlabels_int64s = [0, 1] (binary, 1 = fault); it has {labels:?}",
            node.name
        ));
    }
    let post = attr(node, "post_transform").map(|a| String::from_utf8_lossy(&a.s).into_owned());
    let tree_ids = ints(node, "nodes_treeids")?;
    let node_ids = ints(node, "nodes_nodeids")?;
    let features = ints(node, "nodes_featureids")?;
    let modes = strings(node, "nodes_modes")?;
    let thresholds = floats(node, "nodes_values")?.unwrap_or(&[]);
    let yes_ids = ints(node, "nodes_truenodeids")?;
    let no_ids = ints(node, "nodes_falsenodeids")?;
    let tracks = attr(node, "nodes_missing_value_tracks_true")
        .map(|a| a.ints.as_slice())
        .unwrap_or(&[]);
    let hitrates = floats(node, "nodes_hitrates")?.unwrap_or(&[]);
    let n = tree_ids.len();
    if !hitrates.is_empty() && hitrates.len() != n {
        return unsupported(format!(
            "nodes_hitrates has {} entries for {n} nodes",
            hitrates.len()
        ));
    }
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", thresholds.len()),
        ("nodes_truenodeids", yes_ids.len()),
        ("nodes_falsenodeids", no_ids.len()),
    ] {
        if len != n {
            return unsupported(format!(
                "{name} has {len} entries but nodes_treeids has {n}"
            ));
        }
    }
    if !tracks.is_empty() && tracks.len() != n {
        return unsupported(format!(
            "nodes_missing_value_tracks_true has {} entries for {n} nodes",
            tracks.len()
        ));
    }
    let class_tree = ints(node, "class_treeids")?;
    let class_node = ints(node, "class_nodeids")?;
    let class_ids = ints(node, "class_ids")?;
    let class_weights = floats(node, "class_weights")?.unwrap_or(&[]);
    let m = class_tree.len();
    if class_node.len() != m || class_ids.len() != m || class_weights.len() != m {
        return unsupported(
            "class_treeids, class_nodeids, class_ids and class_weights differ in length",
        );
    }
    if class_ids.iter().any(|&c| c != 0) {
        return unsupported(format!(
            "TreeEnsembleClassifier '{}' has leaf weights for class 1; faultline scores the binary form whose \
             weights all vote for class 0 (as XGBoost exports)",
            node.name
        ));
    }
    // onnxruntime's binary form: P(fault) = sigmoid(sum) under LOGISTIC and the raw sum under NONE
    // (whatever the weights' signs; only the class-0 column changes with them).
    let finalize = match post.as_deref() {
        Some("LOGISTIC") => Finalize::Logistic,
        None | Some("NONE") => Finalize::Identity,
        Some(other) => {
            return unsupported(format!(
                "post_transform {other} is not supported; use LOGISTIC"
            ));
        }
    };
    let base_margin = match floats(node, "base_values")? {
        None | Some([]) => 0.0,
        // One base value is an offset on the margin (onnxruntime; tract refuses this form).
        Some([b]) => *b,
        Some(other) => {
            return unsupported(format!(
                "TreeEnsembleClassifier '{}' has base_values {other:?}; with leaf weights for class 0 only, \
                 onnxruntime ignores base_values[1] and reports the same P(fault) for every row, so this graph \
                 is refused — export with base_score = 0.5 so the margin needs no base value",
                node.name
            ))
        }
    };

    // Group nodes by tree, in order of first appearance (the order onnxruntime sums them in).
    // (foldhash: SipHash's resistance to chosen keys buys nothing here, and at tens of thousands
    // of nodes it was a sixth of loading the model.)
    let mut order: Vec<i64> = Vec::new();
    let mut pos: NodeMap<(i64, i64), usize> =
        NodeMap::with_capacity_and_hasher(n, Default::default());
    let mut per_tree: NodeMap<i64, Vec<usize>> = NodeMap::default();
    for i in 0..n {
        // onnxruntime starts a tree at every change of tree id in the attributes' order, so a
        // tree whose nodes are not listed together is read there as more trees than it is: left
        // to tract-onnx and the golden rows rather than scored differently here.
        if i > 0 && tree_ids[i] != tree_ids[i - 1] && per_tree.contains_key(&tree_ids[i]) {
            return unsupported(format!(
                "the nodes of tree {} are not listed together (onnxruntime would read them as more than one tree)",
                tree_ids[i]
            ));
        }
        let list = per_tree.entry(tree_ids[i]).or_insert_with(|| {
            order.push(tree_ids[i]);
            Vec::new()
        });
        if pos.insert((tree_ids[i], node_ids[i]), list.len()).is_some() {
            return unsupported(format!(
                "tree {} has node id {} twice",
                tree_ids[i], node_ids[i]
            ));
        }
        list.push(i);
    }
    let mut weight: NodeMap<(i64, i64), f32> = NodeMap::default();
    for j in 0..m {
        *weight.entry((class_tree[j], class_node[j])).or_insert(0.0) += class_weights[j];
    }

    let mut specs = Vec::with_capacity(order.len());
    let mut covers = Vec::with_capacity(order.len());
    for &tid in &order {
        let members = &per_tree[&tid];
        // The root is the one node no other node of the tree points to.
        let mut is_child = vec![false; members.len()];
        let mut nodes = Vec::with_capacity(members.len());
        for &i in members {
            let child = |id: i64| -> Result<usize, GraphError> {
                pos.get(&(tid, id)).copied().ok_or_else(|| {
                    GraphError::Unsupported(format!(
                        "tree {tid} node {} points to missing node {id}",
                        node_ids[i]
                    ))
                })
            };
            if modes[i] == "LEAF" {
                nodes.push(NodeSpec::Leaf {
                    weight: weight.get(&(tid, node_ids[i])).copied().unwrap_or(0.0),
                });
                continue;
            }
            let Some(mode) = BranchMode::parse(&modes[i]) else {
                return unsupported(format!(
                    "tree {tid} node {} has unknown mode {}",
                    node_ids[i], modes[i]
                ));
            };
            let feature = usize::try_from(features[i]).map_err(|_| {
                GraphError::Unsupported(format!(
                    "tree {tid} node {} has feature {}",
                    node_ids[i], features[i]
                ))
            })?;
            if feature >= width {
                return unsupported(format!(
                    "tree {tid} splits on feature {feature}, but the input has {width} features"
                ));
            }
            let (yes, no) = (child(yes_ids[i])?, child(no_ids[i])?);
            is_child[yes] = true;
            is_child[no] = true;
            let threshold = thresholds[i];
            // onnxruntime takes the missing-value track as true only when it is exactly 1.
            let track = tracks.get(i).copied().unwrap_or(0) == 1;
            let nan_yes = match impute.map(|fill| fill[feature]) {
                // NaN is replaced by the fill value before the trees see it.
                Some(fill) if !fill.is_nan() => mode.holds(fill, threshold),
                _ => mode.onnx_nan_yes(track),
            };
            nodes.push(NodeSpec::Branch {
                feature,
                mode,
                threshold,
                nan_yes,
                yes,
                no,
            });
        }
        let roots: Vec<usize> = (0..members.len()).filter(|&k| !is_child[k]).collect();
        let [root] = roots.as_slice() else {
            return unsupported(format!("tree {tid} has {} roots", roots.len()));
        };
        if !hitrates.is_empty() {
            let mut cover: Vec<f32> = members.iter().map(|&i| hitrates[i]).collect();
            cover.swap(0, *root);
            covers.push(cover);
        }
        specs.push(reroot(nodes, *root));
    }
    let covers = (!hitrates.is_empty()).then_some(covers);
    Ok((specs, base_margin, finalize, covers))
}

/// Moves `root` to position 0 (the builder's convention), renumbering children.
fn reroot(mut nodes: Vec<NodeSpec>, root: usize) -> TreeSpec {
    if root != 0 {
        nodes.swap(0, root);
        let fix = |c: usize| {
            if c == 0 {
                root
            } else if c == root {
                0
            } else {
                c
            }
        };
        for n in &mut nodes {
            if let NodeSpec::Branch { yes, no, .. } = n {
                *yes = fix(*yes);
                *no = fix(*no);
            }
        }
    }
    TreeSpec { nodes }
}
