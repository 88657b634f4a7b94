"""Synthetic wafer CSVs for the tests (no access to the real data needed)."""

from __future__ import annotations

import numpy as np

N_SENSORS = 590


def write_synthetic_wafer_csv(path, n_rows: int = 300, seed: int = 7, label: bool = True, first_id: int = 1,
                              times=None) -> None:
    """Rows in 'production order': a few informative sensors (with a slow drift), ~5% NaN cells,
    one constant sensor, one all-empty sensor, one mostly-empty sensor, ~10% faulty wafers.
    Wafer ids are Wafer-<first_id>.. ; `times` (one string per row) adds the export's final `Time` column."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 1.0, size=(n_rows, N_SENSORS)) * rng.uniform(0.1, 50.0, N_SENSORS) \
        + rng.uniform(-100.0, 3000.0, N_SENSORS)
    t = np.linspace(0.0, 1.0, n_rows)
    latent = rng.normal(size=n_rows)
    y = (latent + rng.normal(0.0, 0.6, n_rows) > 1.35).astype(int)  # ~10 %
    for j, w in ((3, 2.0), (17, -1.5), (58, 1.0), (200, 0.8)):
        X[:, j] = 10.0 * j + w * latent * 4.0 + 3.0 * t  # informative, with drift
    X[:, 9] = 42.0  # constant
    X[rng.random(X.shape) < 0.05] = np.nan
    X[:, 12] = np.nan  # all empty
    X[rng.random(n_rows) < 0.8, 25] = np.nan  # mostly missing
    X = np.round(X, 4)
    header = [""] + [f"Sensor-{i}" for i in range(1, N_SENSORS + 1)] + (["Good/Bad"] if label else []) \
        + (["Time"] if times is not None else [])
    lines = [",".join(header)]
    for i in range(n_rows):
        cells = [f"Wafer-{first_id + i}"] + ["" if np.isnan(v) else repr(float(v)) for v in X[i]]
        if label:
            cells.append("1" if y[i] else "-1")
        if times is not None:
            cells.append(times[i])
        lines.append(",".join(cells))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
