//! Closing the loop: every scored row and every late label, kept on disk and joined in memory.
//!
//! ```text
//! scorer ──ScoredBatch──► Store::record_scored ──► ledger (join, live quality)
//!                                              └─try_send─► writer thread ──► scored-*.arrows
//! labels (bus, API) ──► Store::record_labels ──► ledger
//!                                              └─try_send─► writer thread ──► labels-*.arrows
//! ```
//!
//! The store never blocks the fault stream: the scorer hands batches over with `try_send`, and
//! when the writer falls behind or the disk fails the rows are counted as dropped from the store
//! (they were still scored and published), the error goes to the log (once per change), to
//! `faultline_store_errors_total` and to `/readyz`. The writer starts a new segment after each
//! failure, so a disk that recovers is used again.
//!
//! - [`ledger`]: the join and live quality.
//! - [`segment`]: the Arrow IPC files.
//! - [`export`]: `faultline export`.

pub mod export;
pub mod ledger;
pub mod segment;

use crate::metrics::Metrics;
use crate::row::labels::Label;
use arrow_array::{Float32Array, Int8Array, StringArray, TimestampMillisecondArray};
use ledger::{LabelOutcome, Ledger, LedgerLimits, Scores};
use segment::{Kind, ScoredBatch, SegmentFile, SegmentWriter};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{info, warn};

/// Batches waiting for the writer before the store starts dropping.
const QUEUE_BATCHES: usize = 256;

/// Where and how much to keep.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// Directory of the segments; `None`: nothing on disk (the join still runs in memory).
    pub dir: Option<PathBuf>,
    /// Scored rows kept on disk (and remembered for the join); the oldest segments go first.
    pub max_rows: usize,
    /// Segments older than this many days are deleted; `None`: no age limit.
    pub max_days: Option<u32>,
    /// Rows per segment before the next one starts.
    pub segment_rows: usize,
    /// The join's limits.
    pub ledger: LedgerLimits,
}

/// The store's health, for `/readyz` and the API.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StoreStatus {
    /// Whether scored rows go to disk at all.
    pub enabled: bool,
    /// The directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The last write failed (and why); cleared by the next write that succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Scored rows written since start.
    pub rows_written: u64,
    /// Scored rows not written (the writer fell behind or the disk failed).
    pub rows_dropped: u64,
    /// Labels written since start.
    pub labels_written: u64,
    /// Labels applied but not written (the writer stopped or the disk failed).
    pub labels_dropped: u64,
    /// Scored rows read back from disk at start.
    pub rows_recovered: u64,
    /// Labels read back from disk at start.
    pub labels_recovered: u64,
    /// When a dropped batch was last logged (ms since the epoch): a writer that falls behind now
    /// and then logs once a minute, not once per catch-up.
    #[serde(skip)]
    last_drop_log_ms: i64,
}

/// Least time between two log lines about rows not stored, in ms.
const DROP_LOG_EVERY_MS: i64 = 60_000;

/// How long the writer gathers records before writing them together...
const WRITE_LINGER: std::time::Duration = std::time::Duration::from_millis(250);
/// ...unless this many rows are waiting.
const WRITE_ROWS: usize = 4096;

/// Finished segments with the rows each holds, oldest first.
type Segments = Vec<(SegmentFile, usize)>;

enum Record {
    Scored(ScoredBatch),
    Labels(Vec<(Label, i64)>),
}

impl Record {
    fn rows(&self) -> usize {
        match self {
            Record::Scored(b) => b.ids.len(),
            Record::Labels(l) => l.len(),
        }
    }
}

/// The store: the ledger plus, with a directory, the writer thread.
#[derive(Debug)]
pub struct Store {
    ledger: Mutex<Ledger>,
    status: Arc<Mutex<StoreStatus>>,
    sender: Mutex<Option<SyncSender<Record>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Store {
    /// Reads back what `settings.dir` holds and starts the writer. Problems with the directory
    /// are reported in the status (and the log), never fatal: scoring goes on without the disk.
    pub fn open(settings: StoreSettings, features: Vec<String>, metrics: Arc<Metrics>) -> Store {
        let mut ledger = Ledger::new(settings.ledger);
        let mut status = StoreStatus {
            enabled: settings.dir.is_some(),
            dir: settings.dir.as_ref().map(|d| d.display().to_string()),
            ..StoreStatus::default()
        };
        let mut segments = (vec![], vec![]);
        if let Some(dir) = &settings.dir {
            match std::fs::create_dir_all(dir).and_then(|_| {
                Ok((
                    segment::list(dir, Kind::Scored)?,
                    segment::list(dir, Kind::Labels)?,
                ))
            }) {
                Ok(found) => {
                    segments = recover(&found, &mut ledger, &mut status);
                    info!(dir = %dir.display(), rows = status.rows_recovered, labels = status.labels_recovered, "Read back the scored-row store.");
                }
                Err(e) => {
                    let error = format!("cannot use the store directory {}: {e}", dir.display());
                    warn!(error = %error, "The store cannot be written; scoring goes on without it.");
                    metrics.store_errors.inc();
                    status.error = Some(error);
                }
            }
        }
        metrics.store_healthy.set(i64::from(status.error.is_none()));
        let status = Arc::new(Mutex::new(status));
        let (sender, writer) = match settings.dir.clone() {
            Some(dir) => {
                let (tx, rx) = sync_channel(QUEUE_BATCHES);
                let writer = Writer {
                    dir,
                    settings: settings.clone(),
                    scored_schema: segment::scored_schema(&features),
                    labels_schema: segment::labels_schema(),
                    scored: None,
                    labels: None,
                    segments,
                    chores: Chores::start(),
                    status: status.clone(),
                    metrics: metrics.clone(),
                };
                let handle = std::thread::Builder::new()
                    .name("faultline-store".into())
                    .spawn(move || writer.run(rx))
                    .ok();
                (Some(tx), handle)
            }
            None => (None, None),
        };
        Store {
            ledger: Mutex::new(ledger),
            status,
            sender: Mutex::new(sender),
            writer: Mutex::new(writer),
            metrics,
        }
    }

    /// Remembers a scored batch for the join and queues it for the disk; never waits.
    pub fn record_scored(&self, batch: ScoredBatch) {
        {
            let mut ledger = lock(&self.ledger);
            for (i, id) in batch.ids.iter().enumerate() {
                let mut scores: Scores = vec![(batch.version.clone(), batch.probabilities[i])];
                if let Some((v, p)) = &batch.shadow {
                    scores.push((v.clone(), p[i]));
                }
                ledger.scored(id, batch.at_ms, scores);
            }
        }
        let rows = batch.ids.len() as u64;
        self.send(Record::Scored(batch), Kind::Scored, rows);
    }

    /// Applies labels received now and queues them for the disk. Labels are few and each one
    /// matters, so this waits for room in the writer's queue (call it off the async runtime);
    /// only the scored rows' path never waits.
    pub fn record_labels(&self, labels: Vec<Label>) -> Vec<LabelOutcome> {
        let now = now_ms();
        let outcomes: Vec<LabelOutcome> = {
            let mut ledger = lock(&self.ledger);
            labels
                .iter()
                .map(|l| ledger.label(l.clone(), now))
                .collect()
        };
        for o in &outcomes {
            let result = match o {
                LabelOutcome::Joined => "joined",
                LabelOutcome::Relabelled => "relabelled",
                LabelOutcome::Pending => "pending",
            };
            self.metrics.labels.with_label_values(&[result]).inc();
        }
        let rows = labels.len() as u64;
        let stamped = labels.into_iter().map(|l| (l, now)).collect();
        let sender = lock(&self.sender).clone();
        if let Some(tx) = sender {
            if tx.send(Record::Labels(stamped)).is_err() {
                self.dropped(Kind::Labels, rows, "the store's writer stopped".into());
            }
        }
        outcomes
    }

    fn send(&self, record: Record, kind: Kind, rows: u64) {
        let sender = lock(&self.sender);
        let Some(tx) = sender.as_ref() else { return };
        let dropped = match tx.try_send(record) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the store's writer fell behind".to_string(),
            Err(TrySendError::Disconnected(_)) => "the store's writer stopped".to_string(),
        };
        drop(sender);
        self.dropped(kind, rows, dropped);
    }

    fn dropped(&self, kind: Kind, rows: u64, dropped: String) {
        let now = now_ms();
        self.metrics
            .store_rows_dropped
            .with_label_values(&[kind.name()])
            .inc_by(rows);
        let mut status = lock(&self.status);
        match kind {
            Kind::Scored => status.rows_dropped += rows,
            Kind::Labels => status.labels_dropped += rows,
        }
        if status.error.is_none() {
            if now - status.last_drop_log_ms >= DROP_LOG_EVERY_MS {
                status.last_drop_log_ms = now;
                warn!(error = %dropped, rows_dropped = status.rows_dropped, labels_dropped = status.labels_dropped,
                    "Rows were scored but not stored (logged at most once a minute; faultline_store_rows_dropped_total counts them).");
            }
            status.error = Some(dropped);
            self.metrics.store_healthy.set(0);
        }
    }

    /// Drops labels that waited too long for their row; call now and then.
    pub fn expire(&self) {
        let (expired, pending) = {
            let mut ledger = lock(&self.ledger);
            (ledger.expire(now_ms()), ledger.counts().pending)
        };
        if expired > 0 {
            self.metrics.labels_expired.inc_by(expired as u64);
        }
        self.metrics.labels_pending.set(pending as i64);
    }

    /// The join, for quality and counts.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    /// The store's health.
    pub fn status(&self) -> StoreStatus {
        lock(&self.status).clone()
    }

    /// Writes what is queued, closes the segments and stops the writer.
    pub fn close(&self) {
        lock(&self.sender).take();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
    }
}

/// Rebuilds the ledger from the segments; returns the segments with their row counts.
fn recover(
    (scored, labels): &(Vec<SegmentFile>, Vec<SegmentFile>),
    ledger: &mut Ledger,
    status: &mut StoreStatus,
) -> (Segments, Segments) {
    let mut scored_rows = vec![];
    for file in scored {
        let mut rows = 0;
        match segment::read(
            &file.path,
            Some((0..segment::SCORED_FIXED_COLUMNS).collect()),
        ) {
            Ok((batches, cut)) => {
                if let Some(cut) = cut {
                    warn!(reason = %cut, "A store segment ends early (the daemon was stopped mid-write); its whole batches are kept.");
                }
                for b in &batches {
                    if let Err(e) = recover_scored(b, ledger) {
                        warn!(segment = %file.path.display(), error = %e, "Skipped a store batch.");
                        continue;
                    }
                    rows += b.num_rows();
                }
            }
            Err(e) => warn!(error = %e, "Skipped an unreadable store segment."),
        }
        status.rows_recovered += rows as u64;
        scored_rows.push((file.clone(), rows));
    }
    let mut label_rows = vec![];
    let now = now_ms();
    for file in labels {
        let mut rows = 0;
        match segment::read(&file.path, None) {
            Ok((batches, _)) => {
                for b in &batches {
                    match recover_labels(b, ledger) {
                        Ok(n) => rows += n,
                        Err(e) => {
                            warn!(segment = %file.path.display(), error = %e, "Skipped a label batch.")
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "Skipped an unreadable label segment."),
        }
        status.labels_recovered += rows as u64;
        label_rows.push((file.clone(), rows));
    }
    ledger.expire(now);
    (scored_rows, label_rows)
}

fn recover_scored(b: &arrow_array::RecordBatch, ledger: &mut Ledger) -> Result<(), String> {
    let ids = segment::column::<StringArray>(b, "id")?;
    let at = segment::column::<TimestampMillisecondArray>(b, "scored_at")?;
    let p = segment::column::<Float32Array>(b, "probability")?;
    let version = segment::column::<StringArray>(b, "model_version")?;
    let shadow_p = segment::column::<Float32Array>(b, "shadow_probability")?;
    let shadow_v = segment::column::<StringArray>(b, "shadow_version")?;
    // One version string per batch, shared by its rows.
    let mut versions: Vec<Arc<str>> = vec![];
    let mut intern = |s: &str| -> Arc<str> {
        if let Some(v) = versions.iter().find(|v| &***v == s) {
            return v.clone();
        }
        let v: Arc<str> = Arc::from(s);
        versions.push(v.clone());
        v
    };
    for i in 0..b.num_rows() {
        let mut scores: Scores = vec![(intern(version.value(i)), p.value(i))];
        if segment::present(shadow_p, i) && segment::present(shadow_v, i) {
            scores.push((intern(shadow_v.value(i)), shadow_p.value(i)));
        }
        ledger.scored(ids.value(i), at.value(i), scores);
    }
    Ok(())
}

fn recover_labels(b: &arrow_array::RecordBatch, ledger: &mut Ledger) -> Result<usize, String> {
    let ids = segment::column::<StringArray>(b, "id")?;
    let label = segment::column::<Int8Array>(b, "label")?;
    let at = segment::column::<StringArray>(b, "at")?;
    let received = segment::column::<TimestampMillisecondArray>(b, "received_at")?;
    for i in 0..b.num_rows() {
        let l = Label {
            id: ids.value(i).to_string(),
            faulty: label.value(i) == 1,
            at: segment::present(at, i).then(|| at.value(i).to_string()),
        };
        ledger.label(l, received.value(i));
    }
    Ok(b.num_rows())
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    settings: StoreSettings,
    scored_schema: arrow_schema::SchemaRef,
    labels_schema: arrow_schema::SchemaRef,
    scored: Option<SegmentWriter>,
    labels: Option<SegmentWriter>,
    /// Finished segments with their rows, oldest first, for retention.
    segments: (Segments, Segments),
    /// Syncs and deletions, off the writer's path (done when the writer ends).
    chores: Chores,
    status: Arc<Mutex<StoreStatus>>,
    metrics: Arc<Metrics>,
}

/// Slow file work the writer hands to a thread of its own: syncing a finished segment (~100 MB)
/// or deleting an old one each take up to a second or more, during which the writer would not
/// drain its queue (the 30-minute soak at 5k rows/s dropped ~300 rows per rotation and then per
/// deletion).
enum Chore {
    /// Sync a finished segment to disk.
    Sync(std::fs::File, PathBuf),
    /// Delete a segment retention retired.
    Remove(PathBuf),
}

impl Chore {
    fn run(self) {
        match self {
            Chore::Sync(file, path) => {
                if let Err(e) = file.sync_all() {
                    warn!(segment = %path.display(), error = %e, "Could not sync a finished store segment to disk.");
                }
            }
            Chore::Remove(path) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    warn!(segment = %path.display(), error = %e, "Could not delete an old store segment.");
                }
            }
        }
    }
}

/// Runs chores in order on a thread of its own; done (joined) when dropped.
struct Chores {
    tx: Option<std::sync::mpsc::Sender<Chore>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Chores {
    fn start() -> Chores {
        let (tx, rx) = std::sync::mpsc::channel::<Chore>();
        let thread = std::thread::Builder::new()
            .name("faultline-store-chores".into())
            .spawn(move || rx.into_iter().for_each(Chore::run))
            .ok();
        Chores {
            tx: thread.is_some().then_some(tx),
            thread,
        }
    }

    /// Queues `chore`, or runs it here if the thread is not there.
    fn push(&self, chore: Chore) {
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(chore) {
                    e.0.run();
                }
            }
            None => chore.run(),
        }
    }
}

impl Drop for Chores {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    fn run(mut self, rx: Receiver<Record>) {
        // Old segments may have aged past max_days while faultline was down.
        self.retire(Kind::Scored);
        self.retire(Kind::Labels);
        while let Ok(first) = rx.recv() {
            // What arrives within WRITE_LINGER of the first record goes out with it (up to
            // WRITE_ROWS rows): each Arrow message carries ~600 column headers, so writing every
            // micro-batch alone costs more than the rows (the writer fell behind at 5k rows/s).
            let deadline = std::time::Instant::now() + WRITE_LINGER;
            let mut rows = first.rows();
            let mut records = vec![first];
            while rows < WRITE_ROWS {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let next = match rx.recv_timeout(left) {
                    Ok(r) => r,
                    Err(_) => break,
                };
                rows += next.rows();
                records.push(next);
            }
            // Scored rows and labels go to files of their own: each kind as one Arrow batch, in
            // the order it arrived.
            let mut scored: Vec<ScoredBatch> = vec![];
            let mut labels: Vec<(Label, i64)> = vec![];
            for record in records {
                match record {
                    Record::Scored(b) => scored.push(b),
                    Record::Labels(l) => labels.extend(l),
                }
            }
            self.write_scored(scored);
            if !labels.is_empty() {
                self.write(Record::Labels(labels));
            }
        }
        for kind in [Kind::Scored, Kind::Labels] {
            if let Some(w) = self.slot(kind).take() {
                if let Err(e) = w.finish() {
                    warn!(error = %e, "Could not close a store segment.");
                }
            }
        }
    }

    fn write_scored(&mut self, batches: Vec<ScoredBatch>) {
        if batches.is_empty() {
            return;
        }
        let rows: usize = batches.iter().map(|b| b.ids.len()).sum();
        let result = ScoredBatch::to_record_batch(&batches, &self.scored_schema)
            .map_err(|e| e.to_string())
            .and_then(|batch| self.append(Kind::Scored, &batch));
        self.report(Kind::Scored, rows as u64, result);
    }

    fn write(&mut self, record: Record) {
        {
            let (kind, rows, result) = match record {
                Record::Scored(b) => {
                    self.write_scored(vec![b]);
                    return;
                }
                Record::Labels(l) => {
                    let r = segment::labels_batch(&l, &self.labels_schema)
                        .map_err(|e| e.to_string())
                        .and_then(|batch| self.append(Kind::Labels, &batch));
                    (Kind::Labels, l.len(), r)
                }
            };
            self.report(kind, rows as u64, result);
        }
    }

    fn slot(&mut self, kind: Kind) -> &mut Option<SegmentWriter> {
        match kind {
            Kind::Scored => &mut self.scored,
            Kind::Labels => &mut self.labels,
        }
    }

    fn finished(&mut self, kind: Kind) -> &mut Segments {
        match kind {
            Kind::Scored => &mut self.segments.0,
            Kind::Labels => &mut self.segments.1,
        }
    }

    fn append(&mut self, kind: Kind, batch: &arrow_array::RecordBatch) -> Result<(), String> {
        let segment_rows = self.settings.segment_rows;
        let full = self
            .slot(kind)
            .as_ref()
            .is_some_and(|w| w.rows >= segment_rows);
        if full {
            if let Some(w) = self.slot(kind).take() {
                let done = (w.file.clone(), w.rows);
                // The data is with the operating system; the sync to disk is a chore (a
                // failure there is logged).
                let file = w.close()?;
                self.chores.push(Chore::Sync(file, done.0.path.clone()));
                self.finished(kind).push(done);
            }
            self.retire(kind);
        }
        if self.slot(kind).is_none() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
            let next = segment::list(&self.dir, kind)
                .map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?
                .last()
                .map_or(1, |s| s.seq + 1);
            let schema = match kind {
                Kind::Scored => self.scored_schema.clone(),
                Kind::Labels => self.labels_schema.clone(),
            };
            *self.slot(kind) = Some(SegmentWriter::create(&self.dir, kind, next, &schema)?);
        }
        let result = match self.slot(kind).as_mut() {
            Some(w) => w.append(batch),
            None => Ok(()),
        };
        if result.is_err() {
            // Abandon the segment: the next batch starts a new one.
            if let Some(w) = self.slot(kind).take() {
                let done = (w.file.clone(), w.rows);
                drop(w);
                self.finished(kind).push(done);
            }
        }
        result
    }

    /// Deletes the oldest finished segments beyond the row and age limits.
    fn retire(&mut self, kind: Kind) {
        let max_rows = self.settings.max_rows;
        let max_age = self
            .settings
            .max_days
            .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400));
        let current = self.slot(kind).as_ref().map_or(0, |w| w.rows);
        let finished = self.finished(kind);
        let mut total: usize = current + finished.iter().map(|(_, r)| r).sum::<usize>();
        let mut removed = vec![];
        while let Some((file, rows)) = finished.first().cloned() {
            let too_many = total > max_rows;
            let too_old = max_age.is_some_and(|age| {
                std::fs::metadata(&file.path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|e| e > age)
            });
            if !too_many && !too_old {
                break;
            }
            finished.remove(0);
            total -= rows;
            removed.push(file);
        }
        for file in removed {
            self.chores.push(Chore::Remove(file.path));
        }
    }

    fn report(&mut self, kind: Kind, rows: u64, result: Result<(), String>) {
        let mut status = lock(&self.status);
        match result {
            Ok(()) => {
                self.metrics
                    .store_rows_written
                    .with_label_values(&[kind.name()])
                    .inc_by(rows);
                match kind {
                    Kind::Scored => status.rows_written += rows,
                    Kind::Labels => status.labels_written += rows,
                }
                if let Some(was) = status.error.take() {
                    // After a drop the writer catches up at once; that is said with the drop.
                    if now_ms() - status.last_drop_log_ms >= DROP_LOG_EVERY_MS {
                        info!(previous_error = %was, "The store is writing again.");
                    }
                    self.metrics.store_healthy.set(1);
                }
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                self.metrics
                    .store_rows_dropped
                    .with_label_values(&[kind.name()])
                    .inc_by(rows);
                match kind {
                    Kind::Scored => status.rows_dropped += rows,
                    Kind::Labels => status.labels_dropped += rows,
                }
                if status.error.as_deref() != Some(&e) {
                    warn!(error = %e, "The store cannot write; scoring and publishing go on without it.");
                    self.metrics.store_healthy.set(0);
                }
                status.error = Some(e);
            }
        }
    }
}

/// The directory's segments of `kind` (for export and tests).
pub fn segments(dir: &Path, kind: Kind) -> std::io::Result<Vec<SegmentFile>> {
    segment::list(dir, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> StoreSettings {
        StoreSettings {
            dir: Some(dir.to_path_buf()),
            max_rows: 10,
            max_days: None,
            segment_rows: 4,
            ledger: LedgerLimits {
                max_rows: 100,
                window: 100,
                max_pending: 100,
                pending_ttl_ms: 3_600_000,
            },
        }
    }

    fn batch(ids: &[&str], p: f32) -> ScoredBatch {
        ScoredBatch {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            values: ids.iter().flat_map(|_| [1.0, f32::NAN]).collect(),
            width: 2,
            probabilities: vec![p; ids.len()],
            faults: vec![p >= 0.5; ids.len()],
            version: Arc::from("v1"),
            shadow: Some((Arc::from("v2"), vec![1.0 - p; ids.len()])),
            at_ms: now_ms(),
        }
    }

    fn features() -> Vec<String> {
        vec!["Sensor-1".into(), "Sensor-2".into()]
    }

    #[test]
    fn rows_and_labels_survive_a_restart_and_old_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Store::open(settings(dir.path()), features(), metrics.clone());
        for i in 0..5 {
            let ids: Vec<String> = (0..3).map(|j| format!("w{}", i * 3 + j)).collect();
            let ids: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
            store.record_scored(batch(&ids, if i % 2 == 0 { 0.9 } else { 0.1 }));
            // One write per batch (queued batches would be written together), so the
            // segments below are predictable.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.status().rows_written < (i as u64 + 1) * 3 {
                assert!(std::time::Instant::now() < deadline);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        store.record_labels(vec![
            Label {
                id: "w14".into(),
                faulty: true,
                at: None,
            },
            Label {
                id: "w9".into(),
                faulty: false,
                at: Some("2026-11-26T10:00:00Z".into()),
            },
            Label {
                id: "later".into(),
                faulty: true,
                at: None,
            },
        ]);
        store.close();
        let status = store.status();
        assert_eq!((status.rows_written, status.rows_dropped), (15, 0));
        assert_eq!(status.error, None);
        // 15 rows in segments of 6 (two batches of 3 each before the next starts): the oldest
        // went once more than 10 rows were kept.
        let scored = segments(dir.path(), Kind::Scored).unwrap();
        assert_eq!(scored.first().unwrap().seq, 2, "{scored:?}");

        let again = Store::open(settings(dir.path()), features(), metrics);
        let st = again.status();
        assert_eq!(st.rows_recovered, 9);
        assert_eq!(st.labels_recovered, 3);
        let ledger = again.ledger();
        assert_eq!(ledger.counts().joined, 2);
        assert_eq!(ledger.counts().pending, 1);
        let q = ledger.quality("v1", 0.5);
        assert_eq!((q.labelled, q.positives, q.roc_auc), (2, 1, Some(1.0)));
        assert_eq!(ledger.quality("v2", 0.5).roc_auc, Some(0.0));
    }

    #[test]
    fn a_store_that_cannot_write_reports_and_recovers() {
        let base = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: nothing can be created under it.
        let blocker = base.path().join("blocked");
        std::fs::write(&blocker, b"").unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Store::open(
            settings(&blocker.join("store")),
            features(),
            metrics.clone(),
        );
        assert!(store.status().error.is_some());
        store.record_scored(batch(&["a", "b"], 0.9));
        // The join still works without the disk.
        assert_eq!(store.ledger().rows(), 2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.status().rows_dropped < 2 {
            assert!(std::time::Instant::now() < deadline, "{:?}", store.status());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::fs::remove_file(&blocker).unwrap();
        // Once the path is usable, the next batch is written.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            store.record_scored(batch(&["c"], 0.9));
            std::thread::sleep(std::time::Duration::from_millis(20));
            if store.status().error.is_none() || std::time::Instant::now() > deadline {
                break;
            }
        }
        store.close();
        let status = store.status();
        assert_eq!(status.error, None);
        assert_eq!(status.rows_dropped, 2, "{status:?}");
        assert!(status.rows_written >= 1);
        assert!(metrics.store_errors.get() >= 1);
    }
}
