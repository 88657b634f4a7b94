"""Small, dependency-light XGBoost -> ONNX converter for faultline.

The graph has exactly one input and two outputs:

    input  float32 [N, width]   (NaN = missing)
      -> IsNaN -> Where(isnan, medians, input)          (median imputation, ai.onnx 17)
      -> TreeEnsembleClassifier (ai.onnx.ml 3)          -> label int64 [N], probabilities float32 [N, 2]

Trees are read from the booster's own JSON model (``booster.save_raw("json")``), whose
split thresholds and leaf values are written with enough digits to round-trip float32
exactly.  XGBoost sends ``x < split_condition`` to the left ("yes") child and a missing
value to the left child when ``default_left`` is 1; that maps 1:1 onto ``BRANCH_LT`` with
``nodes_missing_value_tracks_true``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET_ONNX = 17
OPSET_ML = 3
IR_VERSION = 8
PRODUCER_NAME = "faultline-training"
PRODUCER_VERSION = "1.0.0"


class ExportError(RuntimeError):
    pass


@dataclass
class Split:
    tree: int
    node: int
    feature: int  # ORIGINAL column index (0..width-1)
    threshold: np.float32


@dataclass
class TreeEnsemble:
    """Flattened TreeEnsembleClassifier attributes."""

    nodes_treeids: list = field(default_factory=list)
    nodes_nodeids: list = field(default_factory=list)
    nodes_featureids: list = field(default_factory=list)
    nodes_modes: list = field(default_factory=list)
    nodes_values: list = field(default_factory=list)
    nodes_truenodeids: list = field(default_factory=list)
    nodes_falsenodeids: list = field(default_factory=list)
    nodes_missing_value_tracks_true: list = field(default_factory=list)
    # Training cover of each node (rows, or XGBoost's hessian sum, that reach it). onnxruntime ignores
    # it; faultline's exact TreeSHAP needs it. Empty: not written.
    nodes_hitrates: list = field(default_factory=list)
    class_treeids: list = field(default_factory=list)
    class_nodeids: list = field(default_factory=list)
    class_ids: list = field(default_factory=list)
    class_weights: list = field(default_factory=list)
    n_trees: int = 0
    max_depth: int = 0

    def splits(self) -> list[Split]:
        out = []
        for i, mode in enumerate(self.nodes_modes):
            if mode != "LEAF":
                out.append(Split(self.nodes_treeids[i], self.nodes_nodeids[i],
                                 self.nodes_featureids[i], np.float32(self.nodes_values[i])))
        return out


def _f32(v) -> float:
    """A Python float holding exactly the float32 nearest to v."""
    return float(np.float32(v))


def booster_base_margin(model_json: dict) -> float:
    raw = model_json["learner"]["learner_model_param"]["base_score"]
    raw = raw.strip("[]")
    base_score = float(raw.split(",")[0])
    if not 0.0 < base_score < 1.0:
        raise ExportError(f"unexpected base_score {raw!r}")
    return float(np.log(base_score / (1.0 - base_score)))


def trees_from_booster(booster, feature_map: Sequence[int]) -> TreeEnsemble:
    """Flatten the booster's trees.  feature_map[j] = original column index of booster feature j."""
    model = json.loads(bytes(booster.save_raw("json")))
    learner = model["learner"]
    objective = learner["objective"]["name"]
    if objective != "binary:logistic":
        raise ExportError(f"only binary:logistic is supported, got {objective}")
    margin = booster_base_margin(model)
    if margin != 0.0:
        raise ExportError(f"base_score must be 0.5 (margin 0), got margin {margin}")
    gb = learner["gradient_booster"]
    if gb.get("name") not in (None, "gbtree"):
        raise ExportError(f"only gbtree boosters are supported, got {gb.get('name')}")
    trees = gb["model"]["trees"]
    tree_info = gb["model"].get("tree_info", [0] * len(trees))
    if any(int(g) != 0 for g in tree_info):
        raise ExportError("multi-output trees are not supported")

    ens = TreeEnsemble(n_trees=len(trees))
    for t, tree in enumerate(trees):
        left = tree["left_children"]
        right = tree["right_children"]
        cond = tree["split_conditions"]
        sidx = tree["split_indices"]
        dleft = tree["default_left"]
        cover = tree["sum_hessian"]
        stype = tree.get("split_type", [0] * len(left))
        # reachable nodes only (pruned trees may keep deleted slots)
        order, depth_of, stack = [], {0: 0}, [0]
        while stack:
            n = stack.pop()
            order.append(n)
            if left[n] != -1:
                if int(stype[n]) != 0:
                    raise ExportError("categorical splits are not supported")
                for c in (right[n], left[n]):
                    depth_of[c] = depth_of[n] + 1
                    stack.append(c)
        order.sort()
        renum = {old: new for new, old in enumerate(order)}
        ens.max_depth = max(ens.max_depth, max(depth_of.values()))
        for n in order:
            ens.nodes_treeids.append(t)
            ens.nodes_nodeids.append(renum[n])
            ens.nodes_hitrates.append(_f32(cover[n]))
            if left[n] == -1:
                ens.nodes_featureids.append(0)
                ens.nodes_modes.append("LEAF")
                ens.nodes_values.append(0.0)
                ens.nodes_truenodeids.append(0)
                ens.nodes_falsenodeids.append(0)
                ens.nodes_missing_value_tracks_true.append(0)
                ens.class_treeids.append(t)
                ens.class_nodeids.append(renum[n])
                ens.class_ids.append(0)
                ens.class_weights.append(_f32(cond[n]))
            else:
                j = int(sidx[n])
                ens.nodes_featureids.append(int(feature_map[j]))
                ens.nodes_modes.append("BRANCH_LT")
                ens.nodes_values.append(_f32(cond[n]))
                ens.nodes_truenodeids.append(renum[left[n]])
                ens.nodes_falsenodeids.append(renum[right[n]])
                ens.nodes_missing_value_tracks_true.append(1 if int(dleft[n]) else 0)
    return ens


def make_classifier_node(ens: TreeEnsemble, input_name: str, post_transform: str = "LOGISTIC",
                         base_values: Sequence[float] | None = None) -> onnx.NodeProto:
    attrs = dict(
        classlabels_int64s=[0, 1],
        class_ids=list(ens.class_ids),
        class_nodeids=list(ens.class_nodeids),
        class_treeids=list(ens.class_treeids),
        class_weights=[_f32(w) for w in ens.class_weights],
        nodes_falsenodeids=list(ens.nodes_falsenodeids),
        nodes_featureids=list(ens.nodes_featureids),
        nodes_missing_value_tracks_true=list(ens.nodes_missing_value_tracks_true),
        nodes_modes=list(ens.nodes_modes),
        nodes_nodeids=list(ens.nodes_nodeids),
        nodes_treeids=list(ens.nodes_treeids),
        nodes_truenodeids=list(ens.nodes_truenodeids),
        nodes_values=[_f32(v) for v in ens.nodes_values],
        post_transform=post_transform,
    )
    if ens.nodes_hitrates:
        attrs["nodes_hitrates"] = [_f32(v) for v in ens.nodes_hitrates]
    if base_values is not None:
        attrs["base_values"] = [_f32(v) for v in base_values]
    return helper.make_node("TreeEnsembleClassifier", [input_name], ["label", "probabilities"],
                            name="trees", domain="ai.onnx.ml", **attrs)


def build_model(ens: TreeEnsemble, width: int, medians: np.ndarray | None, graph_name: str,
                post_transform: str = "LOGISTIC", base_values: Sequence[float] | None = None) -> onnx.ModelProto:
    """medians=None -> no imputation stage (trees read `input` directly)."""
    nodes, inits = [], []
    tree_input = "input"
    if medians is not None:
        med = np.asarray(medians, dtype=np.float32)
        if med.shape != (width,) or not np.all(np.isfinite(med)):
            raise ExportError("medians must be a finite float32 vector of the input width")
        inits.append(numpy_helper.from_array(med, name="medians"))
        nodes.append(helper.make_node("IsNaN", ["input"], ["input_isnan"], name="isnan"))
        nodes.append(helper.make_node("Where", ["input_isnan", "medians", "input"], ["imputed"], name="impute"))
        tree_input = "imputed"
    nodes.append(make_classifier_node(ens, tree_input, post_transform, base_values))
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET_ONNX), helper.make_opsetid("ai.onnx.ml", OPSET_ML)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def ort_session(model_bytes: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def ort_predict(model_bytes_or_session, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sess = model_bytes_or_session
    if isinstance(sess, (bytes, bytearray)):
        sess = ort_session(bytes(sess))
    label, proba = sess.run(["label", "probabilities"], {"input": np.ascontiguousarray(X, dtype=np.float32)})
    return label, proba
