//! Property-based tests of everything that reads untrusted bytes: the JSON row decoder (the bus),
//! the CSV reader (uploads and `faultline score`) and the cell parser. Arbitrary bytes and
//! structurally-near-valid inputs never panic, every rejection carries a reason, and what is
//! accepted is read exactly.

use faultline::model::Model;
use faultline::row::csv::{CsvOptions, CsvRows};
use faultline::row::json::{decode, encode_row};
use faultline::row::{parse_cell, Schema};
use proptest::prelude::*;
use std::sync::OnceLock;

fn schema() -> &'static (Schema, Vec<String>) {
    static S: OnceLock<(Schema, Vec<String>)> = OnceLock::new();
    S.get_or_init(|| {
        let features = Model::embedded().unwrap().features().to_vec();
        (Schema::new(&features), features)
    })
}

/// One sensor value as a producer might send it: a number, null, or something that is not one.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<f32>().prop_filter("finite", |v| v.is_finite()).prop_map(|v| v.to_string()),
        1 => Just("null".to_string()),
        1 => any::<f64>().prop_map(|v| format!("{v:e}")),
        1 => "\"[a-z0-9 .]{0,8}\"",
        1 => prop_oneof![Just("true"), Just("[]"), Just("{}"), Just("1e999"), Just("-0")].prop_map(String::from),
    ]
}

/// A row object over a random subset of the sensors, some keys unknown.
fn row_object() -> impl Strategy<Value = String> {
    let n = schema().1.len();
    (
        "[A-Za-z0-9-]{0,12}",
        prop::collection::vec((0..n + 5, json_value()), 0..40),
    )
        .prop_map(|(id, cells)| {
            let mut s = format!("{{\"id\":\"{id}\"");
            for (i, v) in cells {
                let key = schema().1.get(i).cloned().unwrap_or(format!("Extra-{i}"));
                s.push_str(&format!(",\"{key}\":{v}"));
            }
            s.push('}');
            s
        })
}

/// A message damaged the way transports and buggy producers damage them.
fn damaged(msg: String) -> impl Strategy<Value = Vec<u8>> {
    let len = msg.len();
    (0..=len, 0..4u8, any::<u8>()).prop_map(move |(at, how, byte)| {
        let mut b = msg.clone().into_bytes();
        match how {
            0 => b.truncate(at),
            1 => b.insert(at, byte),
            2 if at < b.len() => {
                b[at] = byte;
            }
            _ => b.splice(at..at, b"[[[{".iter().copied()).for_each(drop),
        }
        b
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_reject_has_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let d = decode(&bytes, &schema().0);
        for r in &d.rejects {
            prop_assert!(!r.error.is_empty());
            prop_assert!(!r.reason.as_str().is_empty());
        }
        prop_assert_eq!(d.rows.values.len(), d.rows.ids.len() * d.rows.width);
    }

    #[test]
    fn near_valid_rows_never_panic_and_rejects_name_a_reason(msg in row_object().prop_flat_map(damaged)) {
        let d = decode(&msg, &schema().0);
        prop_assert_eq!(d.rows.values.len(), d.rows.ids.len() * d.rows.width);
        for r in &d.rejects {
            prop_assert!(!r.error.is_empty());
        }
        // One object is one row: read or rejected, never both, never silently dropped.
        prop_assert!(d.rows.ids.len() + d.rejects.len() >= 1);
    }

    #[test]
    fn arrays_of_rows_account_for_every_element(rows in prop::collection::vec(row_object(), 1..8)) {
        let msg = format!("[{}]", rows.join(","));
        let d = decode(msg.as_bytes(), &schema().0);
        prop_assert_eq!(d.rows.ids.len() + d.rejects.len(), rows.len());
    }

    #[test]
    fn encoded_rows_decode_to_the_same_values(
        id in "[A-Za-z0-9#-]{1,20}",
        values in prop::collection::vec(prop_oneof![3 => any::<f32>().prop_filter("finite", |v| v.is_finite()), 1 => Just(f32::NAN)], 590),
    ) {
        let (schema, features) = schema();
        let values = &values[..features.len()];
        let msg = encode_row(&id, values, features);
        let d = decode(msg.as_bytes(), schema);
        prop_assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        prop_assert_eq!(&d.rows.ids, &vec![id]);
        for (a, b) in d.rows.values.iter().zip(values) {
            prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{} vs {}", a, b);
        }
    }

    #[test]
    fn cells_parse_or_say_why(cell in "\\PC{0,24}") {
        match parse_cell(&cell) {
            Ok(v) => prop_assert!(v.is_finite() || v.is_nan()),
            Err(e) => prop_assert!(!e.reason().is_empty()),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_csv_bytes_never_panic_and_errors_say_what(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        read_csv(&bytes)?;
    }

    #[test]
    fn near_valid_csvs_never_panic(
        cells in prop::collection::vec(prop::collection::vec("[0-9.eE+-]{0,6}|NaN|abc|\"x,y\"", 0..8), 1..6),
        cut in 0usize..10_000,
    ) {
        let features = &schema().1;
        let mut csv = format!(",{},Good/Bad\n", features.join(","));
        for (i, row) in cells.iter().enumerate() {
            let mut line: Vec<String> = vec![format!("Wafer-{i}")];
            line.extend(row.iter().cloned());
            csv.push_str(&line.join(","));
            csv.push('\n');
        }
        let bytes = csv.as_bytes();
        read_csv(&bytes[..cut.min(bytes.len())])?;
        read_csv(bytes)?;
    }
}

/// Reads a whole CSV; any error must have a message.
fn read_csv(bytes: &[u8]) -> Result<(), TestCaseError> {
    let options = CsvOptions {
        allow_extra_columns: false,
        batch_rows: 16,
    };
    match CsvRows::new(bytes, &schema().0, options) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(mut rows) => loop {
            match rows.next_batch() {
                Ok(Some(b)) => prop_assert_eq!(b.values.len(), b.ids.len() * b.width),
                Ok(None) => break,
                Err(e) => {
                    prop_assert!(!e.to_string().is_empty());
                    break;
                }
            }
        },
    }
    Ok(())
}

/// Sparkplug B (`[source.mqtt] format = "sparkplug"`): arbitrary bytes never panic and are refused
/// with a reason; a DDATA built from a row reads back as that row.
mod sparkplug_rows {
    use super::*;
    use faultline::row::sparkplug::{decode_data, Metric, Payload, Value};
    use prost::Message;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_payloads_never_panic_and_every_reject_has_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let d = decode_data(&bytes, &schema().0, "wafer_id", None);
            prop_assert_eq!(d.rows.len() + d.rejects.len(), 1);
            for r in &d.rejects {
                prop_assert!(!r.error.is_empty());
            }
            if d.rows.len() == 1 {
                // Only a payload that decodes as protobuf and carries the id can be a row.
                prop_assert!(Payload::decode(bytes.as_slice()).is_ok());
            }
        }

        #[test]
        fn a_row_sent_as_ddata_reads_back_as_that_row(
            id in "[A-Za-z0-9-]{1,16}",
            cells in prop::collection::vec((0usize..590, prop::option::of(any::<f32>().prop_filter("finite", |v| v.is_finite()))), 0..60),
            doubles in any::<bool>(),
        ) {
            let (schema, features) = schema();
            let mut expected = vec![f32::NAN; schema.width()];
            let mut metrics = vec![Metric { name: Some("wafer_id".into()), datatype: Some(12), value: Some(Value::String(id.clone())), ..Default::default() }];
            for (j, v) in &cells {
                let j = j % features.len();
                expected[j] = v.unwrap_or(f32::NAN);
                metrics.push(Metric {
                    name: Some(features[j].clone()),
                    datatype: Some(if doubles { 10 } else { 9 }),
                    is_null: v.is_none().then_some(true),
                    value: v.map(|v| if doubles { Value::Double(v as f64) } else { Value::Float(v) }),
                    ..Default::default()
                });
            }
            let payload = Payload { metrics, ..Default::default() }.encode_to_vec();
            let d = decode_data(&payload, schema, "wafer_id", None);
            prop_assert!(d.rejects.is_empty(), "{:?}", d.rejects);
            prop_assert_eq!(&d.rows.ids, &vec![id]);
            for (got, want) in d.rows.row(0).iter().zip(&expected) {
                prop_assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{} vs {}", got, want);
            }
        }
    }
}
