"""Live quality recomputed from faultline's store with scikit-learn (called by tests/closed_loop.rs).

Reads the store's Arrow IPC files with pyarrow (as a user would), joins the labels to the rows
by id the way the daemon documents it (a wafer's last scoring, its last label; the most recently
labelled wafers first), takes the last --window of them that model --version scored, and prints
the scikit-learn figures as JSON:

    python tests/python/quality_check.py --store DIR --version wf-... --threshold 0.07 --window 300
"""

import argparse
import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.ipc
from sklearn.metrics import average_precision_score, confusion_matrix, precision_score, roc_auc_score


def read(pattern):
    tables = []
    for path in sorted(glob.glob(pattern)):
        with pa.OSFile(path, "rb") as f:
            tables.append(pa.ipc.open_stream(f).read_all())
    return tables


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--window", type=int, required=True)
    args = ap.parse_args()

    # Each wafer's score by this model, from its last scoring.
    score = {}
    for t in read(os.path.join(args.store, "scored-*.arrows")):
        d = t.select(["id", "probability", "model_version", "shadow_probability", "shadow_version"]).to_pydict()
        for i, wafer in enumerate(d["id"]):
            if d["model_version"][i] == args.version:
                score[wafer] = d["probability"][i]
            elif d["shadow_version"][i] == args.version:
                score[wafer] = d["shadow_probability"][i]

    # Labels in arrival order; a wafer keeps its first place and its last label.
    order, label = [], {}
    for t in read(os.path.join(args.store, "labels-*.arrows")):
        d = t.select(["id", "label"]).to_pydict()
        for wafer, y in zip(d["id"], d["label"]):
            if wafer not in label:
                order.append(wafer)
            label[wafer] = y

    joined = [w for w in order if w in score][-args.window :]
    y = np.array([1 if label[w] == 1 else 0 for w in joined])
    # The daemon compares float32 probabilities; pyarrow hands them over as the same floats.
    p = np.array([score[w] for w in joined], dtype=np.float32).astype(np.float64)
    flagged = (p >= np.float32(args.threshold)).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, flagged, labels=[0, 1]).ravel()
    out = {
        "labelled": len(joined),
        "positives": int(y.sum()),
        "negatives": int(len(y) - y.sum()),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
        "pr_auc": float(average_precision_score(y, p)) if y.sum() > 0 else None,
        "true_positives": int(tp),
        "false_positives": int(fp),
        "false_negatives": int(fn),
        "true_negatives": int(tn),
        "recall": float(tp / (tp + fn)) if tp + fn else None,
        "false_alarm_rate": float(fp / (fp + tn)) if fp + tn else None,
        "precision": float(precision_score(y, flagged, zero_division=0)) if tp + fp else None,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
