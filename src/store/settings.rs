//! `[store]` and the join's limits in `[labels]`: the sections as written, checked into
//! [`StoreSettings`].

use super::ledger::LedgerLimits;
use serde::Deserialize;
use std::path::PathBuf;

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

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Directory of the store; empty for none.
    pub dir: String,
    /// Scored rows kept on disk.
    pub max_rows: usize,
    /// Days kept on disk; 0 for no limit.
    pub max_days: u32,
    /// Rows per file.
    pub segment_rows: usize,
}

/// `[labels]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsSection {
    /// Topic the labels are published on; empty for none.
    pub topic: String,
    /// On Kafka, the consumer group this instance reads the labels in; empty for
    /// `<source.kafka.group_id>.labels.<host name>`. Each instance needs its own.
    pub group_id: String,
    /// Labelled wafers live quality is computed over.
    pub window_rows: usize,
    /// Scored rows remembered for the join.
    pub join_rows: usize,
    /// Seconds a label waits for its row.
    pub pending_s: u64,
    /// Labels waiting at once.
    pub max_pending: usize,
}

/// The widest live-quality window `[labels] window_rows` may ask for.
pub const MAX_WINDOW_ROWS: usize = 100_000;

impl StoreSettings {
    /// Checks `[store]` and the join's limits in `[labels]`.
    /// `max_days` as a duration.
    pub fn max_age(&self) -> Option<std::time::Duration> {
        self.max_days
            .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400))
    }

    pub fn from_sections(st: &StoreSection, l: &LabelsSection) -> Result<StoreSettings, String> {
        if l.window_rows == 0 || l.join_rows == 0 || l.max_pending == 0 {
            return Err(
                "labels.window_rows, labels.join_rows and labels.max_pending must all be above 0"
                    .into(),
            );
        }
        if l.window_rows > MAX_WINDOW_ROWS {
            return Err(format!(
                "labels.window_rows is {}; set at most {MAX_WINDOW_ROWS} (default 1000): live quality's \
                 intervals resample the window whenever a label has changed it, about 115 ms a model \
                 at {MAX_WINDOW_ROWS} wafers",
                l.window_rows
            ));
        }
        let dir = Some(PathBuf::from(st.dir.trim())).filter(|p| !p.as_os_str().is_empty());
        if st.max_rows == 0 || st.segment_rows == 0 {
            return Err("store.max_rows and store.segment_rows must be above 0".into());
        }
        if st.segment_rows > st.max_rows {
            return Err(format!(
                "store.segment_rows ({}) is larger than store.max_rows ({}); lower segment_rows: old rows are deleted a whole file at a time",
                st.segment_rows, st.max_rows
            ));
        }
        Ok(StoreSettings {
            dir,
            max_rows: st.max_rows,
            max_days: (st.max_days > 0).then_some(st.max_days),
            segment_rows: st.segment_rows,
            ledger: LedgerLimits {
                max_rows: l.join_rows,
                window: l.window_rows,
                max_pending: l.max_pending,
                pending_ttl_ms: (l.pending_s as i64).saturating_mul(1000),
            },
        })
    }
}
