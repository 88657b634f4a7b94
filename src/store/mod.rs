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
pub mod settings;
mod writer;

use crate::metrics::Metrics;
use crate::row::labels::Label;
use arrow_array::{Float32Array, Int8Array, StringArray, TimestampMillisecondArray};
use ledger::{LabelOutcome, Ledger, Scores};
use segment::{Kind, ScoredBatch, SegmentFile, SegmentWriter};
use serde::Serialize;
pub use settings::{LabelsSection, StoreSection, StoreSettings};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{info, warn};
use writer::{Chores, Writer};

/// Scored batches waiting for the writer before the store starts dropping them.
const QUEUE_BATCHES: usize = 256;

/// Room in the writer's queue that scored batches never take: labels wait for room (they are
/// not dropped but given up after their wait, from the API), and a writer that is slow but not
/// stuck freed each slot to whichever asked first, most often the stream's next batch.
const LABEL_SLOTS: usize = 16;

/// The writer's queue: records (scored batches, label uploads) waiting for it.
fn writer_queue() -> (SyncSender<Record>, Receiver<Record>) {
    sync_channel(QUEUE_BATCHES + LABEL_SLOTS)
}

/// Scored rows waiting for the writer before the store starts dropping them: 256 batches of the
/// default 256 rows, about 155 MB at 590 sensors. Counted in rows, not batches: with `[batch]
/// max_rows` at 4,096, 256 batches held 2.5 GB before a drop was counted.
const QUEUE_ROWS: usize = 65_536;

/// The scored rows and batches queued for the writer, against [`QUEUE_ROWS`] and
/// [`QUEUE_BATCHES`].
#[derive(Debug, Default)]
pub(crate) struct QueuedRows {
    rows: std::sync::atomic::AtomicUsize,
    batches: std::sync::atomic::AtomicUsize,
}

impl QueuedRows {
    /// Room for `rows` more; a batch larger than the bound is let through an empty queue, so
    /// that any batch size can be stored.
    fn take(&self, rows: usize, max: usize) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let took = self
            .rows
            .fetch_update(Relaxed, Relaxed, |queued| {
                (queued == 0 || queued + rows <= max).then_some(queued + rows)
            })
            .is_ok();
        if !took {
            return false;
        }
        let slot = self
            .batches
            .fetch_update(Relaxed, Relaxed, |queued| {
                (queued < QUEUE_BATCHES).then_some(queued + 1)
            })
            .is_ok();
        if !slot {
            self.rows
                .fetch_update(Relaxed, Relaxed, |queued| Some(queued.saturating_sub(rows)))
                .ok();
        }
        slot
    }

    /// A batch of `rows` left the queue.
    pub(crate) fn give_back(&self, rows: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        // Saturating: after a reset (the writer gone) a sender may give back rows it took before.
        let _ = self
            .rows
            .fetch_update(Relaxed, Relaxed, |queued| Some(queued.saturating_sub(rows)));
        let _ = self
            .batches
            .fetch_update(Relaxed, Relaxed, |queued| Some(queued.saturating_sub(1)));
    }

    /// The writer is gone (it ended, or panicked): what its queue held is dropped with it, and
    /// later sends are refused as "stopped", not as "fell behind" for ever.
    pub(crate) fn reset(&self) {
        self.rows.store(0, std::sync::atomic::Ordering::Relaxed);
        self.batches.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The store's health, for `/readyz` and the API.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StoreStatus {
    /// Whether scored rows go to disk at all.
    pub enabled: bool,
    /// The directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// A write failed (and why): the last of scored rows or of labels, until a write of the same
    /// kind succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Scored rows written since start.
    pub rows_written: u64,
    /// Scored rows not written (the writer fell behind or the disk failed).
    pub rows_dropped: u64,
    /// Labels written since start.
    pub labels_written: u64,
    /// Labels applied but given up before they were written: the daemon stopped while the disk
    /// still refused them (until then they are kept and tried again).
    pub labels_dropped: u64,
    /// Labels applied that a failing disk has refused so far, tried again every second.
    pub labels_waiting: u64,
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

/// How often the writer looks for segments past `[store] max_days`, busy or idle.
#[cfg(not(test))]
const AGE_CHECK: std::time::Duration = std::time::Duration::from_secs(3600);
#[cfg(test)]
const AGE_CHECK: std::time::Duration = std::time::Duration::from_millis(50);
/// The longest time one segment is written to when `max_days` is set: a file is deleted whole
/// once its newest row is past `max_days`, so its oldest row outlives `max_days` by this at most.
#[cfg(not(test))]
const SEGMENT_SPAN: std::time::Duration = std::time::Duration::from_secs(86_400);
#[cfg(test)]
const SEGMENT_SPAN: std::time::Duration = std::time::Duration::from_millis(200);

/// Finished segments with the rows each holds, oldest first.
type Segments = Vec<(SegmentFile, usize)>;

/// How often labels a failing disk refused are tried again.
#[cfg(not(test))]
const LABELS_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
#[cfg(test)]
const LABELS_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
/// Labels waiting for a failing disk past which `POST /api/labels` refuses more (without
/// applying them). Labels on the bus wait for their write before more are read (at most 1,024
/// messages, see `labels::reader`), so only the API could add without bound.
pub const MAX_UNWRITTEN_LABELS: u64 = 100_000;

enum Record {
    Scored(ScoredBatch),
    /// Labels with the time each was received, and who waits for them to be written.
    Labels(Vec<(Label, i64)>, tokio::sync::oneshot::Sender<()>),
}

/// Resolves once the labels given to [`Store::record_labels`] are written: handed to the
/// operating system, so that a killed daemon keeps them (at once when the store has no
/// directory). `true` once written; `false` when the store gave them up: it stopped before it
/// could write them (the disk still refused them).
#[derive(Debug)]
pub struct Written(WrittenState);

#[derive(Debug)]
enum WrittenState {
    /// Known: written (`true`) or given up.
    Done(bool),
    Waiting(tokio::sync::oneshot::Receiver<()>),
}

impl Written {
    /// Nothing to wait for.
    pub fn now() -> Written {
        Written(WrittenState::Done(true))
    }

    /// Never to be written (the store refused the labels).
    pub fn never() -> Written {
        Written(WrittenState::Done(false))
    }

    fn settle(&mut self, written: bool) -> bool {
        self.0 = WrittenState::Done(written);
        written
    }

    /// Whether the labels are written by now, without waiting; the same answer every time once
    /// known, here and from the future.
    pub fn is_written(&mut self) -> Option<bool> {
        use tokio::sync::oneshot::error::TryRecvError;
        match &mut self.0 {
            WrittenState::Done(w) => Some(*w),
            WrittenState::Waiting(rx) => match rx.try_recv() {
                Ok(()) => Some(self.settle(true)),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Closed) => Some(self.settle(false)),
            },
        }
    }
}

impl std::future::Future for Written {
    type Output = bool;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<bool> {
        match &mut self.0 {
            WrittenState::Done(w) => std::task::Poll::Ready(*w),
            WrittenState::Waiting(rx) => match std::pin::Pin::new(rx).poll(cx) {
                std::task::Poll::Ready(r) => std::task::Poll::Ready(self.settle(r.is_ok())),
                std::task::Poll::Pending => std::task::Poll::Pending,
            },
        }
    }
}

/// The store: the ledger plus, with a directory, the writer thread.
#[derive(Debug)]
pub struct Store {
    ledger: Mutex<Ledger>,
    status: Arc<Mutex<StoreStatus>>,
    sender: Mutex<Option<SyncSender<Record>>>,
    /// Scored rows sent and not yet taken by the writer.
    queued: Arc<QueuedRows>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set by [`Store::close`] (under `sender`'s lock): labels are refused from then on.
    closed: std::sync::atomic::AtomicBool,
    metrics: Arc<Metrics>,
    /// The directory's lock, held until [`Store::close`].
    dir_lock: Mutex<Option<std::fs::File>>,
}

/// The file in a store directory that a running daemon holds locked (`flock`), with its process
/// id in it: a second daemon given the same directory would delete the first one's files (each
/// applies the retention limits to all of them) and count its rows twice.
pub const LOCK_FILE: &str = "faultline.lock";

/// Another process holds the store directory.
#[derive(Debug, thiserror::Error)]
#[error("the store directory {dir} is in use by another faultline{holder}: give each instance its own [store] dir (FAULTLINE_STORE__DIR)")]
pub struct StoreInUse {
    /// The directory.
    pub dir: String,
    /// " (process N)", when the lock file says.
    holder: String,
}

/// Locks `dir` for this process (the kernel lets go when the process ends, `kill -9` included).
/// A directory whose file system cannot lock is used without the lock, with a warning.
fn lock_dir(dir: &Path) -> Result<Option<std::fs::File>, StoreInUse> {
    use std::io::Write;
    let path = dir.join(LOCK_FILE);
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path);
    let file = match opened {
        Ok(file) => file,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "Cannot create the store's lock file; nothing keeps a second faultline out of this directory.");
            return Ok(None);
        }
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file
                .set_len(0)
                .and_then(|()| (&file).write_all(std::process::id().to_string().as_bytes()));
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|pid| pid.trim().to_string())
                .filter(|pid| !pid.is_empty())
                .map(|pid| format!(" (process {pid})"))
                .unwrap_or_default();
            Err(StoreInUse {
                dir: dir.display().to_string(),
                holder,
            })
        }
        Err(std::fs::TryLockError::Error(e)) => {
            warn!(file = %path.display(), error = %e, "Cannot lock the store directory; nothing keeps a second faultline out of it.");
            Ok(None)
        }
    }
}

/// The store was closed (the daemon is stopping): the labels were not applied, and the caller
/// must not acknowledge them, so that they are delivered again to the next run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreClosed;

impl std::fmt::Display for StoreClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the store is closed: faultline is stopping")
    }
}

impl std::error::Error for StoreClosed {}

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
    /// Only a directory another faultline holds is refused.
    pub fn open(
        settings: StoreSettings,
        features: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreInUse> {
        let mut ledger = Ledger::new(settings.ledger);
        let mut status = StoreStatus {
            enabled: settings.dir.is_some(),
            dir: settings.dir.as_ref().map(|d| d.display().to_string()),
            ..StoreStatus::default()
        };
        let mut segments = (vec![], vec![]);
        let mut dir_lock = None;
        if let Some(dir) = &settings.dir {
            let found = match std::fs::create_dir_all(dir) {
                Ok(()) => {
                    // Locked before anything is read: a daemon closing there writes until it
                    // lets go.
                    dir_lock = lock_dir(dir)?;
                    segment::list(dir, Kind::Scored)
                        .and_then(|scored| Ok((scored, segment::list(dir, Kind::Labels)?)))
                }
                Err(e) => Err(e),
            };
            match found {
                Ok(found) => {
                    segments = recover(&found, settings.max_age(), &mut ledger, &mut status);
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
        let queued = Arc::new(QueuedRows::default());
        let (sender, writer) = match settings.dir.clone() {
            Some(dir) => {
                let (tx, rx) = writer_queue();
                let writer = Writer {
                    dir,
                    settings: settings.clone(),
                    scored_schema: segment::scored_schema(&features),
                    labels_schema: segment::labels_schema(),
                    scored: None,
                    labels: None,
                    segments,
                    chores: Chores::start(),
                    unwritten: writer::UnwrittenLabels::default(),
                    status: status.clone(),
                    metrics: metrics.clone(),
                    failing: Default::default(),
                    queued: queued.clone(),
                };
                let handle = std::thread::Builder::new()
                    .name("faultline-store".into())
                    .spawn(move || writer.run(rx))
                    .ok();
                (Some(tx), handle)
            }
            None => (None, None),
        };
        Ok(Store {
            ledger: Mutex::new(ledger),
            status,
            sender: Mutex::new(sender),
            queued,
            writer: Mutex::new(writer),
            closed: std::sync::atomic::AtomicBool::new(false),
            metrics,
            dir_lock: Mutex::new(dir_lock),
        })
    }

    /// Remembers a scored batch for the join and queues it for the disk; never waits.
    pub fn record_scored(&self, batch: ScoredBatch) {
        let mut joined = 0;
        {
            let mut ledger = lock(&self.ledger);
            for (i, id) in batch.ids.iter().enumerate() {
                let mut scores: Scores = vec![(batch.version.clone(), batch.probabilities[i])];
                if let Some((v, p)) = &batch.shadow {
                    scores.push((v.clone(), p[i]));
                }
                joined += u64::from(ledger.scored(id, batch.at_ms, scores, batch.faults[i]));
            }
        }
        if joined > 0 {
            // Labels that arrived first (counted as pending then) join now.
            self.metrics
                .labels
                .with_label_values(&["joined"])
                .inc_by(joined);
            self.metrics
                .labels_pending
                .set(lock(&self.ledger).counts().pending as i64);
        }
        self.send_scored(batch);
    }

    /// Applies labels received now and queues them for the disk; the [`Written`] resolves once
    /// they are written. Labels are few and each one matters, so this waits for room in the
    /// writer's queue (call it off the async runtime), and the writer keeps the labels a failing
    /// disk refuses and tries them again; only the scored rows' path never waits. Acknowledge a
    /// label to its sender only once written: before, a killed daemon loses it. Once the store
    /// is closed, applies nothing and says so.
    pub fn record_labels(
        &self,
        labels: Vec<Label>,
    ) -> Result<(Vec<LabelOutcome>, Written), StoreClosed> {
        self.record_labels_within(labels, None)
    }

    /// [`Store::record_labels`], waiting at most `limit` (if given) for room in the writer's
    /// queue: past it the labels stay applied and are given up unwritten (the [`Written`] says
    /// false, and the store's status says why). A writer stuck on a hung disk fills that queue
    /// with scored batches; a caller that must answer (`POST /api/labels`) would otherwise wait
    /// for ever, holding a thread of the blocking pool that scoring needs too.
    pub fn record_labels_within(
        &self,
        labels: Vec<Label>,
        limit: Option<std::time::Duration>,
    ) -> Result<(Vec<LabelOutcome>, Written), StoreClosed> {
        // The sender is taken here (a clone keeps the writer running until this send is done,
        // and close() waits for the writer), or the store is closed and nothing is applied.
        let sender = {
            let sender = lock(&self.sender);
            if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(StoreClosed);
            }
            sender.clone()
        };
        let now = now_ms();
        let outcomes: Vec<LabelOutcome> = {
            let mut ledger = lock(&self.ledger);
            let expired = ledger.counts().expired;
            let outcomes = labels
                .iter()
                .map(|l| ledger.label(l.clone(), now))
                .collect();
            // Labels pushed out of a full pending list ([labels] max_pending) expire here, not
            // in expire(): counted the same.
            let counts = ledger.counts();
            self.metrics.labels_expired.inc_by(counts.expired - expired);
            self.metrics.labels_pending.set(counts.pending as i64);
            outcomes
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
        let Some(tx) = sender.filter(|_| rows > 0) else {
            return Ok((outcomes, Written::now()));
        };
        let (written, waiting) = tokio::sync::oneshot::channel();
        let record = Record::Labels(stamped, written);
        let sent = match limit {
            None => tx
                .send(record)
                .map_err(|_| "the store's writer stopped".to_string()),
            Some(limit) => send_within(&tx, record, limit),
        };
        if let Err(why) = sent {
            // The record, and with it `written`, is dropped: `waiting` says so.
            self.dropped(Kind::Labels, rows, why);
        }
        Ok((outcomes, Written(WrittenState::Waiting(waiting))))
    }

    /// Queues a scored batch for the writer, or counts it dropped; never waits.
    fn send_scored(&self, batch: ScoredBatch) {
        let (kind, rows) = (Kind::Scored, batch.ids.len() as u64);
        let sender = lock(&self.sender);
        let Some(tx) = sender.as_ref() else { return };
        let behind = "the store's writer fell behind";
        if !self.queued.take(rows as usize, QUEUE_ROWS) {
            drop(sender);
            self.dropped(kind, rows, behind.to_string());
            return;
        }
        let dropped = match tx.try_send(Record::Scored(batch)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => behind.to_string(),
            Err(TrySendError::Disconnected(_)) => "the store's writer stopped".to_string(),
        };
        self.queued.give_back(rows as usize);
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
                let what = match kind {
                    Kind::Scored => "Rows were scored but not stored",
                    Kind::Labels => "Labels were applied but not stored",
                };
                warn!(error = %dropped, rows_dropped = status.rows_dropped, labels_dropped = status.labels_dropped,
                    "{what} (logged at most once a minute; faultline_store_rows_dropped_total counts them).");
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
        {
            let mut sender = lock(&self.sender);
            self.closed
                .store(true, std::sync::atomic::Ordering::Relaxed);
            sender.take();
        }
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
        // The directory is free for the next daemon.
        lock(&self.dir_lock).take();
    }
}

/// Sends `record` to the writer, waiting up to `limit` for room in its queue; why not, if not.
fn send_within(
    tx: &SyncSender<Record>,
    mut record: Record,
    limit: std::time::Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match tx.try_send(record) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Disconnected(_)) => return Err("the store's writer stopped".into()),
            Err(TrySendError::Full(back)) => {
                if std::time::Instant::now() >= deadline {
                    return Err(format!(
                        "the store's writer fell behind: its queue stayed full for {} s",
                        limit.as_secs_f64()
                    ));
                }
                record = back;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// Rebuilds the ledger from the segments; returns the segments with their row counts.
///
/// Scored rows and labels are applied in the order they came (by `scored_at` and `received_at`),
/// as they were live: a label joins a row scored before it arrived even when that row is no
/// longer among the last `join_rows` (applying every scored row first would have pushed it out),
/// and a label that waited longer than `pending_s` for its row expires again.
///
/// The oldest segments already past `max_age` (the daemon was down longer than `[store] max_days`)
/// are not read: the writer deletes them first thing, and rows read from them would count in live
/// quality until the next start. They are listed with no rows, for the writer to delete.
fn recover(
    (scored, labels): &(Vec<SegmentFile>, Vec<SegmentFile>),
    max_age: Option<std::time::Duration>,
    ledger: &mut Ledger,
    status: &mut StoreStatus,
) -> (Segments, Segments) {
    // As the writer's retirement decides it: from the oldest, while each is past the age.
    let expired = |files: &[SegmentFile]| {
        files
            .iter()
            .take_while(|file| {
                let modified = std::fs::metadata(&file.path).and_then(|m| m.modified());
                segment::past_age(&modified, max_age)
            })
            .count()
    };
    let (expired_scored, expired_labels) = (expired(scored), expired(labels));
    let mut label_rows: Segments = labels[..expired_labels]
        .iter()
        .map(|file| (file.clone(), 0))
        .collect();
    let mut received: Vec<(i64, Label)> = vec![];
    for file in &labels[expired_labels..] {
        let mut rows = 0;
        match segment::batches(&file.path, None) {
            Ok(mut batches) => {
                for b in batches.by_ref() {
                    match read_labels(&b, &mut received) {
                        Ok(n) => rows += n,
                        Err(e) => {
                            warn!(segment = %file.path.display(), error = %e, "Skipped a label batch.")
                        }
                    }
                }
                if let Some(cut) = batches.cut() {
                    // Labels after the cut were not acknowledged: the bus sends them again.
                    warn!(reason = %cut, "A label segment ends early (the daemon was stopped mid-write); its whole batches are kept.");
                }
            }
            Err(e) => warn!(error = %e, "Skipped an unreadable label segment."),
        }
        status.labels_recovered += rows as u64;
        label_rows.push((file.clone(), rows));
    }
    // Stable: labels received in the same millisecond keep their order.
    received.sort_by_key(|(at, _)| *at);
    let mut labels = received.into_iter().peekable();
    let mut scored_rows: Segments = scored[..expired_scored]
        .iter()
        .map(|file| (file.clone(), 0))
        .collect();
    for file in &scored[expired_scored..] {
        let mut rows = 0;
        match segment::batches(
            &file.path,
            Some((0..segment::SCORED_FIXED_COLUMNS).collect()),
        ) {
            Ok(mut batches) => {
                for b in batches.by_ref() {
                    if let Err(e) = recover_scored(&b, ledger, &mut labels) {
                        warn!(segment = %file.path.display(), error = %e, "Skipped a store batch.");
                        continue;
                    }
                    rows += b.num_rows();
                }
                if let Some(cut) = batches.cut() {
                    warn!(reason = %cut, "A store segment ends early (the daemon was stopped mid-write); its whole batches are kept.");
                }
            }
            Err(e) => warn!(error = %e, "Skipped an unreadable store segment."),
        }
        status.rows_recovered += rows as u64;
        scored_rows.push((file.clone(), rows));
    }
    for (at, label) in labels {
        ledger.expire(at);
        ledger.label(label, at);
    }
    ledger.expire(now_ms());
    (scored_rows, label_rows)
}

/// Applies a batch of scored rows, each after the labels received before it.
fn recover_scored(
    b: &arrow_array::RecordBatch,
    ledger: &mut Ledger,
    labels: &mut std::iter::Peekable<std::vec::IntoIter<(i64, Label)>>,
) -> Result<(), String> {
    let ids = segment::column::<StringArray>(b, "id")?;
    let at = segment::column::<TimestampMillisecondArray>(b, "scored_at")?;
    let p = segment::column::<Float32Array>(b, "probability")?;
    let fault = segment::column::<arrow_array::BooleanArray>(b, "fault")?;
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
        let t = at.value(i);
        while let Some((received, label)) = labels.next_if(|(received, _)| *received < t) {
            ledger.expire(received);
            ledger.label(label, received);
        }
        let mut scores: Scores = vec![(intern(version.value(i)), p.value(i))];
        if segment::present(shadow_p, i) && segment::present(shadow_v, i) {
            scores.push((intern(shadow_v.value(i)), shadow_p.value(i)));
        }
        ledger.expire(t);
        // recovery: not news for the metrics
        ledger.scored(ids.value(i), t, scores, fault.value(i));
    }
    Ok(())
}

/// Reads a batch of labels with the time each was received.
fn read_labels(b: &arrow_array::RecordBatch, out: &mut Vec<(i64, Label)>) -> Result<usize, String> {
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
        out.push((received.value(i), l));
    }
    Ok(b.num_rows())
}

/// The directory's segments of `kind` (for export and tests).
pub fn segments(dir: &Path, kind: Kind) -> std::io::Result<Vec<SegmentFile>> {
    segment::list(dir, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_queue_is_bounded_in_rows_and_takes_any_batch_when_empty() {
        let q = QueuedRows::default();
        assert!(q.take(60_000, QUEUE_ROWS));
        assert!(q.take(5_536, QUEUE_ROWS), "up to the bound");
        assert!(!q.take(1, QUEUE_ROWS), "past it");
        q.give_back(4_096);
        assert!(!q.take(4_097, QUEUE_ROWS));
        assert!(q.take(4_096, QUEUE_ROWS));
        q.give_back(QUEUE_ROWS);
        // One batch larger than the bound goes through an empty queue, and holds it.
        assert!(q.take(100_000, QUEUE_ROWS));
        assert!(!q.take(1, QUEUE_ROWS));
        // The writer gone: the count starts again, and a late give-back does not wrap it.
        q.reset();
        q.give_back(5);
        assert!(q.take(QUEUE_ROWS, QUEUE_ROWS));
    }
    use ledger::LedgerLimits;

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
    fn a_restart_keeps_the_joins_of_rows_since_pushed_out_of_the_join_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.ledger.max_rows = 3;
        let pause = || std::thread::sleep(std::time::Duration::from_millis(5));
        let store = Store::open(s.clone(), features(), Arc::new(Metrics::new())).unwrap();
        // "a" is scored and labelled while it is in the window of three; five rows follow.
        store.record_scored(batch(&["a"], 0.9));
        pause();
        let label = Label {
            id: "a".into(),
            faulty: true,
            at: None,
        };
        assert_eq!(
            store.record_labels(vec![label]).unwrap().0,
            [LabelOutcome::Joined]
        );
        for id in ["b", "c", "d", "e", "f"] {
            pause();
            store.record_scored(batch(&[id], 0.1));
        }
        let live = store.ledger().counts();
        store.close();
        let again = Store::open(s, features(), Arc::new(Metrics::new())).unwrap();
        let counts = again.ledger().counts();
        assert_eq!(
            (counts.joined, counts.pending, counts.expired),
            (live.joined, live.pending, live.expired)
        );
        assert_eq!((counts.joined, counts.pending), (1, 0));
        again.close();
    }

    /// A store whose queue is `tx` and which has no writer (the test holds the receiver).
    fn without_writer(tx: SyncSender<Record>) -> Store {
        Store {
            ledger: Mutex::new(Ledger::new(settings(Path::new("unused")).ledger)),
            status: Arc::default(),
            sender: Mutex::new(Some(tx)),
            queued: Arc::default(),
            writer: Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
            metrics: Arc::new(Metrics::new()),
            dir_lock: Mutex::new(None),
        }
    }

    /// A writer stuck on a hung disk takes nothing from its queue, which scored batches fill. A
    /// label from the API waits a bounded time for room, then stays applied and is given up
    /// unwritten, saying why; before, it waited for ever, holding a thread of the blocking pool.
    #[test]
    fn labels_wait_a_bounded_time_for_a_writer_that_takes_nothing() {
        let (tx, never_read) = sync_channel(1);
        assert!(tx.try_send(Record::Scored(batch(&["x"], 0.1))).is_ok());
        let store = Arc::new(without_writer(tx));
        let (done, answer) = std::sync::mpsc::channel();
        let asking = store.clone();
        std::thread::spawn(move || {
            let limit = Some(std::time::Duration::from_millis(100));
            let _ = done.send(asking.record_labels_within(vec![wafer_label("a")], limit));
        });
        let (outcomes, mut written) = answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("still waiting for room after 10 s")
            .unwrap();
        assert_eq!(outcomes, [LabelOutcome::Pending], "applied");
        assert_eq!(written.is_written(), Some(false));
        let status = store.status();
        assert_eq!(status.labels_dropped, 1);
        let error = status.error.unwrap_or_default();
        assert!(error.contains("queue stayed full"), "{error}");
        drop(never_read);
    }

    /// A writer that is slow, not stuck: every slot it frees in its queue went to whichever
    /// asked first, most often the stream's next scored batch, and a label from the API could
    /// wait its whole limit and be given up. Scored batches now leave [`LABEL_SLOTS`] to labels:
    /// with the queue as full as scored batches can make it (a writer taking nothing), a label
    /// still goes in at once.
    #[test]
    fn scored_batches_leave_room_in_the_queue_for_labels() {
        let (tx, never_read) = writer_queue();
        let store = without_writer(tx);
        for i in 0..QUEUE_BATCHES + LABEL_SLOTS {
            store.send_scored(batch(&[&format!("w{i}")], 0.1));
        }
        assert_eq!(store.status().rows_dropped, LABEL_SLOTS as u64);
        let limit = Some(std::time::Duration::from_millis(100));
        let (_, mut written) = store
            .record_labels_within(vec![wafer_label("w0")], limit)
            .unwrap();
        assert_eq!(written.is_written(), None, "queued, not given up");
        assert_eq!(store.status().labels_dropped, 0);
        drop(never_read);
    }

    /// A daemon down for longer than max_days: the segments already past it at start are not
    /// read back (their rows counted in live quality until the next start), and still go.
    #[test]
    fn segments_past_max_days_at_start_are_not_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.segment_rows = 2;
        let store = Store::open(s.clone(), features(), Arc::new(Metrics::new())).unwrap();
        for (i, ids) in [["a", "b"], ["c", "d"]].iter().enumerate() {
            store.record_scored(batch(ids, 0.9));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.status().rows_written < 2 * (i as u64 + 1) {
                assert!(std::time::Instant::now() < deadline);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        store.close();
        let scored = || segments(dir.path(), Kind::Scored).unwrap();
        assert_eq!(scored().len(), 2);
        let first = scored()[0].path.clone();
        let two_days_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&first)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        s.max_days = Some(1);
        let again = Store::open(s, features(), Arc::new(Metrics::new())).unwrap();
        assert_eq!(again.status().rows_recovered, 2);
        assert_eq!(again.ledger().rows(), 2);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while first.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the old segment stayed"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(scored().len(), 1);
        again.close();
    }

    #[test]
    fn an_idle_store_still_deletes_rows_past_max_days() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_days = Some(1);
        s.segment_rows = 10;
        let store = Store::open(s, features(), Arc::new(Metrics::new())).unwrap();
        store.record_scored(batch(&["a", "b"], 0.1));
        let scored = || segments(dir.path(), Kind::Scored).unwrap();
        let wait = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !done() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        };
        wait("written", &|| store.status().rows_written == 2);
        // Nothing more comes: once the segment spans SEGMENT_SPAN it is closed (the next row
        // would open another)...
        std::thread::sleep(SEGMENT_SPAN + 3 * AGE_CHECK);
        assert_eq!(scored().len(), 1);
        store.record_scored(batch(&["c"], 0.1));
        wait("a second segment", &|| scored().len() == 2);
        // ...and once its newest row is a day and more old, it goes, with no row written since.
        let first = &scored()[0].path;
        let two_days_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(first)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        wait("the old segment deleted", &|| scored().len() == 1);
        assert_ne!(&scored()[0].path, first);
        store.close();
    }

    #[test]
    fn rows_past_max_days_go_while_only_labels_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_days = Some(1);
        let store = Store::open(s, features(), Arc::new(Metrics::new())).unwrap();
        store.record_scored(batch(&["a", "b"], 0.1));
        let scored = || segments(dir.path(), Kind::Scored).unwrap();
        // Labels keep coming, more often than AGE_CHECK: the writer is never idle.
        let mut n = 0;
        let mut label = || {
            n += 1;
            let l = Label {
                id: format!("late-{n}"),
                faulty: false,
                at: None,
            };
            store.record_labels(vec![l]).unwrap();
            std::thread::sleep(AGE_CHECK / 4);
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while scored().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no scored segment");
            label();
        }
        // The scored rows' segment is made old; it goes (closed once it spans SEGMENT_SPAN, then
        // retired) with no scored row written since.
        let first = scored()[0].path.clone();
        let two_days_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        // Set again at each pass: closing the segment touches it.
        let age = || {
            if let Ok(f) = std::fs::File::options().write(true).open(&first) {
                let _ = f.set_modified(two_days_ago);
            }
        };
        while first.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "a scored segment past max_days stayed while labels came"
            );
            age();
            label();
        }
        store.close();
    }

    #[test]
    fn labels_pushed_out_of_a_full_pending_list_count_as_expired() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut s = settings(dir.path());
        s.ledger.max_pending = 2;
        let store = Store::open(s, features(), metrics.clone()).unwrap();
        let label = |id: &str| Label {
            id: id.into(),
            faulty: true,
            at: None,
        };
        store
            .record_labels(vec![label("a"), label("b"), label("c"), label("d")])
            .unwrap();
        assert_eq!(store.ledger().counts().expired, 2);
        assert_eq!(metrics.labels_expired.get(), 2);
        assert_eq!(metrics.labels_pending.get(), 2);
        store.close();
    }

    #[test]
    fn rows_and_labels_survive_a_restart_and_old_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Store::open(settings(dir.path()), features(), metrics.clone()).unwrap();
        for i in 0..5 {
            let ids: Vec<String> = (0..3).map(|j| format!("w{}", i * 3 + j)).collect();
            let ids: Vec<&str> = ids.iter().map(|s| s.as_str()).collect();
            let mut b = batch(&ids, if i % 2 == 0 { 0.9 } else { 0.1 });
            if i == 3 {
                // Flagged at 0.1 (as an alarm budget may): the verdicts are read back as written.
                b.faults = vec![true; 3];
            }
            store.record_scored(b);
            // One write per batch (queued batches would be written together), so the
            // segments below are predictable.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.status().rows_written < (i as u64 + 1) * 3 {
                assert!(std::time::Instant::now() < deadline);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        store
            .record_labels(vec![
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
            ])
            .unwrap();
        store.close();
        // Closed: a label is refused, not applied in memory only (its sender would acknowledge
        // it and it would be lost).
        let refused = Label {
            id: "w13".into(),
            faulty: true,
            at: None,
        };
        assert!(matches!(
            store.record_labels(vec![refused]),
            Err(StoreClosed)
        ));
        assert_eq!(store.ledger().counts().joined, 2);
        let status = store.status();
        assert_eq!((status.rows_written, status.rows_dropped), (15, 0));
        assert_eq!(status.error, None);
        // 15 rows in segments of 6 (two batches of 3 each before the next starts): the oldest
        // went once more than 10 rows were kept.
        let scored = segments(dir.path(), Kind::Scored).unwrap();
        assert_eq!(scored.first().unwrap().seq, 2, "{scored:?}");

        let again = Store::open(settings(dir.path()), features(), metrics).unwrap();
        let st = again.status();
        assert_eq!(st.rows_recovered, 9);
        assert_eq!(st.labels_recovered, 3);
        let ledger = again.ledger();
        assert_eq!(ledger.counts().joined, 2);
        assert_eq!(ledger.counts().pending, 1);
        let q = ledger.quality("v1", 0.5);
        assert_eq!((q.labelled, q.positives, q.roc_auc), (2, 1, Some(1.0)));
        assert_eq!(ledger.quality("v2", 0.5).roc_auc, Some(0.0));
        // w9 (good, P 0.1) was flagged: a false alarm of the verdicts, none at 0.5.
        let v = ledger.verdict_quality("v1");
        assert_eq!((v.true_positives, v.false_positives), (1, 1));
        assert_eq!(q.false_positives, 0);
    }

    #[test]
    fn a_label_that_arrives_before_its_row_counts_as_joined_when_the_row_comes() {
        let metrics = Arc::new(Metrics::new());
        let mut s = settings(Path::new("/unused"));
        s.dir = None;
        let store = Store::open(s, features(), metrics.clone()).unwrap();
        let label = |id: &str| Label {
            id: id.into(),
            faulty: true,
            at: None,
        };
        store.record_scored(batch(&["first"], 0.9));
        store
            .record_labels(vec![label("first"), label("early")])
            .unwrap();
        let count = |result: &str| metrics.labels.with_label_values(&[result]).get();
        assert_eq!((count("joined"), count("pending")), (1, 1));
        assert_eq!(metrics.labels_pending.get(), 1);
        store.record_scored(batch(&["early", "other"], 0.9));
        assert_eq!((count("joined"), count("pending")), (2, 1));
        assert_eq!(metrics.labels_pending.get(), 0);
        assert_eq!(store.ledger().counts().pending, 0);
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
        )
        .unwrap();
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

    /// Waits up to 10 s for `done`.
    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn an_error_writing_scored_rows_is_not_cleared_by_labels_written_since() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let store = Store::open(settings(dir.path()), features(), metrics.clone()).unwrap();
        store.record_scored(batch(&["a", "b"], 0.1));
        wait_for("2 rows written", || store.status().rows_written == 2);
        store.close();
        // A foreign file with the last number a segment can have: no scored segment can follow
        // it (the number used to wrap to 0, or overflow on the writer's thread), while labels
        // are still written.
        let last = dir.path().join(format!("scored-{}.arrows", u64::MAX));
        std::fs::write(&last, b"").unwrap();
        let store = Store::open(settings(dir.path()), features(), metrics.clone()).unwrap();
        store.record_scored(batch(&["c"], 0.1));
        wait_for("a row dropped", || store.status().rows_dropped == 1);
        let (_, mut written) = store.record_labels(vec![wafer_label("c")]).unwrap();
        assert_eq!(resolved(&mut written), Some(true));
        let status = store.status();
        assert_eq!(status.labels_written, 1, "{status:?}");
        // Still said: the label written since did not clear it.
        let error = status.error.unwrap_or_default();
        assert!(
            error.contains(&format!("{} has the last number", last.display())),
            "{error}"
        );
        assert_eq!(metrics.store_healthy.get(), 0);
        // A scored write that succeeds clears it.
        std::fs::remove_file(&last).unwrap();
        store.record_scored(batch(&["d"], 0.1));
        wait_for("a row written", || store.status().rows_written == 1);
        assert_eq!(store.status().error, None);
        assert_eq!(metrics.store_healthy.get(), 1);
        store.close();
        let listed = segments(dir.path(), Kind::Scored).unwrap();
        assert_eq!(listed.iter().map(|s| s.seq).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_directory_in_use_is_refused_naming_its_holder_until_the_store_closes() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let first = Store::open(settings(dir.path()), features(), metrics.clone()).unwrap();
        let e = Store::open(settings(dir.path()), features(), metrics.clone())
            .expect_err("a second store opened a directory in use")
            .to_string();
        assert!(
            e.contains(&dir.path().display().to_string())
                && e.contains(&format!("(process {})", std::process::id()))
                && e.contains("its own [store] dir"),
            "{e}"
        );
        first.close();
        let second = Store::open(settings(dir.path()), features(), metrics).unwrap();
        second.close();
        // Not a segment: neither read back nor counted.
        assert!(dir.path().join(LOCK_FILE).exists());
        assert!(segment::list(dir.path(), Kind::Scored).unwrap().is_empty());
    }

    #[test]
    fn only_names_the_store_writes_are_segments() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "scored-5.arrows",
            "scored-+0000005.arrows",
            "scored-00000007.arrows",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let listed = segments(dir.path(), Kind::Scored).unwrap();
        assert_eq!(listed.iter().map(|s| s.seq).collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn a_segment_deleted_by_hand_does_not_hold_up_the_age_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.segment_rows = 2;
        s.max_rows = 100;
        s.max_days = Some(1);
        let store = Store::open(s, features(), Arc::new(Metrics::new())).unwrap();
        let scored = || segments(dir.path(), Kind::Scored).unwrap();
        for (n, ids) in [["a", "b"], ["c", "d"], ["e", "f"]].iter().enumerate() {
            store.record_scored(batch(ids, 0.1));
            wait_for("written", || {
                store.status().rows_written == 2 * (n as u64 + 1)
            });
        }
        let [first, second, _open] = &scored()[..] else {
            panic!("{:?}", scored());
        };
        // Someone deletes the oldest file to free space; the next one is past max_days.
        std::fs::remove_file(&first.path).unwrap();
        let two_days_ago =
            std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&second.path)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        wait_for("the old segment behind the deleted one deleted", || {
            !second.path.exists()
        });
        store.close();
    }

    fn wafer_label(id: &str) -> Label {
        Label {
            id: id.into(),
            faulty: true,
            at: None,
        }
    }

    /// Waits up to 10 s for `written` to resolve.
    fn resolved(written: &mut Written) -> Option<bool> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(w) = written.is_written() {
                return Some(w);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn labels_a_failing_disk_refuses_are_kept_until_written_and_only_then_said_written() {
        let base = tempfile::tempdir().unwrap();
        let blocker = base.path().join("blocked");
        let dir = blocker.join("store");
        let metrics = Arc::new(Metrics::new());
        // The store's directory is made, then a file put in its place: nothing can be written.
        let store = Store::open(settings(&dir), features(), metrics.clone()).unwrap();
        std::fs::remove_dir_all(&blocker).unwrap();
        std::fs::write(&blocker, b"").unwrap();
        let (_, mut first) = store.record_labels(vec![wafer_label("a")]).unwrap();
        let (_, mut second) = store.record_labels(vec![wafer_label("b")]).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.status().error.is_none() {
            assert!(std::time::Instant::now() < deadline, "no error reported");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Tried again a few times, still refused: not said written, not dropped.
        std::thread::sleep(4 * LABELS_RETRY);
        assert_eq!(first.is_written(), None);
        assert_eq!(second.is_written(), None);
        assert_eq!(store.status().labels_dropped, 0, "{:?}", store.status());
        // The disk is back: both are written by the next try, and only then said so (and
        // said again when asked again, awaited or not).
        std::fs::remove_file(&blocker).unwrap();
        assert_eq!(resolved(&mut first), Some(true));
        assert_eq!(first.is_written(), Some(true));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let awaited = |w: &mut Written| {
            runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(10), w).await
            })
        };
        assert_eq!(awaited(&mut second), Ok(true));
        assert_eq!(second.is_written(), Some(true));
        assert_eq!(awaited(&mut second), Ok(true));
        let status = store.status();
        assert_eq!((status.labels_written, status.labels_dropped), (2, 0));
        store.close();
        let again = Store::open(settings(&dir), features(), metrics).unwrap();
        assert_eq!(again.status().labels_recovered, 2);
        assert_eq!(again.ledger().counts().pending, 2);
        again.close();
    }

    #[test]
    fn labels_still_refused_when_the_store_closes_are_said_given_up() {
        let base = tempfile::tempdir().unwrap();
        let blocker = base.path().join("blocked");
        let store = Store::open(
            settings(&blocker.join("store")),
            features(),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        std::fs::remove_dir_all(&blocker).unwrap();
        std::fs::write(&blocker, b"").unwrap();
        let (_, mut written) = store.record_labels(vec![wafer_label("a")]).unwrap();
        store.close();
        assert_eq!(resolved(&mut written), Some(false));
        assert_eq!(store.status().labels_dropped, 1);
        // And labels without a directory to write to need no wait.
        let memory = Store::open(
            StoreSettings {
                dir: None,
                ..settings(base.path())
            },
            features(),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        let (_, mut now) = memory.record_labels(vec![wafer_label("a")]).unwrap();
        assert_eq!(now.is_written(), Some(true));
    }

    #[test]
    fn labels_are_written_without_waiting_for_the_scored_rows_linger() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open(settings(dir.path()), features(), Arc::new(Metrics::new())).unwrap();
        // Scored rows lingering in the writer do not hold the label back.
        store.record_scored(batch(&["a"], 0.9));
        let (_, mut written) = store.record_labels(vec![wafer_label("a")]).unwrap();
        assert_eq!(resolved(&mut written), Some(true));
        assert_eq!(store.status().rows_written, 0, "{:?}", store.status());
        store.close();
        assert_eq!(store.status().rows_written, 1);
    }
}
