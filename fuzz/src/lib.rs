//! The invariants the fuzz targets check on every input AFL++ generates: the ones
//! `tests/properties.rs` asserts on proptest's inputs, plus a few the decoders document. A broken
//! invariant panics, which the `afl::fuzz!` hook turns into an abort, which AFL++ records as a
//! crash (see `scripts/fuzz.sh`).
//!
//! - Nothing panics, whatever the bytes.
//! - Every reject (JSON rows), error (CSV rows) and label error carries a non-empty reason.
//! - Every accepted row has the model's width: `values.len() == ids.len() * width`, with
//!   `width` the embedded model's feature count, one label slot per row.
//! - Accepted ids are non-empty (and at most `MAX_ID_BYTES` where the decoder promises it);
//!   values are finite or NaN (missing), never infinite; labels are +1, -1 or absent.
//! - JSON: a message that is one object is one row or one reject, never both nor neither; an
//!   accepted row written back with `encode_row` decodes to the same id and the same bits.

use faultline_rows::csv::{CsvOptions, CsvRows};
use faultline_rows::json::{self, decode, encode_row};
use faultline_rows::labels::{self, Label, LabelError};
use faultline_rows::{RowBatch, Schema};

/// Rows per message re-encoded for the round-trip check (each costs ~600 float formats).
const ROUND_TRIP_ROWS: usize = 3;

/// The shipped model's card: its `input.features` are the schema the daemon decodes against.
const CARD: &[u8] = include_bytes!("../../models/wafer-fault/model.json");

/// The shipped model's schema, built once before the fuzz loop starts (AFL++ forks after it).
pub fn model_schema() -> (Schema, Vec<String>) {
    let card: serde_json::Value = serde_json::from_slice(CARD).expect("the model card is JSON");
    let features: Vec<String> = card["input"]["features"]
        .as_array()
        .expect("the card lists input.features")
        .iter()
        .map(|f| f.as_str().expect("a feature name is a string").to_string())
        .collect();
    assert!(!features.is_empty());
    (Schema::new(&features), features)
}

/// Checks a batch of accepted rows against the schema.
fn check_batch(b: &RowBatch, schema: &Schema) {
    assert_eq!(b.width, schema.width(), "a batch is not the model's width");
    assert_eq!(
        b.values.len(),
        b.ids.len() * b.width,
        "values are not rows x width"
    );
    assert_eq!(b.labels.len(), b.ids.len(), "not one label slot per row");
    for id in &b.ids {
        assert!(!id.is_empty(), "an accepted row has an empty id");
    }
    for v in &b.values {
        assert!(!v.is_infinite(), "an accepted value is infinite: {v}");
    }
    for l in b.labels.iter().flatten() {
        assert!(*l == 1 || *l == -1, "an accepted label is {l}, not 1 or -1");
    }
}

/// One bus message (an MQTT payload or a Kafka value) through the JSON row decoder, as
/// `faultline::bus::admit::decode` runs it below the payload size limit.
pub fn check_json(data: &[u8], schema: &Schema, features: &[String]) {
    let d = decode(data, schema);
    // The fast path reads a subset of JSON; whatever it reads, the full reader reads the same.
    let full = json::decode_full(data, schema);
    let bits = |b: &RowBatch| b.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert!(
        d.rows.ids == full.rows.ids
            && d.rows.labels == full.rows.labels
            && bits(&d.rows) == bits(&full.rows)
            && d.rejects == full.rejects
            && d.unknown_keys == full.unknown_keys,
        "the fast path and the full reader disagree:\n{d:?}\n{full:?}"
    );
    for r in &d.rejects {
        assert!(!r.error.is_empty(), "a reject without a message: {r:?}");
        assert!(
            !r.reason.as_str().is_empty(),
            "a reject without a reason: {r:?}"
        );
    }
    check_batch(&d.rows, schema);
    for id in &d.rows.ids {
        assert!(
            id.len() <= json::MAX_ID_BYTES,
            "an accepted id is {} bytes",
            id.len()
        );
    }
    let first = data.iter().find(|b| !b" \t\r\n".contains(b));
    if std::str::from_utf8(data).is_ok() && first == Some(&b'{') {
        // One object is one row: read or rejected, never both, never silently dropped.
        assert_eq!(
            d.rows.len() + d.rejects.len(),
            1,
            "one object gave {} rows and {} rejects",
            d.rows.len(),
            d.rejects.len()
        );
    } else if first != Some(&b'[') {
        assert!(
            d.rows.is_empty(),
            "rows from a message that is neither an object nor an array"
        );
        assert_eq!(
            d.rejects.len(),
            1,
            "a message that is not an object nor an array is one reject"
        );
    }
    // What was accepted replays exactly: encode_row's text decodes to the same id and bits.
    for i in 0..d.rows.len().min(ROUND_TRIP_ROWS) {
        let (id, values) = (&d.rows.ids[i], d.rows.row(i));
        let text = encode_row(id, values, features);
        let again = decode(text.as_bytes(), schema);
        assert!(
            again.rejects.is_empty(),
            "encode_row's text is rejected: {:?}",
            again.rejects
        );
        assert_eq!(
            &again.rows.ids,
            &[id.clone()],
            "the id changed in a round trip"
        );
        for (a, b) in again.rows.values.iter().zip(values) {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "a value changed in a round trip: {b} became {a}"
            );
        }
    }
}

/// A CSV (an upload, or a file given to `faultline score`) through the streaming reader, batch by
/// batch. The options come from the input's length, so both strict and extra-column-tolerant
/// reading and several batch sizes are exercised without a format of the fuzzer's own.
pub fn check_csv(data: &[u8], schema: &Schema) {
    let options = CsvOptions {
        allow_extra_columns: data.len() % 2 == 1,
        batch_rows: 1 + data.len() % 5,
    };
    let mut rows = match CsvRows::new(data, schema, options) {
        Ok(rows) => rows,
        Err(e) => {
            assert!(
                !e.to_string().is_empty(),
                "a CSV error without a message: {e:?}"
            );
            return;
        }
    };
    let has_labels = rows.has_labels();
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut total = 0;
    loop {
        match rows.next_batch() {
            Ok(Some(b)) => {
                check_batch(&b, schema);
                assert!(!b.is_empty(), "an empty batch before the end");
                assert!(b.len() <= options.batch_rows, "a batch over batch_rows");
                if !has_labels {
                    assert!(
                        b.labels.iter().all(Option::is_none),
                        "labels without a label column"
                    );
                }
                total += b.len();
                assert!(total < lines, "{total} rows from {lines} lines");
            }
            Ok(None) => {
                assert!(total > 0, "a CSV without rows ended without an error");
                break;
            }
            Err(e) => {
                assert!(
                    !e.to_string().is_empty(),
                    "a CSV error without a message: {e:?}"
                );
                break;
            }
        }
    }
}

fn check_label(l: &Label) {
    assert!(!l.id.is_empty(), "a label with an empty id");
    assert_eq!(l.id.trim(), l.id, "a label id is not trimmed");
    assert!(
        l.id.len() <= labels::MAX_ID_BYTES,
        "a label id is {} bytes",
        l.id.len()
    );
    assert!(l.good_bad() == 1 || l.good_bad() == -1);
    if let Some(at) = &l.at {
        assert!(!at.is_empty(), "an empty label time");
    }
}

fn check_label_errors(errors: &[LabelError]) {
    let mut last = 0;
    for e in errors {
        assert!(
            !e.reason.is_empty(),
            "a label error without a reason: {e:?}"
        );
        assert!(
            e.row > last,
            "label errors are not numbered from 1 in order: {errors:?}"
        );
        last = e.row;
    }
}

/// Late labels: one message from the labels topic, a `POST /api/labels` JSON body, and the same
/// bytes as a labels CSV.
pub fn check_labels(data: &[u8]) {
    let message = labels::from_message(data);
    match &message {
        Ok(l) => check_label(l),
        Err(e) => assert!(!e.is_empty(), "a label message refused without a reason"),
    }
    match labels::from_json(data, usize::MAX) {
        Ok((labels, errors)) => {
            labels.iter().for_each(check_label);
            check_label_errors(&errors);
            // A single object reads the same on the topic and through the API.
            if let Ok(l) = &message {
                assert_eq!(
                    (&labels[..], &errors[..]),
                    (std::slice::from_ref(l), &[][..])
                );
            }
        }
        Err(e) => {
            assert!(!e.is_empty(), "a labels body refused without a reason");
            assert!(
                message.is_err(),
                "a message read as a label, but not as a labels body"
            );
        }
    }
    // A first column named like a sensor is readings, not ids (the daemon asks its model).
    let is_sensor = |n: &str| n.starts_with("Sensor-");
    match labels::from_csv(data, usize::MAX, is_sensor) {
        Ok(labels::CsvLabels {
            labels,
            errors,
            unlabelled,
        }) => {
            labels.iter().for_each(check_label);
            check_label_errors(&errors);
            // Asked for at most `most`, the reader stops one row past it, with the same rows.
            let most = 3;
            let labels::CsvLabels {
                labels: first,
                errors: first_errors,
                unlabelled: first_unlabelled,
            } = labels::from_csv(data, most, is_sensor).expect("the same header reads the same");
            assert_eq!(
                first.len() + first_errors.len() + first_unlabelled,
                (labels.len() + errors.len() + unlabelled).min(most + 1),
                "a read asked for at most {most} rows"
            );
            assert_eq!(
                first[..],
                labels[..first.len()],
                "a shorter read, other labels"
            );
        }
        Err(e) => assert!(!e.is_empty(), "a labels CSV refused without a reason"),
    }
}
