//! The periodic tasks of `faultline serve`, each on a `Ticker` until the daemon stops: drift
//! (recomputed off the runtime, never per scrape), live quality (expiring labels, recomputing the
//! gauges) and watching the model's files for a reload; and, once, saying where rows are expected
//! when none has arrived a while after the start.

use super::shutdown::Stopping;
use crate::drift::{DriftReport, DriftWindow};
use crate::metrics::Metrics;
use crate::model::live::LiveModel;
use crate::store::Store;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The beat of a periodic background task: ticks every `every` until the daemon stops.
struct Ticker {
    interval: tokio::time::Interval,
    stop: Stopping,
}

impl Ticker {
    fn new(every: Duration, stop: Stopping) -> Ticker {
        let mut interval = tokio::time::interval(every);
        // A slow round delays the next instead of bunching them up.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker { interval, stop }
    }

    /// Waits for the next tick; false once the daemon is stopping.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.interval.tick() => true,
            _ = self.stop.wait() => false,
        }
    }
}

/// Recomputes drift from the window of recent rows every `every` into `report` and the gauges.
pub async fn recompute_drift(
    window: Arc<Mutex<DriftWindow>>,
    report: Arc<RwLock<DriftReport>>,
    live: LiveModel,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: Stopping,
) {
    let mut tick = Ticker::new(every, stop);
    while tick.next().await {
        let (window, model) = (window.clone(), live.current());
        let computed = tokio::task::spawn_blocking(move || {
            let snapshot = window.lock().map(|w| w.clone()).ok()?;
            Some(snapshot.report(model.card()))
        })
        .await;
        if let Ok(Some(r)) = computed {
            metrics.set_drift(
                r.sensors_out_of_range,
                r.missing_ratio,
                r.score_mean,
                r.window_rows,
            );
            if let Ok(mut slot) = report.write() {
                *slot = r;
            }
        }
    }
}

/// Expires labels that waited too long and recomputes the quality gauges of both models.
pub async fn refresh_quality(
    store: Arc<Store>,
    live: LiveModel,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: Stopping,
) {
    let mut tick = Ticker::new(every, stop);
    while tick.next().await {
        store.expire();
        let (serving, shadow) = live.both();
        // Taken under the ledger's lock, computed after it (the scorer takes it for every batch).
        let (serving_rows, shadow_rows) = {
            let ledger = store.ledger();
            (
                ledger.model_rows(
                    serving.version(),
                    serving.threshold(),
                    serving.budget().is_some(),
                ),
                shadow.map(|s| ledger.model_rows(s.version(), s.threshold(), false)),
            )
        };
        // The gauges show no intervals: none are computed.
        let without = crate::quality::Intervals::Without;
        let computed = tokio::task::spawn_blocking(move || {
            (
                serving_rows.compute_with(without),
                shadow_rows.map(|r| r.compute_with(without)),
            )
        })
        .await;
        let Ok((serving_quality, shadow_quality)) = computed else {
            continue;
        };
        metrics.set_quality(crate::metrics::MODEL_SERVING, &serving_quality);
        if let Some(q) = shadow_quality {
            metrics.set_quality(crate::metrics::MODEL_SHADOW, &q);
        }
    }
}

/// Reloads the model when the files in its directory change (size or modification time). Files
/// changed while the daemon started (after its model began to be read, before this first look)
/// are noticed too: the directory's files are then not the serving model's.
pub async fn watch_model_files(live: LiveModel, every: Duration, stop: Stopping) {
    let mut seen = live.fingerprint();
    let loaded = live.current().files().cloned();
    if loaded.is_some() && seen.is_some() && loaded != seen {
        let l = live.clone();
        let _ =
            tokio::task::spawn_blocking(move || l.reload("files changed during start-up")).await;
    }
    let mut tick = Ticker::new(every, stop);
    while tick.next().await {
        let now = live.fingerprint();
        if now == seen {
            continue;
        }
        seen = now;
        let l = live.clone();
        let _ = tokio::task::spawn_blocking(move || l.reload("files changed")).await;
    }
}

/// Logs once, `after` the start, if no row has arrived by then: where faultline expects them
/// (`rows_at`) and, where one can, a replay that sends some (`replay`), so a silent first run
/// says what to check. Returns whether it did.
pub async fn say_if_idle(
    metrics: Arc<Metrics>,
    after: Duration,
    rows_at: String,
    replay: Option<String>,
    mut stop: Stopping,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(after) => {}
        _ = stop.wait() => return false,
    }
    if metrics.rows_received_total() > 0 {
        return false;
    }
    let example = replay.map(|r| format!(" (e.g. {r})")).unwrap_or_default();
    tracing::warn!(
        waited_s = after.as_secs(),
        "No row has arrived yet. faultline reads rows from {rows_at}; publish there{example}."
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::shutdown::Shutdown;

    #[tokio::test(start_paused = true)]
    async fn a_daemon_that_received_nothing_says_where_it_listens_once() {
        let at = "mqtt://127.0.0.1:1883/faultline/rows".to_string();
        let quiet = Arc::new(Metrics::new().for_bus("mqtt", "mqtt"));
        let stop = Shutdown::default();
        let idle = Duration::from_secs(60);
        assert!(say_if_idle(quiet.clone(), idle, at.clone(), None, stop.subscribe()).await);

        let busy = Arc::new(Metrics::new().for_bus("mqtt", "mqtt"));
        busy.rows_received.with_label_values(&["mqtt"]).inc();
        assert_eq!(busy.rows_received_total(), 1);
        assert!(!say_if_idle(busy, idle, at.clone(), None, stop.subscribe()).await);

        let task = tokio::spawn(say_if_idle(quiet, idle, at, None, stop.subscribe()));
        stop.trigger();
        assert!(!task.await.unwrap(), "a stopping daemon says nothing");
    }
}
