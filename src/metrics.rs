//! Every metric faultline exports, by name, with its help text, in one place.
//!
//! Names follow Prometheus conventions: prefix `faultline_`, base units, `_total` for counters,
//! `_seconds` for durations. Labels are low-cardinality only (`source`, `sink`, `reason`, `path`,
//! `status`, `version`): never a wafer id or a sensor name. A scrape renders the registry as it
//! is; nothing is recomputed per scrape.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// `faultline_rows_received_total{source}`
pub const ROWS_RECEIVED: &str = "faultline_rows_received_total";
/// `faultline_rows_scored_total`
pub const ROWS_SCORED: &str = "faultline_rows_scored_total";
/// `faultline_rows_unscored_total`
pub const ROWS_UNSCORED: &str = "faultline_rows_unscored_total";
/// `faultline_faults_total`
pub const FAULTS: &str = "faultline_faults_total";
/// `faultline_rows_dead_lettered_total{reason}`
pub const ROWS_DEAD_LETTERED: &str = "faultline_rows_dead_lettered_total";
/// `faultline_unknown_keys_total`
pub const UNKNOWN_KEYS: &str = "faultline_unknown_keys_total";
/// `faultline_batch_rows`
pub const BATCH_ROWS: &str = "faultline_batch_rows";
/// `faultline_score_seconds`
pub const SCORE_SECONDS: &str = "faultline_score_seconds";
/// `faultline_row_latency_seconds`
pub const ROW_LATENCY: &str = "faultline_row_latency_seconds";
/// `faultline_queue_rows`
pub const QUEUE_ROWS: &str = "faultline_queue_rows";
/// `faultline_source_connected{source}`
pub const SOURCE_CONNECTED: &str = "faultline_source_connected";
/// `faultline_broker_session_lost_total{client}`
pub const BROKER_SESSION_LOST: &str = "faultline_broker_session_lost_total";
/// `faultline_publish_errors_total{sink}`
pub const PUBLISH_ERRORS: &str = "faultline_publish_errors_total";
/// `faultline_outputs_resent_total{sink}`
pub const OUTPUTS_RESENT: &str = "faultline_outputs_resent_total";
/// `faultline_model_info{version}`
pub const MODEL_INFO: &str = "faultline_model_info";
/// `faultline_model_threshold`
pub const MODEL_THRESHOLD: &str = "faultline_model_threshold";
/// `faultline_verdicts_total`
pub const VERDICTS: &str = "faultline_verdicts_total";
/// `faultline_drift_sensors_out_of_range`
pub const DRIFT_SENSORS: &str = "faultline_drift_sensors_out_of_range";
/// `faultline_missing_ratio`
pub const MISSING_RATIO: &str = "faultline_missing_ratio";
/// `faultline_score_mean`
pub const SCORE_MEAN: &str = "faultline_score_mean";
/// `faultline_drift_window_rows`
pub const DRIFT_WINDOW_ROWS: &str = "faultline_drift_window_rows";
/// `faultline_http_requests_total{path,status}`
pub const HTTP_REQUESTS: &str = "faultline_http_requests_total";
/// `faultline_http_request_seconds{path}`
pub const HTTP_SECONDS: &str = "faultline_http_request_seconds";

/// `faultline_model_reloads_total{result}`
pub const MODEL_RELOADS: &str = "faultline_model_reloads_total";
/// `faultline_model_reload_failing`
pub const MODEL_RELOAD_FAILING: &str = "faultline_model_reload_failing";
/// `faultline_kafka_consumer_lag{topic,partition}`
pub const KAFKA_CONSUMER_LAG: &str = "faultline_kafka_consumer_lag";

/// `faultline_labels_total{result}`
pub const LABELS: &str = "faultline_labels_total";
/// `faultline_labels_pending`
pub const LABELS_PENDING: &str = "faultline_labels_pending";
/// `faultline_labels_expired_total`
pub const LABELS_EXPIRED: &str = "faultline_labels_expired_total";
/// `faultline_quality_roc_auc{model}`
pub const QUALITY_ROC_AUC: &str = "faultline_quality_roc_auc";
/// `faultline_quality_pr_auc{model}`
pub const QUALITY_PR_AUC: &str = "faultline_quality_pr_auc";
/// `faultline_quality_recall{model}`
pub const QUALITY_RECALL: &str = "faultline_quality_recall";
/// `faultline_quality_false_alarm_rate{model}`
pub const QUALITY_FALSE_ALARM_RATE: &str = "faultline_quality_false_alarm_rate";
/// `faultline_quality_labelled_rows{model}`
pub const QUALITY_LABELLED: &str = "faultline_quality_labelled_rows";
/// `faultline_quality_faulty_rows{model}`
pub const QUALITY_FAULTY: &str = "faultline_quality_faulty_rows";
/// `faultline_store_rows_written_total{kind}`
pub const STORE_ROWS_WRITTEN: &str = "faultline_store_rows_written_total";
/// `faultline_store_rows_dropped_total{kind}`
pub const STORE_ROWS_DROPPED: &str = "faultline_store_rows_dropped_total";
/// `faultline_store_errors_total`
pub const STORE_ERRORS: &str = "faultline_store_errors_total";
/// `faultline_store_healthy`
pub const STORE_HEALTHY: &str = "faultline_store_healthy";
/// `faultline_shadow_model_info{version}`
pub const SHADOW_MODEL_INFO: &str = "faultline_shadow_model_info";
/// `faultline_runtime_workers`
pub const RUNTIME_WORKERS: &str = "faultline_runtime_workers";

/// The `model` label of the serving model's quality.
pub const MODEL_SERVING: &str = "serving";
/// The `model` label of the shadow model's quality.
pub const MODEL_SHADOW: &str = "shadow";

/// The `source` label of the MQTT source.
pub const SOURCE_MQTT: &str = "mqtt";
/// The `sink` label of the MQTT publisher.
pub const SINK_MQTT: &str = "mqtt";
/// The `source` label of the Kafka source.
pub const SOURCE_KAFKA: &str = "kafka";
/// The `sink` label of the Kafka producer.
pub const SINK_KAFKA: &str = "kafka";

/// All of faultline's metrics, registered in their own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    registry: Registry,
    /// Rows read from a source (decoded or not).
    pub rows_received: IntCounterVec,
    /// Rows scored.
    pub rows_scored: IntCounter,
    /// Rows of the stream the model could not score (no probability).
    pub rows_unscored: IntCounter,
    /// Rows judged faulty.
    pub faults: IntCounter,
    /// Rows sent to the dead-letter topic, by reason.
    pub rows_dead_lettered: IntCounterVec,
    /// JSON keys that were not id, label, values or a feature.
    pub unknown_keys: IntCounter,
    /// Rows per scored batch.
    pub batch_rows: Histogram,
    /// Time to score one batch.
    pub score_seconds: Histogram,
    /// Time from a row's arrival until faultline acknowledges it to its source (Kafka: offset
    /// stored; MQTT: PUBACK queued for the connection), which waits until its verdict, if
    /// published, and every earlier output are confirmed by the output broker.
    pub row_latency: Histogram,
    /// Rows read that faultline has not yet acknowledged to their source (MQTT PUBACKs queued but
    /// not yet written are not counted).
    pub queue_rows: IntGauge,
    /// 1 while a source is connected.
    pub source_connected: IntGaugeVec,
    /// Publishes that failed, by sink.
    pub publish_errors: IntCounterVec,
    /// Outputs the broker refused and faultline sent again, by sink (Kafka).
    pub outputs_resent: IntCounterVec,
    /// Sessions an MQTT broker lost (it came back without them), by client.
    pub broker_session_lost: IntCounterVec,
    /// 1 for the model version being served.
    pub model_info: IntGaugeVec,
    /// The decision threshold in force (under an alarm budget: the one the last verdict used).
    pub model_threshold: Gauge,
    /// Verdicts by the rule that made them (`threshold`, `alarm_rate`, `warmup`).
    pub verdicts: IntCounterVec,
    /// Model reloads by result (`ok`, `failed`).
    pub model_reloads: IntCounterVec,
    /// 1 while the last reload of `[model] dir` failed.
    pub model_reload_failing: IntGauge,
    /// Sensors whose recent median moved more than 3 robust sigmas, or whose missing rate moved
    /// more than 0.2, from training.
    pub drift_sensors: IntGauge,
    /// Share of missing sensor cells over the drift window.
    pub missing_ratio: Gauge,
    /// Mean P(fault) over the drift window.
    pub score_mean: Gauge,
    /// Rows in the drift window.
    pub drift_window_rows: IntGauge,
    /// HTTP requests by route and status.
    pub http_requests: IntCounterVec,
    /// HTTP request durations by route.
    pub http_seconds: HistogramVec,
    /// Messages in each assigned Kafka partition not yet processed (high watermark minus the
    /// offset faultline stored after publishing), from librdkafka's statistics.
    pub kafka_consumer_lag: IntGaugeVec,
    /// Labels accepted, by what they did: joined, relabelled, pending (row not scored yet) or
    /// rejected (unreadable; sent to the dead-letter topic or refused by the API).
    pub labels: IntCounterVec,
    /// Labels waiting for their row.
    pub labels_pending: IntGauge,
    /// Labels whose row did not come in time.
    pub labels_expired: IntCounter,
    /// Live quality over the last labelled wafers, by model (serving, shadow); NaN while undefined.
    pub quality_roc_auc: GaugeVec,
    /// Average precision, by model.
    pub quality_pr_auc: GaugeVec,
    /// Recall at the threshold, by model.
    pub quality_recall: GaugeVec,
    /// Good wafers flagged / good wafers, by model.
    pub quality_false_alarm_rate: GaugeVec,
    /// Labelled wafers the quality figures are computed over, by model.
    pub quality_labelled: IntGaugeVec,
    /// Faulty wafers among them: what recall rests on.
    pub quality_faulty: IntGaugeVec,
    /// Rows written to the store, by kind (scored, labels).
    pub store_rows_written: IntCounterVec,
    /// Rows scored (or labels accepted) but not stored, by kind.
    pub store_rows_dropped: IntCounterVec,
    /// Store writes that failed.
    pub store_errors: IntCounter,
    /// 1 while the store writes (or is not configured), 0 after a failure.
    pub store_healthy: IntGauge,
    /// 1 for the shadow model's version, when one runs.
    pub shadow_model_info: IntGaugeVec,
    /// Threads the daemon's tasks run on (`[runtime] workers`).
    pub runtime_workers: IntGauge,
}

fn buckets(start: f64, factor: f64, count: usize) -> Vec<f64> {
    prometheus::exponential_buckets(start, factor, count).unwrap_or_default()
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, b: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(b))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let rows_received = counter_vec(
            ROWS_RECEIVED,
            "Rows read from a source, readable or not.",
            &["source"],
        );
        let rows_scored = counter(ROWS_SCORED, "Rows scored by the model.");
        let rows_unscored = counter(
            ROWS_UNSCORED,
            "Rows from the bus the model could not score (a graph on tract-onnx failed on their batch; the log says why): they got no probability (null on the bus) and no fault verdict. Counted in faultline_rows_scored_total too. Should stay 0.",
        );
        let faults = counter(FAULTS, "Rows flagged as faults: P(fault) at or above the threshold in force (under [model] alarm_rate, the budget's moving one).");
        let rows_dead_lettered = counter_vec(
            ROWS_DEAD_LETTERED,
            "Rows sent to the dead-letter topic, by reason.",
            &["reason"],
        );
        let unknown_keys = counter(
            UNKNOWN_KEYS,
            "JSON keys ignored because they are not a model feature.",
        );
        let batch_rows = histogram(
            BATCH_ROWS,
            "Rows per scored micro-batch.",
            buckets(1.0, 2.0, 14),
        );
        let score_seconds = histogram(
            SCORE_SECONDS,
            "Time to score one micro-batch.",
            buckets(0.000_01, 2.5, 14),
        );
        let row_latency = histogram(
            ROW_LATENCY,
            "Time from a row's arrival until faultline acknowledges it to its source (Kafka: its offset stored for the next commit; MQTT: its PUBACK queued for the connection), which waits until its verdict, if published, and every earlier output are confirmed by the output broker.",
            // Fine around the 25 ms a stream's p99 is held to (a doubling series had one bucket
            // from 16 to 32 ms), up to the 30 s of a broker outage.
            vec![
                0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04,
                0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        );
        let queue_rows =
            IntGauge::new(QUEUE_ROWS, "Rows read that faultline has not yet acknowledged to their source (MQTT PUBACKs queued but not yet written are not counted).").expect("valid metric");
        registry
            .register(Box::new(queue_rows.clone()))
            .expect("unique metric");
        let source_connected = IntGaugeVec::new(
            Opts::new(
                SOURCE_CONNECTED,
                "1 while the source is connected to its broker.",
            ),
            &["source"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(source_connected.clone()))
            .expect("unique metric");
        let publish_errors =
            counter_vec(PUBLISH_ERRORS, "Publishes that failed, by sink.", &["sink"]);
        let outputs_resent = counter_vec(
            OUTPUTS_RESENT,
            "Outputs (verdicts, scores, dead letters) the Kafka cluster refused and faultline sent again until it took them, by sink. Rising: the cluster refuses writes; nothing behind a refused output is committed meanwhile.",
            &["sink"],
        );
        let broker_session_lost = counter_vec(
            BROKER_SESSION_LOST,
            "Times the MQTT broker came back without a faultline client's session (a restart without persistence), by client: source, publisher, labels. What the broker had queued for faultline then is gone.",
            &["client"],
        );
        let verdicts = counter_vec(
            VERDICTS,
            "Verdicts by the rule that made them: threshold, alarm_rate (the alarm budget) or warmup (budget window still filling).",
            &["rule"],
        );
        let model_info = IntGaugeVec::new(
            Opts::new(MODEL_INFO, "1 for the model version being served."),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(model_info.clone()))
            .expect("unique metric");
        let model_threshold =
            Gauge::new(MODEL_THRESHOLD, "Decision threshold on P(fault) in force (under an alarm budget, the one the last verdict used).")
                .expect("valid metric");
        registry
            .register(Box::new(model_threshold.clone()))
            .expect("unique metric");
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let drift_sensors = int_gauge(
            DRIFT_SENSORS,
            "Sensors (all of the schema's, read by the model or not) whose median over the recent window moved more than 3 robust sigmas from training, or whose missing rate moved more than 0.2; a sensor constant in training (IQR 0) counts on its missing rate alone. Which ones: GET /api/drift.",
        );
        let missing_ratio = gauge(
            MISSING_RATIO,
            "Share of missing sensor cells over the recent window.",
        );
        let score_mean = gauge(SCORE_MEAN, "Mean P(fault) over the recent window.");
        let drift_window_rows = int_gauge(
            DRIFT_WINDOW_ROWS,
            "Rows in the recent window drift is judged on.",
        );
        let http_requests = counter_vec(
            HTTP_REQUESTS,
            "HTTP requests by route and status.",
            &["path", "status"],
        );
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(HTTP_SECONDS, "HTTP request durations by route.")
                // Up to 24 minutes: an upload may take [web] upload_timeout_ms (10 by default).
                .buckets(buckets(0.000_1, 3.0, 16)),
            &["path"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_seconds.clone()))
            .expect("unique metric");
        let model_reloads = counter_vec(
            MODEL_RELOADS,
            "Model reloads and promotions by result: ok (swapped in) or failed (the old model kept serving).",
            &["result"],
        );
        let model_reload_failing = int_gauge(
            MODEL_RELOAD_FAILING,
            "1 while the model in [model] dir could not be loaded at the last reload (the previous one keeps serving); 0 at start and once a reload succeeds. Promotions leave it as it is.",
        );
        let kafka_consumer_lag = IntGaugeVec::new(
            Opts::new(
                KAFKA_CONSUMER_LAG,
                "Messages in an assigned Kafka partition that faultline has not processed yet.",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(kafka_consumer_lag.clone()))
            .expect("unique metric");
        let labels = counter_vec(
            LABELS,
            "Labels received, by result: joined (to its row, on arrival or when a row that came later was scored), relabelled, pending (row not scored yet; counted again as joined if it comes), rejected.",
            &["result"],
        );
        let labels_pending =
            int_gauge(LABELS_PENDING, "Labels waiting for their row to be scored.");
        let labels_expired = counter(
            LABELS_EXPIRED,
            "Labels dropped unjoined: their row was not scored within [labels] pending_s, or [labels] max_pending labels waited and the oldest made room.",
        );
        let gauge_vec = |name: &str, help: &str| {
            let g = GaugeVec::new(Opts::new(name, help), &["model"]).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let quality_roc_auc = gauge_vec(
            QUALITY_ROC_AUC,
            "ROC-AUC over the last labelled wafers, by model (NaN with one class only).",
        );
        let quality_pr_auc = gauge_vec(
            QUALITY_PR_AUC,
            "Average precision over the last labelled wafers, by model (NaN without a faulty wafer).",
        );
        let quality_recall = gauge_vec(
            QUALITY_RECALL,
            "Faulty wafers flagged / faulty wafers over the last labelled wafers, by model.",
        );
        let quality_false_alarm_rate = gauge_vec(
            QUALITY_FALSE_ALARM_RATE,
            "Good wafers flagged / good wafers over the last labelled wafers, by model.",
        );
        let quality_labelled = IntGaugeVec::new(
            Opts::new(
                QUALITY_LABELLED,
                "Labelled wafers the quality figures are computed over, by model.",
            ),
            &["model"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(quality_labelled.clone()))
            .expect("unique metric");
        let quality_faulty = IntGaugeVec::new(
            Opts::new(
                QUALITY_FAULTY,
                "Faulty wafers among the labelled ones the quality figures are computed over (what recall rests on), by model.",
            ),
            &["model"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(quality_faulty.clone()))
            .expect("unique metric");
        let store_rows_written = counter_vec(
            STORE_ROWS_WRITTEN,
            "Rows written to the on-disk store, by kind (scored, labels).",
            &["kind"],
        );
        let store_rows_dropped = counter_vec(
            STORE_ROWS_DROPPED,
            "Scored rows not written to the store, or labels given up unwritten (a refused label write is tried again), by kind.",
            &["kind"],
        );
        let store_errors = counter(STORE_ERRORS, "Store writes that failed.");
        let store_healthy = int_gauge(
            STORE_HEALTHY,
            "1 while the store writes (or none is configured), 0 after a failed write.",
        );
        let shadow_model_info = IntGaugeVec::new(
            Opts::new(SHADOW_MODEL_INFO, "1 for the shadow model's version."),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(shadow_model_info.clone()))
            .expect("unique metric");
        let runtime_workers = int_gauge(
            RUNTIME_WORKERS,
            "Threads the daemon's tasks run on: [runtime] workers (auto: one per core). Scoring runs on threads of its own.",
        );
        let m = Metrics {
            registry,
            rows_received,
            rows_scored,
            rows_unscored,
            faults,
            rows_dead_lettered,
            unknown_keys,
            batch_rows,
            score_seconds,
            row_latency,
            queue_rows,
            source_connected,
            publish_errors,
            outputs_resent,
            broker_session_lost,
            model_info,
            model_threshold,
            verdicts,
            model_reloads,
            model_reload_failing,
            drift_sensors,
            missing_ratio,
            score_mean,
            drift_window_rows,
            http_requests,
            http_seconds,
            kafka_consumer_lag,
            labels,
            labels_pending,
            labels_expired,
            quality_roc_auc,
            quality_pr_auc,
            quality_recall,
            quality_false_alarm_rate,
            quality_labelled,
            quality_faulty,
            store_rows_written,
            store_rows_dropped,
            store_errors,
            store_healthy,
            shadow_model_info,
            runtime_workers,
        };
        // Series that exist from the start, so dashboards show zeros rather than gaps.
        for result in ["ok", "failed"] {
            m.model_reloads.with_label_values(&[result]);
        }
        for result in ["joined", "relabelled", "pending", "rejected"] {
            m.labels.with_label_values(&[result]);
        }
        for kind in ["scored", "labels"] {
            m.store_rows_written.with_label_values(&[kind]);
            m.store_rows_dropped.with_label_values(&[kind]);
        }
        m.store_healthy.set(1);
        m.set_quality(MODEL_SERVING, &crate::quality::compute(&[], 0.5));
        for reason in crate::row::json::RejectReason::ALL {
            m.rows_dead_lettered.with_label_values(&[reason.as_str()]);
        }
        m
    }

    /// Creates the series of the bus in use (`source`/`sink` labels), so dashboards show zeros
    /// rather than gaps.
    pub fn for_bus(self, source: &str, sink: &str) -> Metrics {
        self.rows_received.with_label_values(&[source]);
        self.source_connected.with_label_values(&[source]);
        self.publish_errors.with_label_values(&[sink]);
        if sink == SINK_KAFKA {
            self.outputs_resent.with_label_values(&[sink]);
        }
        if source == SOURCE_MQTT {
            for client in ["source", "publisher"] {
                self.broker_session_lost.with_label_values(&[client]);
            }
        }
        self
    }

    /// Rows read from every source so far.
    pub fn rows_received_total(&self) -> u64 {
        use prometheus::core::Collector;
        self.rows_received
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Records the model being served.
    pub fn set_model(&self, version: &str, threshold: f32) {
        self.model_info.reset();
        self.model_info.with_label_values(&[version]).set(1);
        self.model_threshold.set(threshold as f64);
    }

    /// Publishes a model's live quality as gauges (`model` is serving or shadow).
    pub fn set_quality(&self, model: &str, q: &crate::quality::Quality) {
        let or_nan = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.quality_roc_auc
            .with_label_values(&[model])
            .set(or_nan(q.roc_auc));
        self.quality_pr_auc
            .with_label_values(&[model])
            .set(or_nan(q.pr_auc));
        self.quality_recall
            .with_label_values(&[model])
            .set(or_nan(q.recall));
        self.quality_false_alarm_rate
            .with_label_values(&[model])
            .set(or_nan(q.false_alarm_rate));
        self.quality_labelled
            .with_label_values(&[model])
            .set(q.labelled as i64);
        self.quality_faulty
            .with_label_values(&[model])
            .set(q.positives as i64);
    }

    /// Records the shadow model (none: clears it).
    pub fn set_shadow(&self, version: Option<&str>) {
        self.shadow_model_info.reset();
        if let Some(v) = version {
            self.shadow_model_info.with_label_values(&[v]).set(1);
        }
    }

    /// Publishes a drift report as gauges.
    pub fn set_drift(
        &self,
        sensors_out_of_range: usize,
        missing_ratio: f64,
        score_mean: f64,
        window_rows: usize,
    ) {
        self.drift_sensors.set(sensors_out_of_range as i64);
        self.missing_ratio.set(missing_ratio);
        self.score_mean.set(score_mean);
        self.drift_window_rows.set(window_rows as i64);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_with_help_and_zeroed_series() {
        let m = Metrics::new().for_bus(SOURCE_MQTT, SINK_MQTT);
        m.set_model("wf-123", 0.25);
        let text = m.render();
        for name in [
            ROWS_RECEIVED,
            ROWS_DEAD_LETTERED,
            SOURCE_CONNECTED,
            PUBLISH_ERRORS,
            BROKER_SESSION_LOST,
            MODEL_INFO,
            MODEL_THRESHOLD,
            ROWS_SCORED,
            ROWS_UNSCORED,
            FAULTS,
            QUEUE_ROWS,
            DRIFT_SENSORS,
            MISSING_RATIO,
            SCORE_MEAN,
            MODEL_RELOADS,
            MODEL_RELOAD_FAILING,
            LABELS,
            LABELS_PENDING,
            QUALITY_ROC_AUC,
            QUALITY_LABELLED,
            QUALITY_FAULTY,
            STORE_ROWS_WRITTEN,
            STORE_HEALTHY,
            RUNTIME_WORKERS,
        ] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.contains("faultline_model_info{version=\"wf-123\"} 1"));
        assert!(text.contains("faultline_model_threshold 0.25"));
        assert!(text.contains("faultline_rows_dead_lettered_total{reason=\"malformed_json\"} 0"));
    }
}
