//! Late labels: a wafer's true outcome, reported hours or days after faultline scored it.
//!
//! A label arrives on the labels topic as `{"id": "Wafer-1146", "label": 1, "at": "<RFC 3339>"}`
//! (`label` is `1`/`-1`, as in the wafer files' `Good/Bad`, or `"fail"`/`"pass"`; `at` is optional),
//! or through `POST /api/labels` as the same JSON (one object or an array) or as CSV with an id
//! column first and a `Good/Bad` (or `label`) column, optionally `at` (or `Time`); a labelled wafer
//! file is such a CSV. Every rejection says which row and why.

use serde_json::Value;

pub use super::MAX_ID_BYTES;

/// One wafer's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// The row id the wafer was scored under.
    pub id: String,
    /// True when the wafer failed (label +1).
    pub faulty: bool,
    /// When the outcome was established, as sent (RFC 3339), if it was.
    pub at: Option<String>,
}

impl Label {
    /// `+1` for a faulty wafer, `-1` for a good one (the wafer files' `Good/Bad`).
    pub fn good_bad(&self) -> i8 {
        if self.faulty {
            1
        } else {
            -1
        }
    }
}

/// Why a label was refused; `row` counts from 1 (CSV: data rows after the header; JSON: array
/// elements).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelError {
    /// Which label in the input.
    pub row: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads one label message from the bus: a JSON object.
pub fn from_message(payload: &[u8]) -> Result<Label, String> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the label message is not JSON: {e}"))?;
    from_value(&value)
}

/// Reads labels from a JSON body: one object or an array of them. At most `most` + 1 items are
/// kept (enough for a caller to refuse a body with more than `most`); the rest of the array is
/// checked as JSON without being built, so a large body never becomes a large tree.
pub fn from_json(body: &[u8], most: usize) -> Result<(Vec<Label>, Vec<LabelError>), String> {
    use serde::de::Deserializer as _;
    // A file saved with a UTF-8 byte-order mark (as some Windows editors do), which JSON's RFC
    // lets a reader ignore and serde_json refuses.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut de = serde_json::Deserializer::from_slice(body);
    let items = de
        .deserialize_any(Items { most })
        .and_then(|items| de.end().map(|()| items))
        .map_err(|e| format!("the body is not JSON: {e}"))?
        .map_err(|()| "expected a label object or an array of them".to_string())?;
    let mut labels = Vec::with_capacity(items.len());
    let mut errors = vec![];
    for (i, item) in items.iter().enumerate() {
        match from_value(item) {
            Ok(l) => labels.push(l),
            Err(reason) => errors.push(LabelError { row: i + 1, reason }),
        }
    }
    Ok((labels, errors))
}

/// The items of a labels body: an array's first `most` + 1 elements, or the one object; `Err(())`
/// for any other JSON value.
struct Items {
    most: usize,
}

impl<'de> serde::de::Visitor<'de> for Items {
    type Value = Result<Vec<Value>, ()>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a label object or an array of them")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = vec![];
        while items.len() <= self.most {
            match seq.next_element::<Value>()? {
                Some(item) => items.push(item),
                None => return Ok(Ok(items)),
            }
        }
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Ok(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let object =
            serde::Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(Ok(vec![Value::Object(object)]))
    }

    // Any other JSON value is read (so that its syntax is checked) and refused.
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(()))
    }
}

fn from_value(value: &Value) -> Result<Label, String> {
    let Value::Object(map) = value else {
        return Err("a label is a JSON object with \"id\" and \"label\"".into());
    };
    let id = match map.get("id") {
        Some(Value::String(s)) => check_id(s)?,
        // An integer id, as the rows' JSON takes it (and keeps it as written), so that the
        // label of the row {"id": 1146, ...} can be {"id": 1146, ...}.
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => return Err("\"id\" must be a string or an integer".into()),
        None => return Err("the label has no \"id\"".into()),
    };
    // `Good/Bad` too: the key a row's JSON and a wafer file carry the outcome under (the label
    // CSV reader takes both names as well). The first of them that is there and not null.
    let (key, value) = ["label", crate::csv::LABEL_COLUMN]
        .into_iter()
        .find_map(|k| map.get(k).filter(|v| !v.is_null()).map(|v| (k, Some(v))))
        .unwrap_or(("label", map.get("label")));
    let faulty = match value {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(1.0) => true,
            Some(-1.0) => false,
            _ => return Err(format!("{key:?} is {n}; use 1 (faulty) or -1 (good)")),
        },
        Some(Value::String(s)) => parse_outcome(s)?,
        Some(other) => {
            return Err(format!(
                "{key:?} is {other}; use 1 (faulty), -1 (good), \"fail\" or \"pass\""
            ))
        }
        None => {
            return Err(format!(
                "the label for {id:?} has no \"label\" (or \"Good/Bad\")"
            ))
        }
    };
    let at = match map.get("at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(check_time(s)?),
        Some(_) => return Err("\"at\" must be an RFC 3339 time string".into()),
    };
    Ok(Label { id, faulty, at })
}

fn check_id(id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.is_empty() {
        return Err("the id is empty".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "the id is {} bytes long; at most {MAX_ID_BYTES}",
            id.len()
        ));
    }
    Ok(id.to_string())
}

/// The longest `at` kept: an RFC 3339 time with nanoseconds and an offset
/// (`2026-11-26T10:00:00.123456789+05:30`) is 35 bytes. chrono takes any number of fraction
/// digits, so without a bound one label could carry megabytes into memory, the store and every
/// start's reading of it.
pub const MAX_AT_BYTES: usize = 64;

fn check_time(at: &str) -> Result<String, String> {
    if at.trim().len() > MAX_AT_BYTES {
        let start: String = at.trim().chars().take(32).collect();
        return Err(format!(
            "\"at\" is {} bytes long ({start:?}...); an RFC 3339 time takes at most {MAX_AT_BYTES}",
            at.trim().len()
        ));
    }
    chrono::DateTime::parse_from_rfc3339(at.trim())
        .map(|_| at.trim().to_string())
        .map_err(|e| format!("\"at\" is {at:?}, not an RFC 3339 time: {e}"))
}

/// `fail` or `pass` (any case), or a number equal to 1 or -1 in any spelling (`1.0`, `+1`, as
/// a wafer file's `Good/Bad` cell may be written).
fn parse_outcome(s: &str) -> Result<bool, String> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "fail" => return Ok(true),
        "pass" => return Ok(false),
        _ => {}
    }
    // As the scorer reads a Good/Bad cell; a missing value is no label here.
    match crate::parse_label(s) {
        Ok(Some(label)) => Ok(label == 1),
        _ => Err(format!(
            "the label is {s:?}; use 1 (faulty), -1 (good), \"fail\" or \"pass\""
        )),
    }
}

/// Reads labels from CSV: the id is the column named `Wafer` or `id` (as in a wafer file), else
/// the first column; the label is the column named `Good/Bad` or `label`; an `at` or `Time`
/// column, if present, says when. Other columns (a labelled wafer file's sensors) are ignored.
///
/// A row whose label cell is empty or a missing value's spelling (`NA`, `NaN`, `nan`, `null`,
/// `NULL`: a wafer file's unknown label) is no label: it is counted, neither applied nor
/// refused. A line that stops before the label's column is refused.
///
/// Reads at most `most + 1` rows (labels, refusals and unlabelled rows together): one more than
/// `most` tells the caller the body holds too many, without holding every row of a large body
/// first. `is_sensor` says whether a column name is one of the model's sensors: a first column
/// that is one holds readings, not ids (without an id column every label would go to a wafer
/// named by a reading, join nothing and expire unseen).
pub fn from_csv(
    body: &[u8],
    most: usize,
    is_sensor: impl Fn(&str) -> bool,
) -> Result<CsvLabels, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(body);
    let headers = reader
        .byte_headers()
        .map_err(|e| format!("the CSV header cannot be read: {e}"))?
        .clone();
    let find = |names: &[&str]| {
        headers.iter().position(|h| {
            let h = String::from_utf8_lossy(h);
            names.iter().any(|n| h.trim().eq_ignore_ascii_case(n))
        })
    };
    let Some(label_col) = find(&["Good/Bad", "label"]) else {
        return Err(
            "the CSV has no Good/Bad (or label) column; expected a header like id,Good/Bad".into(),
        );
    };
    let at_col = find(&["at", "Time"]);
    let id_col = find(&["Wafer", "id"]).unwrap_or(0);
    let first = String::from_utf8_lossy(headers.get(0).unwrap_or_default());
    if id_col == label_col || Some(id_col) == at_col || (id_col == 0 && is_sensor(first.trim())) {
        return Err(
            "the CSV has no wafer id column: name it 'Wafer' or 'id', or put the ids first".into(),
        );
    }
    let mut labels = vec![];
    let mut errors = vec![];
    let mut unlabelled = 0;
    let mut record = csv::ByteRecord::new();
    let mut row = 0;
    while labels.len() + errors.len() + unlabelled <= most {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                errors.push(LabelError {
                    row: row + 1,
                    reason: format!("unreadable CSV: {e}"),
                });
                break;
            }
        }
        row += 1;
        let field = |i: usize| -> Result<&str, String> {
            let bytes = record.get(i).unwrap_or_default();
            std::str::from_utf8(bytes).map_err(|_| format!("column {} is not UTF-8", i + 1))
        };
        // A label cell that is there and empty (or NA, NaN, null): no label. A line too short to
        // have the cell is refused below, as a ragged line.
        if record.len() > label_col
            && field(label_col).is_ok_and(|l| crate::MISSING.contains(&l.trim()))
        {
            unlabelled += 1;
            continue;
        }
        let label = (|| {
            let needed = id_col.max(label_col) + 1;
            if record.len() < needed {
                return Err(format!(
                    "the line has {} field(s); the {} is field {}",
                    record.len(),
                    if label_col >= id_col {
                        "label"
                    } else {
                        "wafer id"
                    },
                    needed
                ));
            }
            let id = check_id(field(id_col)?)?;
            let faulty = parse_outcome(field(label_col)?)?;
            let at = match at_col.map(field).transpose()? {
                Some(t) if !t.trim().is_empty() => Some(check_time(t)?),
                _ => None,
            };
            Ok::<_, String>(Label { id, faulty, at })
        })();
        match label {
            Ok(l) => labels.push(l),
            Err(reason) => errors.push(LabelError { row, reason }),
        }
    }
    Ok(CsvLabels {
        labels,
        errors,
        unlabelled,
    })
}

/// What [`from_csv`] read.
#[derive(Debug)]
pub struct CsvLabels {
    /// The labels, in the file's order.
    pub labels: Vec<Label>,
    /// The rows refused, each with its reason.
    pub errors: Vec<LabelError>,
    /// Rows whose label cell is empty or `NA`: no label, nothing refused.
    pub unlabelled: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_in_every_documented_form() {
        let l = from_message(br#"{"id": "Wafer-1146", "label": 1, "at": "2026-11-26T10:00:00Z"}"#)
            .unwrap();
        assert_eq!(l.id, "Wafer-1146");
        assert!(l.faulty);
        assert_eq!(l.at.as_deref(), Some("2026-11-26T10:00:00Z"));
        assert!(!from_message(br#"{"id": "W", "label": -1}"#).unwrap().faulty);
        assert!(
            from_message(br#"{"id": "W", "label": "FAIL"}"#)
                .unwrap()
                .faulty
        );
        assert!(
            !from_message(br#"{"id": "W", "label": "pass"}"#)
                .unwrap()
                .faulty
        );
        // Integer ids, as a row's JSON may carry them, read as the rows' reader reads them.
        for (text, id) in [
            (&br#"{"id": 1146, "label": 1}"#[..], "1146"),
            (br#"{"id": -7, "label": 1}"#, "-7"),
        ] {
            assert_eq!(from_message(text).unwrap().id, id);
            let row = format!("{{\"id\": {id}, \"Sensor-1\": 1}}");
            let schema = crate::Schema::new(&["Sensor-1".to_string()]);
            assert_eq!(crate::json::decode(row.as_bytes(), &schema).rows.ids, [id]);
        }
        let e = from_message(br#"{"id": 1.5, "label": 1}"#).unwrap_err();
        assert!(e.contains("a string or an integer"), "{e}");
    }

    #[test]
    fn bad_messages_say_why() {
        for (payload, says) in [
            (&b"not json"[..], "not JSON"),
            (br#"{"label": 1}"#, "no \"id\""),
            (br#"{"id": "W"}"#, "no \"label\""),
            (br#"{"id": "W", "label": 0}"#, "use 1 (faulty)"),
            (br#"{"id": "W", "label": "maybe"}"#, "\"maybe\""),
            (br#"{"id": "W", "label": 1, "at": "yesterday"}"#, "RFC 3339"),
            (br#"{"id": "", "label": 1}"#, "empty"),
            (br#"[1]"#, "JSON object"),
        ] {
            let e = from_message(payload).unwrap_err();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
        // A valid time whose fraction runs on for a megabyte (chrono reads it) is refused, and
        // the reason does not carry it.
        let long = format!(
            r#"{{"id": "W", "label": 1, "at": "2026-11-26T10:00:00.{}Z"}}"#,
            "0".repeat(1 << 20)
        );
        let e = from_message(long.as_bytes()).unwrap_err();
        assert!(e.contains("bytes long") && e.len() < 200, "{e}");
        let nanos = br#"{"id": "W", "label": 1, "at": "2026-11-26T10:00:00.123456789+05:30"}"#;
        assert!(from_message(nanos).unwrap().at.is_some());
    }

    #[test]
    fn json_arrays_keep_good_labels_and_number_the_bad() {
        let (labels, errors) = from_json(
            br#"[{"id": "a", "label": 1}, {"id": "b"}, {"id": "c", "label": "pass"}]"#,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].row, 2);
        // Asked for at most one, it keeps two items, and still checks the rest is JSON.
        let body = br#"[{"id": "a", "label": 1}, {"id": "b"}, {"id": "c", "label": 1}, 7]"#;
        let (labels, errors) = from_json(body, 1).unwrap();
        assert_eq!((labels.len(), errors.len()), (1, 1));
        let e = from_json(br#"[{"id": "a", "label": 1}, {"id": "b"}, nope]"#, 0).unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        // One object, or nothing else.
        assert_eq!(
            from_json(br#"{"id": "a", "label": -1}"#, 0)
                .unwrap()
                .0
                .len(),
            1
        );
        // A file with a byte-order mark reads as one without.
        let bom = b"\xEF\xBB\xBF[{\"id\": \"a\", \"label\": 1}]";
        assert_eq!(from_json(bom, 0).unwrap().0.len(), 1);
        for other in [&b"7"[..], b"\"x\"", b"null", b"true", b"[1] 2"] {
            assert!(from_json(other, 9).is_err(), "{other:?}");
        }
    }

    #[test]
    fn csv_with_a_wafer_files_header() {
        let csv = b",Sensor-1,Sensor-2,Good/Bad\nWafer-1,1.0,,-1\nWafer-2,2.0,3.0,1\nWafer-3,,,2\n";
        let CsvLabels { labels, errors, .. } = from_csv(csv, usize::MAX, no_sensor).unwrap();
        assert_eq!(
            labels.iter().map(|l| l.good_bad()).collect::<Vec<_>>(),
            [-1, 1]
        );
        assert_eq!(errors[0].row, 3);
        let CsvLabels { labels, .. } = from_csv(
            b"id,label,at\nW-9,fail,2026-11-26T10:00:00+01:00\n",
            usize::MAX,
            no_sensor,
        )
        .unwrap();
        assert_eq!(labels[0].at.as_deref(), Some("2026-11-26T10:00:00+01:00"));
        assert!(from_csv(b"id,score\nW,1\n", usize::MAX, no_sensor)
            .unwrap_err()
            .contains("Good/Bad"));
    }

    #[test]
    fn csv_labels_in_any_spelling_of_one_and_unknown_ones_left_out() {
        // pandas writes a label column with gaps as floats.
        let csv = b",Sensor-1,Good/Bad\nW-1,1,1.0\nW-2,2,-1.0\nW-3,3,\nW-4,4,NA\nW-5,5,+1\nW-6,6,FAIL\nW-7,7,0\nW-8,8\n";
        let CsvLabels {
            labels,
            errors,
            unlabelled,
        } = from_csv(csv, usize::MAX, no_sensor).unwrap();
        let read: Vec<(&str, i8)> = labels.iter().map(|l| (&l.id[..], l.good_bad())).collect();
        assert_eq!(read, [("W-1", 1), ("W-2", -1), ("W-5", 1), ("W-6", 1)]);
        assert_eq!(unlabelled, 2);
        // A label that is not one, and a line without the label's cell.
        assert_eq!(errors.len(), 2);
        assert_eq!((errors[0].row, errors[1].row), (7, 8));
        assert!(errors[0].reason.contains("\"0\""), "{}", errors[0].reason);
        // Unlabelled rows count toward the most read.
        let r = from_csv(csv, 2, no_sensor).unwrap();
        assert_eq!(r.labels.len() + r.errors.len() + r.unlabelled, 3);
        // Under the rows' key too, named in a refusal; a null "label" beside it is no label.
        assert!(
            from_message(br#"{"id": "W", "Good/Bad": 1}"#)
                .unwrap()
                .faulty
        );
        assert!(
            from_message(br#"{"id": "W", "label": null, "Good/Bad": 1}"#)
                .unwrap()
                .faulty
        );
        let e = from_message(br#"{"id": "W", "Good/Bad": 0}"#).unwrap_err();
        assert!(e.starts_with("\"Good/Bad\" is 0"), "{e}");
        // A JSON label may be written 1.0 too.
        assert!(
            from_message(br#"{"id": "W", "label": 1.0}"#)
                .unwrap()
                .faulty
        );
        assert!(
            !from_message(br#"{"id": "W", "label": -1e0}"#)
                .unwrap()
                .faulty
        );
        assert!(from_message(br#"{"id": "W", "label": 0.5}"#).is_err());
    }

    #[test]
    fn csv_ids_are_read_from_the_id_column_by_name() {
        // By name wherever it stands; else the first column, whatever its name.
        for csv in [
            &b"at,Wafer,Good/Bad\n2026-11-26T10:00:00Z,W-1,1\n"[..],
            b"label,ID,note\n1,W-1,x\n",
            b"wafer_id,Good/Bad\nW-1,1\n",
        ] {
            let CsvLabels { labels, errors, .. } = from_csv(csv, usize::MAX, no_sensor).unwrap();
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(labels[0].id, "W-1", "{}", String::from_utf8_lossy(csv));
        }
        // Without one, a first column that holds the label or the time is no id.
        for csv in [
            &b"Good/Bad,wafer_id\n1,W-1\n"[..],
            b"Time,Good/Bad\n2026-11-26T10:00:00Z,1\n",
        ] {
            let e = from_csv(csv, usize::MAX, no_sensor).unwrap_err();
            assert!(e.contains("no wafer id column"), "{e}");
        }
    }

    fn no_sensor(_: &str) -> bool {
        false
    }

    #[test]
    fn a_csv_of_readings_without_an_id_column_is_refused() {
        let csv = b"Sensor-1,Sensor-2,Good/Bad\n3030.93,1,1\n";
        let e = from_csv(csv, usize::MAX, |n| n.starts_with("Sensor-")).unwrap_err();
        assert!(e.contains("no wafer id column"), "{e}");
        // A line too short for the label's field says so (an empty label cell is no label).
        let CsvLabels { errors, .. } = from_csv(b"id,x,Good/Bad\nW-1,5\n", 9, no_sensor).unwrap();
        assert_eq!(
            errors[0].reason,
            "the line has 2 field(s); the label is field 3"
        );
    }

    #[test]
    fn csv_reading_stops_one_row_past_the_most_asked_for() {
        let mut csv = b"id,Good/Bad\n".to_vec();
        for i in 0..1000 {
            csv.extend_from_slice(
                format!("W-{i},{}\n", if i % 3 == 0 { "x" } else { "1" }).as_bytes(),
            );
        }
        let CsvLabels { labels, errors, .. } = from_csv(&csv, 10, no_sensor).unwrap();
        assert_eq!(labels.len() + errors.len(), 11);
        let CsvLabels { labels, errors, .. } = from_csv(&csv, 1000, no_sensor).unwrap();
        assert_eq!(labels.len() + errors.len(), 1000);
    }
}
