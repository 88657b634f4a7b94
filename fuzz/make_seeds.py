#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/): small synthetic inputs, made here,
never copied from the wafer data. Deterministic; rerun after changing it and commit the result.

    python3 fuzz/make_seeds.py
"""
import json
import shutil
from pathlib import Path

SEEDS = Path(__file__).resolve().parent / "seeds"
SENSORS = [f"Sensor-{i}" for i in range(1, 591)]  # the embedded model's features, in order


def value(i):
    """A sensor value of several shapes: integers, decimals, exponents, negatives, missing."""
    return [None, 0, 1.5, -0.0259, 3030.93, 1e-3, 2564, None, 0.0, -7][i % 10]


def compact_values():
    return [value(i) for i in range(len(SENSORS))]


def write(target, name, text):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def json_rows():
    t = "json_rows"
    # The three accepted forms: one object with sensor keys, the compact "values" form, an array.
    write(t, "object.json", json.dumps({
        "id": "Wafer-1146", "Sensor-1": 3030.93, "Sensor-2": 2564.0, "Sensor-3": None,
        "Sensor-590": -0.0259, "Good/Bad": -1,
    }))
    write(t, "compact.json", json.dumps({"id": "Wafer-7", "values": compact_values(), "Good/Bad": 1},
                                        separators=(",", ":")))
    write(t, "array.json", json.dumps([
        {"id": "Wafer-1", "Sensor-12": 1.5e3, "Sensor-13": None},
        {"id": 1147, "Sensor-1": 0, "Good/Bad": None, "Note": "an unknown key"},
        {"id": "Wafer-3", "values": compact_values()},
    ], separators=(",", ":")))
    write(t, "integer_id.json", '{"id": 42, "Sensor-7": 1e-3}')
    # Broken ones, one per kind of reject.
    write(t, "wrong_type.json", '{"id": "W-1", "Sensor-1": "abc"}')
    write(t, "wrong_length.json", '{"id": "W-2", "values": [1, 2, null]}')
    write(t, "mixed_forms.json", '{"id": "W-3", "values": [], "Sensor-1": 1}')
    write(t, "missing_id.json", '{"Sensor-1": 1.0, "id": null}')
    write(t, "not_finite.json", '{"id": "W-4", "Sensor-2": 1e999, "Sensor-3": -3.5e38}')
    write(t, "truncated.json", '{"id": "W-5", "Sensor-1": 30')
    write(t, "scalar.json", "12.5")
    write(t, "array_mixed.json", '[{"id": "ok", "Sensor-4": 4}, [1], {"id": ""}, {"id": "x", "Good/Bad": 0}]')
    write(t, "not_utf8.json", b'{"id": "W-\xff", "Sensor-1": 1}')


def csv_line(cells):
    return ",".join("" if c is None else str(c) for c in cells) + "\n"


def csv_rows():
    t = "csv_rows"
    # The wafer files' header: a blank id column, Sensor-1..Sensor-590, then Good/Bad.
    header = csv_line([""] + SENSORS + ["Good/Bad"])
    rows = [
        csv_line(["Wafer-801"] + [value(i) for i in range(590)] + [-1]),
        csv_line(["Wafer-802"] + [value(i + 3) for i in range(590)] + [1]),
        csv_line(["Wafer-803"] + ["NaN" if i % 7 == 0 else value(i + 5) for i in range(590)] + [""]),
    ]
    write(t, "wafer.csv", header + "".join(rows))
    write(t, "no_labels.csv", csv_line(["Wafer"] + SENSORS) + csv_line(["W-1"] + [value(i) for i in range(590)]))
    write(t, "extra_column.csv", csv_line(["id"] + SENSORS + ["Note"])
          + csv_line(["W-1"] + [value(i) for i in range(590)] + ['"a, quoted note"']))
    bad = [value(i) for i in range(590)]
    bad[11] = "abc"
    write(t, "bad_cell.csv", header + rows[0] + csv_line(["Wafer-9"] + bad + [1]))
    write(t, "ragged.csv", header + rows[0] + "Wafer-10,1,2,3\n")
    write(t, "header_only.csv", header)
    # Small ones, so that header planning is explored without a 7 KB header each time.
    write(t, "missing_columns.csv", ",Sensor-1,Sensor-2,Sensor-3,Good/Bad\nW-1,1,2,3,-1\n")
    write(t, "duplicate_columns.csv", ",Sensor-1,Sensor-1,,Sensor-2\nW-1,1,2,,3\n")
    write(t, "bad_quote.csv", ',Sensor-1\n"W-1,1\n')


def labels():
    t = "labels"
    write(t, "message.json", '{"id": "Wafer-1146", "label": 1, "at": "2026-11-26T10:00:00Z"}')
    write(t, "pass.json", '{"id": " W-2 ", "label": "pass", "at": null}')
    write(t, "array.json", '[{"id": "a", "label": 1}, {"id": "b"}, {"id": "c", "label": "FAIL"}, 3]')
    write(t, "bad_time.json", '{"id": "W", "label": -1, "at": "yesterday"}')
    write(t, "bad_label.json", '{"id": "W", "label": 0.5}')
    write(t, "wafer.csv", ",Sensor-1,Sensor-2,Good/Bad\nWafer-1,1.0,,-1\nWafer-2,2.0,3.0,1\nWafer-3,,,2\n")
    write(t, "labels.csv", "id,label,at\nW-9,fail,2026-11-26T10:00:00+01:00\nW-10,+1,\n,pass,\n")
    write(t, "no_label_column.csv", "id,score\nW,1\n")


if __name__ == "__main__":
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    json_rows()
    csv_rows()
    labels()
    for d in sorted(SEEDS.iterdir()):
        print(f"{d.relative_to(SEEDS.parent.parent)}: {len(list(d.iterdir()))} files")
