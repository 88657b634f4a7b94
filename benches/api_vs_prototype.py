#!/usr/bin/env python3
"""Scoring a 10,000-row wafer CSV: faultline's POST /api/score vs the old prototype's approach.

The old Flask prototype read the upload with pandas, coerced every cell to a number and ran a
pickled scikit-learn pipeline (median imputer + XGBoost). This script times both on the same file:

    .venv/bin/pip install -r benches/requirements.txt
    cargo build --release
    .venv/bin/python benches/api_vs_prototype.py [--rows 10000] [--repeat 3]

faultline runs as `target/release/faultline serve` on free ports; its time is the whole HTTP round
trip (upload, parse, validate, score, explain, JSON answer). The prototype's time is pandas read +
unpickling + predict_proba (no HTTP at all, which favours it). The two are alternated --repeat times;
the table gives the median of each with the lowest and highest in brackets.
"""
import argparse
import io
import json
import os
import pickle
import socket
import statistics
import subprocess
import sys
import time

from wafer_files import big_csv
import urllib.request

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SENSORS = [f"Sensor-{i}" for i in range(1, 591)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--faultline", default=os.path.join(ROOT, "target", "release", "faultline"),
                    help="the binary to serve with (to compare two builds in one session)")
    args = ap.parse_args()
    src, header, rows, tmp, big = big_csv(args.rows)
    size_mb = os.path.getsize(big) / 1e6

    # The prototype's model: a pickled median-imputer + XGBoost pipeline, trained on the source rows.
    df = pd.read_csv(src)
    X = df[SENSORS].apply(pd.to_numeric, errors="coerce")
    y = (df["Good/Bad"] == 1).astype(int).to_numpy() if "Good/Bad" in df else (np.arange(len(df)) % 2)
    pipe = Pipeline([("impute", SimpleImputer(strategy="median")),
                     ("xgb", xgb.XGBClassifier(n_estimators=150, max_depth=6, n_jobs=1, random_state=42))])
    pipe.fit(X, y)
    pickled = os.path.join(tmp, "model.pkl")
    with open(pickled, "wb") as f:
        pickle.dump(pipe, f)

    def prototype():
        t = time.perf_counter()
        frame = pd.read_csv(big)
        Xb = frame[SENSORS].apply(pd.to_numeric, errors="coerce")  # the prototype's silent coercion
        with open(pickled, "rb") as f:
            model = pickle.load(f)
        p = model.predict_proba(Xb)[:, 1]
        assert len(p) == args.rows
        return time.perf_counter() - t

    web, broker = free_port(), free_port()
    env = dict(os.environ, FAULTLINE_WEB__LISTEN=f"127.0.0.1:{web}", FAULTLINE_BROKER__LISTEN=f"127.0.0.1:{broker}",
               RUST_LOG="warn,rumqttd=off")
    server = subprocess.Popen([args.faultline, "serve"], env=env)
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{web}/healthz", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("faultline serve did not start")
                time.sleep(0.1)
        body = open(big, "rb").read()

        def faultline():
            """The round trip's seconds, and the part of them until the answer's headers
            arrived (upload, parse, score, the checks, the JSON answer built)."""
            t = time.perf_counter()
            req = urllib.request.Request(f"http://127.0.0.1:{web}/api/score", data=body,
                                         headers={"Content-Type": "text/csv"})
            with urllib.request.urlopen(req, timeout=120) as r:
                headers = time.perf_counter() - t
                answer = json.load(r)
            assert len(answer["results"]) == args.rows
            return time.perf_counter() - t, headers

        runs = [(faultline(), prototype()) for _ in range(args.repeat)]  # alternated
        fls = sorted(f for (f, _), _ in runs)
        hds = sorted(h for (_, h), _ in runs)
        prs = sorted(p for _, p in runs)
        fl, hd, pr = statistics.median(fls), statistics.median(hds), statistics.median(prs)
    finally:
        server.terminate()
        server.wait(timeout=15)
    print(f"{args.rows} rows x {len(header)} columns ({size_mb:.1f} MB), rows from {src}")
    print(f"median of {args.repeat} alternated runs [lowest-highest]")
    print(f"{'approach':<44} {'seconds':>22} {'rows/s':>10}")
    print(f"{'faultline POST /api/score (HTTP round trip)':<44} {fl:>8.3f} [{fls[0]:.3f}-{fls[-1]:.3f}] {args.rows / fl:>10,.0f}")
    print(f"{'  of which until the answer (server side)':<44} {hd:>8.3f} [{hds[0]:.3f}-{hds[-1]:.3f}] {args.rows / hd:>10,.0f}")
    print(f"{'prototype: pandas read + pickled pipeline':<44} {pr:>8.3f} [{prs[0]:.3f}-{prs[-1]:.3f}] {args.rows / pr:>10,.0f}")
    print(f"faultline is {pr / fl:.1f}x the prototype's speed (ratio of the medians); {pr / hd:.1f}x until "
          "the answer, before Python reads its JSON")


if __name__ == "__main__":
    sys.exit(main())
