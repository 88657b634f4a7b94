//! Reading the store back at start holds one batch of a segment at a time, not the whole file.
//!
//! Arrow keeps a batch's whole message body alive under the columns a reader projects, so when
//! recovery kept every batch of a segment (to read 7 of its 597 columns) it held about the whole
//! file: 118 MB for a default segment of 50,000 rows of 590 sensors. This binary counts every
//! allocation, so it holds this one test alone.

use faultline::metrics::Metrics;
use faultline::store::ledger::LedgerLimits;
use faultline::store::segment::ScoredBatch;
use faultline::store::{Store, StoreSettings};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes allocated now and the most since the last reset.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SENSORS: usize = 590;
const BATCHES: usize = 20;
const ROWS: usize = 1000;

fn settings(dir: &std::path::Path) -> StoreSettings {
    StoreSettings {
        dir: Some(dir.to_path_buf()),
        max_rows: 1_000_000,
        max_days: None,
        // Every batch in one segment.
        segment_rows: 1_000_000,
        ledger: LedgerLimits {
            max_rows: 1_000_000,
            window: 1000,
            max_pending: 1000,
            pending_ttl_ms: 3_600_000,
        },
    }
}

#[test]
fn reading_the_store_back_holds_one_batch_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let features: Vec<String> = (1..=SENSORS).map(|i| format!("Sensor-{i}")).collect();
    let store = Store::open(
        settings(dir.path()),
        features.clone(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let version: Arc<str> = Arc::from("wf-test");
    for b in 0..BATCHES {
        store.record_scored(ScoredBatch {
            ids: (0..ROWS).map(|r| format!("W-{b}-{r}")).collect(),
            values: (0..ROWS * SENSORS).map(|v| v as f32).collect(),
            width: SENSORS,
            probabilities: vec![0.1; ROWS],
            faults: vec![false; ROWS],
            version: version.clone(),
            shadow: None,
            at_ms: 1_700_000_000_000 + b as i64,
        });
        // One write a batch: the segment then holds BATCHES messages of ROWS rows (2.4 MB each).
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.status().rows_written < ((b + 1) * ROWS) as u64 {
            assert!(
                Instant::now() < deadline,
                "the store did not write batch {b}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    store.close();
    drop(store);
    let file: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(file > 40_000_000, "the store holds only {file} bytes");

    let before = NOW.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let store = Store::open(settings(dir.path()), features, Arc::new(Metrics::new())).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    eprintln!("reading back a store of {file} bytes took {peak} bytes at its peak");
    assert_eq!(store.status().rows_recovered, (BATCHES * ROWS) as u64);
    // One batch's body (2.4 MB) and the ledger's 20,000 rows, not the 47 MB file.
    assert!(
        peak < 12_000_000,
        "reading back a store of {file} bytes took {peak} bytes at its peak"
    );
    store.close();
}
