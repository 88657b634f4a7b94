"""The model families training compares, each fitted the way it is served.

Every recipe turns training rows into an additive model of trees over the raw (median-imputed) sensors,
so that one `TreeEnsembleClassifier` serves all of them and faultline's native evaluator and exact
TreeSHAP explain all of them:

- **logistic-rank**: each usable sensor is median-imputed and mapped to its training rank (the empirical
  CDF at up to `bins` training quantiles: a monotone step function, flat outside the training range, so
  an outlier cannot push the score further than the most extreme training value), standardised, and a
  strongly L2-regularised logistic regression is fitted on all of them. Exported as one tree per sensor
  whose leaves are that sensor's term `w_j * (rank_j(x) - mean_j) / sd_j`; the intercept rides on the
  first tree's leaves. Exactly the fitted model, in float32.
- **xgboost**: gradient-boosted trees (depth 1..3, strongly regularised), exported from the booster's own
  JSON (see `onnx_export.trees_from_booster`).
- **blend**: the mean of a logistic-rank and an xgboost margin (both trees, leaf weights halved).

Drift-aware variants train on a recent window of rows or weight rows by age (a half-life in rows).
Every leaf and every node carries its training cover (`nodes_hitrates`): the share of training rows (or,
for xgboost, the hessian sum) that reaches it, which path-dependent TreeSHAP needs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

import onnx_export
from onnx_export import TreeEnsemble

MOSTLY_MISSING = 0.5  # drop a sensor when more than this share of training rows is empty

XGB_BASE = {
    "objective": "binary:logistic",
    "base_score": 0.5,
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_bin": 256,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "min_child_weight": 2.0,
    "reg_lambda": 5.0,
    "reg_alpha": 0.0,
    "gamma": 0.0,
    "nthread": 1,
}


@dataclass(frozen=True)
class Recipe:
    """One candidate: a family and its few settings. `complexity` orders candidates from simplest."""

    name: str
    family: str  # "logistic-rank" | "xgboost" | "blend"
    complexity: int
    l2: float = 1.0  # logistic: penalty per training row on the mean log-loss (C = 1 / (l2 * n))
    bins: int = 32  # logistic: quantile levels per sensor
    depth: int = 1  # xgboost
    rounds: int = 150  # xgboost
    reg_lambda: float = 5.0  # xgboost
    min_child_weight: float = 2.0  # xgboost
    top_k: int | None = None  # logistic: keep the k sensors with the strongest univariate ranking
    recent_rows: int | None = None  # drift-aware: fit on the latest rows only
    half_life_rows: float | None = None  # drift-aware: row weight halves every this many rows back

    def describe(self) -> str:
        if self.family == "logistic-rank":
            s = (f"L2 logistic regression (penalty {self.l2:g} per row) on every usable sensor, median-imputed and "
                 f"mapped to its training rank at up to {self.bins} quantiles, standardised")
        elif self.family == "xgboost":
            s = (f"XGBoost, {self.rounds} trees of depth {self.depth}, eta 0.05, lambda {self.reg_lambda:g}, "
                 f"min_child_weight {self.min_child_weight:g}, subsample 0.8, colsample 0.5, median-imputed")
        else:
            s = "mean of the margins of logistic-rank (penalty 1) and XGBoost depth 1"
        if self.top_k:
            s += (f"; only the {self.top_k} sensors whose rank best separates faulty from good wafers on the "
                  f"fitting rows (univariate |ROC-AUC - 0.5|)")
        if self.recent_rows:
            s += f"; fitted on the latest {self.recent_rows} rows only"
        if self.half_life_rows:
            s += f"; rows weighted by age (half-life {self.half_life_rows:g} rows)"
        return s

    def as_dict(self) -> dict:
        d = {"name": self.name, "family": self.family, "complexity": self.complexity}
        if self.family in ("logistic-rank", "blend"):
            d.update(l2=self.l2, bins=self.bins)
        if self.family in ("xgboost", "blend"):
            d.update(depth=self.depth, rounds=self.rounds, reg_lambda=self.reg_lambda,
                     min_child_weight=self.min_child_weight)
        d.update(top_k=self.top_k, recent_rows=self.recent_rows, half_life_rows=self.half_life_rows)
        return d


def candidates(kind: str) -> list:
    """The candidates, simplest first. A small, fixed list: a wide search on ~65 faults fits noise."""
    simple = Recipe("logistic-rank", "logistic-rank", 1, l2=1.0)
    if kind == "quick":  # for tests: every family and code path, cheap
        return [simple, Recipe("xgboost-depth1", "xgboost", 2, depth=1, rounds=30),
                Recipe("logistic-rank/half-life-100", "logistic-rank", 3, l2=1.0, half_life_rows=100.0),
                Recipe("blend", "blend", 4, l2=1.0, depth=1, rounds=30)]
    return [
        simple,
        Recipe("logistic-rank/weak-penalty", "logistic-rank", 2, l2=0.1),
        Recipe("logistic-rank/top-50-univariate", "logistic-rank", 2, l2=1.0, top_k=50),
        Recipe("logistic-rank/half-life-400", "logistic-rank", 3, l2=1.0, half_life_rows=400.0),
        Recipe("logistic-rank/recent-500", "logistic-rank", 3, l2=1.0, recent_rows=500),
        Recipe("xgboost-depth1", "xgboost", 4, depth=1),
        Recipe("xgboost-depth2", "xgboost", 5, depth=2),
        Recipe("xgboost-depth3-strong", "xgboost", 6, depth=3, reg_lambda=20.0, min_child_weight=5.0),
        Recipe("blend", "blend", 7, l2=1.0, depth=1),
    ]


# --------------------------------------------------------------------------------------
# shared preprocessing
# --------------------------------------------------------------------------------------

def graph_medians(X: np.ndarray) -> np.ndarray:
    """float32 [width] imputation constants; all-empty columns -> 0.0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(X, axis=0)
    return np.where(np.isnan(med), 0.0, med).astype(np.float32)


def impute(X: np.ndarray, med32: np.ndarray) -> np.ndarray:
    """Exactly what the ONNX graph does: cast to float32, NaN -> median."""
    Z = np.asarray(X, dtype=np.float32)
    return np.where(np.isnan(Z), med32[None, :], Z).astype(np.float32)


def usable_columns(X: np.ndarray):
    """(kept column indices, {"constant": [...], "mostly_missing": [...]}) on these rows."""
    miss = np.isnan(X).mean(axis=0)
    mostly_missing, constant = [], []
    for j in range(X.shape[1]):
        if miss[j] > MOSTLY_MISSING:
            mostly_missing.append(j)
            continue
        c = X[:, j]
        c = c[~np.isnan(c)]
        if c.size == 0 or np.all(c == c[0]):
            constant.append(j)
    dropped = set(mostly_missing) | set(constant)
    keep = np.array([j for j in range(X.shape[1]) if j not in dropped], dtype=np.int64)
    return keep, {"constant": constant, "mostly_missing": mostly_missing}


def row_weights(n: int, recipe: Recipe) -> np.ndarray | None:
    if not recipe.half_life_rows:
        return None
    age = (n - 1 - np.arange(n)).astype(np.float64)
    w = 0.5 ** (age / recipe.half_life_rows)
    return w * (n / w.sum())


# --------------------------------------------------------------------------------------
# fitted models: all are additive tree models
# --------------------------------------------------------------------------------------

@dataclass
class Fitted:
    recipe: Recipe
    trees: TreeEnsemble  # leaves in margin units, features as original column indices, with hitrates
    medians: np.ndarray  # float32 [width]
    columns: np.ndarray  # the sensors the model reads
    dropped: dict
    detail: dict  # family-specific facts for the card

    def margin(self, X: np.ndarray) -> np.ndarray:
        """The exported model's margin (log-odds) for raw rows (NaN = missing), float64."""
        return tree_margins(self.trees, impute(X, self.medians))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.margin(X)))).astype(np.float32)


def tree_margins(ens: TreeEnsemble, Z: np.ndarray) -> np.ndarray:
    """Sums leaf weights of BRANCH_LT trees over imputed float32 rows (a vectorised walk; node ids of a
    tree are 0..k-1 with the root at 0, as both exporters write them)."""
    n = Z.shape[0]
    out = np.zeros(n, dtype=np.float64)
    tid = np.asarray(ens.nodes_treeids)
    nid = np.asarray(ens.nodes_nodeids)
    feat_all = np.asarray(ens.nodes_featureids)
    thr_all = np.asarray(ens.nodes_values, dtype=np.float32)
    yes_all = np.asarray(ens.nodes_truenodeids)
    no_all = np.asarray(ens.nodes_falsenodeids)
    leaf_all = np.asarray([m == "LEAF" for m in ens.nodes_modes])
    weight = {(t, nd): w for t, nd, w in zip(ens.class_treeids, ens.class_nodeids, ens.class_weights)}
    rows = np.arange(n)
    for t in np.unique(tid):
        sel = np.flatnonzero(tid == t)
        k = int(nid[sel].max()) + 1
        feat = np.zeros(k, dtype=np.int64)
        thr = np.zeros(k, dtype=np.float32)
        yes = np.zeros(k, dtype=np.int64)
        no = np.zeros(k, dtype=np.int64)
        leaf = np.zeros(k, dtype=bool)
        w = np.zeros(k, dtype=np.float64)
        for i in sel:
            d = nid[i]
            feat[d], thr[d], yes[d], no[d], leaf[d] = feat_all[i], thr_all[i], yes_all[i], no_all[i], leaf_all[i]
            w[d] = np.float32(weight.get((int(t), int(d)), 0.0))
        yes[leaf] = np.flatnonzero(leaf)
        no[leaf] = np.flatnonzero(leaf)
        at = np.zeros(n, dtype=np.int64)
        while not leaf[at].all():
            x = Z[rows, feat[at]]
            at = np.where(x < thr[at], yes[at], no[at])
        out += w[at]
    return out


def _rank_edges(z: np.ndarray, bins: int) -> np.ndarray:
    """float32 quantile edges of one imputed column such that every bin holds at least one training row.
    A value's bin is the number of edges <= it (BRANCH_LT: x < edge goes to the lower side)."""
    qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(np.quantile(z.astype(np.float64), qs).astype(np.float32))
    while True:
        b = np.searchsorted(edges, z, side="right")
        counts = np.bincount(b, minlength=len(edges) + 1)
        empty = np.flatnonzero(counts == 0)
        if empty.size == 0:
            return edges
        k = int(empty[0])  # bin k lies between edges k-1 and k: drop edge k (or the last one)
        edges = np.delete(edges, min(k, len(edges) - 1))


def _step_tree(ens: TreeEnsemble, t: int, feature: int, edges: np.ndarray, leaves: np.ndarray,
               counts: np.ndarray) -> int:
    """Appends a balanced BRANCH_LT tree over `edges` (bin b = #edges <= x) to `ens`; returns its depth."""
    nodes = []  # (mode, feature, value, true, false, weight, cover)

    def grow(lo, hi, depth):  # bins lo..hi inclusive
        nid = len(nodes)
        nodes.append(None)
        cover = float(counts[lo:hi + 1].sum())
        if lo == hi:
            nodes[nid] = ("LEAF", 0, 0.0, 0, 0, float(leaves[lo]), cover)
            return depth
        mid = (lo + hi + 1) // 2  # x < edges[mid-1] -> bins lo..mid-1
        dl = grow(lo, mid - 1, depth + 1)
        right = len(nodes)
        dr = grow(mid, hi, depth + 1)
        nodes[nid] = ("BRANCH_LT", feature, float(edges[mid - 1]), nid + 1, right, 0.0, cover)
        return max(dl, dr)

    depth = grow(0, len(edges), 0)
    for nid, (mode, f, v, tr, fa, w, cover) in enumerate(nodes):
        ens.nodes_treeids.append(t)
        ens.nodes_nodeids.append(nid)
        ens.nodes_featureids.append(f)
        ens.nodes_modes.append(mode)
        ens.nodes_values.append(onnx_export._f32(v))
        ens.nodes_truenodeids.append(tr)
        ens.nodes_falsenodeids.append(fa)
        ens.nodes_missing_value_tracks_true.append(0)
        ens.nodes_hitrates.append(cover)
        if mode == "LEAF":
            ens.class_treeids.append(t)
            ens.class_nodeids.append(nid)
            ens.class_ids.append(0)
            ens.class_weights.append(onnx_export._f32(w))
    return depth


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC of scores `s` for labels `y` (ties get average ranks); 0.5 with one class only."""
    from scipy.stats import rankdata

    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return 0.5
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def fit_logistic_rank(X: np.ndarray, y: np.ndarray, recipe: Recipe, w: np.ndarray | None) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    med32 = graph_medians(X)
    keep, dropped = usable_columns(X)
    Z = impute(X, med32)[:, keep]
    n = len(y)
    edges = [_rank_edges(Z[:, k], recipe.bins) for k in range(len(keep))]
    bins = [np.searchsorted(e, Z[:, k], side="right") for k, e in enumerate(edges)]
    R = np.stack([b / max(len(e), 1) for b, e in zip(bins, edges)], axis=1)
    mu = R.mean(axis=0)
    sd = R.std(axis=0)
    sd[sd == 0] = 1.0
    S = (R - mu) / sd
    chosen = np.arange(len(keep))
    if recipe.top_k and recipe.top_k < len(keep):
        strength = np.abs(np.array([_auc(y, S[:, k]) for k in range(len(keep))]) - 0.5)
        chosen = np.sort(np.argsort(-strength, kind="stable")[:recipe.top_k])
    lr = LogisticRegression(C=1.0 / (recipe.l2 * n), max_iter=5000, tol=1e-8)
    lr.fit(S[:, chosen], y, sample_weight=w)
    coef = np.zeros(len(keep))
    coef[chosen] = lr.coef_[0]
    intercept = float(lr.intercept_[0])
    in_model = np.zeros(len(keep), dtype=bool)
    in_model[chosen] = True
    ens = TreeEnsemble()
    t = 0
    read = []
    for k, j in enumerate(keep):
        e = edges[k]
        if len(e) == 0 or not in_model[k]:  # a constant term (one value after imputation), or not chosen
            continue
        read.append(int(j))
        levels = np.arange(len(e) + 1) / max(len(e), 1)
        leaves = coef[k] * (levels - mu[k]) / sd[k]
        if t == 0:
            leaves = leaves + intercept
        counts = np.bincount(bins[k], minlength=len(e) + 1).astype(np.float64)
        d = _step_tree(ens, t, int(j), e, leaves.astype(np.float32), counts)
        ens.max_depth = max(ens.max_depth, d)
        t += 1
    ens.n_trees = t
    detail = {"intercept": intercept, "l2_per_row": recipe.l2, "C": 1.0 / (recipe.l2 * n),
              "coefficients": {int(keep[k]): float(coef[k]) for k in chosen},
              # the regression's own pieces, per sensor it reads: the term is coef * (rank - mean) / sd
              "terms": {int(keep[k]): (edges[k], float(coef[k]), float(mu[k]), float(sd[k])) for k in chosen}}
    return Fitted(recipe, ens, med32, np.asarray(read, dtype=np.int64), dropped, detail)


def fit_xgboost(X: np.ndarray, y: np.ndarray, recipe: Recipe, w: np.ndarray | None, seed: int) -> Fitted:
    import xgboost as xgb

    med32 = graph_medians(X)
    keep, dropped = usable_columns(X)
    Z = impute(X, med32)[:, keep]
    params = dict(XGB_BASE, max_depth=recipe.depth, reg_lambda=recipe.reg_lambda,
                  min_child_weight=recipe.min_child_weight, seed=seed)
    booster = xgb.train(params, xgb.DMatrix(Z, label=y, weight=w, nthread=1), num_boost_round=recipe.rounds)
    ens = onnx_export.trees_from_booster(booster, keep)
    used = sorted({f for f, m in zip(ens.nodes_featureids, ens.nodes_modes) if m != "LEAF"})
    detail = {"params": dict(params, n_estimators=recipe.rounds), "booster": booster, "keep": keep}
    return Fitted(recipe, ens, med32, np.asarray(used, dtype=np.int64), dropped, detail)


def merge(parts: list, scale: float) -> TreeEnsemble:
    """Concatenates ensembles, every leaf weight multiplied by `scale` (the blend's mean)."""
    out = TreeEnsemble()
    offset = 0
    for ens in parts:
        for k in ("nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values", "nodes_truenodeids",
                  "nodes_falsenodeids", "nodes_missing_value_tracks_true", "nodes_hitrates", "class_nodeids",
                  "class_ids"):
            getattr(out, k).extend(getattr(ens, k))
        out.nodes_treeids.extend(t + offset for t in ens.nodes_treeids)
        out.class_treeids.extend(t + offset for t in ens.class_treeids)
        out.class_weights.extend(onnx_export._f32(w * scale) for w in ens.class_weights)
        offset += ens.n_trees
        out.max_depth = max(out.max_depth, ens.max_depth)
    out.n_trees = offset
    return out


def fit(X: np.ndarray, y: np.ndarray, recipe: Recipe, seed: int) -> Fitted:
    """Fits `recipe` on rows in production order (the window and weights apply to their order)."""
    if recipe.recent_rows and len(y) > recipe.recent_rows and y[-recipe.recent_rows:].sum() > 0:
        X, y = X[-recipe.recent_rows:], y[-recipe.recent_rows:]
    w = row_weights(len(y), recipe)
    if recipe.family == "logistic-rank":
        return fit_logistic_rank(X, y, recipe, w)
    if recipe.family == "xgboost":
        return fit_xgboost(X, y, recipe, w, seed)
    a = fit_logistic_rank(X, y, recipe, w)
    b = fit_xgboost(X, y, recipe, w, seed)
    cols = np.union1d(a.columns, b.columns)
    return Fitted(recipe, merge([a.trees, b.trees], 0.5), a.medians, cols, a.dropped,
                  {"parts": [a.detail | {"family": "logistic-rank"}, {"params": b.detail["params"]}]})
