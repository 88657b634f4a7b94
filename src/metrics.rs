//! Every metric faultline exports, by name, with its help text, in one place.
//!
//! Names follow Prometheus conventions: prefix `faultline_`, base units, `_total` for counters,
//! `_seconds` for durations. Labels are low-cardinality only (`source`, `sink`, `reason`, `path`,
//! `status`, `version`): never a wafer id or a sensor name. A scrape renders the registry as it
//! is; nothing is recomputed per scrape.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// `faultline_rows_received_total{source}`
pub const ROWS_RECEIVED: &str = "faultline_rows_received_total";
/// `faultline_rows_scored_total`
pub const ROWS_SCORED: &str = "faultline_rows_scored_total";
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
/// `faultline_publish_errors_total{sink}`
pub const PUBLISH_ERRORS: &str = "faultline_publish_errors_total";
/// `faultline_model_info{version}`
pub const MODEL_INFO: &str = "faultline_model_info";
/// `faultline_model_threshold`
pub const MODEL_THRESHOLD: &str = "faultline_model_threshold";
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
/// `faultline_kafka_consumer_lag{topic,partition}`
pub const KAFKA_CONSUMER_LAG: &str = "faultline_kafka_consumer_lag";

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
    /// Time from a row's arrival to the broker's acknowledgement of its verdict.
    pub row_latency: Histogram,
    /// Rows read but not yet acknowledged.
    pub queue_rows: IntGauge,
    /// 1 while a source is connected.
    pub source_connected: IntGaugeVec,
    /// Publishes that failed, by sink.
    pub publish_errors: IntCounterVec,
    /// 1 for the model version being served.
    pub model_info: IntGaugeVec,
    /// The decision threshold in force.
    pub model_threshold: Gauge,
    /// Model reloads by result (`ok`, `failed`).
    pub model_reloads: IntCounterVec,
    /// Sensors whose recent median or missing rate left their training range.
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
        let faults = counter(FAULTS, "Rows whose P(fault) reached the threshold.");
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
            "Time from a row's arrival to the broker's acknowledgement of its verdict.",
            buckets(0.000_5, 2.0, 16),
        );
        let queue_rows =
            IntGauge::new(QUEUE_ROWS, "Rows read but not yet acknowledged.").expect("valid metric");
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
        let model_info = IntGaugeVec::new(
            Opts::new(MODEL_INFO, "1 for the model version being served."),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(model_info.clone()))
            .expect("unique metric");
        let model_threshold =
            Gauge::new(MODEL_THRESHOLD, "Decision threshold on P(fault) in force.")
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
            "Sensors whose median or missing rate over the recent window left their training range.",
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
                .buckets(buckets(0.000_1, 3.0, 12)),
            &["path"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_seconds.clone()))
            .expect("unique metric");
        let model_reloads = counter_vec(
            MODEL_RELOADS,
            "Model reloads by result: ok (swapped in) or failed (the old model kept serving).",
            &["result"],
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
        let m = Metrics {
            registry,
            rows_received,
            rows_scored,
            faults,
            rows_dead_lettered,
            unknown_keys,
            batch_rows,
            score_seconds,
            row_latency,
            queue_rows,
            source_connected,
            publish_errors,
            model_info,
            model_threshold,
            model_reloads,
            drift_sensors,
            missing_ratio,
            score_mean,
            drift_window_rows,
            http_requests,
            http_seconds,
            kafka_consumer_lag,
        };
        // Series that exist from the start, so dashboards show zeros rather than gaps.
        for result in ["ok", "failed"] {
            m.model_reloads.with_label_values(&[result]);
        }
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
        self
    }

    /// Records the model being served.
    pub fn set_model(&self, version: &str, threshold: f32) {
        self.model_info.reset();
        self.model_info.with_label_values(&[version]).set(1);
        self.model_threshold.set(threshold as f64);
    }

    /// Publishes a drift report as gauges.
    pub fn set_drift(&self, report: &crate::drift::DriftReport) {
        self.drift_sensors.set(report.sensors_out_of_range as i64);
        self.missing_ratio.set(report.missing_ratio);
        self.score_mean.set(report.score_mean);
        self.drift_window_rows.set(report.window_rows as i64);
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
            MODEL_INFO,
            MODEL_THRESHOLD,
            ROWS_SCORED,
            FAULTS,
            QUEUE_ROWS,
            DRIFT_SENSORS,
            MISSING_RATIO,
            SCORE_MEAN,
            MODEL_RELOADS,
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
