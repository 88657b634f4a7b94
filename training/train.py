#!/usr/bin/env python3
"""Train faultline's wafer-fault model and export it as ONNX + model card + golden rows.

    python training/train.py [--input CSV ...] [--since T] [--until T] [--output-dir models/wafer-fault]
                             [--seed 42] [--start-fraction 0.2] [--windows 8] [--bootstrap 1000]
                             [--grid full|quick]

Label: Good/Bad = +1 means the wafer is FAULTY (-> 1), -1 means good (-> 0).

Several inputs are concatenated in the order given (which must be production order).  A file may end with an
extra `Time` column (RFC 3339, when the daemon scored the wafer; `faultline export --labelled` writes it); it is
never a feature.  `--since` (inclusive) / `--until` (exclusive) keep only the rows whose `Time` is in the window;
every input must then have a `Time` column.

Validation is time-ordered and uses every fault after the first window: each candidate recipe (`recipes.py`)
scores every later window with a model fitted on all rows before it, the predictions are pooled, and metrics
come with bootstrap intervals (`selection.py`).  The simplest candidate is kept unless another is better beyond
the noise; the threshold is chosen on the pooled predictions; the recipe is refit on ALL rows and exported.
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
import recipes  # noqa: E402
import selection  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = "../shared/data/wafer/wafer_train.csv"  # relative to the repo root
DEFAULT_OUTPUT = "models/wafer-fault"  # relative to the repo root
MODEL_NAME = "wafer-fault"

N_SENSORS = 590
SENSORS = [f"Sensor-{i}" for i in range(1, N_SENSORS + 1)]
LABEL = "Good/Bad"
TIME = "Time"  # optional final column: when the wafer was scored (RFC 3339), never a feature

PARITY_TOL = 1e-5
MIN_ROWS = 40  # fewest rows the time-ordered windows can work with
# faultline's default alarm window and warm-up (config/default.toml, [model]), for the alarm budget's figures.
ALARM_WINDOW_ROWS = 200
ALARM_WARMUP_ROWS = 100


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
                         f"and the time-ordered windows follow that order")
    X = np.vstack([d.X for d in parts])
    y = np.concatenate([d.y for d in parts])
    return WaferData(ids, X, y, files, times, time_ns, lines, sources, notes)


# --------------------------------------------------------------------------------------
# preprocessing (shared with the recipes)
# --------------------------------------------------------------------------------------

impute = recipes.impute
choose_threshold = selection.choose_threshold


def nan_stats(X: np.ndarray):
    """Per column over the non-missing values: median (float64, NaN if all empty), IQR, missing ratio,
    and the 1st and 99th percentiles (the training range the page shows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(X, axis=0)
        p01, q25, q75, p99 = np.nanpercentile(X, [1, 25, 75, 99], axis=0)
    miss = np.isnan(X).mean(axis=0)
    return med, q75 - q25, miss, p01, p99


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

def _faults(n: int) -> str:
    return f"{n} faulty wafer" + ("" if n == 1 else "s")


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
    ap.add_argument("--start-fraction", type=float, default=selection.START_FRACTION,
                    help="share of the earliest rows that only ever trains (the first window)")
    ap.add_argument("--windows", type=int, default=selection.WINDOWS,
                    help="time windows after the first, each scored by a model fitted on every earlier row")
    ap.add_argument("--bootstrap", type=int, default=selection.BOOTSTRAP, help="bootstrap resamples for intervals")
    ap.add_argument("--grid", choices=["full", "quick"], default="full",
                    help="candidate recipes; 'quick' (4 cheap ones) is for tests")
    return ap.parse_args(argv)


def check_trainable(data: WaferData, window: dict, edges: np.ndarray) -> None:
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
    if n < MIN_ROWS:
        raise InputError(f"not enough rows ({n}){where} for time-ordered validation: at least {MIN_ROWS} are needed")
    first = int(edges[0])
    if int(y[:first].sum()) == 0:
        raise InputError(f"the first {first} rows (the first time window, which only trains) have no faulty "
                         f"wafers ({n} rows{where}); widen the window, add earlier inputs or lower --start-fraction")
    pooled = y[first:]
    if int(pooled.sum()) == 0 or int((pooled == 0).sum()) == 0:
        kind = "faulty" if int(pooled.sum()) == 0 else "good"
        raise InputError(f"the validated rows (the latest {n - first} of {n} rows{where}) have no {kind} wafers, "
                         f"which the metrics and the threshold rule need; widen the window or add inputs")


def _sigmoid32(m: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.asarray(m, dtype=np.float64)))).astype(np.float32)


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
    if not 0.0 < args.start_fraction < 1.0:
        raise SystemExit("--start-fraction must be in (0, 1)")
    if args.windows < 1 or args.bootstrap < 10:
        raise SystemExit("--windows must be at least 1 and --bootstrap at least 10")

    data = read_inputs(paths, shown, args.since, args.until)
    window = {"since": None if args.since is None else format_time(args.since),
              "until": None if args.until is None else format_time(args.until)}
    X, y, seed = data.X, data.y, args.seed
    n = len(y)
    edges = selection.window_edges(n, args.start_fraction, args.windows)
    check_trainable(data, window, edges)
    first = int(edges[0])
    yp = y[first:]

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
    out(f"  time-ordered validation: rows 1..{first} only train; rows {first + 1}..{n} ({int(yp.sum())} faults) "
        f"are scored in {len(edges) - 1} windows, each by a model fitted on every earlier row, and pooled")
    if yp.sum() < 30:
        out(f"  NOTE: only {int(yp.sum())} faulty wafers are validated: every interval below is wide")

    # ---- pooled out-of-fold predictions of every candidate ------------------------------------
    cands = recipes.candidates(args.grid)
    boot = selection.bootstrap_indices(len(yp), seed, args.bootstrap)
    margins, aucs, rows = {}, {}, []
    for r in cands:
        m = selection.out_of_fold(X, y, r, seed, edges)[first:]
        margins[r.name] = m
        aucs[r.name] = selection.bootstrap_roc_auc(yp, m, boot)
        res = selection.ranking_with_intervals(yp, m, boot, aucs[r.name])
        per = []
        for a, b in zip(edges[:-1], edges[1:]):
            ys, ms = y[a:b], m[a - first:b - first]
            per.append({"rows": int(b - a), "faults": int(ys.sum()),
                        "roc_auc": _r(selection.roc_auc(ys, ms), 4)})
        rows.append((r, res, per))
        out(f"  {r.name:32s} ROC-AUC {_fmt(res['roc_auc'])} {_ci(res['roc_auc_ci95'])}  "
            f"PR-AUC {_fmt(res['pr_auc'])} {_ci(res['pr_auc_ci95'])}")
    chosen_name, gains = selection.pick(yp, margins, [r.name for r in cands], boot, aucs)
    chosen = next(r for r in cands if r.name == chosen_name)
    chosen_res = next(res for r, res, _ in rows if r is chosen)
    chosen_per = next(per for r, _, per in rows if r is chosen)
    p_oof = _sigmoid32(margins[chosen.name])
    threshold = selection.choose_threshold(yp, p_oof)
    at = selection.threshold_with_intervals(yp, p_oof, threshold, boot)
    alarm_rate = round(at["flagged"] / len(yp), 3)
    # The alarm budget at that rate, as the daemon runs it (its default window and warm-up), on the same
    # predictions in time order from an empty window: its own recall, on the wafers it decided.
    flagged, by_budget = selection.alarm_budget(p_oof, threshold, alarm_rate, ALARM_WINDOW_ROWS, ALARM_WARMUP_ROWS)
    budget = None
    if by_budget.any():
        yb = yp[by_budget]
        budget = selection.flags_with_intervals(
            yb, flagged[by_budget], selection.bootstrap_indices(len(yb), seed, args.bootstrap))
    # Each window's share flagged and faults caught, by the threshold and by the budget: a pooled figure
    # hides a score level that moves from one period to the next. The budget's figures are over the
    # wafers it decided (its warm-up, decided by the threshold, left out), so they add up to its totals.
    at_t = p_oof >= np.float32(threshold)
    for w, (a, b) in zip(chosen_per, zip(edges[:-1], edges[1:])):
        i, j = a - first, b - first
        w["threshold_flagged"] = round(float(at_t[i:j].mean()), 4)
        w["threshold_caught"] = int((at_t[i:j] & (yp[i:j] == 1)).sum())
        decided = by_budget[i:j]
        w["budget_rows"] = int(decided.sum())
        w["budget_faults"] = int((yp[i:j][decided] == 1).sum())
        w["budget_flagged"] = round(float(flagged[i:j][decided].mean()), 4) if decided.any() else None
        w["budget_caught"] = int((flagged[i:j][decided] & (yp[i:j][decided] == 1)).sum())
    out(f"\nselected: {chosen.name} — {chosen.describe()}")
    out(f"  rule: the simplest candidate ({cands[0].name}) unless another's paired-bootstrap ROC-AUC gain has a "
        f"95% interval above zero; gains: " + ", ".join(f"{k} {_ci(v)}" for k, v in gains.items()))
    out(f"  pooled ({len(yp)} rows, {int(yp.sum())} faulty): ROC-AUC {_fmt(chosen_res['roc_auc'])} "
        f"{_ci(chosen_res['roc_auc_ci95'])}, PR-AUC {_fmt(chosen_res['pr_auc'])} {_ci(chosen_res['pr_auc_ci95'])} "
        f"(prevalence {yp.mean():.3f})")
    out(f"  threshold {threshold:.6g}: recall {_fmt(at['recall'])} {_ci(at['recall_ci95'])} "
        f"({at['true_positives']}/{int(yp.sum())}), false alarms {_fmt(at['false_alarm_rate'])} "
        f"{_ci(at['false_alarm_rate_ci95'])} ({at['false_positives']}/{int((yp == 0).sum())}); "
        f"flags {alarm_rate:.1%} of wafers (suggested alarm_rate)")
    out("  by window (rows, faults; share flagged and faults caught by the threshold | by the alarm budget, "
        "on the wafers it decided):")
    for w in chosen_per:
        by_b = ("not deciding (warm-up)" if w["budget_flagged"] is None else
                f"{w['budget_flagged']:6.1%} {w['budget_caught']:2d} of {w['budget_faults']:2d} caught "
                f"({w['budget_rows']} wafers)")
        out(f"    {w['rows']:4d} rows {w['faults']:2d} faults: threshold {w['threshold_flagged']:6.1%} "
            f"{w['threshold_caught']:2d} caught | budget {by_b}")
    if budget is None:
        out(f"  alarm budget {alarm_rate:.1%}: not measured (fewer than {ALARM_WARMUP_ROWS} validated wafers, "
            f"its warm-up)")
    else:
        out(f"  alarm budget {alarm_rate:.1%} (window {ALARM_WINDOW_ROWS}, warm-up {ALARM_WARMUP_ROWS}) on the "
            f"{budget['rows']} wafers it decided: recall {_fmt(budget['recall'])} {_ci(budget['recall_ci95'])} "
            f"({budget['true_positives']}/{budget['faults']}), false alarms {_fmt(budget['false_alarm_rate'])} "
            f"{_ci(budget['false_alarm_rate_ci95'])}, flags {budget['flagged'] / budget['rows']:.1%}")

    # ---- refit on all rows and export --------------------------------------------------------------
    final = recipes.fit(X, y, chosen, seed)
    model = onnx_export.build_model(final.trees, N_SENSORS, final.medians, "wafer_fault")
    onnx_bytes = onnx_export.serialize(model)
    sess = onnx_export.ort_session(onnx_bytes)

    def parity(Xp):
        _, proba = onnx_export.ort_predict(sess, Xp)
        return float(np.max(np.abs(proba[:, 1].astype(np.float64) - final.predict(Xp).astype(np.float64)))), proba

    diff_all, _ = parity(X)
    ens = final.trees
    # The shipped model's own score level on the validation windows' wafers, at the threshold: it was
    # fitted on them (so this flatters it), yet how much it flags there says what its threshold is
    # likely to flag on new wafers.
    shipped_at_t = final.predict(X) >= np.float32(threshold)
    for w, (a, b) in zip(chosen_per, zip(edges[:-1], edges[1:])):
        w["shipped_threshold_flagged"] = round(float(shipped_at_t[a:b].mean()), 4)
        w["shipped_threshold_caught"] = int((shipped_at_t[a:b] & (y[a:b] == 1)).sum())
    out("  the shipped model at the threshold, on the windows' wafers it was fitted on (flagged, caught): "
        + ", ".join(f"{w['shipped_threshold_flagged']:.1%} {w['shipped_threshold_caught']}/{w['faults']}"
                    for w in chosen_per))
    out(f"\nrefit on all {n} rows: {ens.n_trees} trees, max depth {ens.max_depth}, "
        f"{len(final.columns)} sensors read")
    out(f"onnxruntime parity (P(fault) vs the fitted model on the same imputed rows): max|diff| = {diff_all:.3g}")
    if not diff_all <= PARITY_TOL:
        raise SystemExit(f"ONNX parity FAILED: max |diff| {diff_all} > {PARITY_TOL}")
    if chosen.family == "xgboost":
        import xgboost as xgb

        booster = final.detail["booster"]
        Zb = impute(X, final.medians)[:, final.detail["keep"]]
        d = float(np.max(np.abs(booster.predict(xgb.DMatrix(Zb, nthread=1)) - final.predict(X))))
        if not d <= PARITY_TOL:
            raise SystemExit(f"ONNX parity FAILED against XGBoost itself: max |diff| {d} > {PARITY_TOL}")

    med64, iqr64, miss, p01, p99 = nan_stats(X)
    G = golden_rows(med64, iqr64, ens.splits(), seed, X)
    diff_gold, gproba = parity(G)
    out(f"golden rows: {len(G)} synthetic rows, onnxruntime vs the fitted model max|diff| = {diff_gold:.3g}")
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
    for r, res, per in rows:
        comparisons.append({"name": r.name, "description": r.describe(), "complexity": r.complexity,
                            "roc_auc": _r(res["roc_auc"], 4), "roc_auc_ci95": res["roc_auc_ci95"],
                            "pr_auc": _r(res["pr_auc"], 4), "pr_auc_ci95": res["pr_auc_ci95"],
                            "roc_auc_gain_over_simplest_ci95": gains.get(r.name),
                            "per_window_roc_auc": [w["roc_auc"] for w in per], "selected": r is chosen})
    faults = int(yp.sum())
    lo, hi = chosen_res["roc_auc_ci95"]
    late = chosen_per[len(chosen_per) // 2:]
    late_faults = sum(w["faults"] for w in late)
    late_rows = sum(w["rows"] for w in late)
    late_t = sum(w["threshold_caught"] for w in late)
    late_b = sum(w["budget_caught"] for w in late)
    late_b_rows = sum(w["budget_rows"] for w in late)
    late_t_share = sum(w["threshold_flagged"] * w["rows"] for w in late) / late_rows
    late_b_share = sum((w["budget_flagged"] or 0.0) * w["budget_rows"] for w in late) / max(late_b_rows, 1)
    late_s_share = sum(w["shipped_threshold_flagged"] * w["rows"] for w in late) / late_rows
    late_s = sum(w["shipped_threshold_caught"] for w in late)
    shares = [w["threshold_flagged"] for w in chosen_per]
    scored = [w for w in chosen_per if w["roc_auc"] is not None]
    lowest = min(scored, key=lambda w: w["roc_auc"])
    highest = max(scored, key=lambda w: w["roc_auc"])
    few = [w["faults"] for w in scored]
    expectation = (
        f"Validated in time order on these wafers (each window scored by the recipe fitted on the wafers "
        f"before it): ROC-AUC {chosen_res['roc_auc']:.2f} (95% interval {lo:.2f}-{hi:.2f} from resampling "
        f"rows, which leaves out how the level moves between periods: from {lowest['roc_auc']:.2f} on "
        f"{_faults(lowest['faults'])} to {highest['roc_auc']:.2f} on {_faults(highest['faults'])} by window; "
        f"with {min(few)} to {max(few)} faulty wafers a window, much of that spread is chance), on {faults} "
        f"faulty wafers. The recipe and its settings were "
        f"chosen on these same predictions, so expect less on new wafers. The score level moves between "
        f"periods: the fixed threshold, which flags {at['flagged'] / len(yp):.0%} of the validated wafers in all "
        f"and catches {at['recall']:.0%} of their faults (chosen on these same predictions, so optimistic), "
        f"flagged from {max(shares):.0%} to {min(shares):.0%} of a window's wafers, and in the later "
        f"{len(late)} windows {late_t_share:.0%} of the wafers and {late_t} of their {late_faults} faults. "
        f"The alarm budget (alarm_rate {alarm_rate}, a window of {ALARM_WINDOW_ROWS} wafers) flagged "
        f"{late_b_share:.0%} there and caught {late_b} of the {late_faults}: on new wafers prefer it to the "
        f"fixed threshold. The shipped model is refit on every wafer; at the threshold it flags "
        f"{late_s_share:.0%} of the later windows' wafers and catches {late_s} of their {late_faults} faults "
        f"although it was fitted on them, so on new wafers its threshold is likely to flag very few: set "
        f"[model] alarm_rate and watch the share it flags.")
    coefs = final.detail.get("coefficients", {})
    top_coef = sorted(coefs.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:20]
    training = {
        "files": data.files,
        "window": window,
        "rows": n,
        "faults": int(y.sum()),
        "seed": seed,
        "model": chosen.family,
        "recipe": chosen.as_dict(),
        "description": chosen.describe(),
        "n_trees": ens.n_trees,
        "max_depth": ens.max_depth,
        "features_used": sensor_names(final.columns),
        "dropped_sensors": {"constant": sensor_names(final.dropped["constant"]),
                            "mostly_missing": sensor_names(final.dropped["mostly_missing"]),
                            # Usable, yet no tree reads them: every sensor is in one of the three lists
                            # or in features_used.
                            "not_read": sensor_names(sorted(
                                set(range(N_SENSORS)) - set(int(j) for j in final.columns)
                                - set(final.dropped["constant"]) - set(final.dropped["mostly_missing"])))},
        "feature_selection": {"mostly_missing_above": recipes.MOSTLY_MISSING,
                              "rule": ("every sensor with at most that share missing and more than one value; "
                                       "of those, not_read lists the ones the fitted model gives no term "
                                       "(logistic on ranks: all its values in one rank level after imputation; "
                                       "trees: never split on; a top-k recipe: not among the strongest)")},
        "selection": {"candidates": len(cands), "grid": args.grid, "selected": chosen.name,
                      "rule": (f"candidates ordered from simplest; the simplest ({cands[0].name}) is kept unless "
                               f"another's paired-bootstrap gain in pooled ROC-AUC has a 95% interval above zero "
                               f"(then the best such one)")},
    }
    if chosen.family == "xgboost":
        training["params"] = final.detail["params"]
    if coefs:
        training["intercept"] = final.detail["intercept"]
        training["largest_coefficients"] = [{"sensor": SENSORS[j], "coefficient": _r(c, 6)} for j, c in top_coef]
    # The wafers fitted on: faultline warns when a file it scores holds some (figures on them are optimistic).
    training["ids"] = list(data.ids)
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
        "threshold_rule": (f"On the pooled time-ordered out-of-fold predictions, among the observed P(fault) values "
                           f"take the threshold with the highest recall while flagging at most "
                           f"{selection.MAX_FALSE_ALARM:.0%} of good wafers (ties -> the highest); a wafer is faulty "
                           f"when P(fault) >= threshold."),
        "training": training,
        "validation": {
            "scheme": (f"pooled out-of-fold predictions over {len(edges) - 1} expanding time windows: rows "
                       f"1..{first} only train, each later window is scored by the recipe fitted on every row "
                       f"before it"),
            "rows": int(len(yp)),
            "faults": faults,
            "prevalence": _r(yp.mean(), 4),
            "windows": chosen_per,
            "roc_auc": _r(chosen_res["roc_auc"], 4),
            "roc_auc_ci95": chosen_res["roc_auc_ci95"],
            "pr_auc": _r(chosen_res["pr_auc"], 4),
            "pr_auc_ci95": chosen_res["pr_auc_ci95"],
            "threshold": threshold,
            "recall": _r(at["recall"], 4),
            "recall_ci95": at["recall_ci95"],
            "false_alarm_rate": _r(at["false_alarm_rate"], 4),
            "false_alarm_rate_ci95": at["false_alarm_rate_ci95"],
            "balanced_accuracy": _r((at["recall"] + 1 - at["false_alarm_rate"]) / 2, 4),
            "flagged": at["flagged"],
            "true_positives": at["true_positives"],
            "false_positives": at["false_positives"],
            "alarm_rate_suggested": alarm_rate,
            "alarm_budget": None if budget is None else {
                "rate": alarm_rate,
                "window_rows": ALARM_WINDOW_ROWS,
                "warmup_rows": ALARM_WARMUP_ROWS,
                "rule": ("faultline's alarm budget at the suggested rate, run on the pooled predictions in time "
                         "order from an empty window (the daemon's default window and warm-up); the figures are "
                         "over the wafers it decided, after its warm-up. The rate is the share the threshold "
                         "flagged on these same predictions, and the default window (200) was chosen after "
                         "seeing them (with 1,000 the budget caught 1 of the later windows' 13 faults), so the "
                         "figures are optimistic."),
                "rows": budget["rows"],
                "faults": budget["faults"],
                "recall": _r(budget["recall"], 4),
                "recall_ci95": budget["recall_ci95"],
                "false_alarm_rate": _r(budget["false_alarm_rate"], 4),
                "false_alarm_rate_ci95": budget["false_alarm_rate_ci95"],
                "flagged": budget["flagged"],
                "true_positives": budget["true_positives"],
                "false_positives": budget["false_positives"],
            },
            "bootstrap": {"resamples": args.bootstrap, "seed": seed, "method": "percentile, rows resampled"},
            "comparisons": comparisons,
            "expectation": expectation,
            "onnxruntime_max_abs_diff": float(max(diff_all, diff_gold)),
        },
        "sensors": [{"name": SENSORS[j],
                     "median": None if np.isnan(med64[j]) else float(final.medians[j]),
                     "iqr": None if np.isnan(iqr64[j]) else float(np.float32(iqr64[j])),
                     "p01": None if np.isnan(p01[j]) else float(np.float32(p01[j])),
                     "p99": None if np.isnan(p99[j]) else float(np.float32(p99[j])),
                     "missing_ratio": round(float(miss[j]), 6)} for j in range(N_SENSORS)],
        "packages": package_versions(),
    }
    (out_dir / "model.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    out(f"\nwrote {out_dir / 'model.onnx'} ({len(onnx_bytes)} bytes, version {card['version']}), "
        f"model.json, golden.csv")
    out(f"threshold {threshold!r}")
    out("=" * 78)
    return card


def _ci(v) -> str:
    return "[n/a]" if v is None or v[0] is None else f"[{v[0]:.3f}, {v[1]:.3f}]"


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
