"""Shared checks for the produced / committed model artifacts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

import onnx_export
import train
from onnx_export import TreeEnsemble

CARD_KEYS = {"name", "version", "created_at", "onnx_sha256", "positive_class", "input", "output", "opsets",
             "threshold", "threshold_rule", "training", "validation", "sensors", "packages"}


def ensemble_from_onnx(model: onnx.ModelProto) -> tuple[TreeEnsemble, str, dict]:
    node = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"][0]
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    ens = TreeEnsemble()
    for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_truenodeids",
              "nodes_falsenodeids", "nodes_missing_value_tracks_true", "class_treeids", "class_nodeids",
              "class_ids", "class_weights"):
        setattr(ens, k, list(a[k]))
    ens.nodes_modes = [m.decode() for m in a["nodes_modes"]]
    ens.n_trees = len(set(ens.nodes_treeids))
    return ens, a["post_transform"].decode(), a


def check_model_dir(out_dir: Path) -> dict:
    """Structural checks shared by the pipeline test and the committed-model test. Returns the card."""
    blob = (out_dir / "model.onnx").read_bytes()
    card = json.loads((out_dir / "model.json").read_text())
    sha = hashlib.sha256(blob).hexdigest()

    assert set(card) == CARD_KEYS
    assert card["name"] == "wafer-fault"
    assert card["onnx_sha256"] == sha
    assert card["version"] == f"wf-{sha[:12]}"
    assert card["input"] == {"name": "input", "width": 590, "features": train.SENSORS}
    assert card["output"] == {"name": "probabilities", "fault_column": 1}
    assert card["opsets"] == {"ai.onnx": 17, "ai.onnx.ml": 3}
    assert 0.0 < card["threshold"] < 1.0
    assert len(card["sensors"]) == 590
    assert [s["name"] for s in card["sensors"]] == train.SENSORS
    assert card["validation"]["onnxruntime_max_abs_diff"] <= 1e-5
    v = card["validation"]
    for k in ("roc_auc", "pr_auc", "balanced_accuracy", "recall", "false_alarm_rate", "comparisons",
              "alarm_rate_suggested", "expectation", "windows"):
        assert k in v
    # every claim comes with its interval, and the interval holds the claim
    for k in ("roc_auc", "pr_auc", "recall", "false_alarm_rate"):
        lo, hi = v[f"{k}_ci95"]
        assert lo <= v[k] <= hi, (k, lo, v[k], hi)
    assert v["faults"] == sum(w["faults"] for w in v["windows"])
    assert sum(c["selected"] for c in v["comparisons"]) == 1
    assert 0.0 < v["alarm_rate_suggested"] < 1.0
    b = v["alarm_budget"]
    if b is not None:
        assert b["rate"] == v["alarm_rate_suggested"]
        assert (b["window_rows"], b["warmup_rows"]) == (train.ALARM_WINDOW_ROWS, train.ALARM_WARMUP_ROWS)
        assert b["rows"] == v["rows"] - b["warmup_rows"] + 1 and b["faults"] <= v["faults"]
        assert b["true_positives"] + b["false_positives"] == b["flagged"]
        for k in ("recall", "false_alarm_rate"):
            lo, hi = b[f"{k}_ci95"]
            assert lo <= b[k] <= hi, (k, lo, b[k], hi)
    for w in v["windows"]:
        assert w["threshold_caught"] <= w["faults"] and w["budget_caught"] <= w["budget_faults"] <= w["faults"]
        assert w["budget_rows"] <= w["rows"] and w["shipped_threshold_caught"] <= w["faults"]
        assert 0.0 <= w["threshold_flagged"] <= 1.0 and 0.0 <= w["shipped_threshold_flagged"] <= 1.0
        assert (w["budget_flagged"] is None) == (w["budget_rows"] == 0)
        assert w["budget_flagged"] is None or 0.0 <= w["budget_flagged"] <= 1.0
    # the windows' counts add up to the pooled ones
    assert sum(w["rows"] for w in v["windows"]) == v["rows"]
    assert sum(w["threshold_caught"] for w in v["windows"]) == v["true_positives"]
    assert round(sum(w["threshold_flagged"] * w["rows"] for w in v["windows"])) == v["flagged"]
    # and the budget's, over the wafers it decided, to its own totals
    if b is not None:
        assert sum(w["budget_rows"] for w in v["windows"]) == b["rows"]
        assert sum(w["budget_faults"] for w in v["windows"]) == b["faults"]
        assert sum(w["budget_caught"] for w in v["windows"]) == b["true_positives"]
        assert round(sum((w["budget_flagged"] or 0) * w["budget_rows"] for w in v["windows"])) == b["flagged"]
    # the expectation's per-window figures are the windows' own
    late = v["windows"][len(v["windows"]) // 2:]
    late_faults = sum(w["faults"] for w in late)
    assert f"{sum(w['threshold_caught'] for w in late)} of their {late_faults} faults." in v["expectation"]
    assert f"catches {sum(w['shipped_threshold_caught'] for w in late)} of their {late_faults}" in v["expectation"]
    t = card["training"]
    assert t["n_trees"] > 0 and t["seed"] == 42 and t["model"] in ("logistic-rank", "xgboost", "blend")
    dropped = t["dropped_sensors"]
    assert set(dropped) == {"constant", "mostly_missing", "not_read"}
    # every sensor is read, or listed with why not, once
    lists = [t["features_used"], dropped["constant"], dropped["mostly_missing"], dropped["not_read"]]
    assert sorted(s for names in lists for s in names) == sorted(train.SENSORS)

    model = onnx.load_from_string(blob)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert {o.domain: o.version for o in model.opset_import} == {"": 17, "ai.onnx.ml": 3}
    assert model.producer_name == "faultline-training"
    assert model.doc_string == "" and len(model.metadata_props) == 0
    # node cover for exact TreeSHAP
    node = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"][0]
    hit = [a for a in node.attribute if a.name == "nodes_hitrates"]
    assert hit and len(hit[0].floats) == len([a for a in node.attribute if a.name == "nodes_treeids"][0].ints)
    assert [n.op_type for n in model.graph.node] == ["IsNaN", "Where", "TreeEnsembleClassifier"]
    meds = onnx.numpy_helper.to_array([i for i in model.graph.initializer if i.name == "medians"][0])
    assert meds.dtype == np.float32 and meds.shape == (590,) and np.all(np.isfinite(meds))
    for s, m in zip(card["sensors"], meds):
        assert (s["median"] if s["median"] is not None else 0.0) == float(m)
    ens, post, attrs = ensemble_from_onnx(model)
    assert post == "LOGISTIC"
    assert "base_values" not in attrs and "base_values_as_tensor" not in attrs
    assert set(ens.class_ids) == {0} and list(attrs["classlabels_int64s"]) == [0, 1]
    assert set(ens.nodes_modes) <= {"BRANCH_LT", "LEAF"}
    used = {train.SENSORS[f] for f, m in zip(ens.nodes_featureids, ens.nodes_modes) if m != "LEAF"}
    assert used <= set(t["features_used"])
    assert ens.n_trees == t["n_trees"]

    sess = onnx_export.ort_session(blob)
    i0 = sess.get_inputs()[0]
    assert (i0.name, i0.type, i0.shape) == ("input", "tensor(float)", ["N", 590])
    outs = {o.name: (o.type, o.shape) for o in sess.get_outputs()}
    assert outs == {"label": ("tensor(int64)", ["N"]), "probabilities": ("tensor(float)", ["N", 2])}

    # golden rows reproduce
    G, expected = train.read_golden(out_dir / "golden.csv")
    assert 50 <= len(G) <= 80
    _, proba = onnx_export.ort_predict(sess, G)
    assert np.max(np.abs(proba[:, 1] - expected)) <= 1e-5
    assert np.isnan(G).all(axis=1).sum() >= 1  # the all-missing row
    assert (np.isnan(G).mean(axis=1) > 0.5).sum() >= 5  # rows with many missing cells
    thr = {(f, np.float32(v)) for f, v, m in zip(ens.nodes_featureids, ens.nodes_values, ens.nodes_modes) if m != "LEAF"}
    on_thr = sum(any((f, g[f]) in thr for f in range(590)) for g in G)
    assert on_thr >= 10  # rows with features exactly on a split threshold

    # an independent float32 reference evaluator agrees with onnxruntime
    import make_fixture_graphs as mfg

    Xi = np.where(np.isnan(G), meds[None, :], G).astype(np.float32)
    ref = np.array([mfg.reference_proba(ens, x, "LOGISTIC")[1] for x in Xi], dtype=np.float32)
    assert np.max(np.abs(ref - proba[:, 1])) <= 1e-6
    return card
