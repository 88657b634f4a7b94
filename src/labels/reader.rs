//! Labels from the bus: `[labels] topic`, read at least once beside the rows.
//!
//! Every instance reads every label (the row it belongs to may have been scored by any of them):
//! on MQTT a plain subscription of a client `<client_id>-labels` with a persistent session, on
//! Kafka a consumer group of its own (`[labels] group_id`, by default `<group_id>.labels.<host>`;
//! the reader warns when another consumer shares it). A label message is acknowledged (PUBACK,
//! or its offset stored) after it was applied to the store and written to disk (a `kill -9`
//! keeps it), in the order the messages came, or, when it cannot be read, after its dead letter
//! was acknowledged by the broker.
//!
//! ```text
//! reader (MQTT event loop | Kafka consumer) ──LabelMessage──► apply ──► Store::record_labels
//!                                                               └──► dead-letter topic
//! ```

use crate::bus::messages::{now_rfc3339, DeadLetter};
use crate::bus::mqtt::driver::{Driver, Role, Step};
use crate::bus::MqttAcker;
use crate::bus::{Output, Publisher};
use crate::metrics::Metrics;
use crate::store::{Store, Written};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Label messages read but not yet applied.
const QUEUE: usize = 256;

/// How a label message is acknowledged once applied.
enum LabelAck {
    /// The message and the number of the connection it arrived on.
    Mqtt(rumqttc::Publish, u64),
    #[cfg(feature = "kafka")]
    Kafka(KafkaConsumer, String, i32, i64),
}

struct LabelMessage {
    payload: Vec<u8>,
    topic: String,
    ack: LabelAck,
}

/// A running labels reader.
pub struct LabelsReader {
    reader: tokio::task::JoinHandle<()>,
    apply: tokio::task::JoinHandle<Publisher>,
    /// Set when labels can no longer be applied (their dead letters cannot be published).
    failure: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    on_stop: Option<rumqttc::AsyncClient>,
    link: crate::bus::link::Link,
    /// The Kafka consumer, dropped off the runtime once the tasks end (its close blocks).
    #[cfg(feature = "kafka")]
    consumer: Option<KafkaConsumer>,
}

#[cfg(feature = "kafka")]
type KafkaConsumer = Arc<rdkafka::consumer::StreamConsumer<crate::bus::kafka::client::Context>>;

/// A label read from Kafka, with how to acknowledge it.
#[cfg(feature = "kafka")]
fn kafka_label(
    consumer: &KafkaConsumer,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> LabelMessage {
    use rdkafka::Message;
    LabelMessage {
        payload: m.payload().unwrap_or_default().to_vec(),
        topic: m.topic().to_string(),
        ack: LabelAck::Kafka(
            consumer.clone(),
            m.topic().to_string(),
            m.partition(),
            m.offset(),
        ),
    }
}

/// Hands `message` to the labels' applier; false when stopping. While there is no room (labels
/// whose dead letters the cluster holds, a failing disk), the consumer is still polled, its
/// partitions paused, as the rows source's is: librdkafka takes a consumer not polled for
/// `max.poll.interval.ms` for stuck and leaves the group, which then reads every label since the
/// last commit again. What a poll brings meanwhile (from a partition assigned since the pause)
/// waits in `held`, in order.
#[cfg(feature = "kafka")]
#[allow(clippy::too_many_arguments)]
async fn send_polling(
    tx: &mpsc::Sender<LabelMessage>,
    message: LabelMessage,
    consumer: &KafkaConsumer,
    paused: &mut crate::bus::kafka::client::Paused,
    held: &mut std::collections::VecDeque<LabelMessage>,
    errors: &mut crate::bus::kafka::client::ReadErrors,
    topic: &str,
    stopped: &mut watch::Receiver<bool>,
) -> bool {
    let permit = match tx.try_reserve() {
        Ok(permit) => {
            permit.send(message);
            return true;
        }
        Err(mpsc::error::TrySendError::Closed(())) => return false,
        Err(mpsc::error::TrySendError::Full(())) => tx.reserve(),
    };
    let room = async move {
        tokio::select! {
            // Room first: a label with room when the stop comes is handed on (and acknowledged).
            biased;
            permit = permit => match permit {
                Ok(permit) => {
                    permit.send(message);
                    true
                }
                Err(_) => false,
            },
            // (The guard `wait_for` returns is not Send: not kept in the select's output.)
            () = async { let _ = stopped.wait_for(|s| *s).await; } => false,
        }
    };
    let hold = |held: &mut std::collections::VecDeque<LabelMessage>,
                m: &rdkafka::message::BorrowedMessage<'_>| {
        held.push_back(kafka_label(consumer, m))
    };
    crate::bus::kafka::client::wait_polling(room, consumer, paused, held, errors, topic, hold).await
}

impl std::fmt::Debug for LabelsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelsReader").finish_non_exhaustive()
    }
}

impl LabelsReader {
    /// The reader's connection (on MQTT up once its subscription is confirmed), for `/readyz`.
    pub fn link(&self) -> crate::bus::link::Link {
        self.link.clone()
    }

    /// Resolves with the reason once labels can no longer be applied: a label's dead letter could
    /// not be published, and acknowledging any later label would skip it.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Stops reading, applies what was read, acknowledges what is written (for up to 2 s),
    /// and disconnects.
    pub async fn close(self) {
        self.stop.send_replace(true);
        // Before disconnecting: the acknowledgements go out on the connection.
        if let Ok(publisher) = self.apply.await {
            publisher.close().await;
        }
        if let Some(client) = &self.on_stop {
            let _ = client.disconnect().await;
        }
        let _ = self.reader.await;
        #[cfg(feature = "kafka")]
        if let Some(consumer) = self.consumer {
            let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        }
    }
}

/// Reads labels from `topic` on MQTT.
pub fn start_mqtt(
    settings: &crate::bus::mqtt::MqttSettings,
    transport: rumqttc::Transport,
    topic: String,
    dead_letter_topic: String,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
) -> LabelsReader {
    let mut labels_settings = settings.clone();
    labels_settings.client_id = format!("{}-labels", settings.client_id);
    let publisher = Publisher::Mqtt(crate::bus::mqtt::publisher::MqttPublisher::start(
        &labels_settings,
        transport.clone(),
        crate::bus::MAX_PAYLOAD_BYTES + 1024,
        Some(metrics.broker_session_lost.with_label_values(&["labels"])),
    ));
    let mut options =
        crate::bus::mqtt::mqtt_options(settings, labels_settings.client_id.clone(), transport);
    options
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(
            crate::bus::mqtt::MAX_PACKET_BYTES,
            crate::bus::MAX_PAYLOAD_BYTES + 1024,
        );
    let role = Role {
        broker: format!("{}:{}", settings.host, settings.port),
        client: "labels",
    };
    // Room for every acknowledgement the apply task can owe at once.
    let (driver, client) = Driver::new(options, 4 * QUEUE, role);
    let direct = Arc::new(crate::bus::mqtt::driver::DirectAcks::default());
    let mut driver = driver
        .direct_acks(direct.clone())
        .subscribe(topic.clone(), rumqttc::QoS::AtLeastOnce)
        .count_sessions_lost(metrics.broker_session_lost.with_label_values(&["labels"]));
    let acker = MqttAcker::new(client.clone(), driver.connection(), direct);
    let link = driver.link();
    let (tx, rx) = mpsc::channel(QUEUE);
    let (stop, mut stopped) = watch::channel(false);
    let apply_stopped = stop.subscribe();
    let reader = tokio::spawn(async move {
        // Let go once `apply` stops taking labels (it closes its end when stopping, and ends
        // after what was read). The loop goes on polling the connection, which writes the
        // acknowledgements `apply` still hands over, until `close` disconnects it; it never
        // drops a `next()` under way, which could lose the acknowledgements it had taken to
        // write (the broker would then send those labels again).
        let mut tx = Some(tx);
        loop {
            match driver.next().await {
                Step::Message(mut p, connection) => {
                    let Some(sender) = tx.clone() else {
                        continue;
                    };
                    // The acknowledgement needs only the packet id: the payload's share of
                    // rumqttc's read buffer goes now, as in the rows source.
                    let message = LabelMessage {
                        payload: std::mem::take(&mut p.payload).to_vec(),
                        topic: std::mem::take(&mut p.topic),
                        ack: LabelAck::Mqtt(p, connection),
                    };
                    // Waiting for room (labels waiting for a failing disk) ends when stopping,
                    // and keeps the connection alive meanwhile.
                    let room = async {
                        tokio::select! {
                            sent = sender.send(message) => sent.is_ok(),
                            _ = stopped.wait_for(|s| *s) => false,
                        }
                    };
                    if !driver.while_waiting(room).await {
                        tx = None;
                    }
                }
                Step::Connected { .. } => {
                    info!(topic = %topic, "Reading labels.");
                }
                Step::Closed | Step::Failed(_) => return,
                Step::PubAck => {}
            }
        }
    });
    let (failed, failure) = watch::channel(None);
    let apply = tokio::spawn(apply(
        rx,
        store,
        (publisher, dead_letter_topic),
        metrics,
        Some(acker),
        failed,
        apply_stopped,
    ));
    LabelsReader {
        reader,
        apply,
        failure,
        stop,
        on_stop: Some(client),
        link,
        #[cfg(feature = "kafka")]
        consumer: None,
    }
}

/// How often the Kafka labels reader checks that no other consumer shares its group (a look at
/// its assignment and one topic's metadata: cheap enough to warn within seconds).
#[cfg(feature = "kafka")]
const SHARED_GROUP_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// The partitions of `topic` assigned to `consumer` and the topic's partitions (`None` when the
/// cluster does not answer).
#[cfg(feature = "kafka")]
fn partitions_held(consumer: &KafkaConsumer, topic: &str) -> Option<(usize, usize)> {
    use rdkafka::consumer::Consumer;
    let mine = consumer
        .assignment()
        .ok()?
        .elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .count();
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(5))
        .ok()?;
    let all = metadata.topics().first()?.partitions().len();
    (all > 0).then_some((mine, all))
}

/// Reads labels from `topic` on Kafka, in this instance's own consumer `group` (see
/// `[labels] group_id`).
#[cfg(feature = "kafka")]
pub fn start_kafka(
    settings: &crate::bus::kafka::KafkaSettings,
    group: String,
    topic: String,
    dead_letter_topic: String,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
) -> Result<LabelsReader, rdkafka::error::KafkaError> {
    use rdkafka::consumer::Consumer;
    // The labels' entry on /readyz is this consumer's link; a hold of the labels' dead letters
    // shows there too.
    let context = crate::bus::kafka::client::Context::new("labels consumer", None);
    let publisher = Publisher::Kafka(crate::bus::kafka::publisher::KafkaPublisher::start(
        settings,
        crate::bus::MAX_PAYLOAD_BYTES + 1024,
        // A dead letter that fails for good is counted where the reader sees it fail.
        crate::bus::kafka::publisher::Counters {
            resent: Some(
                metrics
                    .outputs_resent
                    .with_label_values(&[crate::metrics::SINK_KAFKA]),
            ),
            failed: None,
        },
        &[&dead_letter_topic],
        Some(context.link()),
    )?);
    let mut config = crate::bus::kafka::client::client_config(
        &settings.brokers,
        &[
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "100"),
        ],
        &settings.properties,
    );
    config
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("client.id", "faultline-labels");
    let consumer: KafkaConsumer = Arc::new(config.create_with_context(context)?);
    consumer.subscribe(&[&topic])?;
    let link = consumer.context().link();
    let reader_link = link.clone();
    let (tx, rx) = mpsc::channel(QUEUE);
    let (stop, mut stopped) = watch::channel(false);
    let apply_stopped = stop.subscribe();
    let reader_consumer = consumer.clone();
    let (failed, failure) = watch::channel(None);
    let reader_failed = failed.clone();
    let reader = tokio::spawn(async move {
        info!(topic = %topic, group = %group, "Reading labels from Kafka.");
        // A labels topic Kafka does not have (misspelt, not created yet) shows on /readyz.
        let mut errors = crate::bus::kafka::client::ReadErrors::new("labels", reader_failed)
            .showing_on(reader_link);
        // Every so often: does this group hold every partition of the topic? Another instance
        // in the same group would take some, and the labels would be split between them.
        let mut check = tokio::time::interval(SHARED_GROUP_CHECK);
        check.tick().await;
        let mut shared = false;
        // Checks in a row that found no partition assigned: one may be a rebalance under way,
        // two mean another consumer of the group holds them all (a one-partition topic).
        let mut empty = 0;
        // Labels read while there was no room (their dead letters held, a failing disk), in
        // order, and the partitions paused meanwhile.
        let mut held: std::collections::VecDeque<LabelMessage> = Default::default();
        let mut paused = crate::bus::kafka::client::Paused::default();
        loop {
            let message = match held.pop_front() {
                Some(message) => message,
                None => {
                    paused.resume(&reader_consumer);
                    let (m, recheck) = tokio::select! {
                        m = reader_consumer.recv() => (Some(m), false),
                        _ = check.tick() => (None, false),
                        _ = stopped.wait_for(|s| *s) => return,
                        // While Kafka says the topic does not exist, whether it does now (no
                        // label need come to say so). `recv` is cancel-safe.
                        _ = tokio::time::sleep(crate::bus::kafka::client::TOPIC_RECHECK), if errors.is_missing() => (None, true),
                    };
                    if recheck {
                        errors.recheck_topic(&reader_consumer, &topic).await;
                        continue;
                    }
                    let Some(m) = m else {
                        let (c, t) = (reader_consumer.clone(), topic.clone());
                        let held =
                            tokio::task::spawn_blocking(move || partitions_held(&c, &t)).await;
                        if let Ok(Some((mine, all))) = held {
                            empty = if mine == 0 { empty + 1 } else { 0 };
                            let now = if mine == 0 { empty >= 2 } else { mine < all };
                            if now && !shared {
                                warn!(topic = %topic, group = %group, "This instance reads {mine} of the {all} partitions of the labels topic: another consumer shares its group, so the labels are split between them and each instance misses some. Give each instance its own [labels] group_id.");
                            }
                            shared = now;
                        }
                        continue;
                    };
                    match m {
                        Ok(m) => {
                            errors.delivered(&topic);
                            kafka_label(&reader_consumer, &m)
                        }
                        Err(e) => {
                            if errors
                                .failed(&topic, &e, reader_consumer.client())
                                .await
                                .is_break()
                            {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let sent = send_polling(
                &tx,
                message,
                &reader_consumer,
                &mut paused,
                &mut held,
                &mut errors,
                &topic,
                &mut stopped,
            );
            if !sent.await {
                return;
            }
        }
    });
    let apply = tokio::spawn(apply(
        rx,
        store,
        (publisher, dead_letter_topic),
        metrics,
        None,
        failed,
        apply_stopped,
    ));
    Ok(LabelsReader {
        reader,
        apply,
        failure,
        stop,
        on_stop: None,
        link,
        consumer: Some(consumer),
    })
}

/// Label messages applied and waiting for their write before they are acknowledged; at most
/// this many (the room the MQTT driver keeps for acknowledgements), so that a disk that refuses
/// them holds the labels on the bus (the reader stops reading) rather than in memory.
const UNWRITTEN: usize = 4 * QUEUE;

/// Applies label messages in order, acknowledging each once it is written; unreadable ones go to
/// the dead-letter publisher and topic. Returns the publisher when the readers end.
async fn apply(
    mut rx: mpsc::Receiver<LabelMessage>,
    store: Arc<Store>,
    (mut publisher, dead_letter_topic): (Publisher, String),
    metrics: Arc<Metrics>,
    mut acker: Option<MqttAcker>,
    failed: watch::Sender<Option<String>>,
    mut stopped: watch::Receiver<bool>,
) -> Publisher {
    let mut acked = publisher.acked();
    // Acknowledgements owed, in the order the messages came: each once its label is written
    // (the store writes labels as they come, so this takes milliseconds; a failing disk holds
    // them, and the store tries again). On Kafka an offset covers every message before it, so
    // they go out in order; on MQTT too, since a message not acknowledged is sent again only
    // on the next connection.
    let mut owed: std::collections::VecDeque<(LabelAck, Written)> = Default::default();
    // Set once a label can no longer be acknowledged (the store gave it up or closed, or its
    // dead letter failed): nothing after it is acknowledged either, and all of them are read
    // again at the next start.
    let mut stuck = false;
    // PUBACKs go to the reader's driver, which writes them before each poll; while its
    // connection is idle, the oldest goes through rumqttc's request queue to wake it, which only
    // its event loop drains, and the event loop (the reader) waits for room in `rx` when labels
    // come faster than they are applied. So acknowledging never waits: the hand-over is retried.
    let waiting = |a: &Option<MqttAcker>| a.as_ref().is_some_and(MqttAcker::has_waiting);
    // Once stopping, no label is taken that was not read already.
    let mut closed = false;
    loop {
        // Acknowledge, in order, what is written.
        while let Some((_, written)) = owed.front_mut() {
            match written.is_written() {
                None => break,
                Some(true) if !stuck => {
                    let (ack, _) = owed.pop_front().expect("a front");
                    acknowledge(ack, &mut acker);
                }
                Some(_) => {
                    stuck = true;
                    owed.clear();
                }
            }
        }
        if let Some(a) = acker.as_mut() {
            a.flush();
        }
        let room = owed.len() < UNWRITTEN;
        let m = tokio::select! {
            m = rx.recv(), if room => m,
            _ = async { (&mut owed.front_mut().expect("owed").1).await }, if !owed.is_empty() => continue,
            _ = tokio::time::sleep(std::time::Duration::from_millis(5)), if waiting(&acker) => continue,
            _ = stopped.wait_for(|s| *s), if !room || !closed => {
                // Full of labels a failing disk holds: stopping does not wait for them.
                if !room {
                    break;
                }
                rx.close();
                closed = true;
                continue;
            }
        };
        let Some(m) = m else { break };
        // One over the rows' payload limit is not parsed: refused as it is (a reader takes
        // packets up to MQTT's 256 MiB, so that such a message does not stop the stream).
        let parsed = if m.payload.len() > crate::bus::MAX_PAYLOAD_BYTES {
            Err(format!(
                "the label message is {} bytes; faultline accepts at most {}",
                m.payload.len(),
                crate::bus::MAX_PAYLOAD_BYTES
            ))
        } else {
            crate::labels::from_message(&m.payload)
        };
        match parsed {
            Ok(label) => {
                // Waits for room in the store's queue: labels are never dropped.
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.record_labels(vec![label])).await {
                    Ok(Ok((_, written))) => owed.push_back((m.ack, written)),
                    // Stopping: not applied, so not acknowledged (nor anything after it); the
                    // broker delivers it again. In its place among those owed, so that the
                    // labels before it are still acknowledged once written.
                    Ok(Err(crate::store::StoreClosed)) | Err(_) => {
                        owed.push_back((m.ack, Written::never()))
                    }
                }
            }
            Err(error) => {
                metrics.labels.with_label_values(&["rejected"]).inc();
                warn!(topic = %m.topic, error = %error, "Sent an unreadable label to the dead-letter topic.");
                let payload = crate::bus::messages::dead_letter_text(&m.payload);
                let letter = DeadLetter {
                    error: &error,
                    reason: "bad_label",
                    column: None,
                    payload: &payload,
                    topic: &m.topic,
                    received_at: &now_rfc3339(),
                };
                let Ok(body) = serde_json::to_vec(&letter) else {
                    continue;
                };
                let sent = publisher
                    .publish(Output {
                        topic: &dead_letter_topic,
                        key: None,
                        model_version: None,
                        payload: body,
                    })
                    .await;
                // Acknowledge the label only once its dead letter is safe.
                let error = match sent {
                    Ok(seq) => match acked.wait_for(|a| *a >= seq).await {
                        Ok(_) => None,
                        // The publisher's own reason, when it gave one.
                        Err(_) => Some(publisher.failure().borrow().clone().unwrap_or_else(|| {
                            "the publisher stopped before the broker confirmed it".to_string()
                        })),
                    },
                    Err(e) => Some(e.to_string()),
                };
                if let Some(e) = error {
                    // The publisher is gone for good. Acknowledging any later label would
                    // commit past this one (on Kafka an offset covers all before it), so
                    // nothing more is acknowledged and faultline stops, as it does when a
                    // verdict cannot be published: all of it is read again at the restart.
                    metrics
                        .publish_errors
                        .with_label_values(&[publisher.label()])
                        .inc();
                    tracing::error!(error = %e, "Could not publish a label's dead letter: labels can no longer be applied; stopping.");
                    failed.send_replace(Some(format!(
                        "a label's dead letter could not be published to {dead_letter_topic}: {e}"
                    )));
                    // The labels before it are still acknowledged once written, below.
                    break;
                }
                owed.push_back((m.ack, Written::now()));
            }
        }
    }
    // Stopping: the labels applied are written within milliseconds (the store closes after
    // this), and what is owed is handed over while the driver still polls the connection
    // (`close` disconnects it after this); what is not written within 2 s is read again at the
    // next start.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    while let Some((ack, written)) = owed.pop_front() {
        match tokio::time::timeout_at(deadline, written).await {
            Ok(true) if !stuck => acknowledge(ack, &mut acker),
            _ => break,
        }
    }
    while waiting(&acker) && tokio::time::Instant::now() < deadline {
        if let Some(a) = acker.as_mut() {
            a.flush();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    publisher
}

/// Acknowledges a label message: its PUBACK handed to the driver, or its offset stored.
fn acknowledge(ack: LabelAck, acker: &mut Option<MqttAcker>) {
    match ack {
        LabelAck::Mqtt(p, connection) => {
            if let Some(a) = acker.as_mut() {
                a.ack(p, connection);
            }
        }
        #[cfg(feature = "kafka")]
        LabelAck::Kafka(consumer, topic, partition, offset) => {
            use rdkafka::consumer::Consumer;
            let _ = consumer.store_offset(&topic, partition, offset);
        }
    }
}
