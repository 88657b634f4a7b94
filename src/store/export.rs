//! `faultline export`: the store's rows, joined with their labels, as a wafer batch file.
//!
//! The CSV has the wafer files' layout, so `training/train.py --input` reads it: the id in an
//! unnamed first column, the model's sensor columns (empty where a reading was missing), `Good/Bad`
//! (+1 faulty, -1 good; empty for a wafer without a label), then `Time`, when the wafer was scored
//! (RFC 3339, UTC), which training's `--since`/`--until` select on. A wafer scored more than once
//! (redelivered after a crash) is written once, as last scored; a wafer labelled more than once
//! takes its last label.

use super::segment::{self, Kind};
use arrow_array::{Array, Float32Array, Int8Array, StringArray, TimestampMillisecondArray};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only wafers with a label.
    pub labelled_only: bool,
    /// Only wafers scored at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
}

/// What was exported.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ExportSummary {
    /// Rows written.
    pub rows: usize,
    /// Of those, rows with a label.
    pub labelled: usize,
    /// Of those, faulty wafers.
    pub faulty: usize,
    /// Segments read.
    pub segments: usize,
    /// Segments that ended early (a killed daemon) and were read up to the cut.
    pub cut_short: usize,
    /// Segments that could not be read at all (empty, or not Arrow), left out as the daemon's
    /// recovery leaves them out; each with the reason.
    pub unreadable: Vec<String>,
}

/// Writes the store in `dir` as CSV to `out`.
pub fn export(
    dir: &Path,
    options: &ExportOptions,
    out: impl Write,
) -> Result<ExportSummary, String> {
    let list = |kind| {
        segment::list(dir, kind)
            .map_err(|e| format!("cannot read the store {}: {e}", dir.display()))
    };
    let (scored, labelled) = (list(Kind::Scored)?, list(Kind::Labels)?);
    if scored.is_empty() {
        return Err(format!(
            "the store {} holds no scored rows (no scored-*.arrows files); is [store] dir the daemon's?",
            dir.display()
        ));
    }
    let mut summary = ExportSummary::default();
    let mut labels: HashMap<String, i8> = HashMap::new();
    // An unreadable segment is left out and named, as recovery leaves it out: one bad file does
    // not hide the rest of the store.
    let mut unreadable = std::collections::BTreeSet::new();
    let mut read = |path: &Path, columns| match segment::batches(path, columns) {
        Ok(batches) => Some(batches),
        Err(e) => {
            unreadable.insert(e);
            None
        }
    };
    for file in &labelled {
        let Some(mut batches) = read(&file.path, None) else {
            continue;
        };
        summary.segments += 1;
        let named = |e: String| format!("{}: {e}", file.path.display());
        for b in batches.by_ref() {
            let ids = segment::column::<StringArray>(&b, "id").map_err(named)?;
            let label = segment::column::<Int8Array>(&b, "label").map_err(named)?;
            for i in 0..b.num_rows() {
                labels.insert(ids.value(i).to_string(), label.value(i));
            }
        }
        summary.cut_short += usize::from(batches.cut().is_some());
    }
    // Where each wafer was scored last: (segment, batch, row).
    let mut last: HashMap<String, (usize, usize, usize)> = HashMap::new();
    for (s, file) in scored.iter().enumerate() {
        let Some(batches) = read(&file.path, Some(vec![0])) else {
            continue;
        };
        let named = |e: String| format!("{}: {e}", file.path.display());
        for (b, batch) in batches.enumerate() {
            let ids = segment::column::<StringArray>(&batch, "id").map_err(named)?;
            for r in 0..batch.num_rows() {
                last.insert(ids.value(r).to_string(), (s, b, r));
            }
        }
    }
    let mut writer = csv::Writer::from_writer(out);
    let write_header = |writer: &mut csv::Writer<_>, features: &[String]| {
        let mut h = vec![String::new()];
        h.extend(features.iter().cloned());
        h.push("Good/Bad".into());
        h.push("Time".into());
        writer.write_record(&h).map_err(|e| e.to_string())
    };
    let mut header: Option<Vec<String>> = None;
    let mut scored_unreadable = 0;
    // The latest batch's features: the header of an export that selects no row.
    let mut latest: Vec<String> = vec![];
    let mut record: Vec<String> = vec![];
    for (s, file) in scored.iter().enumerate() {
        let Some(mut batches) = read(&file.path, None) else {
            scored_unreadable += 1;
            continue;
        };
        summary.segments += 1;
        let named = |e: String| format!("{}: {e}", file.path.display());
        for (b, batch) in batches.by_ref().enumerate() {
            let ids = segment::column::<StringArray>(&batch, "id").map_err(named)?;
            let at =
                segment::column::<TimestampMillisecondArray>(&batch, "scored_at").map_err(named)?;
            // The rows this batch gives (each wafer's last scoring, in the range, labelled if
            // asked), chosen first: a batch that gives none is not held to the header's features
            // (so --since can leave out an earlier model's rows, as the error below advises).
            let keep: Vec<usize> = (0..batch.num_rows())
                .filter(|&r| {
                    let id = ids.value(r);
                    last.get(id) == Some(&(s, b, r))
                        && options.since_ms.is_none_or(|since| at.value(r) >= since)
                        && (!options.labelled_only || labels.contains_key(id))
                })
                .collect();
            let schema = batch.schema();
            let Some(features) = schema.fields().get(segment::SCORED_FIXED_COLUMNS..) else {
                return Err(named(format!(
                    "a scored segment has at least {} columns; this one has {}",
                    segment::SCORED_FIXED_COLUMNS,
                    schema.fields().len()
                )));
            };
            let features: Vec<String> = features.iter().map(|f| f.name().clone()).collect();
            latest.clone_from(&features);
            if keep.is_empty() {
                continue;
            }
            match &header {
                None => {
                    write_header(&mut writer, &features)?;
                    header = Some(features.clone());
                }
                Some(h) if *h != features => {
                    return Err(format!(
                        "{} holds rows of a model with other features than the segments before it; \
                         export a time range scored by one model with --since",
                        file.path.display()
                    ))
                }
                Some(_) => {}
            }
            let columns: Vec<&Float32Array> = (segment::SCORED_FIXED_COLUMNS..batch.num_columns())
                .map(|c| {
                    batch
                        .column(c)
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .ok_or_else(|| {
                            format!("{}: a feature column is not Float32", file.path.display())
                        })
                })
                .collect::<Result<_, _>>()?;
            for r in keep {
                let id = ids.value(r);
                let label = labels.get(id).copied();
                record.clear();
                record.push(id.to_string());
                for c in &columns {
                    let v = c.value(r);
                    record.push(if c.is_null(r) || v.is_nan() {
                        String::new()
                    } else {
                        v.to_string()
                    });
                }
                record.push(label.map(|l| l.to_string()).unwrap_or_default());
                record.push(segment::rfc3339_ms(at.value(r)));
                writer.write_record(&record).map_err(|e| e.to_string())?;
                summary.rows += 1;
                summary.labelled += usize::from(label.is_some());
                summary.faulty += usize::from(label == Some(1));
            }
        }
        summary.cut_short += usize::from(batches.cut().is_some());
    }
    if header.is_none() {
        if latest.is_empty() && scored_unreadable > 0 {
            return Err(format!(
                "no scored segment of the store {} can be read: {}",
                dir.display(),
                unreadable.into_iter().collect::<Vec<_>>().join("; ")
            ));
        }
        if !latest.is_empty() {
            write_header(&mut writer, &latest)?;
        }
    }
    summary.unreadable = unreadable.into_iter().collect();
    writer.flush().map_err(|e| e.to_string())?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::row::labels::Label;
    use crate::store::ledger::LedgerLimits;
    use crate::store::segment::ScoredBatch;
    use crate::store::{Store, StoreSettings};
    use std::sync::Arc;

    /// A store in `dir` of two-row segments.
    fn settings(dir: &std::path::Path) -> StoreSettings {
        StoreSettings {
            dir: Some(dir.to_path_buf()),
            max_rows: 1000,
            max_days: None,
            segment_rows: 2,
            ledger: LedgerLimits {
                max_rows: 1000,
                window: 10,
                max_pending: 10,
                pending_ttl_ms: 60_000,
            },
        }
    }

    #[test]
    fn exports_the_last_scoring_of_each_labelled_wafer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            settings(dir.path()),
            vec!["Sensor-1".into(), "Sensor-2".into()],
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let batch = |ids: &[&str], values: Vec<f32>, at_ms| ScoredBatch {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            values,
            width: 2,
            probabilities: vec![0.5; ids.len()],
            faults: vec![true; ids.len()],
            version: Arc::from("v1"),
            shadow: None,
            at_ms,
        };
        store.record_scored(batch(&["a", "b"], vec![1.5, f32::NAN, 2.0, 3.25], 1_000));
        // "a" redelivered and scored again: exported once, with the later values.
        store.record_scored(batch(&["a", "c"], vec![9.0, 8.0, 0.1, 0.2], 2_000));
        let label = |id: &str, faulty| Label {
            id: id.into(),
            faulty,
            at: None,
        };
        store
            .record_labels(vec![label("a", true), label("b", false)])
            .unwrap();
        store.close();

        let mut out = vec![];
        let summary = export(
            dir.path(),
            &ExportOptions {
                labelled_only: true,
                since_ms: None,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!((summary.rows, summary.labelled, summary.faulty), (2, 2, 1));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ",Sensor-1,Sensor-2,Good/Bad,Time\n\
             b,2,3.25,-1,1970-01-01T00:00:01.000Z\n\
             a,9,8,1,1970-01-01T00:00:02.000Z\n"
        );
        let mut out = vec![];
        let all = export(
            dir.path(),
            &ExportOptions {
                labelled_only: false,
                since_ms: Some(1_500),
            },
            &mut out,
        )
        .unwrap();
        assert_eq!((all.rows, all.labelled), (2, 1));
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("c,0.1,0.2,,1970-01-01T00:00:02.000Z\n"));
        let empty = tempfile::tempdir().unwrap();
        assert!(export(empty.path(), &ExportOptions::default(), vec![])
            .unwrap_err()
            .contains("no scored rows"));
        // An empty segment (left by a full disk) is left out and named; the rest is exported.
        std::fs::write(dir.path().join("scored-99999999.arrows"), b"").unwrap();
        let mut out = vec![];
        let skipped = export(dir.path(), &ExportOptions::default(), &mut out).unwrap();
        assert_eq!(skipped.rows, 3);
        assert_eq!(skipped.unreadable.len(), 1, "{:?}", skipped.unreadable);
        assert!(skipped.unreadable[0].contains("scored-99999999.arrows"));
        let broken = tempfile::tempdir().unwrap();
        std::fs::write(broken.path().join("scored-00000001.arrows"), b"").unwrap();
        let e = export(broken.path(), &ExportOptions::default(), vec![]).unwrap_err();
        assert!(
            e.contains("no scored segment") && e.contains("00000001"),
            "{e}"
        );
        // Nothing in the range: the header alone.
        let mut out = vec![];
        let none = ExportOptions {
            labelled_only: false,
            since_ms: Some(10_000),
        };
        assert_eq!(export(dir.path(), &none, &mut out).unwrap().rows, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ",Sensor-1,Sensor-2,Good/Bad,Time\n"
        );
    }

    /// A file named as a scored segment but holding fewer columns than one (a trimmed copy)
    /// is refused, naming it; it used to panic.
    #[test]
    fn a_scored_segment_with_too_few_columns_is_named() {
        use arrow_array::{StringArray, TimestampMillisecondArray};
        use arrow_schema::{DataType, Field, Schema, TimeUnit};
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new(
                "scored_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
        ]));
        let batch = arrow_array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(TimestampMillisecondArray::from(vec![1_000]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let mut w = segment::SegmentWriter::create(dir.path(), Kind::Scored, 1, &schema).unwrap();
        w.append(&batch).unwrap();
        w.finish().unwrap();
        let e = export(dir.path(), &ExportOptions::default(), vec![]).unwrap_err();
        assert!(
            e.contains("scored-00000001.arrows") && e.contains("this one has 2"),
            "{e}"
        );
    }

    #[test]
    fn since_leaves_out_an_earlier_models_rows_as_the_error_advises() {
        let dir = tempfile::tempdir().unwrap();
        let batch = |id: &str, width, at_ms| ScoredBatch {
            ids: vec![id.to_string()],
            values: vec![1.0; width],
            width,
            probabilities: vec![0.5],
            faults: vec![false],
            version: Arc::from("v"),
            shadow: None,
            at_ms,
        };
        // A model of two sensors, then one of three.
        let old = Store::open(
            settings(dir.path()),
            vec!["S-1".into(), "S-2".into()],
            Arc::new(Metrics::new()),
        )
        .unwrap();
        old.record_scored(batch("a", 2, 1_000));
        old.close();
        let new = Store::open(
            settings(dir.path()),
            vec!["S-1".into(), "S-2".into(), "S-3".into()],
            Arc::new(Metrics::new()),
        )
        .unwrap();
        new.record_scored(batch("b", 3, 2_000));
        new.close();
        let e = export(dir.path(), &ExportOptions::default(), vec![]).unwrap_err();
        assert!(e.contains("--since"), "{e}");
        let mut out = vec![];
        let since = ExportOptions {
            labelled_only: false,
            since_ms: Some(1_500),
        };
        assert_eq!(export(dir.path(), &since, &mut out).unwrap().rows, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            ",S-1,S-2,S-3,Good/Bad,Time\nb,1,1,1,,1970-01-01T00:00:02.000Z\n"
        );
    }
}
