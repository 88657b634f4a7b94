"""Several input files, the export's `Time` column and the --since/--until window (synthetic data only)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import train
from helpers import check_model_dir
from synth import write_synthetic_wafer_csv

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def stamps(first_minute: int, n: int) -> list:
    """Export-style times (RFC 3339 UTC, milliseconds, 'Z'), one minute apart."""
    return [(T0 + dt.timedelta(minutes=first_minute + i, milliseconds=123)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            + "Z" for i in range(n)]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def drop_time_column(lines: list) -> list:
    return [ln.rsplit(",", 1)[0] for ln in lines]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two 200-row files with a Time column (A: minutes 0..199, B: minutes 200..399) and a plain file."""
    d = tmp_path_factory.mktemp("exports")
    a, b, plain = d / "export_a.csv", d / "export_b.csv", d / "plain.csv"
    write_synthetic_wafer_csv(a, n_rows=200, seed=7, times=stamps(0, 200))
    write_synthetic_wafer_csv(b, n_rows=200, seed=8, first_id=201, times=stamps(200, 200))
    write_synthetic_wafer_csv(plain, n_rows=50, seed=9, first_id=1001)
    return a, b, plain


# The window: A's row 100 (inclusive) .. B's row 150 (exclusive), the end written with a +01:00 offset.
SINCE = stamps(100, 1)[0]  # 2026-11-01T01:40:00.123Z
UNTIL_Z = stamps(350, 1)[0]  # 2026-11-01T05:50:00.123Z
UNTIL = "2026-11-01T06:50:00.123+01:00"


@pytest.fixture(scope="module")
def windowed(exports, tmp_path_factory):
    a, b, _ = exports
    out = tmp_path_factory.mktemp("windowed")
    card = train.main(["--input", str(a), str(b), "--since", SINCE, "--until", UNTIL,
                       "--output-dir", str(out), "--grid", "quick"])
    return out, card


def test_window_selects_rows_and_card_records_inputs(windowed, exports):
    a, b, _ = exports
    out, card = windowed
    on_disk = check_model_dir(out)
    assert on_disk == json.loads(json.dumps(card))
    t = on_disk["training"]
    assert t["files"] == [
        {"path": str(a), "sha256": sha(a), "rows": 100, "rows_read": 200, "rows_used": 100, "time_column": True},
        {"path": str(b), "sha256": sha(b), "rows": 150, "rows_read": 200, "rows_used": 150, "time_column": True},
    ]
    assert t["window"] == {"since": SINCE, "until": UNTIL_Z}
    assert t["rows"] == 250 and on_disk["validation"]["rows"] == 200
    # Time is never a feature
    assert on_disk["input"]["features"] == train.SENSORS
    assert "Time" not in t["features_used"] and len(on_disk["sensors"]) == 590


def test_window_defines_the_model_only_through_its_rows(windowed, exports, tmp_path):
    """The same rows without a Time column (other file, other path, no window) give the byte-identical model
    and so the same version id: Time is not a feature, and the version is the model's content hash."""
    a, b, _ = exports
    out, card = windowed
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    same = tmp_path / "same_rows.csv"
    same.write_text("\n".join(drop_time_column([la[0]] + la[101:201] + lb[1:151])) + "\n")
    out2 = tmp_path / "o"
    card2 = train.main(["--input", str(same), "--output-dir", str(out2), "--grid", "quick"])
    assert card2["version"] == card["version"]
    assert (out2 / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    assert (out2 / "golden.csv").read_bytes() == (out / "golden.csv").read_bytes()
    assert card2["training"]["window"] == {"since": None, "until": None}
    assert card2["training"]["files"] == [{"path": str(same), "sha256": sha(same), "rows": 250, "rows_read": 250,
                                           "rows_used": 250, "time_column": False}]


def test_files_with_and_without_time_concatenate_in_the_order_given(exports):
    a, b, plain = exports
    da, db, dp = (train.read_wafer_csv(str(p)) for p in (a, b, plain))
    assert da.X.shape == (200, 590) and da.files[0]["time_column"] and not dp.files[0]["time_column"]
    assert da.times[0] == stamps(0, 1)[0] and dp.times[0] is None
    # given order wins, even against the Time order (no window: times are not even parsed)
    d = train.read_inputs([b, plain, a])
    assert d.ids == db.ids + dp.ids + da.ids
    assert np.array_equal(d.X, np.vstack([db.X, dp.X, da.X]), equal_nan=True)
    assert np.array_equal(d.y, np.concatenate([db.y, dp.y, da.y]))
    assert [f["path"] for f in d.files] == [str(b), str(plain), str(a)]
    assert [f["rows_used"] for f in d.files] == [200, 50, 200] and not d.notes
    # with a window, times that run backwards across the given order are pointed out (not re-sorted)
    w = train.read_inputs([b, a], since=train.parse_time(SINCE))
    assert w.ids == db.ids + da.ids[100:]
    assert len(w.notes) == 1 and f"{a}:102" in w.notes[0]


def test_window_with_a_file_without_time_fails(exports, tmp_path):
    a, _, plain = exports
    with pytest.raises(train.InputError, match=rf"{re.escape(str(plain))} has no 'Time' column, so --since/--until"):
        train.main(["--input", str(a), str(plain), "--since", SINCE, "--output-dir", str(tmp_path / "x")])
    r = subprocess.run([sys.executable, train.__file__, "--input", str(plain), str(a), "--until", UNTIL,
                        "--output-dir", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {plain} has no 'Time' column")
    assert not (tmp_path / "o").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("cell, message", [
    ("", "empty Time"),
    ("yesterday", "not an RFC 3339 time"),
    ("2026-11-01T01:50:00", "not an RFC 3339 time with a UTC offset"),  # no offset: ambiguous
    ("2026-11-01", "not an RFC 3339 time"),  # a bare date is only allowed for --since/--until
    ("2026-13-01T00:00:00Z", "not a valid time"),
])
def test_bad_time_fails_naming_file_and_row(exports, tmp_path, cell, message):
    a, _, _ = exports
    lines = a.read_text().splitlines()
    cells = lines[5].split(",")
    cells[-1] = cell
    lines[5] = ",".join(cells)
    bad = tmp_path / "bad_time.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(train.InputError, match=rf"^{re.escape(str(bad))}:6: .*{message}"):
        train.read_inputs([bad], since=train.parse_time(SINCE))
    # without a window the Time column is not used, so it is not checked either
    assert len(train.read_inputs([bad]).ids) == 200


def test_window_leaving_too_little_fails(exports, tmp_path):
    a, b, _ = exports
    base = ["--input", str(a), str(b), "--output-dir", str(tmp_path / "o"), "--grid", "quick"]
    with pytest.raises(train.InputError, match=r"^no rows in the window .*export_a.csv: 0 of 200"):
        train.main(base + ["--since", "2027-01-01"])
    first_fault = int(np.flatnonzero(train.read_wafer_csv(str(a)).y)[0])
    assert first_fault > 0
    with pytest.raises(train.InputError, match=r"not enough rows \(5\) in the window"):
        train.main(base + ["--since", stamps(first_fault, 1)[0], "--until", stamps(first_fault + 5, 1)[0]])
    with pytest.raises(train.InputError, match=r"no faulty wafers \(Good/Bad = \+1\) among the"):
        train.main(base + ["--until", stamps(first_fault, 1)[0]])
    with pytest.raises(train.InputError, match="empty time window"):
        train.main(base + ["--since", UNTIL, "--until", SINCE])
    assert not (tmp_path / "o").exists()


def test_duplicate_ids_are_checked_on_the_rows_used(exports, tmp_path):
    a, _, _ = exports
    lines = a.read_text().splitlines()
    dup = tmp_path / "dup.csv"  # Wafer-1..Wafer-10 again, scored later
    dup.write_text("\n".join([lines[0]] + [ln.rsplit(",", 1)[0] + "," + t
                                           for ln, t in zip(lines[1:11], stamps(500, 10))]) + "\n")
    with pytest.raises(train.SchemaError, match="'Wafer-1' appears more than once in the inputs: " + re.escape(f"{a}:2 and {dup}:2")):
        train.read_inputs([a, dup])
    d = train.read_inputs([a, dup], since=train.parse_time(stamps(100, 1)[0]))  # the first copies are outside
    assert d.ids[-10:] == [f"Wafer-{i}" for i in range(1, 11)]


def test_time_header_variants(tmp_path):
    p = tmp_path / "unlabelled.csv"
    write_synthetic_wafer_csv(p, n_rows=3, seed=1, label=False, times=stamps(0, 3))
    with pytest.raises(train.SchemaError, match="no label column.*unlabelled export"):
        train.read_wafer_csv(str(p))
    q = tmp_path / "renamed.csv"
    write_synthetic_wafer_csv(q, n_rows=3, seed=1, times=stamps(0, 3))
    lines = q.read_text().splitlines()
    q.write_text("\n".join([lines[0][:-len("Time")] + "Scored"] + lines[1:]) + "\n")
    with pytest.raises(train.SchemaError, match="last header column must be 'Time'"):
        train.read_wafer_csv(str(q))


def test_parse_time():
    ns = train.parse_time("2026-11-26T12:00:01.123Z")
    assert ns == int(dt.datetime(2026, 11, 26, 12, 0, 1, tzinfo=dt.timezone.utc).timestamp()) * 10**9 + 123_000_000
    assert train.parse_time("2026-11-26T13:00:01.123+01:00") == ns
    assert train.parse_time("2026-11-26t12:00:01.123000000z") == ns
    assert train.parse_time("2026-11-26T12:00:01.123456789Z") == ns + 456_789
    assert train.parse_time("2026-11-26", allow_date=True) == train.parse_time("2026-11-26T00:00:00Z")
    assert train.format_time(ns) == "2026-11-26T12:00:01.123Z"
    assert train.format_time(train.parse_time("2026-11-01", allow_date=True)) == "2026-11-01T00:00:00Z"
    for bad in ("2026-11-26T12:00:01", "2026-11-26 12:00", "", "1764158401"):
        with pytest.raises(ValueError):
            train.parse_time(bad, allow_date=True)
    with pytest.raises(SystemExit):  # argparse: exit status 2 with the reason
        train.parse_args(["--since", "last tuesday"])
