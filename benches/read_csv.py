#!/usr/bin/env python3
"""`faultline score` on a large wafer CSV vs polars.read_csv + onnxruntime on the same graph.

    .venv/bin/pip install -r benches/requirements.txt
    cargo build --release
    .venv/bin/python benches/read_csv.py [--rows 20000] [--runs 5] [--prototype]

Each contender is a whole process, started fresh per run, reading the same file from the page
cache and writing its probabilities: `faultline score --input F --output /dev/null`, and a
ten-line Python script (polars.read_csv, then onnxruntime on models/wafer-fault/model.onnx, the
same graph faultline scores with). Runs alternate between the contenders so that a change in the
machine's load touches both. For each: CPU seconds (user + system, from wait4), wall seconds and
CSV megabytes per CPU-second (no peak RSS: wait4's counts the Python parent's pages from before
the exec); the table gives the median of --runs with the lowest and
highest in brackets, and the ratio of the medians. --prototype adds the old Flask prototype's
path (pandas.read_csv, coerce every cell, a median-imputer + XGBoost pipeline), one run;
--prototype-imputer knn makes its imputer sklearn's KNNImputer (5 neighbours), the pipeline issue
17's 44x was measured against.

The physical floor is measured the same way: `faultline-scan`, a plain read of the file counting
newlines (examples/scan.rs), is what any reader pays to see the bytes once.

The file repeats the real wafers of ../shared/data/wafer/wafer_train.csv (ids made unique) up to
--rows; without the data it repeats examples/wafers.csv.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from wafer_files import big_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PEER = r"""
import sys, numpy as np, polars as pl, onnxruntime as ort
path, model = sys.argv[1], sys.argv[2]
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1; opts.inter_op_num_threads = 1
s = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
names = [f"Sensor-{i}" for i in range(1, inp.shape[1] + 1)]
df = pl.read_csv(path, columns=names, schema_overrides={n: pl.Float32 for n in names}, null_values=["NA", "NaN", "nan", "null", "NULL"])
p = s.run(None, {inp.name: df.to_numpy().astype(np.float32, copy=False)})
assert len(p[0]) == df.height
"""

PROTOTYPE = r"""
import sys, pickle, pandas as pd
path, pickled = sys.argv[1], sys.argv[2]
frame = pd.read_csv(path)
X = frame[[f"Sensor-{i}" for i in range(1, 591)]].apply(pd.to_numeric, errors="coerce")
model = pickle.load(open(pickled, "rb"))
p = model.predict_proba(X)[:, 1]
assert len(p) == len(frame)
"""


def measure(cmd):
    """Runs cmd; returns (cpu_s, wall_s, max_rss_mb)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed: {os.waitstatus_to_exitcode(status)}")
    return ru.ru_utime + ru.ru_stime, wall, ru.ru_maxrss / 1024


def med(xs):
    return f"{statistics.median(xs):.3f} [{min(xs):.3f}–{max(xs):.3f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prototype", action="store_true")
    ap.add_argument("--prototype-imputer", choices=["median", "knn"], default="median")
    ap.add_argument("--faultline", default=os.path.join(ROOT, "target", "release", "faultline"))
    args = ap.parse_args()
    src, header, rows, tmp, big = big_csv(args.rows)
    mb = os.path.getsize(big) / 1e6
    model = os.path.join(ROOT, "models", "wafer-fault", "model.onnx")
    peer = os.path.join(tmp, "peer.py")
    with open(peer, "w") as f:
        f.write(PEER)
    scan = os.path.join(os.path.dirname(args.faultline), "examples", "scan")
    contenders = {
        "faultline score": [args.faultline, "score", "--input", big, "--output", "/dev/null"],
        "polars.read_csv + onnxruntime": [sys.executable, peer, big, model],
    }
    if os.path.exists(scan):
        contenders["plain byte scan (examples/scan.rs)"] = [scan, big]
    with open(big, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    for cmd in contenders.values():  # warm-up: imports compiled, binaries paged in
        measure(cmd)
    results = {name: [] for name in contenders}
    for _ in range(args.runs):
        for name, cmd in contenders.items():
            results[name].append(measure(cmd))
    if args.prototype:
        results[f"prototype (pandas + {args.prototype_imputer} imputer + pickled XGBoost), 1 run"] = [
            prototype(tmp, big, src, args.prototype_imputer)]

    print(f"{args.rows} rows x {len(header)} columns, {mb:.1f} MB, rows from {src}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end")
    print(f"median of {args.runs} runs [lowest–highest]")
    print(f"| process | CPU s | wall s | MB/s per CPU-s |")
    print(f"|---|---:|---:|---:|")
    for name, rs in results.items():
        cpu = [r[0] for r in rs]
        wall = [r[1] for r in rs]
        rate = [mb / c for c in cpu]
        print(f"| {name} | {med(cpu)} | {med(wall)} | "
              f"{statistics.median(rate):.0f} [{min(rate):.0f}–{max(rate):.0f}] |")
    fl = statistics.median(r[0] for r in results["faultline score"])
    for name, rs in results.items():
        if name != "faultline score":
            print(f"CPU ratio {name} / faultline score: {statistics.median(r[0] for r in rs) / fl:.1f}x")


def prototype(tmp, big, src, imputer="median"):
    import numpy as np
    import pandas as pd
    import pickle
    import xgboost as xgb
    from sklearn.impute import KNNImputer, SimpleImputer
    from sklearn.pipeline import Pipeline

    sensors = [f"Sensor-{i}" for i in range(1, 591)]
    df = pd.read_csv(src)
    X = df[sensors].apply(pd.to_numeric, errors="coerce")
    y = (df["Good/Bad"] == 1).astype(int).to_numpy() if "Good/Bad" in df else (np.arange(len(df)) % 2)
    impute = KNNImputer(n_neighbors=5) if imputer == "knn" else SimpleImputer(strategy="median")
    pipe = Pipeline([("impute", impute),
                     ("xgb", xgb.XGBClassifier(n_estimators=150, max_depth=6, n_jobs=1, random_state=42))])
    pipe.fit(X, y)
    pickled = os.path.join(tmp, "model.pkl")
    with open(pickled, "wb") as f:
        pickle.dump(pipe, f)
    script = os.path.join(tmp, "prototype.py")
    with open(script, "w") as f:
        f.write(PROTOTYPE)
    return measure([sys.executable, script, big, pickled])


if __name__ == "__main__":
    sys.exit(main())
