#!/usr/bin/env python3
"""Write small hand-built TreeEnsembleClassifier graphs + onnxruntime outputs for the Rust evaluator's
parity tests (tests/fixtures/graphs/).  Deterministic: re-running writes byte-identical files.

    python training/make_fixture_graphs.py [--out-dir tests/fixtures/graphs] [--check]

Each graph: input `input` float32 [N, 8], outputs `label` int64 [N] and `probabilities` float32 [N, 2],
opsets ai.onnx 17 + ai.onnx.ml 3, ir_version 8.  Each <name>.csv has 200 seeded rows
(header f0..f7,p0,p1; empty cell = NaN; floats written with %.9g so they parse back to the same float32)
and onnxruntime's two probability columns (intra_op_num_threads=1).

The script also evaluates every graph with an independent reference implementation of the semantics
documented in tests/fixtures/graphs/README.md and fails if it disagrees with onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onnx_export  # noqa: E402
from onnx_export import TreeEnsemble  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
WIDTH = 8
N_ROWS = 200
BRANCH_MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
F32 = np.float32


# ----------------------------------------------------------------------------------------------
# graph construction
# ----------------------------------------------------------------------------------------------

def random_trees(rng, n_trees, modes, max_depth=4, weight_sign="mixed", eq_levels=None) -> TreeEnsemble:
    """Random binary trees, node ids in pre-order from 0, depth <= max_depth."""
    ens = TreeEnsemble(n_trees=n_trees)
    for t in range(n_trees):
        nodes = []  # (id, mode, feature, value, true, false, missing_true, weight)

        def grow(depth):
            nid = len(nodes)
            nodes.append(None)
            split = depth == 0 or (depth < max_depth and rng.random() < 0.7)
            if not split:
                w = F32(rng.normal(0.0, 0.6))
                if weight_sign == "nonneg":
                    w = F32(abs(w))
                nodes[nid] = (nid, "LEAF", 0, 0.0, 0, 0, 0, float(w))
                return nid, depth
            mode = modes[int(rng.integers(len(modes)))]
            feat = int(rng.integers(WIDTH))
            if mode in ("BRANCH_EQ", "BRANCH_NEQ") and eq_levels is not None:
                val = F32(eq_levels[feat][int(rng.integers(len(eq_levels[feat])))])
            else:
                val = F32(rng.normal(0.0, 1.0))
            miss = int(rng.integers(2))
            tid, d1 = grow(depth + 1)
            fid, d2 = grow(depth + 1)
            nodes[nid] = (nid, mode, feat, float(val), tid, fid, miss, None)
            return nid, max(d1, d2)

        _, depth = grow(0)
        ens.max_depth = max(ens.max_depth, depth)
        for nid, mode, feat, val, tid, fid, miss, w in nodes:
            ens.nodes_treeids.append(t)
            ens.nodes_nodeids.append(nid)
            ens.nodes_featureids.append(feat)
            ens.nodes_modes.append(mode)
            ens.nodes_values.append(val)
            ens.nodes_truenodeids.append(tid)
            ens.nodes_falsenodeids.append(fid)
            ens.nodes_missing_value_tracks_true.append(miss)
            if mode == "LEAF":
                ens.class_treeids.append(t)
                ens.class_nodeids.append(nid)
                ens.class_ids.append(0)
                ens.class_weights.append(w)
    return ens


def rows_for(rng, ens: TreeEnsemble, n=N_ROWS) -> np.ndarray:
    """float32 rows: ~10% NaN, ~25% exactly on a threshold of that feature, ~8% one float32 step off one."""
    thr = {f: [] for f in range(WIDTH)}
    for f, m, v in zip(ens.nodes_featureids, ens.nodes_modes, ens.nodes_values):
        if m != "LEAF":
            thr[f].append(F32(v))
    X = rng.normal(0.0, 1.0, size=(n, WIDTH)).astype(np.float32)
    u = rng.random((n, WIDTH))
    for i in range(n):
        for f in range(WIDTH):
            if u[i, f] < 0.10:
                X[i, f] = np.nan
            elif u[i, f] < 0.35 and thr[f]:
                X[i, f] = thr[f][int(rng.integers(len(thr[f])))]
            elif u[i, f] < 0.43 and thr[f]:
                v = thr[f][int(rng.integers(len(thr[f])))]
                X[i, f] = np.nextafter(v, F32(np.inf) if rng.random() < 0.5 else F32(-np.inf))
    X[0, :] = np.nan  # an all-missing row
    return X


# ----------------------------------------------------------------------------------------------
# reference semantics (what the README documents), independent of onnxruntime
# ----------------------------------------------------------------------------------------------

def _branch(mode, x, v):
    if mode == "BRANCH_LEQ":
        return x <= v
    if mode == "BRANCH_LT":
        return x < v
    if mode == "BRANCH_GTE":
        return x >= v
    if mode == "BRANCH_GT":
        return x > v
    if mode == "BRANCH_EQ":
        return x == v
    if mode == "BRANCH_NEQ":
        return x != v  # True for NaN
    raise ValueError(mode)


def tree_sum(ens: TreeEnsemble, x: np.ndarray) -> np.float32:
    idx = {(t, n): i for i, (t, n) in enumerate(zip(ens.nodes_treeids, ens.nodes_nodeids))}
    wt = {(t, n): F32(w) for t, n, w in zip(ens.class_treeids, ens.class_nodeids, ens.class_weights)}
    s = F32(0.0)
    for t in sorted(set(ens.nodes_treeids)):
        i = idx[(t, 0)]
        while ens.nodes_modes[i] != "LEAF":
            xv = x[ens.nodes_featureids[i]]
            go = bool(_branch(ens.nodes_modes[i], xv, F32(ens.nodes_values[i])))
            if np.isnan(xv) and ens.nodes_missing_value_tracks_true[i]:
                go = True
            i = idx[(t, ens.nodes_truenodeids[i] if go else ens.nodes_falsenodeids[i])]
        s = F32(s + wt[(t, ens.nodes_nodeids[i])])
    return s


def ort_logistic(v: np.float32) -> np.float32:
    """onnxruntime's ComputeLogistic in float32 (expf correctly rounded)."""
    v = F32(v)
    e = F32(np.exp(-abs(float(v))))
    r = F32(F32(1.0) / F32(F32(1.0) + e))
    return F32(F32(1.0) - r) if v < 0 else r


def reference_proba(ens: TreeEnsemble, x: np.ndarray, post: str, base_values=None) -> tuple:
    s = tree_sum(ens, x)
    all_nonneg = all(w >= 0 for w in ens.class_weights)
    if base_values is not None and len(base_values) == 2:
        # binary-as-multiclass path: class 0 gets the tree sum + base_values[0]; class 1 has no tree
        # contribution and (in onnxruntime 1.32) does NOT receive base_values[1]: its score is 0.
        s0 = F32(s + F32(base_values[0]))
        if post == "LOGISTIC":
            return ort_logistic(s0), ort_logistic(F32(0.0))
        return s0, F32(0.0)
    if post == "LOGISTIC":
        p1 = ort_logistic(s)
        return F32(F32(1.0) - p1), p1
    if post == "NONE":
        return (F32(F32(1.0) - s), s) if all_nonneg else (F32(-s), s)
    raise ValueError(post)


# ----------------------------------------------------------------------------------------------

def fmt(v) -> str:
    v = F32(v)
    if np.isnan(v):
        return ""
    s = "%.9g" % float(v)
    assert F32(float(s)) == v or (v == 0 and float(s) == 0)
    return s


def variants():
    rng_lt = np.random.default_rng(101)
    lt = random_trees(rng_lt, 4, ["BRANCH_LT"])
    eq_levels = [[F32(v) for v in np.round(np.random.default_rng(200 + f).normal(0, 1, 3), 2)] for f in range(WIDTH)]
    rng_modes = np.random.default_rng(202)
    while True:
        modes = random_trees(rng_modes, 5, BRANCH_MODES, eq_levels=eq_levels)
        if set(BRANCH_MODES) <= set(modes.nodes_modes):
            break
    none_mixed = random_trees(np.random.default_rng(303), 3, ["BRANCH_LT", "BRANCH_LEQ"])
    assert min(none_mixed.class_weights) < 0 < max(none_mixed.class_weights)
    none_pos = random_trees(np.random.default_rng(404), 3, ["BRANCH_LT"], weight_sign="nonneg")
    imputed = random_trees(np.random.default_rng(505), 6, ["BRANCH_LT"])
    medians = np.random.default_rng(506).normal(0.0, 0.5, WIDTH).astype(np.float32)
    return [
        # name, ensemble, post_transform, base_values, medians, row seed
        ("lt_logistic", lt, "LOGISTIC", None, None, 1001),
        ("modes_logistic", modes, "LOGISTIC", None, None, 1002),
        ("base_values_logistic", lt, "LOGISTIC", [0.0, 0.3], None, 1003),
        ("base_values_b0_logistic", lt, "LOGISTIC", [-0.25, 0.3], None, 1004),
        ("none_transform", none_mixed, "NONE", None, None, 1005),
        ("none_transform_nonneg", none_pos, "NONE", None, None, 1006),
        ("imputed", imputed, "LOGISTIC", None, medians, 1007),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=str(REPO_ROOT / "tests" / "fixtures" / "graphs"))
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, ens, post, base, med, row_seed in variants():
        model = onnx_export.build_model(ens, WIDTH, med, name, post_transform=post, base_values=base)
        blob = onnx_export.serialize(model)
        X = rows_for(np.random.default_rng(row_seed), ens)
        _, proba = onnx_export.ort_predict(blob, X)
        Xt = X if med is None else np.where(np.isnan(X), med[None, :], X).astype(np.float32)
        ref = np.array([reference_proba(ens, x, post, base) for x in Xt], dtype=np.float32)
        diff = float(np.max(np.abs(ref - proba)))
        exact = int(np.sum(np.all(ref == proba, axis=1)))
        if diff > 1e-6:
            raise SystemExit(f"{name}: reference semantics disagree with onnxruntime (max diff {diff})")
        (out / f"{name}.onnx").write_bytes(blob)
        lines = [",".join([f"f{i}" for i in range(WIDTH)] + ["p0", "p1"])]
        for x, p in zip(X, proba):
            lines.append(",".join([fmt(v) for v in x] + [fmt(p[0]), fmt(p[1])]))
        (out / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        n_nodes = len(ens.nodes_modes)
        print(f"{name:26s} trees={ens.n_trees} max_depth={ens.max_depth} nodes={n_nodes} post={post} "
              f"base_values={base} reference==ORT bit-exact rows {exact}/{len(X)} (max diff {diff:.2g})")
    xgboost_contribs(out)
    fallback_logistic(out)
    return 0


def xgboost_contribs(out: Path) -> None:
    """xgb_contribs.onnx: XGBoost depth-3 trees (with node cover as nodes_hitrates) behind median
    imputation, and xgb_contribs.csv: rows f0..f7 (empty = NaN), onnxruntime's P(fault), then
    XGBoost's own `pred_contribs` on the imputed rows (c0..c7, bias): the exact path-dependent
    TreeSHAP values the Rust explainer must reproduce."""
    import xgboost as xgb

    rng = np.random.default_rng(707)
    n = 400
    X = rng.normal(0.0, 1.0, size=(n, WIDTH)).astype(np.float32)
    logit = 1.5 * X[:, 0] - X[:, 1] * X[:, 2] + 0.8 * (X[:, 3] > 0.5) - 1.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    X[rng.random((n, WIDTH)) < 0.1] = np.nan
    med = np.nanmedian(X, axis=0).astype(np.float32)
    Z = np.where(np.isnan(X), med[None, :], X).astype(np.float32)
    params = {"objective": "binary:logistic", "base_score": 0.5, "tree_method": "exact", "max_depth": 3,
              "learning_rate": 0.3, "nthread": 1, "seed": 7, "reg_lambda": 1.0}
    booster = xgb.train(params, xgb.DMatrix(Z, label=y, nthread=1), num_boost_round=12)
    ens = onnx_export.trees_from_booster(booster, list(range(WIDTH)))
    blob = onnx_export.serialize(onnx_export.build_model(ens, WIDTH, med, "xgb_contribs"))
    R = rows_for(np.random.default_rng(1008), ens, n=N_ROWS)
    _, proba = onnx_export.ort_predict(blob, R)
    Ri = np.where(np.isnan(R), med[None, :], R).astype(np.float32)
    contribs = booster.predict(xgb.DMatrix(Ri, nthread=1), pred_contribs=True)
    (out / "xgb_contribs.onnx").write_bytes(blob)
    lines = [",".join([f"f{i}" for i in range(WIDTH)] + ["p1"] + [f"c{i}" for i in range(WIDTH)] + ["bias"])]
    for x, p, c in zip(R, proba, contribs):
        lines.append(",".join([fmt(v) for v in x] + [fmt(p[1])] + [fmt(v) for v in c]))
    (out / "xgb_contribs.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"xgb_contribs               trees={ens.n_trees} max_depth={ens.max_depth} (XGBoost pred_contribs)")


def fallback_logistic(out: Path) -> None:
    """fallback_logistic.onnx: a graph faultline does not compile natively (standard ai.onnx ops only:
    median imputation, standardisation, MatMul, Add, Sigmoid, Concat), as a user might bring from
    another tool; faultline runs it on tract-onnx. fallback_logistic.csv: rows f0..f7 (empty = NaN)
    and onnxruntime's p0, p1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(808)
    med = rng.normal(0.0, 0.5, WIDTH).astype(np.float32)
    mean = rng.normal(0.0, 0.3, WIDTH).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, WIDTH).astype(np.float32)
    w = rng.normal(0.0, 0.8, (WIDTH, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(med, "medians"), numpy_helper.from_array(mean, "mean"),
             numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(w, "weights"),
             numpy_helper.from_array(np.array([-0.4], dtype=np.float32), "bias"),
             numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one")]
    nodes = [
        helper.make_node("IsNaN", ["input"], ["isnan"], name="isnan"),
        helper.make_node("Where", ["isnan", "medians", "input"], ["imputed"], name="impute"),
        helper.make_node("Sub", ["imputed", "mean"], ["centred"], name="centre"),
        helper.make_node("Div", ["centred", "scale"], ["scaled"], name="scale_by"),
        helper.make_node("MatMul", ["scaled", "weights"], ["dot"], name="dot"),
        helper.make_node("Add", ["dot", "bias"], ["logit"], name="add_bias"),
        helper.make_node("Sigmoid", ["logit"], ["p1"], name="sigmoid"),
        helper.make_node("Sub", ["one", "p1"], ["p0"], name="complement"),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], name="concat", axis=1),
    ]
    graph = helper.make_graph(nodes, "fallback_logistic",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", WIDTH])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET_ONNX)],
                              ir_version=onnx_export.IR_VERSION, producer_name="faultline-fixtures")
    import onnx

    onnx.checker.check_model(model, full_check=True)
    blob = onnx_export.serialize(model)
    X = rng.normal(0.0, 1.0, size=(N_ROWS, WIDTH)).astype(np.float32)
    X[rng.random(X.shape) < 0.15] = np.nan
    proba = onnx_export.ort_session(blob).run(["probabilities"], {"input": X})[0]
    (out / "fallback_logistic.onnx").write_bytes(blob)
    lines = [",".join([f"f{i}" for i in range(WIDTH)] + ["p0", "p1"])]
    for x, p in zip(X, proba):
        lines.append(",".join([fmt(v) for v in x] + [fmt(p[0]), fmt(p[1])]))
    (out / "fallback_logistic.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("fallback_logistic          standard ops (faultline runs it on tract-onnx)")


if __name__ == "__main__":
    sys.exit(main())
