"""End-to-end pipeline test on a generated wafer CSV (no access to the real data)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import onnx_export
import recipes
import selection
import train
from helpers import check_model_dir
from synth import write_synthetic_wafer_csv


@pytest.fixture(scope="module")
def synth_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "wafer_synth.csv"
    write_synthetic_wafer_csv(p, n_rows=300, seed=7)
    return p


@pytest.fixture(scope="module")
def run1(synth_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("run1")
    card = train.main(["--input", str(synth_csv), "--output-dir", str(out), "--grid", "quick"])
    return out, card


def test_artifacts_and_card(run1):
    out, card = run1
    on_disk = check_model_dir(out)
    assert on_disk["version"] == card["version"]
    t = on_disk["training"]
    assert t["rows"] == 300 and t["files"][0]["rows"] == 300 and len(t["files"][0]["sha256"]) == 64
    assert "Sensor-10" in t["dropped_sensors"]["constant"]
    assert {"Sensor-13", "Sensor-26"} <= set(t["dropped_sensors"]["mostly_missing"])
    assert "Sensor-13" not in t["features_used"] and "Sensor-10" not in t["features_used"]
    s13 = on_disk["sensors"][12]
    assert s13["median"] is None and s13["iqr"] is None and s13["missing_ratio"] == 1.0
    v = on_disk["validation"]
    # rows 1..60 only train; the other 240 are scored window by window and pooled
    assert v["rows"] == 240 and v["scheme"].startswith("pooled out-of-fold predictions over 8 expanding")
    assert v["onnxruntime_max_abs_diff"] <= 1e-5
    names = [c["name"] for c in v["comparisons"]]
    assert names == ["logistic-rank", "xgboost-depth1", "logistic-rank/half-life-100", "blend"]
    for c in v["comparisons"]:
        assert c["roc_auc_ci95"][0] <= c["roc_auc"] <= c["roc_auc_ci95"][1]
    # informative synthetic sensors are found
    assert v["roc_auc"] > 0.8


def test_onnx_matches_python_model_after_imputation(run1, synth_csv):
    """Re-fit the selected recipe on all rows and compare predict_proba with onnxruntime."""
    out, card = run1
    data = train.read_inputs([synth_csv], [str(synth_csv)])
    recipe = next(r for r in recipes.candidates("quick") if r.name == card["training"]["selection"]["selected"])
    fitted = recipes.fit(data.X, data.y, recipe, seed=42)
    blob = (out / "model.onnx").read_bytes()
    _, proba = onnx_export.ort_predict(blob, data.X.astype(np.float32))
    assert np.max(np.abs(proba[:, 1] - fitted.predict(data.X))) <= 1e-5
    if recipe.family == "logistic-rank":  # a coefficient for every sensor used (terms: test below)
        from sklearn.linear_model import LogisticRegression  # noqa: F401  (the family's own fitter)
        assert len(fitted.detail["coefficients"]) >= len(fitted.columns)
    assert [train.SENSORS[j] for j in fitted.columns] == card["training"]["features_used"]


def test_second_run_is_identical(run1, synth_csv, tmp_path):
    out, card = run1
    card2 = train.main(["--input", str(synth_csv), "--output-dir", str(tmp_path), "--grid", "quick"])
    assert card2["version"] == card["version"]
    assert (tmp_path / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    assert (tmp_path / "golden.csv").read_bytes() == (out / "golden.csv").read_bytes()
    a = json.loads((tmp_path / "model.json").read_text())
    b = json.loads((out / "model.json").read_text())
    a.pop("created_at"), b.pop("created_at")
    assert a == b


def test_header_rejects_unlabelled_591_columns(tmp_path):
    p = tmp_path / "wafer_nolabel.csv"
    write_synthetic_wafer_csv(p, n_rows=5, seed=3, label=False)
    assert len(p.read_text().splitlines()[0].split(",")) == 591
    with pytest.raises(train.SchemaError, match="no label column"):
        train.read_wafer_csv(str(p))
    # the CLI exits with status 2 and a clear message, writing nothing
    r = subprocess.run([sys.executable, train.__file__, "--input", str(p), "--output-dir", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "no label column" in r.stderr and "Good/Bad" in r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("mutate, message", [
    (lambda h: h[:-1] + ["Output"], "last header column"),
    (lambda h: h[:5] + ["Sensor-X"] + h[6:], "must be 'Sensor-5'"),
    (lambda h: ["Wafer"] + h[1:], "first header cell"),
    (lambda h: h[:563], "expected 592 columns"),
])
def test_header_validation_errors(tmp_path, mutate, message):
    p = tmp_path / "bad.csv"
    write_synthetic_wafer_csv(p, n_rows=3, seed=1)
    lines = p.read_text().splitlines()
    header = mutate(lines[0].split(","))
    p.write_text("\n".join([",".join(header)] + lines[1:]) + "\n")
    with pytest.raises(train.SchemaError, match=message):
        train.read_wafer_csv(str(p))


def test_bad_cells_rejected(tmp_path):
    p = tmp_path / "bad.csv"
    write_synthetic_wafer_csv(p, n_rows=3, seed=1)
    lines = p.read_text().splitlines()
    cells = lines[2].split(",")
    cells[7] = "2020-01-07"
    lines[2] = ",".join(cells)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(train.SchemaError, match="Sensor-7 is not a number"):
        train.read_wafer_csv(str(p))


def test_threshold_rule():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    s = np.array([.1, .2, .3, .4, .5, .6, .7, .8, .85, .95, .9, .15], dtype=np.float32)
    # at most 2 of 10 good wafers may be flagged.  Catching the fault at .15 would flag 9 good wafers, so the
    # best recall is 1/2; thresholds .9 (far 1/10) and .85 (far 2/10) both give it -> the higher one, .9.
    t = train.choose_threshold(y, s)
    assert t == float(np.float32(0.9))
    m = selection.at_threshold(y, s, t)
    assert m["recall"] == 0.5 and m["false_alarm_rate"] == 0.1 and m["flagged"] == 2
    # tie on recall -> highest threshold
    y2 = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    s2 = np.array([.1, .2, .3, .4, .5, .6, .7, .8, .81, .82, .9], dtype=np.float32)
    assert train.choose_threshold(y2, s2) == float(np.float32(0.9))


def test_the_alarm_budget_is_the_daemons_rule():
    """selection.alarm_budget decides as src/model/decide.rs does (the same cases as its unit tests)."""
    # warm-up: the fixed threshold decides until the window holds warmup_rows wafers
    f, b = selection.alarm_budget(np.array([0.6, 0.4, 0.1, 0.05]), 0.5, 0.5, 10, 3)
    assert f.tolist() == [True, False, False, False] and b.tolist() == [False, False, True, True]
    # the window forgets old scores: after four highs and four lows the threshold is the lows' median
    # (the highs, tied past the share, are flagged because the fixed threshold flags them too;
    # at a fixed threshold above them only the first, which fits the share alone, is)
    p = np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.2, 0.3, 0.4, 0.35], dtype=np.float32)
    f, b = selection.alarm_budget(p, 0.5, 0.5, 4, 1)
    assert b.all() and f.tolist() == [True, True, True, True, False, False, True, True, True]
    f, b = selection.alarm_budget(p, 0.95, 0.5, 4, 1)
    assert b.all() and f.tolist() == [True, False, False, False, False, False, True, True, True]
    # ties at the cutoff: a run of one score is not flagged whole; ties that fit are
    f, _ = selection.alarm_budget(np.full(300, 0.05), 0.5, 0.1, 200, 20)
    assert not f.any()
    # ...unless the fixed threshold flags the tie itself: a run at 1.0 is flagged whole
    f, _ = selection.alarm_budget(np.append(np.full(300, 0.05), np.ones(300)), 0.5, 0.1, 200, 20)
    assert not f[:300].any() and f[300:].all()
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9], dtype=np.float32)
    f, _ = selection.alarm_budget(p, 0.95, 0.2, 10, 1)
    assert f[-3:].tolist() == [True, True, False]
    # at least one wafer is flagged: the window's top score
    f, _ = selection.alarm_budget(np.array([0.3, 0.2, 0.1]), 0.9, 0.01, 200, 1)
    assert f.tolist() == [True, False, False]
    # a NaN score is not flagged and does not enter the window
    f, b = selection.alarm_budget(np.array([np.nan, 0.1, 0.2]), 0.9, 0.5, 2, 2)
    assert f.tolist() == [False, False, True] and b.tolist() == [False, False, True]
    # a share that is a whole number of wafers flags that many, as decide.rs does (0.07 * 200 is
    # 14.000000000000002 in floating point): the 14th highest of 200 is flagged, the 15th not
    # (after 0.001 .. 0.200 comes 0.186: the window holds 0.002 .. 0.200 and it, and 0.187 is the
    # 14th highest, so 0.186 is not flagged; with 15 it would be)
    p = np.append(np.arange(1, 201) / 1000, 0.186).astype(np.float32)
    f, _ = selection.alarm_budget(p, 0.5, 0.07, 200, 1)
    assert f[-2] and not f[-1]
    # a steady stream: about the budget's share is flagged
    p = np.random.default_rng(1).random(3000).astype(np.float32)
    f, b = selection.alarm_budget(p, 0.5, 0.2, 1000, 200)
    assert 0.18 < f[b].mean() < 0.22


def test_the_alarm_figures_use_the_daemons_default_window():
    """The card's alarm-budget figures are for the window a user gets by default."""
    import tomllib
    from pathlib import Path

    cfg = tomllib.loads((Path(train.REPO_ROOT) / "config" / "default.toml").read_text())["model"]
    assert (cfg["alarm_window_rows"], cfg["alarm_warmup_rows"]) == (train.ALARM_WINDOW_ROWS,
                                                                    train.ALARM_WARMUP_ROWS)


def test_simplest_wins_unless_clearly_beaten():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(np.int64)
    noise = rng.normal(size=400)
    weak = noise + 0.3 * y
    boot = selection.bootstrap_indices(400, 1, 300)
    # a near-identical candidate does not replace the simplest
    chosen, gains = selection.pick(y, {"simple": weak, "fancy": weak + 0.01 * rng.normal(size=400)},
                                   ["simple", "fancy"], boot)
    assert chosen == "simple" and gains["fancy"][0] <= 0 <= gains["fancy"][1]
    # a far better one does
    chosen, gains = selection.pick(y, {"simple": weak, "fancy": noise + 3.0 * y}, ["simple", "fancy"], boot)
    assert chosen == "fancy" and gains["fancy"][0] > 0


def test_logistic_rank_trees_reproduce_the_regression():
    """The exported step trees give exactly the regression's decision function on the rank features."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 590))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (rng.random(300) < 1 / (1 + np.exp(-2 * np.nan_to_num(X[:, 4])))).astype(np.int64)
    f = recipes.fit(X, y, recipes.candidates("quick")[0], seed=1)
    # node cover: every tree's leaves hold all 300 training rows
    hit = np.asarray(f.trees.nodes_hitrates)
    roots = [i for i, n in enumerate(f.trees.nodes_nodeids) if n == 0]
    assert np.all(hit[roots] == 300)
    # the model reads sensor 5 (index 4) most
    top = max(f.detail["coefficients"].items(), key=lambda kv: abs(kv[1]))
    assert top[0] == 4 and top[1] > 0
    # and the trees' margin is the regression's intercept plus its terms, sensor by sensor (a missing
    # value imputed with the sensor's training median first)
    filled = np.where(np.isnan(X), np.asarray(f.medians, dtype=np.float64)[None, :], X)
    assert np.allclose(f.margin(X), [f.detail["intercept"] + sum(
        c * (np.searchsorted(e, np.float32(x[j]), side="right") / len(e) - m) / sd
        for j, (e, c, m, sd) in f.detail["terms"].items()) for x in filled], atol=1e-4)
    # and that is scikit-learn's own regression on those rank features, fitted here apart: the terms'
    # coefficients are not merely read back from the same fit
    from sklearn.linear_model import LogisticRegression

    cols = sorted(f.detail["terms"])
    S = np.array([[(np.searchsorted(f.detail["terms"][j][0], np.float32(x[j]), side="right")
                    / len(f.detail["terms"][j][0]) - f.detail["terms"][j][2]) / f.detail["terms"][j][3]
                   for j in cols] for x in filled])
    lr = LogisticRegression(C=f.detail["C"], max_iter=5000, tol=1e-8).fit(S, y)
    assert np.allclose(f.margin(X), lr.decision_function(S), atol=1e-4)


def test_out_of_fold_predictions_never_see_later_rows():
    """Each window is scored by a fit on the rows before it alone: rows from a window on (values and
    labels, and so the medians, the rank edges and the usable sensors) change nothing before it."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(240, 590))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = (rng.random(240) < 1 / (1 + np.exp(-2 * np.nan_to_num(X[:, 4])))).astype(np.int64)
    edges = selection.window_edges(len(y), 0.25, 3)
    recipe = recipes.candidates("quick")[0]
    before = selection.out_of_fold(X, y, recipe, 1, edges)
    b = int(edges[2])
    X2, y2 = X.copy(), y.copy()
    X2[b:] = rng.normal(loc=50.0, scale=10.0, size=X2[b:].shape)
    X2[b:, 7] = np.nan
    y2[b:] = 1 - y2[b:]
    after = selection.out_of_fold(X2, y2, recipe, 1, edges)
    assert np.array_equal(before[:b], after[:b], equal_nan=True)
    # and the check has teeth: the change moves a fit that sees those rows, on the same rows
    a = int(edges[0])
    assert not np.allclose(recipes.fit(X2, y2, recipe, 1).margin(X[a:b]),
                           recipes.fit(X, y, recipe, 1).margin(X[a:b]), atol=1e-3)


def test_univariate_selection_keeps_the_strongest_sensors_only():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 590))
    y = (rng.random(300) < 1 / (1 + np.exp(-3 * X[:, 9]))).astype(np.int64)
    recipe = recipes.Recipe("t", "logistic-rank", 2, l2=1.0, top_k=10)
    f = recipes.fit(X, y, recipe, seed=1)
    assert f.trees.n_trees == 10 and len(f.columns) == 10 and 9 in set(f.columns.tolist())
    assert set(f.detail["coefficients"]) == set(f.columns.tolist())
    # the exported trees are exactly those sensors' terms
    assert np.allclose(f.margin(X), [f.detail["intercept"] + sum(
        c * (np.searchsorted(e, np.float32(x[j]), side="right") / len(e) - m) / sd
        for j, (e, c, m, sd) in f.detail["terms"].items()) for x in X], atol=1e-4)
