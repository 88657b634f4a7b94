#!/usr/bin/env python3
"""faultline's native scorer vs onnxruntime on the same ONNX graph and the same rows, in one run.

Both run single-threaded. Prints rows/s for each, the ratio, and the largest probability
difference between them (parity must stay <= 1e-5).

    .venv/bin/python benches/vs_onnxruntime.py [--batch 256] [--seconds 3] [--input WAFER.csv]

Without --input it uses 4,096 synthetic rows drawn from the model card; with the real data,
pass e.g. --input ../shared/data/wafer/wafer_train.csv.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16, 256, 4096])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--input", help="wafer CSV to score (default: synthetic rows)")
    ap.add_argument("--no-build", action="store_true", help="use the already built release example")
    args = ap.parse_args()

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--example", "throughput", "--quiet"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "examples", "throughput")
    model_path = os.path.join(ROOT, "models", "wafer-fault", "model.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])

    print(f"{'batch':>6} {'faultline rows/s':>17} {'onnxruntime rows/s':>19} {'ratio':>7} {'max |diff|':>11}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batch:
            rows_csv, probs_txt = os.path.join(tmp, "rows.csv"), os.path.join(tmp, "probs.txt")
            cmd = [exe, "--batch", str(batch), "--seconds", str(args.seconds), "--rows-out", rows_csv, "--probs-out", probs_txt]
            if args.input:
                cmd += ["--input", args.input]
            native = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            x = np.genfromtxt(rows_csv, delimiter=",", skip_header=1, dtype=np.float64)[:, 1:].astype(np.float32)
            ours = np.loadtxt(probs_txt, dtype=np.float32)
            theirs = sess.run(["probabilities"], {"input": x})[0][:, 1]
            diff = float(np.max(np.abs(theirs - ours)))
            worst = max(worst, diff)
            # Time onnxruntime the same way: whole batches cycling over the rows.
            n = len(x)
            batches = [x[i:i + batch] for i in range(0, n - batch + 1, batch)] or [x]
            scored, i, start = 0, 0, time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                b = batches[i % len(batches)]
                sess.run(["probabilities"], {"input": b})
                scored += len(b)
                i += 1
            ort_rate = scored / (time.perf_counter() - start)
            ratio = native["rows_per_s"] / ort_rate
            print(f"{batch:>6} {native['rows_per_s']:>17,.0f} {ort_rate:>19,.0f} {ratio:>6.1f}x {diff:>11.2e}")
    print(f"trees: {native['trees']}; rows: {'synthetic (4096)' if not args.input else args.input}; onnxruntime {ort.__version__}")
    if worst > 1e-5:
        print(f"PARITY FAILED: max |diff| {worst:.3e} > 1e-5", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
