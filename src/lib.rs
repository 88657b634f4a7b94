//! faultline scores semiconductor wafer sensor rows for faults with one ONNX graph that holds both
//! the preprocessing and the gradient-boosted model, so training and serving never disagree.
//!
//! # Layout
//!
//! The data flows through these files, in this order:
//!
//! | stage | file | what it does |
//! |---|---|---|
//! | configuration | `config.rs` | serde types, layered loading (defaults, file, env), pure validation |
//! | reading rows | `row/mod.rs`, `row/csv.rs` | one record → a feature vector in model order, or an error naming row, column and value |
//! | scoring | `model/mod.rs` | loads graph + card, checks they match, scores batches, explains verdicts |
//! | graph compiler | `model/onnx.rs` | reads the ONNX graph (tract-onnx) and compiles it to native trees |
//! | fallback scorer | `model/fallback.rs` | any other graph, run by tract-onnx (golden rows required) |
//! | evaluator | `model/ensemble.rs` | the flat, branch-light tree walk |
//! | explanations | `model/shap.rs` | exact TreeSHAP: each sensor's contribution to a verdict's log-odds |
//! | verdict rule | `model/decide.rs` | the fixed threshold, or an alarm budget over the recent wafers |
//! | model card | `model/card.rs` | the card's types |
//! | `faultline score` | `score.rs` | CSV in, verdicts CSV out, in bounded batches |
//! | wiring of `serve` | `app.rs` | channels, tasks, graceful shutdown |
//! | embedded broker | `broker.rs` | rumqttd on its own thread |
//! | bus → rows | `source/mod.rs`, `source/mqtt.rs`, `source/kafka.rs` | decode, in-flight bound; MQTT QoS 1 with manual acks, Kafka offsets stored after publish |
//! | micro-batches | `batch.rs` | flush on size or age, drain on stop |
//! | JSON rows | `row/json.rs` | one message → rows + dead letters |
//! | verdicts → bus | `sink/mod.rs`, `sink/mqtt.rs`, `sink/kafka.rs` | message formats; publishers counting the broker's acknowledgements in order |
//! | MQTT TLS | `tls.rs` | rustls client configuration from PEM files |
//! | Kafka clients | `kafka.rs` | client properties, librdkafka logs, connection state, consumer lag |
//! | connection state | `link.rs` | up or down, and why a broker refuses a client, for `/readyz` |
//! | HTTP | `web/mod.rs` | health, readiness, model card, `/metrics` |
//! | metrics | `metrics.rs` | every metric name and help text |
//! | drift | `drift.rs` | recent rows vs the card's training distribution |
//! | `faultline replay` | `replay.rs` | CSV → one JSON message per row |
//! | late labels | `labels.rs` | label messages, JSON and CSV → labels, or the reason they are refused |
//! | scored-row store | `store/mod.rs`, `store/segment.rs` | every scored row and label on disk (Arrow IPC), never blocking the fault stream |
//! | the join | `store/ledger.rs` | scored rows × labels in memory, bounded; the window live quality is computed over |
//! | live quality | `quality.rs` | ROC-AUC, PR-AUC, recall, false-alarm rate as scikit-learn defines them |
//! | `faultline export` | `store/export.rs` | the store's labelled rows as a wafer batch file for training |
//!
//! `main.rs` only parses the command line and calls into these.

pub mod app;
pub mod batch;
pub mod broker;
pub mod config;
pub mod drift;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod labels;
pub mod link;
pub mod metrics;
pub mod model;
pub mod quality;
pub mod replay;
pub mod row;
pub mod score;
pub mod sink;
pub mod source;
pub mod store;
pub mod tls;
pub mod web;
