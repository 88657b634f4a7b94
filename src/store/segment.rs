//! The store's files: Arrow IPC streams (`.arrows`), one record batch per micro-batch.
//!
//! `scored-NNNNNNNN.arrows` hold every scored row: `id`, `scored_at` (UTC timestamp, ms),
//! `probability`, `fault`, `model_version`, `shadow_probability`, `shadow_version`, then one
//! `Float32` column per model feature (NaN where the reading was missing).
//! `labels-NNNNNNNN.arrows` hold every label accepted: `id`, `label` (+1 faulty, -1 good), `at` (as
//! sent), `received_at`.
//!
//! The writer gathers what is scored within 250 ms (or 4,096 rows) into one batch and hands it
//! to the operating system at once, so a killed daemon loses at most that from the store (its
//! verdicts were published) and leaves a stream that ends early; readers stop at the last whole
//! batch. pyarrow reads them with `pyarrow.ipc.open_stream`, polars
//! with `read_ipc_stream`, pandas through pyarrow.

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Int8Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File extension of a segment.
pub const EXTENSION: &str = "arrows";

/// Columns of a scored segment before the features.
pub const SCORED_FIXED_COLUMNS: usize = 7;

/// Which stream a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Scored rows.
    Scored,
    /// Labels.
    Labels,
}

impl Kind {
    /// The file name prefix, also the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Scored => "scored",
            Kind::Labels => "labels",
        }
    }
}

/// A segment on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFile {
    /// Its place in the stream's order.
    pub seq: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The segments of `kind` in `dir`, oldest first.
pub fn list(dir: &Path, kind: Kind) -> std::io::Result<Vec<SegmentFile>> {
    let mut found = vec![];
    let prefix = format!("{}-", kind.name());
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(seq) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&format!(".{EXTENSION}")))
            // Only names this store writes: `scored-5.arrows` or `scored-+5.arrows` would share
            // a number with `scored-00000005.arrows`, in no defined order.
            .and_then(|n| n.parse::<u64>().ok().filter(|seq| format!("{seq:08}") == n))
        else {
            continue;
        };
        found.push(SegmentFile {
            seq,
            path: entry.path(),
        });
    }
    found.sort_by_key(|s| s.seq);
    Ok(found)
}

/// The path of segment `seq` of `kind`.
pub fn path(dir: &Path, kind: Kind, seq: u64) -> PathBuf {
    dir.join(format!("{}-{seq:08}.{EXTENSION}", kind.name()))
}

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The schema of scored segments for a model reading `features`.
pub fn scored_schema(features: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("scored_at", timestamp_type(), false),
        Field::new("probability", DataType::Float32, false),
        Field::new("fault", DataType::Boolean, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("shadow_probability", DataType::Float32, true),
        Field::new("shadow_version", DataType::Utf8, true),
    ];
    fields.extend(
        features
            .iter()
            .map(|f| Field::new(f, DataType::Float32, false)),
    );
    Arc::new(Schema::new(fields))
}

/// The schema of label segments.
pub fn labels_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("label", DataType::Int8, false),
        Field::new("at", DataType::Utf8, true),
        Field::new("received_at", timestamp_type(), false),
    ]))
}

/// One micro-batch of scored rows, as the store keeps it.
#[derive(Debug, Clone)]
pub struct ScoredBatch {
    /// Row ids.
    pub ids: Vec<String>,
    /// Row-major features, `ids.len() * width`.
    pub values: Vec<f32>,
    /// Features per row.
    pub width: usize,
    /// The serving model's P(fault) per row.
    pub probabilities: Vec<f32>,
    /// Its verdict per row.
    pub faults: Vec<bool>,
    /// Its version.
    pub version: Arc<str>,
    /// The shadow model's version and P(fault) per row, when one runs.
    pub shadow: Option<(Arc<str>, Vec<f32>)>,
    /// When the batch was scored (ms since the epoch).
    pub at_ms: i64,
}

impl ScoredBatch {
    /// Several micro-batches as one Arrow record batch of `schema` (see [`scored_schema`]): one
    /// IPC message and one write for all of them, which is what lets the writer keep up with
    /// small micro-batches (each message carries ~600 column headers).
    pub fn to_record_batch(
        batches: &[ScoredBatch],
        schema: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let n: usize = batches.iter().map(|b| b.ids.len()).sum();
        let width = schema.fields().len().saturating_sub(SCORED_FIXED_COLUMNS);
        if let Some(b) = batches.iter().find(|b| b.width != width) {
            return Err(ArrowError::InvalidArgumentError(format!(
                "a batch of {} features for a store of {width}",
                b.width
            )));
        }
        let rows = || {
            batches
                .iter()
                .flat_map(|b| (0..b.ids.len()).map(move |r| (b, r)))
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(SCORED_FIXED_COLUMNS + width);
        columns.push(Arc::new(StringArray::from_iter_values(
            rows().map(|(b, r)| &b.ids[r]),
        )));
        columns.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(rows().map(|(b, _)| b.at_ms))
                .with_timezone("UTC"),
        ));
        columns.push(Arc::new(Float32Array::from_iter_values(
            rows().map(|(b, r)| b.probabilities[r]),
        )));
        columns.push(Arc::new(BooleanArray::from_iter(
            rows().map(|(b, r)| Some(b.faults[r])),
        )));
        columns.push(Arc::new(StringArray::from_iter_values(
            rows().map(|(b, _)| &*b.version),
        )));
        columns.push(Arc::new(Float32Array::from_iter(
            rows().map(|(b, r)| b.shadow.as_ref().map(|(_, p)| p[r])),
        )));
        columns.push(Arc::new(StringArray::from_iter(
            rows().map(|(b, _)| b.shadow.as_ref().map(|(v, _)| &**v)),
        )));
        for f in 0..width {
            let mut values = Vec::with_capacity(n);
            for b in batches {
                values.extend((0..b.ids.len()).map(|r| b.values[r * width + f]));
            }
            columns.push(Arc::new(Float32Array::from(values)));
        }
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// Labels as an Arrow record batch (see [`labels_schema`]).
pub fn labels_batch(
    labels: &[(crate::row::labels::Label, i64)],
    schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            labels.iter().map(|(l, _)| &l.id),
        )),
        Arc::new(Int8Array::from_iter_values(
            labels.iter().map(|(l, _)| l.good_bad()),
        )),
        Arc::new(StringArray::from(
            labels
                .iter()
                .map(|(l, _)| l.at.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(labels.iter().map(|(_, t)| *t))
                .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// A segment being written.
pub struct SegmentWriter {
    /// Its file.
    pub file: SegmentFile,
    writer: arrow_ipc::writer::StreamWriter<BufWriter<File>>,
    /// Rows written to it.
    pub rows: usize,
    /// When it was created.
    pub opened: std::time::Instant,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("file", &self.file)
            .field("rows", &self.rows)
            .finish()
    }
}

impl SegmentWriter {
    /// Creates segment `seq` of `kind` in `dir` (which must exist).
    pub fn create(
        dir: &Path,
        kind: Kind,
        seq: u64,
        schema: &SchemaRef,
    ) -> Result<SegmentWriter, String> {
        let path = path(dir, kind, seq);
        let file = File::create_new(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let writer = match arrow_ipc::writer::StreamWriter::try_new(BufWriter::new(file), schema) {
            Ok(writer) => writer,
            Err(e) => {
                // Writing the schema failed (a full disk): no file is left for readers.
                let _ = std::fs::remove_file(&path);
                return Err(format!("cannot write {}: {e}", path.display()));
            }
        };
        Ok(SegmentWriter {
            file: SegmentFile { seq, path },
            writer,
            rows: 0,
            opened: std::time::Instant::now(),
        })
    }

    /// Appends a batch and hands it to the operating system.
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.writer
            .write(batch)
            .and_then(|_| self.writer.flush())
            .map_err(|e| format!("cannot write {}: {e}", self.file.path.display()))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Ends the stream and syncs the file to disk.
    pub fn finish(self) -> Result<(), String> {
        let path = self.file.path.display().to_string();
        self.close()?
            .sync_all()
            .map_err(|e| format!("cannot sync {path}: {e}"))
    }

    /// Ends the stream and hands it to the operating system; returns the file, for syncing
    /// it to disk apart (a full segment takes a second or more to sync).
    pub fn close(self) -> Result<File, String> {
        let path = self.file.path.display().to_string();
        let file = self
            .writer
            .into_inner()
            .map_err(|e| format!("cannot finish {path}: {e}"))?
            .into_inner()
            .map_err(|e| format!("cannot finish {path}: {}", e.error()))?;
        Ok(file)
    }
}

/// Whether a segment last modified at `modified` is past `max_age` (never without one, nor when
/// its time cannot be read): what the writer's retirement deletes, and recovery skips.
pub fn past_age(
    modified: &std::io::Result<std::time::SystemTime>,
    max_age: Option<std::time::Duration>,
) -> bool {
    max_age.is_some_and(|age| {
        modified
            .as_ref()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e > age)
    })
}

/// A segment's whole batches, read one at a time, with `projection` (column indices) if given.
/// Each batch is dropped before the next is read: arrow keeps a batch's whole message body alive
/// under the projected columns, so holding them all held about the whole file (118 MB for 50,000
/// rows of 590 sensors) when recovery reads 7 columns. A stream cut short (the daemon was killed
/// mid-write) ends after the batches before the cut, and [`Batches::cut`] says why.
pub struct Batches {
    reader: arrow_ipc::reader::StreamReader<std::io::BufReader<File>>,
    path: std::path::PathBuf,
    cut: Option<String>,
}

/// Opens the segment at `path` for [`Batches`].
pub fn batches(path: &Path, projection: Option<Vec<usize>>) -> Result<Batches, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let reader =
        arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), projection)
            .map_err(|e| format!("{} is not an Arrow IPC stream: {e}", path.display()))?;
    Ok(Batches {
        reader,
        path: path.to_path_buf(),
        cut: None,
    })
}

impl Batches {
    /// Why the stream ended before its end, once it has.
    pub fn cut(&self) -> Option<&str> {
        self.cut.as_deref()
    }
}

impl Iterator for Batches {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        if self.cut.is_some() {
            return None;
        }
        match self.reader.next()? {
            Ok(b) => Some(b),
            Err(e) => {
                self.cut = Some(format!("{} ends early: {e}", self.path.display()));
                None
            }
        }
    }
}

/// Column `name` of `batch` as `T`, or why not.
pub fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("the store segment has no {name} column of the expected type"))
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether an array slot holds a value.
pub fn present(array: &dyn Array, i: usize) -> bool {
    !array.is_null(i)
}
