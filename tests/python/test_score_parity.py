"""`faultline score` (the Rust binary) against onnxruntime on the committed graph, to 1e-5.

Runs on rows the test generates; on the real wafer data too where this machine has it.
"""
import csv
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "wafer-fault"
BIN = os.environ.get("FAULTLINE_BIN", str(ROOT / "target" / "debug" / "faultline"))


def data_dir():
    d = Path(os.environ.get("FAULTLINE_DATA_DIR", ROOT.parent / "shared" / "data"))
    if (d / "wafer" / "wafer_train.csv").is_file():
        return d
    if os.environ.get("FAULTLINE_REQUIRE_DATA") == "1":
        pytest.fail(f"FAULTLINE_REQUIRE_DATA=1 but the real wafer data is not at {d}")
    pytest.skip(f"the real wafer data is absent ({d})")


def session():
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(MODEL / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def read_features(path):
    """Reads a wafer CSV the way training does: sensors by name, float64 then float32."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    sensors = [f"Sensor-{i}" for i in range(1, 591)]
    idx = [header.index(s) for s in sensors]
    x = np.array([[float(r[j]) if r[j].strip() not in ("", "NA", "NaN", "nan", "null") else np.nan for j in idx] for r in rows[1:]])
    return [r[0] for r in rows[1:]], x.astype(np.float32)


def score(path, tmp_path):
    out = tmp_path / "scores.csv"
    proc = subprocess.run([BIN, "score", "--input", str(path), "--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def check(path, tmp_path):
    ids, x = read_features(path)
    expected = session().run(["probabilities"], {"input": x})[0][:, 1]
    got = score(path, tmp_path)
    assert [r["id"] for r in got] == ids
    p = np.array([float(r["probability"]) for r in got], dtype=np.float32)
    diff = float(np.max(np.abs(p - expected)))
    assert diff <= 1e-5, f"max |diff| {diff:.3e}"
    threshold = float((MODEL / "model.json").read_text().split('"threshold":')[1].split(",")[0])
    assert [r["fault"] == "true" for r in got] == list(p >= np.float32(threshold))
    return diff, got


def test_generated_rows_match_onnxruntime(tmp_path):
    rng = np.random.default_rng(3)
    card = __import__("json").loads((MODEL / "model.json").read_text())
    med = np.array([s["median"] if s["median"] is not None else 0.0 for s in card["sensors"]])
    iqr = np.array([s["iqr"] if s["iqr"] else 1.0 for s in card["sensors"]])
    x = med + rng.normal(size=(500, 590)) * iqr * 2
    x[rng.random(x.shape) < 0.1] = np.nan
    x[0, :] = np.nan
    path = tmp_path / "generated.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([""] + [f"Sensor-{i}" for i in range(1, 591)])
        for i, row in enumerate(x):
            w.writerow([f"Gen-{i}"] + ["" if np.isnan(v) else repr(float(np.float32(v))) for v in row])
    diff, _ = check(path, tmp_path)
    print(f"generated rows: max |diff| vs onnxruntime {diff:.2e}")


def test_real_wafers_match_onnxruntime_and_flag_faulty_ones(tmp_path):
    d = data_dir()
    diff, got = check(d / "wafer" / "wafer_train.csv", tmp_path)
    print(f"1,145 real wafers: max |diff| vs onnxruntime {diff:.2e}")
    labels = [r["Good/Bad"] for r in got]
    assert labels.count("1") == 65
    flagged_faulty = sum(1 for r in got if r["Good/Bad"] == "1" and r["fault"] == "true")
    assert flagged_faulty > 0
