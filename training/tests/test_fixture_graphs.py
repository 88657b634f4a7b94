"""tests/fixtures/graphs: regenerating gives the same bytes, and onnxruntime reproduces every CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx

import make_fixture_graphs
import onnx_export

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "graphs"
NAMES = [v[0] for v in make_fixture_graphs.variants()]


def test_regeneration_is_byte_identical(tmp_path):
    make_fixture_graphs.main(["--out-dir", str(tmp_path)])
    for name in NAMES + ["xgb_contribs", "fallback_logistic"]:
        for ext in (".onnx", ".csv"):
            assert (tmp_path / f"{name}{ext}").read_bytes() == (FIXTURES / f"{name}{ext}").read_bytes(), name + ext


def test_committed_csvs_match_onnxruntime():
    for name in NAMES:
        blob = (FIXTURES / f"{name}.onnx").read_bytes()
        m = onnx.load_from_string(blob)
        assert {o.domain: o.version for o in m.opset_import} == {"": 17, "ai.onnx.ml": 3}
        assert m.graph.input[0].name == "input"
        with open(FIXTURES / f"{name}.csv", newline="") as fh:
            rd = csv.reader(fh)
            header = next(rd)
            assert header == [f"f{i}" for i in range(8)] + ["p0", "p1"]
            rows = [[float(c) if c else np.nan for c in r] for r in rd]
        a = np.asarray(rows, dtype=np.float32)
        assert a.shape == (200, 10)
        _, proba = onnx_export.ort_predict(blob, a[:, :8])
        assert np.array_equal(proba, a[:, 8:]), name
