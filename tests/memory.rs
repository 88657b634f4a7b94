//! What some paths allocate at their peak, where a bound on memory is a promise: reading the store
//! back at start, and a JSON upload past `[web] max_rows`. This binary counts every allocation;
//! its tests take turns ([`ONE_AT_A_TIME`]) so that each counts its own.

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

/// Held by each test for its whole run.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` and returns what it returned and the most it held allocated beyond what was
/// allocated before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = NOW.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

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

/// Arrow keeps a batch's whole message body alive under the columns a reader projects, so when
/// recovery kept every batch of a segment (to read 7 of its 597 columns) it held about the whole
/// file: 118 MB for a default segment of 50,000 rows of 590 sensors.
#[test]
fn reading_the_store_back_holds_one_batch_at_a_time() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

    let (store, peak) =
        peak_of(|| Store::open(settings(dir.path()), features, Arc::new(Metrics::new())).unwrap());
    eprintln!("reading back a store of {file} bytes took {peak} bytes at its peak");
    assert_eq!(store.status().rows_recovered, (BATCHES * ROWS) as u64);
    // One batch's body (2.4 MB) and the ledger's 20,000 rows, not the 47 MB file.
    assert!(
        peak < 12_000_000,
        "reading back a store of {file} bytes took {peak} bytes at its peak"
    );
    store.close();
}

/// A JSON upload of more rows than `[web] max_rows` is refused having decoded at most that many:
/// an array of bare ids is small as text (1.5 MB for 100,000) and decodes to every sensor of every
/// row (236 MB), which it did before the limit was looked at.
#[test]
fn a_json_upload_past_max_rows_is_refused_before_it_is_decoded_whole() {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use tower::ServiceExt;
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limits = faultline::web::api::WebLimits {
        max_rows: 1000,
        ..Default::default()
    };
    let state = faultline::web::WebState::new(
        Arc::new(faultline::model::Model::embedded().unwrap()),
        Arc::new(Metrics::new()),
        limits,
    );
    let ids: Vec<String> = (0..100_000).map(|i| format!("{{\"id\":{i}}}")).collect();
    let body = format!("[{}]", ids.join(","));
    drop(ids);
    let (status, peak) = peak_of(|| {
        runtime.block_on(async {
            let request = Request::post("/api/score")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap();
            let answer = faultline::web::router(state)
                .oneshot(request)
                .await
                .unwrap();
            answer.status()
        })
    });
    eprintln!("a refused JSON upload of 100,000 ids took {peak} bytes at its peak");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        peak < 30_000_000,
        "refusing it took {peak} bytes at its peak"
    );
}
