#!/usr/bin/env python3
"""Train faultline's wafer-fault model and export it as ONNX + model card + golden rows.

    python training/train.py [--input CSV ...] [--since T] [--until T] [--output-dir models/wafer-fault]
                             [--seed 42] [--validation-fraction 0.2] [--grid full|quick]

Label: Good/Bad = +1 means the wafer is FAULTY (-> 1), -1 means good (-> 0).

Several inputs are concatenated in the order given (which must be production order).  A file may end with an
extra `Time` column (RFC 3339, when the daemon scored the wafer; `faultline export --labelled` writes it); it is
never a feature.  `--since` (inclusive) / `--until` (exclusive) keep only the rows whose `Time` is in the window;
every input must then have a `Time` column.

Validation is time-ordered: rows are in production order, the latest `validation-fraction`
of the rows is held out (never shuffled).  Hyper-parameters are chosen among a small grid by
an inner expanding-window time-series CV on the earlier rows only; the held-out rows are used
once, to report the chosen model (and, for transparency, every grid point) and to pick the
decision threshold by a fixed rule.  The chosen settings are then refit on ALL rows (same
number of trees) and exported.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import hashlib
import json
import math
import platform
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import onnx_export  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = "../shared/data/wafer/wafer_train.csv"  # relative to the repo root
DEFAULT_OUTPUT = "models/wafer-fault"  # relative to the repo root
MODEL_NAME = "wafer-fault"

N_SENSORS = 590
SENSORS = [f"Sensor-{i}" for i in range(1, N_SENSORS + 1)]
LABEL = "Good/Bad"
TIME = "Time"  # optional final column: when the wafer was scored (RFC 3339), never a feature

MOSTLY_MISSING = 0.5  # drop a sensor when more than this share of training rows is empty
MAX_FALSE_ALARM = 0.20  # threshold rule: at most this share of good wafers flagged
PARITY_TOL = 1e-5
INNER_SPLITS = 4
SEED_SPREAD = 5  # extra seeds refit on the earlier rows to show how seed-dependent the holdout numbers are

# Fixed booster settings shared by every grid point (shallow, regularised, subsampled).
BASE_PARAMS = {
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
N_ESTIMATORS = 150
DRIFT_MAX = 0.15  # drop a sensor whose first-half vs second-half AUC is outside 0.5 +- DRIFT_MAX
TOP_K = 40

TARGETS = {"roc_auc": 0.72, "pr_auc": 0.15, "recall": 0.50, "false_alarm_rate": 0.20}


class InputError(ValueError):
    """The inputs cannot be used for training: a bad file, a bad time window, or too few rows left."""


class SchemaError(InputError):
    """The input file does not follow the wafer schema."""


# --------------------------------------------------------------------------------------
# time window
# --------------------------------------------------------------------------------------

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_TIME_RE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<hms>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?(?P<tz>[Zz]|[+-]\d{2}:\d{2}))?", re.ASCII)
TIME_EXAMPLE = "2026-11-26T12:00:01.123Z"


def parse_time(text: str, allow_date: bool = False) -> int:
    """RFC 3339 date-time with a UTC offset ('Z' or +hh:mm) -> integer nanoseconds since the Unix epoch.
    Fractions of a second up to nanoseconds are kept exactly (digits beyond 9 are truncated).  With
    `allow_date`, a bare date YYYY-MM-DD means midnight UTC.  Raises ValueError with a short reason."""
    s = text.strip()
    m = _TIME_RE.fullmatch(s)
    if not m or (m.group("hms") is None and not allow_date):
        raise ValueError(f"{text!r} is not an RFC 3339 time with a UTC offset (e.g. {TIME_EXAMPLE})")
    try:
        if m.group("hms") is None:
            t = _dt.datetime.fromisoformat(m.group("date")).replace(tzinfo=_dt.timezone.utc)
        else:
            tz = m.group("tz").upper()
            t = _dt.datetime.fromisoformat(f"{m.group('date')}T{m.group('hms')}{'+00:00' if tz == 'Z' else tz}")
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid time ({e})") from None
    frac = (m.group("frac") or "")[:9].ljust(9, "0")
    return ((t - _EPOCH) // _dt.timedelta(seconds=1)) * 1_000_000_000 + int(frac)


def format_time(ns: int) -> str:
    """Integer nanoseconds since the epoch -> canonical RFC 3339 UTC ('...Z', fraction only when non-zero)."""
    sec, frac = divmod(ns, 1_000_000_000)
    t = _EPOCH + _dt.timedelta(seconds=sec)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        s += "." + f"{frac:09d}".rstrip("0")
    return s + "Z"


def _time_arg(text: str) -> int:
    try:
        return parse_time(text, allow_date=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# --------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------

@dataclass
class WaferData:
    ids: list
    X: np.ndarray  # float64 [n, 590], NaN = missing
    y: np.ndarray  # int64 [n], 1 = faulty
    files: list = field(default_factory=list)  # [{"path", "sha256", "rows", "rows_read", "rows_used", "time_column"}]
    times: list = field(default_factory=list)  # per row: the raw Time cell, or None when the file has no Time column
    time_ns: list = field(default_factory=list)  # per row: the parsed Time (ns since the epoch); only with a window
    lines: list = field(default_factory=list)  # per row: its line number in its file
    sources: list = field(default_factory=list)  # per row: index into `files`
    notes: list = field(default_factory=list)  # things worth printing (not errors)


def validate_header(header: list, path: str) -> bool:
    """Checks the wafer batch-file header; returns True when it ends with the extra `Time` column."""
    n = len(header)
    names = [h.strip() for h in header]
    expected = 1 + N_SENSORS + 1
    if n == 1 + N_SENSORS and names[1:] == SENSORS:
        raise SchemaError(
            f"{path}: {n} columns and no label column: expected '' (wafer id), Sensor-1..Sensor-590 and "
            f"'{LABEL}' (592 columns). This looks like an unlabelled prediction batch."
        )
    if n == 2 + N_SENSORS and names[1:-1] == SENSORS and names[-1] == TIME:
        raise SchemaError(
            f"{path}: {n} columns and no label column: expected '' (wafer id), Sensor-1..Sensor-590, "
            f"'{LABEL}' and then '{TIME}' (593 columns). This looks like an unlabelled export."
        )
    has_time = n == expected + 1
    if n not in (expected, expected + 1):
        raise SchemaError(
            f"{path}: expected {expected} columns ('' wafer id, Sensor-1..Sensor-590, '{LABEL}'), "
            f"or {expected + 1} with a final '{TIME}' column, got {n}"
        )
    if names[0] != "":
        raise SchemaError(f"{path}: the first header cell (wafer id column) must be empty, got {header[0]!r}")
    for i, (got, want) in enumerate(zip(names[1:1 + N_SENSORS], SENSORS)):
        if got != want:
            raise SchemaError(f"{path}: header column {i + 2} must be {want!r}, got {header[i + 1]!r}")
    if has_time and names[-1] != TIME:
        raise SchemaError(f"{path}: {n} columns, so the last header column must be {TIME!r} (after {LABEL!r}), "
                          f"got {header[-1]!r}")
    if names[1 + N_SENSORS] != LABEL:
        col = "the last header column" if not has_time else f"header column {N_SENSORS + 2} (before {TIME!r})"
        raise SchemaError(f"{path}: {col} must be the label {LABEL!r}, got {header[1 + N_SENSORS]!r}")
    return has_time


def read_wafer_csv(path: str, name: str | None = None) -> WaferData:
    """One labelled wafer CSV.  `name` (default: `path`) is how messages and the card name the file.
    A final `Time` column is kept as raw text per row (never a feature); it is parsed only by `read_inputs`
    when a time window is asked for."""
    name = path if name is None else name
    p = Path(path)
    raw = p.read_bytes()
    text = raw.decode("utf-8-sig")
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise SchemaError(f"{name}: empty file") from None
    has_time = validate_header(header, name)
    label_col = 1 + N_SENSORS
    ids, rows, labels, times, lines = [], [], [], [], []
    for lineno, rec in enumerate(reader, start=2):
        if not rec or all(c.strip() == "" for c in rec):
            continue
        if len(rec) != len(header):
            raise SchemaError(f"{name}:{lineno}: expected {len(header)} fields, got {len(rec)}")
        wid = rec[0].strip()
        if not wid:
            raise SchemaError(f"{name}:{lineno}: empty wafer id")
        vals = []
        for j, cell in enumerate(rec[1:1 + N_SENSORS]):
            c = cell.strip()
            if c == "":
                vals.append(math.nan)
                continue
            try:
                v = float(c)
            except ValueError:
                raise SchemaError(f"{name}:{lineno}: {SENSORS[j]} is not a number: {cell!r}") from None
            if not math.isfinite(v):
                raise SchemaError(f"{name}:{lineno}: {SENSORS[j]} is not finite: {cell!r} (use an empty cell for missing)")
            vals.append(v)
        lab = rec[label_col].strip()
        try:
            lv = float(lab)
        except ValueError:
            raise SchemaError(f"{name}:{lineno}: label {LABEL} must be +1 or -1, got {lab!r}") from None
        if lv == 1.0:
            labels.append(1)
        elif lv == -1.0:
            labels.append(0)
        else:
            raise SchemaError(f"{name}:{lineno}: label {LABEL} must be +1 or -1, got {lab!r}")
        ids.append(wid)
        rows.append(vals)
        times.append(rec[label_col + 1].strip() if has_time else None)
        lines.append(lineno)
    if not rows:
        raise SchemaError(f"{name}: no data rows")
    X = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    info = {"path": name, "sha256": hashlib.sha256(raw).hexdigest(), "rows": int(len(y)),
            "rows_read": int(len(y)), "rows_used": int(len(y)), "time_column": has_time}
    return WaferData(ids, X, y, [info], times, [None] * len(y), lines, [0] * len(y))


def read_inputs(paths: list, display: list | None = None, since: int | None = None,
                until: int | None = None) -> WaferData:
    """Reads every file and concatenates the rows in the order given (file by file, each file's rows in file
    order; never re-sorted).  With a window (`since` inclusive, `until` exclusive; nanoseconds since the epoch)
    only rows whose `Time` falls inside it are kept; then every file must have a `Time` column and every row a
    valid time.  `display` names the files in messages and in the card (default: the paths)."""
    display = [str(p) for p in paths] if display is None else list(display)
    window = since is not None or until is not None
    if since is not None and until is not None and since >= until:
        raise InputError(f"empty time window: --since {format_time(since)} is not before --until {format_time(until)}")
    parts = []
    for p, shown in zip(paths, display):
        d = read_wafer_csv(str(p), shown)
        info = d.files[0]
        if window:
            if not info["time_column"]:
                raise InputError(
                    f"{shown} has no '{TIME}' column, so --since/--until cannot tell which of its rows are in the "
                    f"window; train without a window, or pass only files with a final '{TIME}' column "
                    f"(as written by `faultline export --labelled`)")
            keep = np.zeros(len(d.y), dtype=bool)
            ns = []
            for r, (cell, lineno) in enumerate(zip(d.times, d.lines)):
                if cell == "":
                    raise InputError(f"{shown}:{lineno}: empty {TIME}, so --since/--until cannot place wafer "
                                     f"{d.ids[r]!r} in the window")
                try:
                    t = parse_time(cell)
                except ValueError as e:
                    raise InputError(f"{shown}:{lineno}: {TIME} of wafer {d.ids[r]!r}: {e}") from None
                ns.append(t)
                keep[r] = (since is None or t >= since) and (until is None or t < until)
            idx = np.flatnonzero(keep)
            d = WaferData([d.ids[i] for i in idx], d.X[idx], d.y[idx], d.files, [d.times[i] for i in idx],
                          [ns[i] for i in idx], [d.lines[i] for i in idx], [0] * len(idx))
            info["rows_used"] = info["rows"] = int(len(idx))
        parts.append(d)

    ids, times, time_ns, lines, sources = [], [], [], [], []
    for k, d in enumerate(parts):
        ids += d.ids
        times += d.times
        time_ns += d.time_ns
        lines += d.lines
        sources += [k] * len(d.ids)
    files = [d.files[0] for d in parts]
    seen = {}
    for i, wid in enumerate(ids):
        if wid in seen:
            j = seen[wid]
            raise SchemaError(f"wafer id {wid!r} appears more than once in the inputs: "
                              f"{files[sources[j]]['path']}:{lines[j]} and {files[sources[i]]['path']}:{lines[i]}")
        seen[wid] = i
    notes = []
    if window:  # rows are used in the order given; say so when their times disagree with that order
        back = [i for i in range(1, len(time_ns)) if time_ns[i] < time_ns[i - 1]]
        if back:
            i = back[0]
            notes.append(f"{len(back)} row(s) have an earlier {TIME} than the row before them (first: "
                         f"{files[sources[i]]['path']}:{lines[i]}); rows are used in the order given, "
                         f"and the holdout is the last rows in that order")
    X = np.vstack([d.X for d in parts])
    y = np.concatenate([d.y for d in parts])
    return WaferData(ids, X, y, files, times, time_ns, lines, sources, notes)


# --------------------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------------------

def nan_stats(X: np.ndarray):
    """Per column: median (float64, NaN if all empty), iqr, missing ratio."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(X, axis=0)
        q75, q25 = np.nanpercentile(X, [75, 25], axis=0)
    miss = np.isnan(X).mean(axis=0)
    return med, q75 - q25, miss


def graph_medians(X: np.ndarray) -> np.ndarray:
    """float32 [590] imputation constants; all-empty columns -> 0.0."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(X, axis=0)
    return np.where(np.isnan(med), 0.0, med).astype(np.float32)


def impute(X: np.ndarray, med32: np.ndarray) -> np.ndarray:
    """Exactly what the ONNX graph does: cast to float32, NaN -> median."""
    Z = np.asarray(X, dtype=np.float32)
    return np.where(np.isnan(Z), med32[None, :], Z).astype(np.float32)


def time_drift(X: np.ndarray) -> np.ndarray:
    """|AUC - 0.5| of each column for 'later half vs earlier half' of the rows (ignoring NaN)."""
    from scipy.stats import rankdata

    n = X.shape[0]
    later = np.arange(n) >= n // 2
    out = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        c = X[:, j]
        m = ~np.isnan(c)
        a = later[m]
        n1, n0 = int(a.sum()), int((~a).sum())
        if n1 < 10 or n0 < 10:
            continue
        r = rankdata(c[m])
        auc = (r[a].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0)
        out[j] = abs(auc - 0.5)
    return out


def select_columns(X: np.ndarray, drift_max: float | None):
    """Returns (kept column indices, {"constant": [...], "mostly_missing": [...], "drifting": [...]})."""
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
    drifting = []
    if drift_max is not None:
        d = time_drift(X)
        drifting = [j for j in range(X.shape[1]) if j not in dropped and d[j] > drift_max]
        dropped |= set(drifting)
    keep = np.array([j for j in range(X.shape[1]) if j not in dropped], dtype=np.int64)
    return keep, {"constant": constant, "mostly_missing": mostly_missing, "drifting": drifting}


# --------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    max_depth: int
    imbalance: str  # "none" | "scale_pos_weight" | "smote"
    top_k: int | None
    drift_filter: bool

    @property
    def name(self) -> str:
        feats = f"top{self.top_k}" if self.top_k else "all"
        drift = "+driftfilter" if self.drift_filter else ""
        return f"depth{self.max_depth}/{self.imbalance}/{feats}{drift}"

    def as_dict(self) -> dict:
        return {"max_depth": self.max_depth, "imbalance": self.imbalance, "top_k": self.top_k,
                "drift_filter": self.drift_filter}


def make_grid(kind: str) -> list:
    if kind == "quick":  # for tests: touches every code path, cheap
        return [Config(2, "none", TOP_K, True), Config(1, "scale_pos_weight", None, False),
                Config(2, "smote", TOP_K, False)]
    grid = []
    for drift in (False, True):
        for top_k in (None, TOP_K):
            for depth in (1, 2):
                for imb in ("none", "scale_pos_weight", "smote"):
                    grid.append(Config(depth, imb, top_k, drift))
    return grid


def xgb_params(cfg: Config, y: np.ndarray, seed: int) -> dict:
    p = dict(BASE_PARAMS)
    p["max_depth"] = cfg.max_depth
    p["seed"] = seed
    if cfg.imbalance == "scale_pos_weight":
        npos = int((y == 1).sum())
        p["scale_pos_weight"] = float((y == 0).sum()) / max(npos, 1)
    return p


def smote(Z: np.ndarray, y: np.ndarray, seed: int, k: int = 5):
    """Plain SMOTE (Chawla et al. 2002): interpolate each synthetic positive between a random positive
    and one of its k nearest positive neighbours (neighbours found on z-scored features) until the
    classes are balanced.  Used at fit time only; never applied to evaluation rows."""
    from sklearn.neighbors import NearestNeighbors

    pos = Z[y == 1].astype(np.float64)
    n_pos, n_neg = len(pos), int((y == 0).sum())
    need = n_neg - n_pos
    if n_pos < 2 or need <= 0:
        return Z, y
    k = min(k, n_pos - 1)
    sd = Z.std(axis=0).astype(np.float64)
    sd[sd == 0] = 1.0
    S = (pos - Z.mean(axis=0)) / sd
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(S)
    nbrs = nn.kneighbors(S, return_distance=False)[:, 1:]
    rng = np.random.default_rng(seed)
    base = rng.integers(0, n_pos, need)
    other = nbrs[base, rng.integers(0, k, need)]
    gap = rng.random(need)[:, None]
    new = (pos[base] + gap * (pos[other] - pos[base])).astype(np.float32)
    return np.vstack([Z, new]), np.concatenate([y, np.ones(need, dtype=y.dtype)])


def _train_booster(params: dict, Z: np.ndarray, y: np.ndarray, cfg: Config, seed: int, rounds: int):
    import xgboost as xgb

    if cfg.imbalance == "smote":
        Z, y = smote(Z, y, seed)
    dtrain = xgb.DMatrix(Z, label=y, nthread=1)
    return xgb.train(params, dtrain, num_boost_round=rounds)


@dataclass
class Fitted:
    cfg: Config
    booster: object
    columns: np.ndarray  # original column index of each booster feature
    medians: np.ndarray  # float32 [590]
    dropped: dict
    params: dict
    n_trees: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        Z = impute(X, self.medians)[:, self.columns]
        return self.booster.predict(xgb.DMatrix(Z, nthread=1)).astype(np.float32)


def fit_recipe(X: np.ndarray, y: np.ndarray, cfg: Config, seed: int, rounds: int = N_ESTIMATORS) -> Fitted:
    med32 = graph_medians(X)
    keep, dropped = select_columns(X, DRIFT_MAX if cfg.drift_filter else None)
    Z = impute(X, med32)[:, keep]
    params = xgb_params(cfg, y, seed)
    cols = keep
    dropped = dict(dropped, not_in_top_k=[])
    if cfg.top_k and cfg.top_k < len(keep):
        prelim = _train_booster(params, Z, y, cfg, seed, rounds)
        gain = prelim.get_score(importance_type="total_gain")
        g = np.zeros(len(keep))
        for key, v in gain.items():
            g[int(key[1:])] = v
        order = sorted(range(len(keep)), key=lambda j: (-g[j], j))
        chosen = sorted(j for j in order[:cfg.top_k] if g[j] > 0) or sorted(order[:cfg.top_k])
        dropped["not_in_top_k"] = [int(keep[j]) for j in range(len(keep)) if j not in set(chosen)]
        cols = keep[chosen]
        Z = Z[:, chosen]
    booster = _train_booster(params, Z, y, cfg, seed, rounds)
    return Fitted(cfg, booster, np.asarray(cols, dtype=np.int64), med32, dropped, params, rounds)


def baseline_fit(X: np.ndarray, y: np.ndarray, seed: int) -> Fitted:
    """XGBoost defaults on all 590 sensors (median-imputed), no imbalance handling: a naive reference."""
    import xgboost as xgb

    med32 = graph_medians(X)
    params = {"objective": "binary:logistic", "base_score": 0.5, "tree_method": "hist", "nthread": 1,
              "seed": seed, "max_depth": 6, "learning_rate": 0.3}
    b = xgb.train(params, xgb.DMatrix(impute(X, med32), label=y, nthread=1), num_boost_round=100)
    cfg = Config(6, "none", None, False)
    return Fitted(cfg, b, np.arange(N_SENSORS), med32, {}, params, 100)


# --------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------

def ranking_metrics(y: np.ndarray, s: np.ndarray) -> tuple:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


def choose_threshold(y: np.ndarray, s: np.ndarray, max_far: float = MAX_FALSE_ALARM) -> float:
    """Highest recall with false-alarm rate <= max_far; ties -> the highest threshold.
    Candidates are the observed scores; a row is flagged when score >= threshold."""
    s = np.asarray(s, dtype=np.float32)
    if (y == 1).sum() == 0 or (y == 0).sum() == 0:
        raise ValueError("threshold rule needs both faulty and good wafers in the validation rows")
    best_t, best_rec = None, -1.0
    for t in np.unique(s)[::-1]:  # descending
        flag = s >= t
        far = flag[y == 0].mean()
        if far > max_far:
            break  # false alarms only grow as the threshold falls
        rec = flag[y == 1].mean()
        if rec > best_rec:  # strict: keeps the highest threshold among equal recalls
            best_t, best_rec = t, rec
    if best_t is None:  # even the top score flags too many good wafers (ties at the top)
        best_t = np.nextafter(s.max(), np.float32(np.inf))
    return float(np.float32(best_t))


def threshold_metrics(y: np.ndarray, s: np.ndarray, t: float) -> dict:
    flag = np.asarray(s, dtype=np.float32) >= np.float32(t)
    tp = int((flag & (y == 1)).sum())
    fp = int((flag & (y == 0)).sum())
    npos, nneg = int((y == 1).sum()), int((y == 0).sum())
    rec = tp / npos if npos else float("nan")
    far = fp / nneg if nneg else float("nan")
    return {"recall": rec, "false_alarm_rate": far, "balanced_accuracy": (rec + 1 - far) / 2,
            "flagged": int(flag.sum()), "true_positives": tp, "false_positives": fp}


def evaluate(y: np.ndarray, s: np.ndarray) -> dict:
    roc, pr = ranking_metrics(y, s)
    t = choose_threshold(y, s)
    return dict(roc_auc=roc, pr_auc=pr, threshold=t, **threshold_metrics(y, s, t))


def inner_cv(X: np.ndarray, y: np.ndarray, cfg: Config, seed: int) -> dict:
    from sklearn.model_selection import TimeSeriesSplit

    rocs, prs = [], []
    for tr, te in TimeSeriesSplit(n_splits=INNER_SPLITS).split(X):
        if (y[tr] == 1).sum() < 2 or len(np.unique(y[te])) < 2:
            continue
        f = fit_recipe(X[tr], y[tr], cfg, seed)
        roc, pr = ranking_metrics(y[te], f.predict(X[te]))
        rocs.append(roc)
        prs.append(pr)
    return {"roc_auc": float(np.mean(rocs)) if rocs else float("nan"),
            "pr_auc": float(np.mean(prs)) if prs else float("nan"), "folds": len(rocs)}


# --------------------------------------------------------------------------------------
# golden rows
# --------------------------------------------------------------------------------------

def golden_rows(med: np.ndarray, iqr: np.ndarray, splits: list, seed: int, X_real: np.ndarray) -> np.ndarray:
    """~64 synthetic float32 rows (NaN = empty)."""
    rng = np.random.default_rng([seed, 0x60D])
    center = np.where(np.isnan(med), 0.0, med)
    scale = np.where(np.isnan(iqr) | (iqr <= 0), np.abs(center) * 0.05 + 1e-3, iqr)
    allnan = np.isnan(med)

    def noisy(n):
        Z = center[None, :] + rng.normal(0.0, 0.6, size=(n, N_SENSORS)) * scale[None, :]
        Z[:, allnan] = np.nan
        return Z.astype(np.float32)

    rows = [noisy(24)]  # around the medians
    many = noisy(12)  # many missing cells (30%..95% of each row)
    for i in range(len(many)):
        frac = 0.3 + 0.65 * i / (len(many) - 1)
        many[i, rng.random(N_SENSORS) < frac] = np.nan
    rows.append(many)
    rows.append(np.full((1, N_SENSORS), np.nan, dtype=np.float32))  # all missing
    if splits:
        feats = np.array([s.feature for s in splits])
        thr = np.array([s.threshold for s in splits], dtype=np.float32)
        for kind, n in (("exact", 15), ("up", 6), ("down", 6)):
            R = noisy(n)
            for i in range(n):
                pick = rng.choice(len(splits), size=min(8, len(splits)), replace=False)
                for p in pick:
                    v = thr[p]
                    if kind == "up":
                        v = np.nextafter(v, np.float32(np.inf))
                    elif kind == "down":
                        v = np.nextafter(v, np.float32(-np.inf))
                    R[i, feats[p]] = v
            rows.append(R)
    G = np.vstack(rows).astype(np.float32)
    # never a copy of a real row (compare on float32, NaN == NaN)
    real = np.asarray(X_real, dtype=np.float32)
    for g in G:
        same = np.all((real == g[None, :]) | (np.isnan(real) & np.isnan(g)[None, :]), axis=1)
        if same.any():
            raise RuntimeError("a synthetic golden row equals a real row")
    return G


def fmt32(v) -> str:
    v = np.float32(v)
    if np.isnan(v):
        return ""
    s = "%.9g" % float(v)
    assert np.float32(float(s)) == v
    return s


def write_golden(path: Path, G: np.ndarray, p1: np.ndarray) -> None:
    lines = [",".join([""] + SENSORS + ["expected_probability"])]
    for i, (g, p) in enumerate(zip(G, p1), start=1):
        lines.append(",".join([f"Golden-{i}"] + [fmt32(v) for v in g] + [fmt32(p)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_golden(path: Path):
    with open(path, newline="", encoding="utf-8") as fh:
        rd = csv.reader(fh)
        header = next(rd)
        if header[0] != "" or header[1:-1] != SENSORS or header[-1] != "expected_probability":
            raise SchemaError(f"{path}: bad golden header")
        X, p = [], []
        for rec in rd:
            X.append([float(c) if c != "" else math.nan for c in rec[1:-1]])
            p.append(float(rec[-1]))
    return np.asarray(X, dtype=np.float32), np.asarray(p, dtype=np.float32)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def _r(v, nd=6):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(float(v), nd)


def _fmt(v):
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def package_versions() -> dict:
    import onnx
    import onnxruntime
    import sklearn
    import xgboost

    return {"python": platform.python_version(), "xgboost": xgboost.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", nargs="+", default=None,
                    help=f"labelled wafer CSV(s), in production order (default: {DEFAULT_INPUT} from the repo root)")
    ap.add_argument("--since", type=_time_arg, default=None, metavar="T",
                    help=f"keep rows whose {TIME} is at or after T (RFC 3339, e.g. 2026-11-01T00:00:00Z; a bare "
                         f"date means midnight UTC); every input must have a {TIME} column")
    ap.add_argument("--until", type=_time_arg, default=None, metavar="T",
                    help=f"keep rows whose {TIME} is before T (exclusive); same format as --since")
    ap.add_argument("--output-dir", default=None, help=f"default: {DEFAULT_OUTPUT} under the repo root")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--validation-fraction", type=float, default=0.2)
    ap.add_argument("--grid", choices=["full", "quick"], default="full",
                    help="hyper-parameter grid; 'quick' (3 points) is for tests")
    return ap.parse_args(argv)


def check_trainable(data: WaferData, window: dict, n_fit: int, n_val: int) -> None:
    """Fails with one clear sentence when the rows left (after the window) cannot train and validate a model."""
    y = data.y
    n = len(y)
    if window["since"] is not None or window["until"] is not None:
        where = (f" in the window {TIME} >= {window['since'] or '-inf'} and < {window['until'] or '+inf'} "
                 f"(" + ", ".join(f"{f['path']}: {f['rows_used']} of {f['rows_read']}" for f in data.files) + ")")
    else:
        where = ""
    if n == 0:
        raise InputError(f"no rows{where}: nothing to train on")
    if int(y.sum()) == 0:
        raise InputError(f"no faulty wafers ({LABEL} = +1) among the {n} rows{where}: cannot train a fault model")
    if n_val < 1 or n_fit < 10:
        raise InputError(f"not enough rows ({n}){where} for a time-ordered holdout of {n_val} rows "
                         f"and at least 10 earlier rows to fit on")
    if int(y[:n_fit].sum()) == 0:
        raise InputError(f"the {n_fit} earlier rows used for fitting have no faulty wafers ({n} rows{where}); "
                         f"widen the window or add inputs")
    hold = y[n_fit:]
    if int(hold.sum()) == 0 or int((hold == 0).sum()) == 0:
        kind = "faulty" if int(hold.sum()) == 0 else "good"
        raise InputError(f"the time-ordered holdout (latest {n_val} of {n} rows{where}) has no {kind} wafers, "
                         f"which the threshold rule needs; widen the window or add inputs")


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = print

    if args.input is None:
        shown = [DEFAULT_INPUT]
        paths = [(REPO_ROOT / DEFAULT_INPUT).resolve()]
    else:
        shown = list(args.input)
        paths = [Path(p) for p in args.input]
    out_dir = Path(args.output_dir) if args.output_dir else REPO_ROOT / DEFAULT_OUTPUT
    if not 0.0 < args.validation_fraction < 1.0:
        raise SystemExit("--validation-fraction must be in (0, 1)")

    data = read_inputs(paths, shown, args.since, args.until)
    window = {"since": None if args.since is None else format_time(args.since),
              "until": None if args.until is None else format_time(args.until)}
    X, y, seed = data.X, data.y, args.seed
    n = len(y)
    n_val = int(math.floor(n * args.validation_fraction + 0.5))
    n_fit = n - n_val
    Xtr, ytr, Xva, yva = X[:n_fit], y[:n_fit], X[n_fit:], y[n_fit:]
    check_trainable(data, window, n_fit, n_val)

    out("=" * 78)
    out(f"faultline wafer-fault training  (seed {seed})")
    for f in data.files:
        used = f" used={f['rows_used']}" if f["rows_used"] != f["rows_read"] else ""
        out(f"  input {f['path']}  rows={f['rows_read']}{used}  sha256={f['sha256'][:16]}"
            f"{'  (Time column)' if f['time_column'] else ''}")
    if args.since is not None or args.until is not None:
        out(f"  window: {TIME} >= {window['since'] or '-inf'} and < {window['until'] or '+inf'}")
    for note in data.notes:
        out(f"  NOTE: {note}")
    out(f"  rows={n} faults={int(y.sum())} ({y.mean():.1%})")
    out(f"  time-ordered split: fit on rows 1..{n_fit} ({int(ytr.sum())} faults), "
        f"validate on the latest {n_val} rows ({int(yva.sum())} faults)")
    if yva.sum() < 10:
        out(f"  NOTE: only {int(yva.sum())} faulty wafers in the holdout: every validation number below is very noisy")

    # ---- model selection on the earlier rows only ------------------------------------------
    grid = make_grid(args.grid)
    out(f"\nhyper-parameter grid: {len(grid)} points, inner {INNER_SPLITS}-fold expanding-window CV "
        f"on the first {n_fit} rows; select by mean inner ROC-AUC")
    results = []
    for cfg in grid:
        inner = inner_cv(Xtr, ytr, cfg, seed)
        f = fit_recipe(Xtr, ytr, cfg, seed)
        outer = evaluate(yva, f.predict(Xva))
        results.append((cfg, inner, outer, f))
        out(f"  {cfg.name:38s} inner roc {_fmt(inner['roc_auc'])} pr {_fmt(inner['pr_auc'])} | "
            f"holdout roc {_fmt(outer['roc_auc'])} pr {_fmt(outer['pr_auc'])} "
            f"recall {_fmt(outer['recall'])} far {_fmt(outer['false_alarm_rate'])}")

    def key(r):
        roc, pr = r[1]["roc_auc"], r[1]["pr_auc"]
        return (-(roc if not math.isnan(roc) else -1.0), -(pr if not math.isnan(pr) else -1.0))

    best_i = min(range(len(results)), key=lambda i: (key(results[i]), i))
    cfg, inner, outer, fval = results[best_i]
    # how much of the holdout result is the seed? (same recipe, other seeds; reported, not used to choose)
    spread = []
    for s2 in range(seed + 1, seed + 1 + SEED_SPREAD):
        e = evaluate(yva, fit_recipe(Xtr, ytr, cfg, s2).predict(Xva))
        spread.append((e["roc_auc"], e["pr_auc"], e["recall"], e["false_alarm_rate"]))
    spread = np.asarray(spread, dtype=np.float64)
    base = baseline_fit(Xtr, ytr, seed)
    base_eval = evaluate(yva, base.predict(Xva))

    # imbalance comparison at the chosen other settings
    imb_rows = {r[0].imbalance: r for r in results
                if (r[0].max_depth, r[0].top_k, r[0].drift_filter) == (cfg.max_depth, cfg.top_k, cfg.drift_filter)}
    imb_text = ", ".join(f"{k} {_fmt(v[1]['roc_auc'])}" for k, v in imb_rows.items())
    imbalance_note = (f"kept '{cfg.imbalance}': compared none / scale_pos_weight (n_good/n_faulty) / SMOTE "
                      f"(k=5, fit-time resampling only) at the chosen depth & features by mean inner time-ordered "
                      f"CV ROC-AUC ({imb_text}); the best inner score wins")

    threshold = outer["threshold"]
    out(f"\nselected: {cfg.name}  (inner roc {_fmt(inner['roc_auc'])}, pr {_fmt(inner['pr_auc'])}, "
        f"{inner['folds']} folds)")
    out(f"holdout (latest {n_val} rows, {int(yva.sum())} faulty), model fit on the earlier rows:")
    out(f"  ROC-AUC {_fmt(outer['roc_auc'])}   PR-AUC {_fmt(outer['pr_auc'])}  (prevalence {yva.mean():.3f})")
    out(f"  threshold {threshold:.6g}: recall {_fmt(outer['recall'])} ({outer['true_positives']}/{int(yva.sum())}), "
        f"false alarms {_fmt(outer['false_alarm_rate'])} ({outer['false_positives']}/{int((yva == 0).sum())}), "
        f"balanced accuracy {_fmt(outer['balanced_accuracy'])}, flagged {outer['flagged']}")
    out(f"  same recipe with seeds {seed + 1}..{seed + SEED_SPREAD}: ROC-AUC {np.nanmean(spread[:, 0]):.3f} "
        f"[{np.nanmin(spread[:, 0]):.3f}..{np.nanmax(spread[:, 0]):.3f}], PR-AUC {np.nanmean(spread[:, 1]):.3f} "
        f"[{np.nanmin(spread[:, 1]):.3f}..{np.nanmax(spread[:, 1]):.3f}], recall {np.nanmean(spread[:, 2]):.3f}, "
        f"false alarms {np.nanmean(spread[:, 3]):.3f}")
    out(f"  baseline (xgboost defaults, all sensors): ROC-AUC {_fmt(base_eval['roc_auc'])} "
        f"PR-AUC {_fmt(base_eval['pr_auc'])}")
    met = {
        "roc_auc": outer["roc_auc"] >= TARGETS["roc_auc"],
        "pr_auc": outer["pr_auc"] >= TARGETS["pr_auc"],
        "recall": outer["recall"] >= TARGETS["recall"],
        "false_alarm_rate": outer["false_alarm_rate"] <= TARGETS["false_alarm_rate"],
    }
    out("  targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))

    # ---- refit on all rows -------------------------------------------------------------------
    final = fit_recipe(X, y, cfg, seed)
    ens = onnx_export.trees_from_booster(final.booster, final.columns)
    model = onnx_export.build_model(ens, N_SENSORS, final.medians, "wafer_fault")
    onnx_bytes = onnx_export.serialize(model)
    sess = onnx_export.ort_session(onnx_bytes)

    def parity(Xp):
        _, proba = onnx_export.ort_predict(sess, Xp)
        return float(np.max(np.abs(proba[:, 1].astype(np.float64) - final.predict(Xp).astype(np.float64)))), proba

    diff_val, _ = parity(Xva)
    diff_all, _ = parity(X)
    out(f"\nrefit on all {n} rows: {ens.n_trees} trees, max depth {ens.max_depth}, "
        f"{len(final.columns)} sensors used, {len(ens.splits())} splits")
    out(f"onnxruntime parity (P(fault) vs xgboost predict_proba after the same imputation): "
        f"validation rows max|diff| = {diff_val:.3g}, all rows {diff_all:.3g}")
    if not (diff_val <= PARITY_TOL and diff_all <= PARITY_TOL):
        raise SystemExit(f"ONNX parity FAILED: max |diff| {max(diff_val, diff_all)} > {PARITY_TOL}")

    med64, iqr64, miss = nan_stats(X)
    G = golden_rows(med64, iqr64, ens.splits(), seed, X)
    diff_gold, gproba = parity(G)
    out(f"golden rows: {len(G)} synthetic rows, ORT vs xgboost max|diff| = {diff_gold:.3g}")
    if not diff_gold <= PARITY_TOL:
        raise SystemExit(f"ONNX parity FAILED on golden rows: {diff_gold}")

    # ---- write artifacts ------------------------------------------------------------------------
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.onnx").write_bytes(onnx_bytes)
    write_golden(out_dir / "golden.csv", G, gproba[:, 1])
    sha = hashlib.sha256(onnx_bytes).hexdigest()

    def sensor_names(idx):
        return [SENSORS[j] for j in idx]

    comparisons = []
    for c, inn, o, _ in results:
        comparisons.append({"name": c.name, "roc_auc": _r(o["roc_auc"]), "pr_auc": _r(o["pr_auc"]),
                            "recall": _r(o["recall"]), "false_alarm_rate": _r(o["false_alarm_rate"]),
                            "threshold": o["threshold"], "inner_roc_auc": _r(inn["roc_auc"]),
                            "inner_pr_auc": _r(inn["pr_auc"]), "selected": c == cfg})
    comparisons.append({"name": "baseline: xgboost defaults (depth 6, eta 0.3, 100 trees), all 590 sensors, "
                                "no imbalance handling", "roc_auc": _r(base_eval["roc_auc"]),
                        "pr_auc": _r(base_eval["pr_auc"]), "recall": _r(base_eval["recall"]),
                        "false_alarm_rate": _r(base_eval["false_alarm_rate"]), "threshold": base_eval["threshold"],
                        "inner_roc_auc": None, "inner_pr_auc": None, "selected": False})

    params = dict(final.params)
    params["n_estimators"] = final.n_trees
    card = {
        "name": MODEL_NAME,
        "version": f"wf-{sha[:12]}",
        "created_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "onnx_sha256": sha,
        "positive_class": "1 = faulty wafer (Good/Bad = +1 in the input)",
        "input": {"name": "input", "width": N_SENSORS, "features": SENSORS},
        "output": {"name": "probabilities", "fault_column": 1},
        "opsets": {"ai.onnx": onnx_export.OPSET_ONNX, "ai.onnx.ml": onnx_export.OPSET_ML},
        "threshold": threshold,
        "threshold_rule": (f"On the time-ordered holdout, among the observed P(fault) values take the threshold "
                           f"with the highest recall while flagging at most {MAX_FALSE_ALARM:.0%} of good wafers "
                           f"(ties -> the highest such threshold); a wafer is faulty when P(fault) >= threshold."),
        "training": {
            "files": data.files,
            "window": window,
            "rows": n,
            "faults": int(y.sum()),
            "seed": seed,
            "model": "xgboost",
            "params": params,
            "n_trees": ens.n_trees,
            "max_depth": ens.max_depth,
            "features_used": sensor_names(final.columns),
            "dropped_sensors": {"constant": sensor_names(final.dropped["constant"]),
                                "mostly_missing": sensor_names(final.dropped["mostly_missing"])},
            "feature_selection": {
                "mostly_missing_above": MOSTLY_MISSING,
                "drift_filter": (f"dropped when |AUC(later half vs earlier half of the training rows) - 0.5| > "
                                 f"{DRIFT_MAX}" if cfg.drift_filter else "off"),
                "drifting": sensor_names(final.dropped["drifting"]),
                "top_k": cfg.top_k,
                "not_in_top_k": sensor_names(final.dropped["not_in_top_k"]),
            },
            "selection": {"grid": args.grid, "grid_points": len(grid), "selected": cfg.name,
                          "config": cfg.as_dict(),
                          "scheme": f"{INNER_SPLITS}-fold expanding-window time-series CV on the first {n_fit} rows, "
                                    f"best mean ROC-AUC (ties: mean PR-AUC, then grid order)",
                          "inner_roc_auc": _r(inner["roc_auc"]), "inner_pr_auc": _r(inner["pr_auc"])},
            "imbalance": imbalance_note,
        },
        "validation": {
            "scheme": "time-ordered holdout: latest 20% of rows" if abs(args.validation_fraction - 0.2) < 1e-12
            else f"time-ordered holdout: latest {args.validation_fraction:.0%} of rows",
            "rows": n_val,
            "faults": int(yva.sum()),
            "roc_auc": _r(outer["roc_auc"]),
            "pr_auc": _r(outer["pr_auc"]),
            "balanced_accuracy": _r(outer["balanced_accuracy"]),
            "recall": _r(outer["recall"]),
            "false_alarm_rate": _r(outer["false_alarm_rate"]),
            "flagged": outer["flagged"],
            "true_positives": outer["true_positives"],
            "false_positives": outer["false_positives"],
            "targets": {k: {"target": TARGETS[k], "met": bool(v)} for k, v in met.items()},
            "comparisons": comparisons,
            "seed_spread": {"seeds": list(range(seed + 1, seed + 1 + SEED_SPREAD)),
                            "note": "the selected recipe refit on the earlier rows with other seeds; not used for any choice",
                            **{k: {"mean": _r(np.nanmean(spread[:, i])), "min": _r(np.nanmin(spread[:, i])),
                                   "max": _r(np.nanmax(spread[:, i]))}
                               for i, k in enumerate(("roc_auc", "pr_auc", "recall", "false_alarm_rate"))}},
            "onnxruntime_max_abs_diff": float(diff_val),
        },
        "sensors": [{"name": SENSORS[j],
                     "median": None if np.isnan(med64[j]) else float(final.medians[j]),
                     "iqr": None if np.isnan(iqr64[j]) else float(np.float32(iqr64[j])),
                     "missing_ratio": round(float(miss[j]), 6)} for j in range(N_SENSORS)],
        "packages": package_versions(),
    }
    (out_dir / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    out(f"\nwrote {out_dir / 'model.onnx'} ({len(onnx_bytes)} bytes, version {card['version']}), "
        f"model.json, golden.csv")
    out(f"threshold {threshold!r}")
    out("=" * 78)
    return card


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
