//! Wiring for `faultline serve`: channels, tasks and shutdown. No logic of its own; each stage
//! lives in its own file:
//!
//! - admission (decode-ahead, the in-flight bound): [`crate::bus::admit`], called by every source;
//! - [`batch`]: micro-batches, flushed on size or age;
//! - [`scoring`]: the model and its shadow, drift, the store, verdicts and dead letters out;
//! - [`ack`]: acknowledging rows to their broker once their outputs are on it;
//! - [`tasks`]: drift, live quality and the model-file watch, periodically;
//! - [`shutdown`]: the one stop signal; [`error`](mod@error): why the daemon could not start or stopped.
//!
//! ```text
//! source ──Incoming──► batcher ──Vec<Incoming>──► scorer (blocking pool) ──► publisher ──► broker
//!   ▲                                                    │
//!   └──── PUBACK / offset store (acker, after the broker acknowledged the outputs) ◄──┘
//! ```
//!
//! The source and the publisher are on the same bus: MQTT (external or embedded) or Kafka.
//!
//! Every queue is bounded; the in-flight semaphore bounds rows read but not yet acknowledged.
//! When it is full the source stops reading and the broker holds the rest.

pub mod ack;
pub mod batch;
pub mod error;
pub mod scoring;
pub mod shutdown;
pub mod tasks;

use crate::bus::mqtt::publisher::MqttPublisher;
use crate::bus::mqtt::source::MqttSource;
use crate::bus::mqtt::MqttSettings;
use crate::bus::{now_rfc3339, Incoming, Publisher, Source, SourceOptions, MAX_PAYLOAD_BYTES};
use crate::config::{Bus, Config};
use crate::drift::{DriftReport, DriftWindow};
use crate::labels::reader::LabelsReader;
use crate::metrics::Metrics;
use crate::model::live::{LiveModel, ReloadStatus};
use crate::model::Model;
use crate::row::Schema;
use crate::store::Store;
use crate::web::{router, WebState};
use ack::{Acknowledger, Pending};
pub use error::AppError;
use scoring::{ScoringStage, Topics};
use shutdown::Shutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// A running daemon.
#[derive(Debug)]
pub struct App {
    /// Where the HTTP server listens (the real port when configured with port 0).
    pub web_addr: SocketAddr,
    /// Stops every task.
    stop: Shutdown,
    /// The pipeline's tasks, ended in order by [`App::shutdown`].
    source: Source,
    batcher: JoinHandle<()>,
    scorer: JoinHandle<Result<Publisher, AppError>>,
    acker: JoinHandle<()>,
    web: JoinHandle<()>,
    /// Shutdown grace period.
    grace: Duration,
    /// Set when the pipeline can no longer deliver; the daemon then stops with this reason.
    failure: watch::Receiver<Option<String>>,
    /// Set when the scoring stage ended by an error or a panic: nothing would be scored again.
    stage_failure: watch::Receiver<Option<String>>,
    /// The daemon's metrics (also served at `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Recomputes drift; ends on stop.
    drift_task: JoinHandle<()>,
    /// The model in service.
    model: LiveModel,
    /// Reloads the model when its files change; ends on stop.
    watch_task: Option<JoinHandle<()>>,
    /// Scored rows and labels, joined; on disk with `[store] dir`.
    store: Arc<Store>,
    /// Expires waiting labels and recomputes the quality gauges; ends on stop.
    quality_task: JoinHandle<()>,
    /// Reads `[labels] topic`, when set.
    labels: Option<LabelsReader>,
    /// Says once where rows are expected if none arrived soon after the start.
    idle_task: JoinHandle<bool>,
    /// The rows come through the embedded broker, which stops with faultline: what a drain
    /// leaves unacknowledged is lost, not redelivered.
    embedded_broker: bool,
}

/// Starts every part of `faultline serve`, returning once they run.
pub async fn start(config: &Config, model: Arc<Model>) -> Result<App, AppError> {
    let metrics = Arc::new(match config.bus {
        Bus::Kafka(_) => {
            Metrics::new().for_bus(crate::metrics::SOURCE_KAFKA, crate::metrics::SINK_KAFKA)
        }
        _ => Metrics::new().for_bus(crate::metrics::SOURCE_MQTT, crate::metrics::SINK_MQTT),
    });
    metrics.set_model(model.version(), model.threshold());
    // The runtime's own count: what the tasks really run on, whoever built it.
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    metrics.runtime_workers.set(workers as i64);
    info!(version = %model.version(), scorer = model.scorer(), "Loaded the model.");
    match config.policy().budget {
        None => {
            if let Some(note) = model.card().flag_share_note() {
                info!("Verdicts are by the fixed threshold; {note}.");
            }
        }
        Some(budget) => {
            if let Some(w) = budget.short_warmup() {
                warn!("{w}.");
            }
        }
    }
    if let Err(why) = model.explainable() {
        warn!(version = %model.version(), reason = %why, "Verdicts will carry no contributions: this model cannot be explained.");
    }
    let live = LiveModel::new(
        model.clone(),
        config.model_dir.clone(),
        config.policy(),
        Some(metrics.clone()),
    );
    if let Some(dir) = config.shadow_dir.clone() {
        let shadow = tokio::task::spawn_blocking(move || crate::model::Model::load_dir(&dir))
            .await
            .map_err(|e| AppError::Shadow(e.to_string()))?
            .map_err(|e| AppError::Shadow(e.to_string()))?;
        info!(version = %shadow.version(), origin = %shadow.origin(), "Loaded the shadow model; it scores every row beside the serving model.");
        // The shadow keeps its card's threshold (README, "Shadow model") but decides and
        // explains like the serving model.
        let policy = config.policy().for_other_model();
        live.set_shadow(Arc::new(shadow.with_policy(&policy)))
            .map_err(AppError::Shadow)?;
    }
    let store = {
        let (settings, features, m) = (
            config.store.clone(),
            model.features().to_vec(),
            metrics.clone(),
        );
        Arc::new(
            tokio::task::spawn_blocking(move || Store::open(settings, features, m))
                .await
                .map_err(|e| AppError::Pipeline(e.to_string()))??,
        )
    };
    let drift = Arc::new(std::sync::Mutex::new(DriftWindow::new(
        model.width(),
        config.drift_window_rows.get(),
    )));
    // Whether faultline runs its own broker (not one it found on the default address): then
    // rows not acknowledged at the end of the grace period are lost with it.
    let mut embedded_broker = false;
    if let Bus::Embedded {
        listen,
        use_existing,
        ..
    } = config.bus
    {
        embedded_broker = tokio::task::spawn_blocking(move || {
            // Twice faultline's limit, so that a message over it reaches faultline and its
            // dead-letter topic rather than being refused by the broker (which closes the
            // publisher's connection, and a publisher sending it again stalls there).
            crate::bus::mqtt::broker::start_or_use(listen, 2 * MAX_PAYLOAD_BYTES, use_existing)
        })
        .await
        .map_err(|e| AppError::Pipeline(e.to_string()))??;
    }
    let listener = tokio::net::TcpListener::bind(config.web_listen)
        .await
        .map_err(|e| AppError::Web(config.web_listen, e))?;
    let web_addr = listener
        .local_addr()
        .map_err(|e| AppError::Web(config.web_listen, e))?;

    let stop = Shutdown::default();
    let permits = config
        .queue_rows
        .get()
        .min(Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize) as u32;
    let in_flight = Arc::new(Semaphore::new(permits as usize));
    let (incoming_tx, incoming_rx) = mpsc::channel::<Incoming>(config.queue_rows.get().min(4096));
    let (batch_tx, batch_rx) = mpsc::channel::<Vec<Incoming>>(2);
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(config.queue_rows.get().min(4096));

    let options = SourceOptions {
        schema: Schema::new(model.features()),
        in_flight: in_flight.clone(),
        max_permits: permits,
        max_payload_bytes: MAX_PAYLOAD_BYTES,
        metrics: metrics.clone(),
        reader: crate::bus::admit::Reader::new(config.bus.mqtt().map(|m| &m.format)),
    };
    let (source, publisher) = connect(config, options, incoming_tx)?;
    let acked = publisher.acked();
    let failure = publisher.failure();
    let sink_link = publisher.link();
    let source_link = source.link();

    let batcher = tokio::spawn(batch::run(
        incoming_rx,
        batch_tx,
        config.batch,
        stop.subscribe().receiver(),
    ));
    let scoring = ScoringStage {
        live: live.clone(),
        topics: Topics {
            faults: config.faults_topic.clone(),
            scores: config.scores_topic.clone(),
            dead_letter: config.dead_letter_topic.clone(),
        },
        metrics: metrics.clone(),
        drift: drift.clone(),
        store: store.clone(),
        dead_letter_lines: Default::default(),
    };
    let (stage_failed, stage_failure) = watch::channel(None);
    let scorer = spawn_stage(
        "scoring",
        scoring.run(batch_rx, publisher, pending_tx),
        stage_failed,
    );
    let acknowledger = Acknowledger {
        acker: source.acker(),
        acked,
        in_flight,
        permits,
        metrics: metrics.clone(),
    };
    let acker = tokio::spawn(acknowledger.run(pending_rx));
    let drift_report = Arc::new(std::sync::RwLock::new(DriftReport::default()));
    let drift_task = tokio::spawn(tasks::recompute_drift(
        drift,
        drift_report.clone(),
        live.clone(),
        metrics.clone(),
        config.drift_interval,
        stop.subscribe(),
    ));
    let quality_task = tokio::spawn(tasks::refresh_quality(
        store.clone(),
        live.clone(),
        metrics.clone(),
        config.quality_interval,
        stop.subscribe(),
    ));
    let labels = match &config.labels_topic {
        None => None,
        Some(topic) => Some(start_labels(config, topic, store.clone(), metrics.clone())?),
    };
    let watch_task = config.model_watch.map(|every| {
        tokio::spawn(tasks::watch_model_files(
            live.clone(),
            every,
            stop.subscribe(),
        ))
    });
    let mut state = WebState::new(model, metrics.clone(), config.web_limits.clone());
    state.model = live.clone();
    state.source = source_link;
    state.sink = sink_link;
    state.labels = labels.as_ref().map(LabelsReader::link);
    state.drift = drift_report;
    state.allow_extra_columns = config.allow_extra_columns;
    state.store = Some(store.clone());
    let mut web_stop = stop.subscribe();
    let web = tokio::spawn(async move {
        let shutdown = async move { web_stop.wait().await };
        if let Err(e) = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            error!(error = %e, "The HTTP server failed.");
        }
    });
    let rows_at = config.bus.rows_address();
    match &config.bus {
        Bus::Kafka(k) => {
            info!(web = %web_addr, brokers = %k.brokers, topic = %k.topic, group = %k.group_id, "faultline is serving: publish rows to {rows_at}")
        }
        Bus::Embedded { mqtt, .. } | Bus::Mqtt(mqtt) => {
            info!(web = %web_addr, subscription = %mqtt.subscription(), "faultline is serving: publish rows to {rows_at}")
        }
    }
    let idle_task = tokio::spawn(tasks::say_if_idle(
        metrics.clone(),
        IDLE_AFTER,
        rows_at,
        config.bus.replay_hint(),
        stop.subscribe(),
    ));
    Ok(App {
        web_addr,
        stop,
        source,
        batcher,
        scorer,
        acker,
        web,
        grace: config.grace,
        failure,
        stage_failure,
        metrics,
        drift_task,
        model: live,
        watch_task,
        store,
        quality_task,
        labels,
        idle_task,
        embedded_broker,
    })
}

/// Runs a stage of the pipeline as a task; its end by an error or a panic is also said on
/// `failed`, so that the daemon stops with the reason instead of running on with nothing
/// scored (the publisher's own failures have their channel; a stage can end otherwise).
fn spawn_stage<T: Send + 'static>(
    name: &'static str,
    stage: impl std::future::Future<Output = Result<T, AppError>> + Send + 'static,
    failed: watch::Sender<Option<String>>,
) -> JoinHandle<Result<T, AppError>> {
    let inner = tokio::spawn(stage);
    tokio::spawn(async move {
        let result = match inner.await {
            Ok(result) => result,
            Err(e) => Err(AppError::Pipeline(format!(
                "the {name} stage panicked: {e}"
            ))),
        };
        if let Err(e) = &result {
            failed.send_replace(Some(format!("the {name} stage stopped: {e}")));
        }
        result
    })
}

/// How long `serve` waits for its first row before saying, once, where it listens.
const IDLE_AFTER: Duration = Duration::from_secs(60);

/// The labels reader on the configured bus.
fn start_labels(
    config: &Config,
    topic: &str,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
) -> Result<LabelsReader, AppError> {
    let mqtt = match &config.bus {
        #[cfg(feature = "kafka")]
        Bus::Kafka(k) => {
            return crate::labels::reader::start_kafka(
                k,
                config.labels_group.clone().ok_or_else(|| {
                    AppError::Kafka("no consumer group was chosen for the labels".into())
                })?,
                topic.to_string(),
                config.dead_letter_topic.clone(),
                store,
                metrics,
            )
            .map_err(|e| AppError::Kafka(e.to_string()));
        }
        other => mqtt_settings(other)?,
    };
    let transport = crate::bus::mqtt::tls::transport(mqtt.tls.as_ref())?;
    Ok(crate::labels::reader::start_mqtt(
        mqtt,
        transport,
        topic.to_string(),
        config.dead_letter_topic.clone(),
        store,
        metrics,
    ))
}

/// The source and the publisher for the configured bus.
fn connect(
    config: &Config,
    options: SourceOptions,
    incoming: mpsc::Sender<Incoming>,
) -> Result<(Source, Publisher), AppError> {
    let mqtt = match &config.bus {
        #[cfg(feature = "kafka")]
        Bus::Kafka(k) => {
            let kafka = |e: rdkafka::error::KafkaError| AppError::Kafka(e.to_string());
            let counters = crate::bus::kafka::publisher::Counters {
                resent: Some(
                    options
                        .metrics
                        .outputs_resent
                        .with_label_values(&[crate::metrics::SINK_KAFKA]),
                ),
                failed: Some(
                    options
                        .metrics
                        .publish_errors
                        .with_label_values(&[crate::metrics::SINK_KAFKA]),
                ),
            };
            let outputs: Vec<&str> = [&config.faults_topic, &config.dead_letter_topic]
                .into_iter()
                .chain(&config.scores_topic)
                .map(String::as_str)
                .collect();
            let publisher = crate::bus::kafka::publisher::KafkaPublisher::start(
                k,
                MAX_PAYLOAD_BYTES + 1024,
                counters,
                &outputs,
                None,
            )
            .map_err(kafka)?;
            let source = crate::bus::kafka::source::KafkaSource::start(k, options, incoming)
                .map_err(kafka)?;
            return Ok((Source::Kafka(source), Publisher::Kafka(publisher)));
        }
        other => mqtt_settings(other)?,
    };
    let transport = crate::bus::mqtt::tls::transport(mqtt.tls.as_ref())?;
    let sessions_lost = options
        .metrics
        .broker_session_lost
        .with_label_values(&["publisher"]);
    let publisher = MqttPublisher::start(
        mqtt,
        transport.clone(),
        MAX_PAYLOAD_BYTES + 1024,
        Some(sessions_lost),
    );
    let source = MqttSource::start(mqtt, transport, options, incoming);
    Ok((Source::Mqtt(source), Publisher::Mqtt(publisher)))
}

/// The MQTT settings of an MQTT bus; a Kafka bus in a build without Kafka cannot get past the
/// configuration's checks, so this refusal is only a guard.
fn mqtt_settings(bus: &Bus) -> Result<&MqttSettings, AppError> {
    bus.mqtt()
        .ok_or_else(|| AppError::Kafka("this build of faultline was compiled without Kafka".into()))
}

impl App {
    /// Reloads the model from `[model] dir` (see [`LiveModel::reload`]).
    pub async fn reload_model(&self, trigger: &str) -> ReloadStatus {
        let (live, trigger) = (self.model.clone(), trigger.to_string());
        match tokio::task::spawn_blocking(move || live.reload(&trigger)).await {
            Ok(status) => status,
            Err(e) => ReloadStatus {
                at: now_rfc3339(),
                trigger: "reload".into(),
                ok: false,
                version: self.model.current().version().to_string(),
                previous_version: self.model.current().version().to_string(),
                error: Some(format!("the reload panicked: {e}")),
                shadow_version: None,
            },
        }
    }

    /// The model in service.
    pub fn model(&self) -> Arc<Model> {
        self.model.current()
    }

    /// Resolves with the reason when the pipeline fails for good (never, while all is well): the
    /// publisher cannot deliver, the scoring stage ended, labels can no longer be applied, or
    /// the source's Kafka consumer failed for good.
    pub async fn failed(&self) -> String {
        let wait = |mut failure: watch::Receiver<Option<String>>| async move {
            match failure.wait_for(|f| f.is_some()).await {
                Ok(f) => f.clone(),
                Err(_) => None,
            }
        };
        let optional = |failure: Option<watch::Receiver<Option<String>>>| async move {
            match failure {
                Some(failure) => wait(failure).await,
                None => None,
            }
        };
        tokio::select! {
            Some(reason) = wait(self.failure.clone()) => reason,
            Some(reason) = wait(self.stage_failure.clone()) => reason,
            Some(reason) = optional(self.labels.as_ref().map(LabelsReader::failure)) => reason,
            Some(reason) = optional(self.source.failure()) => reason,
            else => std::future::pending().await,
        }
    }

    /// Stops reading, scores and publishes what was accepted, acknowledges it, and stops every
    /// task. The grace period bounds the drain and the closing of the bus connections (final
    /// flush and offset commit) together; closing gets at least [`CLOSE_AT_LEAST`] when the drain
    /// used the whole period. What was not acknowledged is redelivered later.
    pub async fn shutdown(self) -> Result<(), AppError> {
        info!("Stopping: no new rows; finishing the ones in flight.");
        self.source.stop_reading();
        self.stop.trigger();
        let (grace, embedded) = (self.grace, self.embedded_broker);
        let deadline = tokio::time::Instant::now() + grace;
        let drain = async {
            let _ = self.batcher.await;
            let publisher = self
                .scorer
                .await
                .map_err(|e| AppError::Pipeline(e.to_string()))??;
            let _ = self.acker.await;
            Ok::<_, AppError>(publisher)
        };
        let (result, publisher) = match tokio::time::timeout_at(deadline, drain).await {
            Ok(Ok(publisher)) => (Ok(()), Some(publisher)),
            Ok(Err(e)) => (Err(e), None),
            Err(_) => {
                if embedded {
                    warn!(grace_ms = grace.as_millis() as u64, "The grace period ended before every row was acknowledged; the embedded broker stops with faultline, so the rest are lost.");
                } else {
                    warn!(grace_ms = grace.as_millis() as u64, "The grace period ended before every row was acknowledged; the broker will redeliver the rest.");
                }
                (Ok(()), None)
            }
        };
        // A broker that is gone can hold a flush or a commit for as long as its client's
        // timeouts (librdkafka's commit waits for the group coordinator): bounded here.
        let close_by = deadline.max(tokio::time::Instant::now() + CLOSE_AT_LEAST);
        // Together, and in a task of their own: one that waits on a broker holds none of the
        // others, and what is left of them at the deadline is not waited for (nor dropped here:
        // dropping a Kafka client blocks while it closes).
        let labels = self.labels;
        let source = self.source;
        let close = tokio::spawn(async move {
            tokio::join!(
                async {
                    if let Some(publisher) = publisher {
                        publisher.close().await;
                    }
                },
                source.close(),
                async {
                    if let Some(labels) = labels {
                        labels.close().await;
                    }
                },
            );
        });
        if tokio::time::timeout_at(close_by, close).await.is_err() {
            warn!(grace_ms = grace.as_millis() as u64, "The broker did not let faultline close its connections within the grace period; stopping without them (rows whose acknowledgement did not reach it are delivered again).");
        }
        // The store's last writes and fsyncs, and the periodic tasks (a model reload may be
        // under way in the watch), within the same bound: on a slow or hung disk the daemon
        // still stops when README says, as a supervisor sized to it expects. What the store had
        // not written is lost as under kill -9 (the store reads back what is whole); those rows'
        // verdicts were published already.
        let store = self.store.clone();
        let closing = tokio::task::spawn_blocking(move || store.close());
        if tokio::time::timeout_at(close_by, closing).await.is_err() {
            warn!(grace_ms = grace.as_millis() as u64, "The store did not finish writing within the grace period; stopping without it (the rows and labels it had not written are not kept; their verdicts were published).");
        }
        end_task("quality", self.quality_task, close_by, grace).await;
        end_task("drift", self.drift_task, close_by, grace).await;
        end_task("idle", self.idle_task, close_by, grace).await;
        if let Some(task) = self.watch_task {
            end_task("model watch", task, close_by, grace).await;
        }
        // The HTTP server stopped taking requests at the start; one still open (a slow upload,
        // a client that stopped sending) is cut off with the bus connections' bound, not waited
        // for without end.
        let mut web = self.web;
        if tokio::time::timeout_at(close_by, &mut web).await.is_err() {
            web.abort();
            warn!(
                grace_ms = grace.as_millis() as u64,
                "An HTTP request was still open at the end of the grace period; it was cut off."
            );
        }
        info!("Stopped.");
        result
    }
}

/// Waits for a periodic task, told to stop already, until `close_by` (and a moment more, even
/// when the store took the period); aborts it, saying so, if it is still busy then.
async fn end_task<T>(
    name: &str,
    mut task: JoinHandle<T>,
    close_by: tokio::time::Instant,
    grace: Duration,
) {
    let by = close_by.max(tokio::time::Instant::now() + TASK_END_AT_LEAST);
    if tokio::time::timeout_at(by, &mut task).await.is_err() {
        task.abort();
        warn!(task = name, grace_ms = grace.as_millis() as u64, "A task was still busy at the end of the grace period (a model reload, a drift report); stopped without it.");
    }
}

/// How long a periodic task, told to stop, may take to end after the grace period.
const TASK_END_AT_LEAST: Duration = Duration::from_millis(100);

/// How long closing the bus connections may take after a drain that used the whole grace period.
pub const CLOSE_AT_LEAST: Duration = Duration::from_secs(1);

/// Runs the daemon until `shutdown` resolves, then stops it gracefully.
pub async fn run(
    config: Config,
    model: Arc<Model>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    // Listening for SIGHUP before the web port opens: from then on a SIGHUP reloads the model
    // (its default action would end the process), and one that comes during a reload is kept.
    let mut hangups = Hangups::listen();
    tokio::pin!(shutdown);
    // Asked to stop while starting (loading a shadow model, reading back the store): start()
    // waits only before any source or task runs, so nothing was read and nothing is lost.
    let app = tokio::select! {
        app = start(&config, model) => app?,
        _ = &mut shutdown => {
            info!("Stopped while starting, before reading any row.");
            return Ok(());
        }
    };
    let failure = loop {
        tokio::select! {
            _ = &mut shutdown => break None,
            reason = app.failed() => break Some(reason),
            _ = hangups.next() => {
                // A reload takes seconds (the graph compiled, the golden rows scored): a signal to
                // stop, or a stage failing, is not kept waiting for it. (One abandoned runs on in
                // its thread and may still swap the model in during the drain.)
                info!("SIGHUP: reloading the model from [model] dir.");
                tokio::select! {
                    _ = app.reload_model("SIGHUP") => {}
                    _ = &mut shutdown => break None,
                    reason = app.failed() => break Some(reason),
                }
            }
        }
    };
    let result = app.shutdown().await;
    match failure {
        Some(reason) => Err(AppError::Pipeline(reason)),
        None => result,
    }
}

/// The process's SIGHUPs (none on platforms without them, or if the handler cannot be set).
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn listen() -> Hangups {
        Hangups {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Resolves on the next SIGHUP (one that came since the last call resolves at once).
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = &mut self.signal {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stage_that_panics_or_fails_says_so_and_one_that_ends_well_does_not() {
        let (failed, mut failure) = watch::channel(None);
        let panics = spawn_stage::<()>("test", async { panic!("a bug") }, failed);
        let e = panics.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("the test stage panicked"), "{e}");
        let said = failure.wait_for(|f| f.is_some()).await.unwrap().clone();
        assert!(said.unwrap().starts_with("the test stage stopped"));

        let (failed, failure) = watch::channel(None);
        let fails = spawn_stage::<()>(
            "test",
            async { Err(AppError::Pipeline("no way on".into())) },
            failed,
        );
        assert!(fails.await.unwrap().is_err());
        assert!(failure.borrow().as_ref().unwrap().contains("no way on"));

        let (failed, mut failure) = watch::channel(None);
        let ends = spawn_stage("test", async { Ok(7) }, failed);
        assert_eq!(ends.await.unwrap().unwrap(), 7);
        // The sender is gone without a word: nothing to wait for.
        assert!(failure.wait_for(|f| f.is_some()).await.is_err());
    }
}
