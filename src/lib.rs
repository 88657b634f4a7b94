//! faultline scores semiconductor wafer sensor rows for faults with one ONNX graph that holds both
//! the preprocessing and the gradient-boosted model, so training and serving never disagree.
//!
//! # Layout
//!
//! One home per stage and per transport. The data flows through these files, in this order:
//!
//! | stage | file | what it does |
//! |---|---|---|
//! | configuration | `config.rs` | layered loading (defaults, file, env); assembles the sections into [`config::Config`], with the bus as one enum; each owner checks its section (`bus/mqtt/settings.rs`, `bus/kafka/settings.rs`, `model/settings.rs`, `store/settings.rs`, `web/api.rs`) |
//! | secrets, time | `secret.rs`, `clock.rs` | passwords and tokens never printed, read from files; timestamps |
//! | reading rows | `crates/rows`: `lib.rs`, `number.rs`, `csv/{mod,plan,decode}.rs`, `json/{mod,fast,visit}.rs`, `sparkplug.rs` (re-exported as `row`) | one record or bus message (JSON, or Sparkplug B protobuf) → feature vectors in model order, or errors naming row, column and value |
//! | embedded broker | `bus/mqtt/broker.rs` | rumqttd on its own thread, or the MQTT broker already on the default address |
//! | MQTT | `bus/mqtt/mod.rs`, `settings.rs`, `driver.rs`, `source.rs`, `publisher.rs`, `tls.rs` | `[source.mqtt]` checked; the one event-loop driver (reconnects, re-sends what a broker that lost the session had not acknowledged); rows in at QoS 1 with manual acks; verdicts out, the broker's acks counted in order; rustls |
//! | Kafka | `bus/kafka/mod.rs`, `settings.rs`, `client.rs`, `source.rs`, `publisher.rs` | `[source.kafka]` checked (in every build); client properties, logs, lag; offsets stored after publish; the producer |
//! | transport dispatch | `bus/mod.rs` | [`bus::Source`], [`bus::Acker`] (MQTT PUBACKs through [`bus::MqttAcker`] to the source's driver, which writes them in order), [`bus::Publisher`] over the configured transport |
//! | admission | `bus/admit.rs` | decode-ahead in arrival order (JSON, or Sparkplug B with the aliases its births bound), the in-flight bound (backpressure) |
//! | connection state | `bus/link.rs`, `bus/backoff.rs` | up or down, and why a broker refuses a client (`/readyz`); reconnect backoff |
//! | wiring of `serve` | `pipeline/mod.rs`, `pipeline/error.rs` | channels, tasks, graceful shutdown; no logic of its own; why it could not start |
//! | micro-batches | `pipeline/batch.rs` | flush on size or age, drain on stop |
//! | scoring stage | `pipeline/scoring.rs` | model + shadow, drift window, store, verdicts and dead letters out |
//! | scoring | `model/mod.rs` | loads graph + card, checks they match, scores batches, explains verdicts |
//! | graph compiler | `model/onnx.rs` | reads the ONNX graph (tract-onnx) and compiles it to native trees |
//! | evaluator | `model/ensemble.rs` | the flat, branch-light tree walk |
//! | fallback scorer | `model/fallback.rs` | any other graph, run by tract-onnx (golden rows required) |
//! | explanations | `model/shap.rs` | exact TreeSHAP: each sensor's contribution to a verdict's log-odds |
//! | verdict rule | `model/decide.rs` | the fixed threshold, or an alarm budget over the recent wafers |
//! | model card, reloads | `model/card.rs`, `model/live.rs`, `model/synthetic.rs` | the card's types; the serving model and its shadow, swapped atomically; synthetic rows |
//! | messages | `bus/messages.rs` | the verdict and dead-letter messages (also the API's result rows) |
//! | acknowledgements | `pipeline/ack.rs` | PUBACK / offset store once a batch's outputs are on the broker |
//! | periodic tasks | `pipeline/tasks.rs`, `pipeline/shutdown.rs` | drift, live quality, the model-file watch; the one stop signal |
//! | drift | `drift.rs` | recent rows vs the card's training distribution |
//! | late labels | `crates/rows/src/labels.rs`, `labels/reader.rs` | label messages, JSON and CSV → labels or the reason they are refused; the labels topic's reader |
//! | scored-row store | `store/mod.rs`, `store/settings.rs`, `store/writer.rs`, `store/segment.rs` | every scored row and label on disk (Arrow IPC), never blocking the fault stream; `[store]` checked; the writer thread |
//! | the join | `store/ledger.rs` | scored rows × labels in memory, bounded; the window live quality is computed over |
//! | live quality | `quality.rs` | ROC-AUC, PR-AUC, recall, false-alarm rate as scikit-learn defines them |
//! | HTTP | `web/mod.rs`, `api.rs`, `health.rs`, `score.rs`, `model.rs`, `quality.rs`, `page.rs` | the router and the token layer; `/healthz`, `/readyz`, `/metrics`; `POST /api/score`; the card, reload, promotion, drift; labels in, live quality and the recent stream out; the page |
//! | metrics | `metrics.rs` | every metric name and help text |
//! | `faultline score` | `score.rs` | CSV in, verdicts CSV out, in bounded batches; a file's checks (its labels' figures, its drift) for the CLI and `POST /api/score` |
//! | `faultline replay` | `replay.rs` | CSV → one JSON message per row |
//! | `faultline export` | `store/export.rs` | the store's labelled rows as a wafer batch file for training |
//!
//! `main.rs` only parses the command line and calls into these.

pub mod bus;
pub mod clock;
pub mod config;
pub mod drift;
pub mod labels;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod quality;
pub mod replay;
pub use faultline_rows as row;
pub mod score;
pub mod secret;
pub mod store;
pub mod web;
