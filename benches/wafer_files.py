"""The large wafer CSV both CSV benchmarks read: real wafers repeated to N rows, ids made unique."""
import csv
import os
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_rows():
    """(path, header, rows) of ../shared/data/wafer/wafer_train.csv, else examples/wafers.csv."""
    data = os.environ.get("FAULTLINE_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    real = os.path.join(data, "wafer", "wafer_train.csv")
    path = real if os.path.exists(real) else os.path.join(ROOT, "examples", "wafers.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return path, rows[0], rows[1:]


def big_csv(n):
    """Writes the source rows repeated to n rows (ids `<id>#<i>`) into a new temporary directory;
    returns (source path, header, source rows, the directory, the file)."""
    src, header, rows = source_rows()
    tmp = tempfile.mkdtemp(prefix="faultline-bench-")
    big = os.path.join(tmp, "wafers.csv")
    with open(big, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(n):
            r = list(rows[i % len(rows)])
            r[0] = f"{r[0]}#{i}"
            w.writerow(r)
    return src, header, rows, tmp, big
