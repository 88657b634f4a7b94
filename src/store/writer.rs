//! The store's writer thread: appends scored rows and labels to Arrow IPC segments, starts a new
//! segment every `segment_rows`, retires old ones (by count and age) on a chores thread, and
//! reports failures without ever blocking the fault stream.

use super::*;

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) settings: StoreSettings,
    pub(super) scored_schema: arrow_schema::SchemaRef,
    pub(super) labels_schema: arrow_schema::SchemaRef,
    pub(super) scored: Option<SegmentWriter>,
    pub(super) labels: Option<SegmentWriter>,
    /// Finished segments with their rows, oldest first, for retention.
    pub(super) segments: (Segments, Segments),
    /// Syncs and deletions, off the writer's path (done when the writer ends).
    pub(super) chores: Chores,
    /// Labels not written yet (a failing disk refused them, or they just came).
    pub(super) unwritten: UnwrittenLabels,
    pub(super) status: Arc<Mutex<StoreStatus>>,
    pub(super) metrics: Arc<Metrics>,
    /// Why the last write of scored rows, and of labels, failed; each cleared only by a write of
    /// its own kind, so that small label writes that still fit on a nearly full disk do not
    /// clear the error of the scored rows it refuses (the status flapped every second).
    pub(super) failing: (Option<String>, Option<String>),
    /// The scored rows queued for this writer: given back as each batch is taken.
    pub(super) queued: Arc<super::QueuedRows>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queued.reset();
    }
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
pub(super) struct Chores {
    tx: Option<std::sync::mpsc::Sender<Chore>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Chores {
    pub(super) fn start() -> Chores {
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

/// Scored rows gathered for one write: for [`WRITE_LINGER`] after the first (up to
/// [`WRITE_ROWS`] rows), since each Arrow message carries ~600 column headers and writing every
/// micro-batch alone costs more than the rows (the writer fell behind at 5k rows/s).
#[derive(Default)]
struct Lingering {
    batches: Vec<ScoredBatch>,
    rows: usize,
    until: Option<std::time::Instant>,
}

/// Told once a message's labels are written (dropped when they are given up).
type Waiter = tokio::sync::oneshot::Sender<()>;

/// Labels waiting to be written, each message's with who waits for it, oldest first.
#[derive(Default)]
pub(super) struct UnwrittenLabels {
    groups: std::collections::VecDeque<(Vec<(Label, i64)>, Waiter)>,
    labels: usize,
    /// When to try again, after a failed write.
    retry_at: Option<std::time::Instant>,
    /// Labels came since the last try.
    fresh: bool,
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Record>) {
        // Old segments may have aged past max_days while faultline was down.
        self.retire(Kind::Scored);
        self.retire(Kind::Labels);
        let mut aged_out = std::time::Instant::now();
        let mut scored = Lingering::default();
        let mut open = true;
        while open {
            // Old segments go when they pass max_days, whatever comes: every AGE_CHECK each
            // kind's open segment is closed once it spans SEGMENT_SPAN, and finished ones are
            // retired. Writing one kind checks only that kind's, so a stream of labels alone
            // (the line stopped, late labels still coming) would otherwise keep the scored rows'
            // open segment, and everything before it, for ever.
            if aged_out.elapsed() >= AGE_CHECK {
                self.age_out();
                aged_out = std::time::Instant::now();
            }
            let retry = self
                .unwritten
                .retry_at
                .filter(|_| self.unwritten.labels > 0);
            let wake = [scored.until, retry]
                .into_iter()
                .flatten()
                .fold(aged_out + AGE_CHECK, std::cmp::Ord::min);
            match rx.recv_timeout(wake.saturating_duration_since(std::time::Instant::now())) {
                Ok(first) => {
                    self.take(first, &mut scored);
                    // And what else is queued, without waiting.
                    while scored.rows < WRITE_ROWS {
                        match rx.try_recv() {
                            Ok(r) => self.take(r, &mut scored),
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => open = false,
            }
            // Labels go out as soon as they come: they are few and small, and their senders
            // are answered only once they are written. Those a failing disk refused are tried
            // again every LABELS_RETRY, and once more at the end.
            if self.unwritten.due() || (!open && self.unwritten.labels > 0) {
                self.write_labels(!open);
            }
            let due = !open
                || scored.rows >= WRITE_ROWS
                || scored.until.is_some_and(|t| std::time::Instant::now() >= t);
            if due && !scored.batches.is_empty() {
                self.write_scored(std::mem::take(&mut scored).batches);
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

    fn take(&mut self, record: Record, scored: &mut Lingering) {
        match record {
            Record::Scored(b) => {
                self.queued.give_back(b.ids.len());
                scored.rows += b.ids.len();
                scored.batches.push(b);
                scored
                    .until
                    .get_or_insert(std::time::Instant::now() + WRITE_LINGER);
            }
            Record::Labels(l, waiter) => self.unwritten.push(l, waiter),
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
        self.report(Kind::Scored, rows as u64, rows as u64, result);
    }

    /// Writes the labels waiting, as one batch; on success tells who waits for them. On
    /// failure keeps them for a retry, or gives them up when `last` (the writer is stopping).
    fn write_labels(&mut self, last: bool) {
        let labels: Vec<(Label, i64)> = self
            .unwritten
            .groups
            .iter()
            .flat_map(|(l, _)| l.iter().cloned())
            .collect();
        let result = segment::labels_batch(&labels, &self.labels_schema)
            .map_err(|e| e.to_string())
            .and_then(|batch| self.append(Kind::Labels, &batch));
        let rows = labels.len() as u64;
        match result {
            Ok(()) => {
                for (_, waiter) in std::mem::take(&mut self.unwritten).groups {
                    let _ = waiter.send(());
                }
                self.report(Kind::Labels, rows, 0, Ok(()));
            }
            Err(e) => {
                // Dropping a waiter tells it the labels were given up.
                let given_up = if last {
                    std::mem::take(&mut self.unwritten).labels
                } else {
                    0
                };
                self.unwritten.retry_at = Some(std::time::Instant::now() + LABELS_RETRY);
                self.unwritten.fresh = false;
                self.report(Kind::Labels, 0, given_up as u64, Err(e));
            }
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

    /// Closes the open segments that span [`SEGMENT_SPAN`] and retires what is past the limits.
    fn age_out(&mut self) {
        for kind in [Kind::Scored, Kind::Labels] {
            if self.spans_too_long(kind) {
                if let Err(e) = self.close_open(kind) {
                    warn!(error = %e, "Could not close a store segment.");
                }
            }
            self.retire(kind);
        }
    }

    /// Whether the open segment of `kind` holds rows and was opened [`SEGMENT_SPAN`] ago or more
    /// (with `max_days` set): its file is deleted whole, once its newest row is past `max_days`,
    /// so a row outlives `max_days` by at most the span.
    fn spans_too_long(&mut self, kind: Kind) -> bool {
        let limited = self.settings.max_days.is_some();
        self.slot(kind)
            .as_ref()
            .is_some_and(|w| limited && w.rows > 0 && w.opened.elapsed() >= SEGMENT_SPAN)
    }

    /// Closes the open segment of `kind`, if any, into the finished ones.
    fn close_open(&mut self, kind: Kind) -> Result<(), String> {
        if let Some(w) = self.slot(kind).take() {
            let done = (w.file.clone(), w.rows);
            let path = done.0.path.clone();
            // Finished even when its end cannot be written (a full disk): its rows are on disk
            // and read back, and retention must still count it and delete it in turn.
            let closed = w.close();
            self.finished(kind).push(done);
            // The data is with the operating system; the sync to disk is a chore (a failure
            // there is logged).
            self.chores.push(Chore::Sync(closed?, path));
        }
        Ok(())
    }

    fn append(&mut self, kind: Kind, batch: &arrow_array::RecordBatch) -> Result<(), String> {
        let segment_rows = self.settings.segment_rows;
        let full = self
            .slot(kind)
            .as_ref()
            .is_some_and(|w| w.rows >= segment_rows);
        if full || self.spans_too_long(kind) {
            self.close_open(kind)?;
            self.retire(kind);
        }
        if self.slot(kind).is_none() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
            let next = match segment::list(&self.dir, kind)
                .map_err(|e| format!("cannot list {}: {e}", self.dir.display()))?
                .last()
            {
                None => 1,
                Some(last) => last.seq.checked_add(1).ok_or_else(|| {
                    format!(
                        "{} has the last number a segment can have; move it away",
                        last.path.display()
                    )
                })?,
            };
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
                if done.1 == 0 {
                    // Nothing in it (a full disk fails the first write): removed, so that each
                    // retry does not leave an empty file that readers of the store trip on.
                    let _ = std::fs::remove_file(&done.0.path);
                } else {
                    self.finished(kind).push(done);
                }
            }
        }
        result
    }

    /// Deletes the oldest finished segments beyond the row and age limits.
    fn retire(&mut self, kind: Kind) {
        let max_rows = self.settings.max_rows;
        let max_age = self.settings.max_age();
        let current = self.slot(kind).as_ref().map_or(0, |w| w.rows);
        let finished = self.finished(kind);
        let mut total: usize = current + finished.iter().map(|(_, r)| r).sum::<usize>();
        let mut removed = vec![];
        while let Some((file, rows)) = finished.first().cloned() {
            let modified = std::fs::metadata(&file.path).and_then(|m| m.modified());
            if modified
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                // Deleted by someone else (to free space): gone from the count, and no longer
                // in the way of the segments after it.
                finished.remove(0);
                total -= rows;
                continue;
            }
            let too_many = total > max_rows;
            let too_old = segment::past_age(&modified, max_age);
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

    /// Counts a write of `rows` (`Ok`) or its failure, which cost the store `dropped` rows.
    fn report(&mut self, kind: Kind, rows: u64, dropped: u64, result: Result<(), String>) {
        let mut status = lock(&self.status);
        if kind == Kind::Labels {
            status.labels_waiting = self.unwritten.labels as u64;
        }
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
                if let Some(was) = of_kind(&mut self.failing, kind).take() {
                    // After a drop the writer catches up at once; that is said with the drop.
                    if now_ms() - status.last_drop_log_ms >= DROP_LOG_EVERY_MS {
                        info!(kind = kind.name(), previous_error = %was, "The store is writing again.");
                    }
                }
                // The other kind's error, if its last write failed.
                status.error = self.failing.0.clone().or_else(|| self.failing.1.clone());
                if status.error.is_none() {
                    self.metrics.store_healthy.set(1);
                }
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                self.metrics
                    .store_rows_dropped
                    .with_label_values(&[kind.name()])
                    .inc_by(dropped);
                match kind {
                    Kind::Scored => status.rows_dropped += dropped,
                    Kind::Labels => status.labels_dropped += dropped,
                }
                if of_kind(&mut self.failing, kind).as_deref() != Some(&e) {
                    warn!(kind = kind.name(), error = %e, "The store cannot write; scoring and publishing go on without it.");
                }
                self.metrics.store_healthy.set(0);
                *of_kind(&mut self.failing, kind) = Some(e.clone());
                status.error = Some(e);
            }
        }
    }
}

/// The error of `kind`'s last write, in [`Writer::failing`].
fn of_kind(failing: &mut (Option<String>, Option<String>), kind: Kind) -> &mut Option<String> {
    match kind {
        Kind::Scored => &mut failing.0,
        Kind::Labels => &mut failing.1,
    }
}

impl UnwrittenLabels {
    fn push(&mut self, labels: Vec<(Label, i64)>, waiter: Waiter) {
        self.labels += labels.len();
        self.groups.push_back((labels, waiter));
        self.fresh = true;
    }

    /// Whether to write now: labels came, or a retry is due.
    fn due(&self) -> bool {
        self.labels > 0
            && (self.fresh
                || self
                    .retry_at
                    .is_some_and(|t| std::time::Instant::now() >= t))
    }
}
