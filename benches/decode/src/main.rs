//! faultline's row readers against their peers, single-threaded, in one process and one run.
//!
//! JSON: one message per row, 590 sensor keys each (the form `faultline replay` and most producers
//! send), and the compact `values` form. Contenders, each producing the row's f32 feature vector:
//! - `faultline decode`: the fast path (falls back to the full reader on anything unusual); also on
//!   the same objects sent ten to a message as a JSON array;
//! - `faultline full reader`: the serde visitor alone (what every message paid before);
//! - `serde_json::Value`: parse to a Value, then look each sensor up by name into the vector;
//! - `simd-json BorrowedValue`: the same with simd-json (which needs a mutable copy of the text).
//!
//! CSV: the whole file, read by `CsvRows` (in-memory, one thread: batches below 256 rows), against
//! arrow-csv reading every sensor as a Float32 column (the Rust peer), and the floor under any
//! reader: counting the file's newlines, and copying it (memory bandwidth).
//!
//! Each contender runs `--runs` times (default 7) over all rows; the report gives the median
//! rate with the lowest and highest, and each peer's median as a ratio of faultline's.
//!
//! Rows: ../shared/data/wafer/wafer_train.csv (or --input FILE), repeated to --rows (default
//! 20,000) with unique ids. Schema: the shipped model card's features.

use faultline_rows::csv::{CsvOptions, CsvRows};
use faultline_rows::json::{decode, decode_full, encode_row};
use faultline_rows::Schema;
use std::hint::black_box;
use std::time::Instant;

const CARD: &[u8] = include_bytes!("../../../models/wafer-fault/model.json");

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let runs: usize = arg("--runs").map_or(7, |r| r.parse().expect("--runs N"));
    let rows: usize = arg("--rows").map_or(20_000, |r| r.parse().expect("--rows N"));
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let input = arg("--input").unwrap_or_else(|| {
        let real = format!("{root}/../shared/data/wafer/wafer_train.csv");
        if std::path::Path::new(&real).exists() {
            real
        } else {
            format!("{root}/examples/wafers.csv")
        }
    });
    let card: serde_json::Value = serde_json::from_slice(CARD).expect("model card");
    let features: Vec<String> = card["input"]["features"]
        .as_array()
        .expect("input.features")
        .iter()
        .map(|f| f.as_str().expect("name").to_string())
        .collect();
    let schema = Schema::new(&features);

    // The source rows, repeated to `rows` as one CSV text and as JSON messages.
    let source = std::fs::read(&input).expect("input CSV");
    let base = CsvRows::new(&source[..], &schema, CsvOptions { allow_extra_columns: true, batch_rows: 4096 })
        .expect("input header")
        .read_all()
        .expect("input rows");
    let mut csv = format!(",{}\n", features.join(","));
    let mut objects = Vec::with_capacity(rows);
    let mut compact = Vec::with_capacity(rows);
    for i in 0..rows {
        let r = i % base.len();
        let id = format!("{}#{i}", base.ids[r]);
        let values = base.row(r);
        let text = encode_row(&id, values, &features);
        csv.push_str(&id);
        for v in values {
            csv.push(',');
            if v.is_finite() {
                csv.push_str(&v.to_string());
            }
        }
        csv.push('\n');
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let list: Vec<serde_json::Value> = features.iter().map(|f| parsed[f].clone()).collect();
        compact.push(serde_json::json!({"id": id, "values": list}).to_string().into_bytes());
        objects.push(text.into_bytes());
    }
    // The same objects sent ten to a message, as a JSON array (`bench_mqtt --rows-per-message 10`).
    let arrays: Vec<Vec<u8>> = objects
        .chunks(10)
        .map(|chunk| {
            let mut m = b"[".to_vec();
            m.extend(chunk.join(&b","[..]));
            m.push(b']');
            m
        })
        .collect();
    let json_mb = objects.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    println!(
        "{rows} rows from {input}; JSON {json_mb:.1} MB ({} bytes/row), CSV {:.1} MB; {runs} runs each, one thread",
        objects[0].len(),
        csv.len() as f64 / 1e6
    );

    let width = features.len();
    // --only TEXT runs the contenders whose name holds TEXT (for a profiler).
    let only = arg("--only");
    let mut table: Vec<(&str, Vec<f64>)> = Vec::new();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    table.push((
        "JSON objects: faultline decode",
        measure(wanted("JSON objects: faultline decode"), runs, || {
            for m in &objects {
                let d = decode(m, &schema);
                assert_eq!(d.rows.len(), 1, "{:?}", d.rejects);
                black_box(&d.rows.values);
            }
        }),
    ));
    table.push((
        "JSON arrays of ten: faultline decode",
        measure(wanted("JSON arrays of ten: faultline decode"), runs, || {
            for m in &arrays {
                let d = decode(m, &schema);
                assert!(d.rejects.is_empty(), "{:?}", d.rejects);
                black_box(&d.rows.values);
            }
        }),
    ));
    table.push((
        "JSON objects: faultline full reader",
        measure(wanted("JSON objects: faultline full reader"), runs, || {
            for m in &objects {
                black_box(decode_full(m, &schema).rows.values);
            }
        }),
    ));
    table.push((
        "JSON objects: serde_json::Value + lookup",
        measure(wanted("JSON objects: serde_json::Value + lookup"), runs, || {
            for m in &objects {
                let v: serde_json::Value = serde_json::from_slice(m).unwrap();
                let mut row = vec![f32::NAN; width];
                for (k, x) in v.as_object().unwrap() {
                    if let (Some(i), Some(x)) = (schema.position(k), x.as_f64()) {
                        row[i] = x as f32;
                    }
                }
                black_box(row);
            }
        }),
    ));
    table.push((
        "JSON objects: simd-json BorrowedValue + lookup",
        measure(wanted("JSON objects: simd-json BorrowedValue + lookup"), runs, || {
            use simd_json::prelude::*;
            let mut buf = Vec::new();
            for m in &objects {
                buf.clear();
                buf.extend_from_slice(m);
                let v = simd_json::to_borrowed_value(&mut buf).unwrap();
                let mut row = vec![f32::NAN; width];
                for (k, x) in v.as_object().unwrap().iter() {
                    if let (Some(i), Some(x)) = (schema.position(k), x.as_f64()) {
                        row[i] = x as f32;
                    }
                }
                black_box(row);
            }
        }),
    ));
    table.push((
        "JSON values form: faultline decode",
        measure(wanted("JSON values form: faultline decode"), runs, || {
            for m in &compact {
                let d = decode(m, &schema);
                assert_eq!(d.rows.len(), 1, "{:?}", d.rejects);
                black_box(&d.rows.values);
            }
        }),
    ));
    table.push((
        "JSON values form: faultline full reader",
        measure(wanted("JSON values form: faultline full reader"), runs, || {
            for m in &compact {
                black_box(decode_full(m, &schema).rows.values);
            }
        }),
    ));
    table.push((
        "CSV: faultline CsvRows (batches of 128)",
        measure(wanted("CSV: faultline CsvRows (batches of 128)"), runs, || {
            let opts = CsvOptions { allow_extra_columns: false, batch_rows: 128 };
            let b = CsvRows::new(csv.as_bytes(), &schema, opts).unwrap().read_all().unwrap();
            assert_eq!(b.len(), rows);
            black_box(b);
        }),
    ));
    table.push((
        "CSV: arrow-csv, Float32 columns (peer)",
        measure(wanted("CSV: arrow-csv, Float32 columns (peer)"), runs, || {
            use arrow_schema::{DataType, Field, Schema as ArrowSchema};
            let mut fields = vec![Field::new("id", DataType::Utf8, true)];
            fields.extend(features.iter().map(|f| Field::new(f, DataType::Float32, true)));
            let reader = arrow_csv::ReaderBuilder::new(std::sync::Arc::new(ArrowSchema::new(fields)))
                .with_header(true)
                .with_batch_size(128)
                .build(csv.as_bytes())
                .unwrap();
            let mut n = 0;
            for b in reader {
                let b = b.unwrap();
                n += b.num_rows();
                black_box(b);
            }
            assert_eq!(n, rows);
        }),
    ));
    table.push((
        "CSV floor: count newlines",
        measure(wanted("CSV floor: count newlines"), runs, || {
            black_box(csv.as_bytes().iter().filter(|&&b| b == b'\n').count());
        }),
    ));
    let mut copy = vec![0u8; csv.len()];
    table.push((
        "CSV floor: copy the bytes (memory bandwidth)",
        measure(wanted("CSV floor: copy the bytes (memory bandwidth)"), runs, || {
            copy.copy_from_slice(black_box(csv.as_bytes()));
            black_box(&copy);
        }),
    ));

    println!("| reader | rows/s (median [lowest–highest]) | µs per row | vs faultline decode |");
    println!("|---|---:|---:|---:|");
    let median = |xs: &[f64]| {
        let mut s = xs.to_vec();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let fast = &table[0].1;
    let fast_rate = if fast.is_empty() { f64::NAN } else { rows as f64 / median(fast) };
    for (name, secs) in table.iter().filter(|(_, secs)| !secs.is_empty()) {
        let rates: Vec<f64> = secs.iter().map(|s| rows as f64 / s).collect();
        let m = median(&rates);
        let lo = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().cloned().fold(0.0, f64::max);
        let mbs = csv.len() as f64 / 1e6 / median(secs);
        let extra = if name.starts_with("CSV") { format!(" ({mbs:.0} MB/s)") } else { String::new() };
        println!(
            "| {name} | {m:.0} [{lo:.0}–{hi:.0}]{extra} | {:.2} | {:.2}× |",
            1e6 / m,
            m / fast_rate
        );
    }
}

/// Seconds per run of `f`, `runs` times after one warm-up.
fn measure(wanted: bool, runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    if !wanted {
        return Vec::new();
    }
    f();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}
