//! Wiring for `faultline serve`: channels, tasks and shutdown. No logic of its own.
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

use crate::config::{Config, SourceKind};
use crate::drift::{DriftReport, DriftWindow};
use crate::metrics::Metrics;
use crate::model::live::{LiveModel, ReloadStatus};
use crate::model::{Model, Rule};
use crate::row::Schema;
use crate::sink::mqtt::MqttPublisher;
use crate::sink::{now_rfc3339, DeadLetter, Output, Publisher, VerdictMessage};
use crate::source::labels::LabelsReader;
use crate::source::mqtt::MqttSource;
use crate::source::{Ack, Incoming, Source, SourceOptions};
use crate::store::segment::ScoredBatch;
use crate::store::Store;
use crate::web::{router, WebState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// Largest message accepted from the bus (a JSON array of rows).
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    /// The web address could not be bound.
    #[error("cannot listen for HTTP on {0}: {1}; set [web] listen (FAULTLINE_WEB__LISTEN) to a free address")]
    Web(SocketAddr, std::io::Error),
    /// A pipeline task failed.
    #[error("the pipeline stopped: {0}")]
    Pipeline(String),
    /// The MQTT TLS files are not usable.
    #[error("cannot set up TLS for MQTT: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The shadow model cannot run.
    #[error(
        "cannot run the shadow model: {0}; fix or empty [shadow] model (FAULTLINE_SHADOW__MODEL)"
    )]
    Shadow(String),
    /// The Kafka client could not be created (a property librdkafka refuses, say).
    #[error(
        "cannot start the Kafka client: {0}; check [source.kafka] (FAULTLINE_SOURCE__KAFKA__*)"
    )]
    Kafka(String),
}

/// A batch scored and published, waiting for the broker's acknowledgements.
struct Pending {
    /// The publisher's sequence number of the batch's last output.
    seq_end: u64,
    /// What to acknowledge, and the in-flight permits to release, once `seq_end` is acknowledged.
    /// Each with when its message arrived and how many rows it held (for latency).
    acks: Vec<(Ack, Option<OwnedSemaphorePermit>, std::time::Instant, usize)>,
}

/// A running daemon.
#[derive(Debug)]
pub struct App {
    /// Where the HTTP server listens (the real port when configured with port 0).
    pub web_addr: SocketAddr,
    /// Turns true to stop.
    stop: watch::Sender<bool>,
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
}

/// Starts every part of `faultline serve`, returning once they run.
pub async fn start(config: &Config, model: Arc<Model>) -> Result<App, AppError> {
    let metrics = Arc::new(match config.source {
        SourceKind::Kafka => {
            Metrics::new().for_bus(crate::metrics::SOURCE_KAFKA, crate::metrics::SINK_KAFKA)
        }
        _ => Metrics::new().for_bus(crate::metrics::SOURCE_MQTT, crate::metrics::SINK_MQTT),
    });
    metrics.set_model(model.version(), model.threshold());
    info!(version = %model.version(), scorer = model.scorer(), "Loaded the model.");
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
        // The shadow keeps its card's threshold (as documented) but decides and explains like the
        // serving model, so a promotion changes the model and nothing else.
        let policy = crate::model::Policy {
            threshold: None,
            ..config.policy()
        };
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
                .map_err(|e| AppError::Pipeline(e.to_string()))?,
        )
    };
    let drift = Arc::new(std::sync::Mutex::new(DriftWindow::new(
        model.width(),
        config.drift_window_rows.get(),
    )));
    if config.source == SourceKind::Embedded {
        let listen = config.broker_listen;
        tokio::task::spawn_blocking(move || crate::broker::start(listen, MAX_PAYLOAD_BYTES))
            .await
            .map_err(|e| AppError::Pipeline(e.to_string()))??;
    }
    let listener = tokio::net::TcpListener::bind(config.web_listen)
        .await
        .map_err(|e| AppError::Web(config.web_listen, e))?;
    let web_addr = listener
        .local_addr()
        .map_err(|e| AppError::Web(config.web_listen, e))?;

    let (stop, stop_rx) = watch::channel(false);
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
    };
    let (source, publisher) = connect(config, options, incoming_tx)?;
    let acked = publisher.acked();
    let failure = publisher.failure();
    let sink_link = publisher.link();
    let source_link = source.link();
    let acker_client = source.acker();

    let batcher = tokio::spawn(crate::batch::run(
        incoming_rx,
        batch_tx,
        config.batch,
        stop_rx.clone(),
    ));
    let topics = Topics {
        faults: config.faults_topic.clone(),
        scores: config.scores_topic.clone(),
        dead_letter: config.dead_letter_topic.clone(),
    };
    let scorer = tokio::spawn(score_batches(
        batch_rx,
        publisher,
        pending_tx,
        live.clone(),
        topics,
        metrics.clone(),
        Keep {
            drift: drift.clone(),
            store: store.clone(),
        },
    ));
    let m = metrics.clone();
    let acker_in_flight = in_flight.clone();
    let acker = tokio::spawn(async move {
        let mut pending_rx = pending_rx;
        let mut acked = acked;
        let mut acker_client = acker_client;
        let mut retry = tokio::time::interval(Duration::from_millis(5));
        loop {
            let p = tokio::select! {
                p = pending_rx.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                _ = retry.tick(), if acker_client.has_waiting() => {
                    acker_client.flush();
                    continue;
                }
            };
            if acked.wait_for(|a| *a >= p.seq_end).await.is_err() {
                return;
            }
            for (ack, permit, received, rows) in p.acks {
                acker_client.ack(ack);
                drop(permit);
                let latency = received.elapsed().as_secs_f64();
                for _ in 0..rows {
                    m.row_latency.observe(latency);
                }
            }
            m.queue_rows
                .set(permits as i64 - acker_in_flight.available_permits() as i64);
        }
        // Shutting down: hand over what still waits (the source disconnects after this).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while acker_client.has_waiting() && tokio::time::Instant::now() < deadline {
            acker_client.flush();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    // Drift: recomputed off the runtime every interval, never per scrape.
    let drift_report = Arc::new(std::sync::RwLock::new(DriftReport::default()));
    let drift_task = {
        let (window, report, metrics, live) = (
            drift.clone(),
            drift_report.clone(),
            metrics.clone(),
            live.clone(),
        );
        let stop = stop_rx.clone();
        let interval = config.drift_interval;
        tokio::spawn(async move {
            let mut tick = Ticker::new(interval, stop);
            while tick.next().await {
                let (window, model) = (window.clone(), live.current());
                let computed = tokio::task::spawn_blocking(move || {
                    let snapshot = window.lock().map(|w| w.clone()).ok()?;
                    Some(snapshot.report(model.card()))
                })
                .await;
                if let Ok(Some(r)) = computed {
                    metrics.set_drift(&r);
                    if let Ok(mut slot) = report.write() {
                        *slot = r;
                    }
                }
            }
        })
    };
    let quality_task = tokio::spawn(refresh_quality(
        store.clone(),
        live.clone(),
        metrics.clone(),
        config.quality_interval,
        stop_rx.clone(),
    ));
    let labels = match &config.labels_topic {
        None => None,
        Some(topic) => Some(start_labels(config, topic, store.clone(), metrics.clone())?),
    };
    let watch_task = config
        .model_watch
        .map(|every| tokio::spawn(watch_model_files(live.clone(), every, stop_rx.clone())));
    let mut state = WebState::new(model, metrics.clone(), config.web_limits.clone());
    state.model = live.clone();
    state.source = source_link;
    state.sink = sink_link;
    state.drift = drift_report;
    state.allow_extra_columns = config.allow_extra_columns;
    state.store = Some(store.clone());
    let mut web_stop = stop_rx.clone();
    let web = tokio::spawn(async move {
        let shutdown = async move {
            let _ = web_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await
        {
            error!(error = %e, "The HTTP server failed.");
        }
    });
    match &config.kafka {
        Some(k) => {
            info!(web = %web_addr, brokers = %k.brokers, topic = %k.topic, group = %k.group_id, "faultline is serving.")
        }
        None => {
            info!(web = %web_addr, subscription = %config.mqtt.subscription(), "faultline is serving.")
        }
    }
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
        metrics,
        drift_task,
        model: live,
        watch_task,
        store,
        quality_task,
        labels,
    })
}

/// The labels reader on the configured bus.
fn start_labels(
    config: &Config,
    topic: &str,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
) -> Result<LabelsReader, AppError> {
    #[cfg(feature = "kafka")]
    if let Some(k) = &config.kafka {
        return crate::source::labels::start_kafka(
            k,
            topic.to_string(),
            config.dead_letter_topic.clone(),
            store,
            metrics,
        )
        .map_err(|e| AppError::Kafka(e.to_string()));
    }
    let transport = crate::tls::transport(config.mqtt.tls.as_ref())?;
    Ok(crate::source::labels::start_mqtt(
        &config.mqtt,
        transport,
        topic.to_string(),
        config.dead_letter_topic.clone(),
        store,
        metrics,
    ))
}

/// The beat of a periodic background task: ticks every `every` until the daemon stops.
struct Ticker {
    interval: tokio::time::Interval,
    stop: watch::Receiver<bool>,
}

impl Ticker {
    fn new(every: Duration, stop: watch::Receiver<bool>) -> Ticker {
        let mut interval = tokio::time::interval(every);
        // A slow round delays the next instead of bunching them up.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker { interval, stop }
    }

    /// Waits for the next tick; false once the daemon is stopping.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.interval.tick() => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }
}

/// Expires labels that waited too long and recomputes the quality gauges of both models.
async fn refresh_quality(
    store: Arc<Store>,
    live: LiveModel,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut tick = Ticker::new(every, stop);
    while tick.next().await {
        store.expire();
        let (serving, shadow) = live.both();
        let ledger = store.ledger();
        metrics.set_quality(
            crate::metrics::MODEL_SERVING,
            &ledger.quality(serving.version(), serving.threshold()),
        );
        if let Some(s) = shadow {
            metrics.set_quality(
                crate::metrics::MODEL_SHADOW,
                &ledger.quality(s.version(), s.threshold()),
            );
        }
    }
}

/// Reloads the model when the files in its directory change (size or modification time).
async fn watch_model_files(live: LiveModel, every: Duration, stop: watch::Receiver<bool>) {
    let mut seen = live.fingerprint();
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

/// The source and the publisher for the configured bus.
fn connect(
    config: &Config,
    options: SourceOptions,
    incoming: mpsc::Sender<Incoming>,
) -> Result<(Source, Publisher), AppError> {
    #[cfg(feature = "kafka")]
    if let Some(k) = &config.kafka {
        let kafka = |e: rdkafka::error::KafkaError| AppError::Kafka(e.to_string());
        let publisher = crate::sink::kafka::KafkaPublisher::start(k, MAX_PAYLOAD_BYTES + 1024)
            .map_err(kafka)?;
        let source =
            crate::source::kafka::KafkaSource::start(k, options, incoming).map_err(kafka)?;
        return Ok((Source::Kafka(source), Publisher::Kafka(publisher)));
    }
    let transport = crate::tls::transport(config.mqtt.tls.as_ref())?;
    let publisher = MqttPublisher::start(&config.mqtt, transport.clone(), MAX_PAYLOAD_BYTES + 1024);
    let source = MqttSource::start(&config.mqtt, transport, options, incoming);
    Ok((Source::Mqtt(source), Publisher::Mqtt(publisher)))
}

/// What remembers scored rows besides the bus: the drift window and the store.
struct Keep {
    drift: Arc<std::sync::Mutex<DriftWindow>>,
    store: Arc<Store>,
}

/// Where outputs go.
struct Topics {
    faults: String,
    scores: Option<String>,
    dead_letter: String,
}

/// Scores each batch off the runtime, publishes its outputs and hands its acknowledgements on.
async fn score_batches(
    mut batches: mpsc::Receiver<Vec<Incoming>>,
    mut publisher: Publisher,
    pending: mpsc::Sender<Pending>,
    live: LiveModel,
    topics: Topics,
    metrics: Arc<Metrics>,
    keep: Keep,
) -> Result<Publisher, AppError> {
    let Keep { drift, store } = keep;
    let sink = publisher.label();
    // The alarm budget's window of recent scores lives as long as the stream (across reloads).
    let mut decider = live.current().decider();
    let pipeline = |e: crate::sink::PublishError| {
        metrics.publish_errors.with_label_values(&[sink]).inc();
        AppError::Pipeline(e.to_string())
    };
    while let Some(mut batch) = batches.recv().await {
        // Rows per message, counted before the rows move into the scoring batch.
        let counts: Vec<usize> = batch.iter().map(crate::batch::Rows::rows).collect();
        // One model per batch (and its shadow): a reload or promotion takes effect between batches.
        let (model, shadow) = live.both();
        let mut rows = crate::row::RowBatch::new(model.width());
        for incoming in &mut batch {
            rows.append(std::mem::take(&mut incoming.decoded.rows));
        }
        let m = model.clone();
        let n = rows.len();
        let window = drift.clone();
        let store = store.clone();
        let mut d = std::mem::replace(&mut decider, crate::model::Decider::new(None));
        let (verdicts, seconds, d) = tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            let v = m.score_with(&rows, &mut d);
            let seconds = t.elapsed().as_secs_f64();
            let probs: Vec<f32> = v.iter().map(|v| v.probability).collect();
            if let Ok(mut w) = window.lock() {
                w.push(&rows.values, &probs);
            }
            let shadow = shadow.map(|s| {
                let mut p = vec![0.0; rows.len()];
                s.probabilities(&rows.values, &mut p);
                (Arc::from(s.version()), p)
            });
            if !rows.is_empty() {
                store.record_scored(ScoredBatch {
                    faults: v.iter().map(|v| v.fault).collect(),
                    probabilities: probs,
                    version: Arc::from(m.version()),
                    shadow,
                    width: rows.width,
                    ids: rows.ids,
                    values: rows.values,
                    at_ms: crate::store::now_ms(),
                });
            }
            (v, seconds, d)
        })
        .await
        .map_err(|e| AppError::Pipeline(format!("scoring panicked: {e}")))?;
        decider = d;
        if n > 0 {
            metrics.batch_rows.observe(n as f64);
            metrics.score_seconds.observe(seconds);
            metrics.rows_scored.inc_by(n as u64);
            metrics
                .faults
                .inc_by(verdicts.iter().filter(|v| v.fault).count() as u64);
            // One counter update per rule and batch, not per row.
            for rule in [Rule::Threshold, Rule::AlarmRate, Rule::Warmup] {
                let k = verdicts.iter().filter(|v| v.rule == rule).count();
                if k > 0 {
                    metrics
                        .verdicts
                        .with_label_values(&[rule.as_str()])
                        .inc_by(k as u64);
                }
            }
            if let Some(last) = verdicts.last() {
                metrics.model_threshold.set(last.threshold as f64);
            }
        }
        let scored_at = now_rfc3339();
        for v in &verdicts {
            let message = serde_json::to_vec(&VerdictMessage::new(v, &model, &scored_at))
                .map_err(|e| AppError::Pipeline(e.to_string()))?;
            let output = |topic, payload| Output {
                topic,
                key: Some(&v.id),
                model_version: Some(model.version()),
                payload,
            };
            if let Some(scores) = &topics.scores {
                publisher
                    .publish(output(scores, message.clone()))
                    .await
                    .map_err(pipeline)?;
            }
            if v.fault {
                publisher
                    .publish(output(&topics.faults, message))
                    .await
                    .map_err(pipeline)?;
            }
        }
        let mut acks = Vec::with_capacity(batch.len());
        for incoming in batch {
            for reject in &incoming.decoded.rejects {
                let letter = DeadLetter {
                    error: &reject.error,
                    reason: reject.reason.as_str(),
                    payload: &reject.payload,
                    topic: &incoming.topic,
                    received_at: &incoming.received_at,
                };
                metrics
                    .rows_dead_lettered
                    .with_label_values(&[reject.reason.as_str()])
                    .inc();
                warn!(topic = %incoming.topic, reason = reject.reason.as_str(), error = %reject.error, "Sent an unreadable row to the dead-letter topic.");
                let message =
                    serde_json::to_vec(&letter).map_err(|e| AppError::Pipeline(e.to_string()))?;
                publisher
                    .publish(Output {
                        topic: &topics.dead_letter,
                        key: None,
                        model_version: None,
                        payload: message,
                    })
                    .await
                    .map_err(pipeline)?;
            }
            acks.push((
                incoming.ack,
                incoming.permit,
                incoming.received,
                counts[acks.len()],
            ));
        }
        if pending
            .send(Pending {
                seq_end: publisher.sent(),
                acks,
            })
            .await
            .is_err()
        {
            break;
        }
    }
    Ok(publisher)
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
            },
        }
    }

    /// The model in service.
    pub fn model(&self) -> Arc<Model> {
        self.model.current()
    }

    /// Resolves with the reason when the pipeline fails for good (never, while all is well).
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.clone();
        let reason = match failure.wait_for(|f| f.is_some()).await {
            Ok(f) => f.clone(),
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Stops reading, scores and publishes what was accepted, acknowledges it, and stops every
    /// task; gives up after the grace period (unacknowledged rows are redelivered later).
    pub async fn shutdown(self) -> Result<(), AppError> {
        info!("Stopping: no new rows; finishing the ones in flight.");
        self.source.stop_reading();
        self.stop.send_replace(true);
        let grace = self.grace;
        let drain = async {
            let _ = self.batcher.await;
            let publisher = self
                .scorer
                .await
                .map_err(|e| AppError::Pipeline(e.to_string()))??;
            let _ = self.acker.await;
            Ok::<_, AppError>(publisher)
        };
        let result = match tokio::time::timeout(grace, drain).await {
            Ok(Ok(publisher)) => {
                publisher.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                warn!(grace_ms = grace.as_millis() as u64, "The grace period ended before every row was acknowledged; the broker will redeliver the rest.");
                Ok(())
            }
        };
        self.source.close().await;
        if let Some(labels) = self.labels {
            labels.close().await;
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        let _ = self.quality_task.await;
        let _ = self.drift_task.await;
        if let Some(task) = self.watch_task {
            let _ = task.await;
        }
        let _ = self.web.await;
        info!("Stopped.");
        result
    }
}

/// Runs the daemon until `shutdown` resolves, then stops it gracefully.
pub async fn run(
    config: Config,
    model: Arc<Model>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    let app = start(&config, model).await?;
    tokio::pin!(shutdown);
    let failure = loop {
        tokio::select! {
            _ = &mut shutdown => break None,
            reason = app.failed() => break Some(reason),
            _ = hangup() => {
                app.reload_model("SIGHUP").await;
            }
        }
    };
    let result = app.shutdown().await;
    match failure {
        Some(reason) => Err(AppError::Pipeline(reason)),
        None => result,
    }
}

/// Resolves on each SIGHUP (never on platforms without it).
async fn hangup() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut s) = signal(SignalKind::hangup()) {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}
