"""Choosing a recipe on all the faults, in time order, and saying how sure we are.

- **Pooled out-of-fold predictions over expanding time windows.** The first `start_fraction` of the rows
  only ever trains; the rest is cut into `windows` consecutive blocks, and every block is scored by the
  recipe fitted on all rows before it. The blocks' predictions are pooled and every metric is computed
  on the pool, so each number rests on every fault after the first window, not on a small last slice,
  and a model whose score level moves from one period to the next pays for it (as it will in the fab).
- **Bootstrap 95% intervals** (percentile, rows resampled with replacement, a fixed seed) for ROC-AUC,
  PR-AUC, recall and the false-alarm rate, with the number of faulty wafers behind them.
- **The simpler recipe wins unless the data says otherwise:** candidates are ordered from simplest; a more
  complex one replaces the simplest only when the paired bootstrap of its pooled ROC-AUC gain over the
  simplest has a 95% interval entirely above zero.
- **The threshold** is chosen on the pooled predictions by a fixed rule (the highest recall flagging at
  most `max_false_alarm` of good wafers), and the share of wafers it flags there is the suggested
  alarm budget.
"""

from __future__ import annotations

import math

import numpy as np

import recipes

START_FRACTION = 0.2
WINDOWS = 8
BOOTSTRAP = 1000
MAX_FALSE_ALARM = 0.20


def window_edges(n: int, start_fraction: float, windows: int) -> np.ndarray:
    start = int(math.floor(n * start_fraction + 0.5))
    return np.linspace(start, n, windows + 1).round().astype(np.int64)


def out_of_fold(X, y, recipe, seed, edges) -> np.ndarray:
    """Margins for rows edges[0]..n, each block scored by the recipe fitted on every earlier row."""
    out = np.full(len(y), np.nan)
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        if y[:a].sum() == 0:
            raise ValueError(f"the first {a} rows have no faulty wafer to fit on")
        out[a:b] = recipes.fit(X[:a], y[:a], recipe, seed).margin(X[a:b])
    return out


def _ranks(s: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(s)


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _ranks(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    if y.sum() == 0:
        return float("nan")
    return float(average_precision_score(y, s))


def choose_threshold(y: np.ndarray, p: np.ndarray, max_far: float = MAX_FALSE_ALARM) -> float:
    """Highest recall with false-alarm rate <= max_far; ties -> the highest threshold. Candidates are the
    observed float32 probabilities; a wafer is flagged when P(fault) >= threshold."""
    p = np.asarray(p, dtype=np.float32)
    if (y == 1).sum() == 0 or (y == 0).sum() == 0:
        raise ValueError("the threshold rule needs both faulty and good wafers")
    best_t, best_rec = None, -1.0
    for t in np.unique(p)[::-1]:
        flag = p >= t
        if flag[y == 0].mean() > max_far:
            break
        rec = flag[y == 1].mean()
        if rec > best_rec:
            best_t, best_rec = t, rec
    if best_t is None:
        best_t = np.nextafter(np.float32(p.max()), np.float32(np.inf))
    return float(np.float32(best_t))


def at_threshold(y: np.ndarray, p: np.ndarray, t: float) -> dict:
    flag = np.asarray(p, dtype=np.float32) >= np.float32(t)
    tp = int((flag & (y == 1)).sum())
    fp = int((flag & (y == 0)).sum())
    pos, neg = int((y == 1).sum()), int((y == 0).sum())
    return {"recall": tp / pos if pos else float("nan"), "false_alarm_rate": fp / neg if neg else float("nan"),
            "flagged": int(flag.sum()), "true_positives": tp, "false_positives": fp}


def bootstrap_indices(n: int, seed: int, b: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(b, n))


def interval(values) -> list:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return [None, None]
    lo, hi = np.percentile(v, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def bootstrap_roc_auc(y, s, boot) -> np.ndarray:
    """ROC-AUC of `s` on every bootstrap resample (computed once per candidate, used for its interval
    and for the paired comparison)."""
    return np.asarray([roc_auc(y[i], s[i]) for i in boot])


def ranking_with_intervals(y, s, boot, aucs=None) -> dict:
    aucs = bootstrap_roc_auc(y, s, boot) if aucs is None else aucs
    return {"roc_auc": roc_auc(y, s), "pr_auc": average_precision(y, s),
            "roc_auc_ci95": interval(aucs),
            "pr_auc_ci95": interval(average_precision(y[i], s[i]) for i in boot)}


def threshold_with_intervals(y, p, t, boot) -> dict:
    m = at_threshold(y, p, t)
    per = [at_threshold(y[i], p[i], t) for i in boot]
    m["recall_ci95"] = interval(x["recall"] for x in per)
    m["false_alarm_rate_ci95"] = interval(x["false_alarm_rate"] for x in per)
    return m


def pick(y, margins: dict, order: list, boot, aucs: dict | None = None) -> tuple:
    """(chosen name, {name: gain interval over the simplest}) by the paired-bootstrap rule. `aucs` holds
    each candidate's bootstrap ROC-AUCs on `boot` when they were computed already."""
    aucs = dict(aucs or {})
    for name in order:
        if name not in aucs:
            aucs[name] = bootstrap_roc_auc(y, margins[name], boot)
    simplest = order[0]
    gains, better = {}, []
    for name in order[1:]:
        diff = aucs[name] - aucs[simplest]
        gi = interval(diff)
        gains[name] = gi
        if gi[0] is not None and gi[0] > 0:
            better.append(name)
    if not better:
        return simplest, gains
    return max(better, key=lambda k: (roc_auc(y, margins[k]), -order.index(k))), gains


def alarm_budget(p: np.ndarray, threshold: float, rate: float, window_rows: int, warmup_rows: int):
    """What faultline's alarm budget (`[model] alarm_rate`, src/model/decide.rs) decides for the scores
    `p` in their order, from an empty window: (flagged, decided_by_budget), two boolean arrays.

    The same rule as the daemon's, step for step in float32: a wafer is flagged when its P(fault) is at
    least the smallest of the top ceil(rate * n) scores of the last `window_rows` wafers (itself
    included, n of them), and above it when more scores than that are at or above it (ties at the
    cutoff are flagged only while they all fit, or when the fixed threshold flags them); until the
    window holds `warmup_rows` wafers the fixed threshold decides. A NaN score is not flagged and does not enter the window."""
    import bisect
    from collections import deque

    p = np.asarray(p, dtype=np.float32)
    t = np.float32(threshold)
    recent, ordered = deque(), []
    flagged = np.zeros(len(p), dtype=bool)
    by_budget = np.zeros(len(p), dtype=bool)
    for i, x in enumerate(p):
        if np.isnan(x):
            continue
        if len(recent) == window_rows:
            old = recent.popleft()
            del ordered[bisect.bisect_left(ordered, old)]
        recent.append(x)
        bisect.insort_left(ordered, x)
        n = len(ordered)
        if n < max(warmup_rows, 1):
            flagged[i] = x >= t
            continue
        k = min(max(math.ceil(rate * n - 1e-9), 1), n)  # as decide.rs: 0.07 * 200 flags 14, not 15
        cut = ordered[n - k]
        # ties past the share: only those above, unless the fixed threshold flags the tie itself
        if n - bisect.bisect_left(ordered, cut) > k and not cut >= t:  # as decide.rs, NaN too
            cut = np.nextafter(np.float32(cut), np.float32(np.inf))
        flagged[i] = x >= cut
        by_budget[i] = True
    return flagged, by_budget


def flags_with_intervals(y: np.ndarray, flagged: np.ndarray, boot) -> dict:
    """Recall and false-alarm rate of given flags, with bootstrap intervals over the same rows."""
    def counts(yy, ff):
        tp, fp = int((ff & (yy == 1)).sum()), int((ff & (yy == 0)).sum())
        pos, neg = int((yy == 1).sum()), int((yy == 0).sum())
        return {"recall": tp / pos if pos else float("nan"),
                "false_alarm_rate": fp / neg if neg else float("nan"),
                "flagged": int(ff.sum()), "true_positives": tp, "false_positives": fp,
                "rows": len(yy), "faults": pos}

    m = counts(y, flagged)
    per = [counts(y[i], flagged[i]) for i in boot]
    m["recall_ci95"] = interval(x["recall"] for x in per)
    m["false_alarm_rate_ci95"] = interval(x["false_alarm_rate"] for x in per)
    return m
