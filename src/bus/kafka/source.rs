//! Rows from a Kafka topic, at least once.
//!
//! The consumer joins `[source.kafka] group_id` (instances in one group split the partitions) and
//! never stores an offset by itself (`enable.auto.offset.store=false`): a message's offset is
//! stored only when the pipeline reports that its verdicts are acknowledged by the cluster, and
//! librdkafka's periodic commit (and the final one on shutdown or rebalance) commits only stored
//! offsets. The acker stores offsets in the order messages were read, so a stored offset never
//! passes an unprocessed message of its partition. If faultline dies first, the group resumes
//! from the last commit: rows repeat, none are lost.

use crate::bus::admit::Queued;
use crate::bus::kafka::client::{
    client_config, wait_polling, Context, Paused, ReadErrors, Revoked, TOPIC_RECHECK,
};
use crate::bus::kafka::KafkaSettings;
use crate::bus::{Ack, Incoming, SourceOptions};
use crate::metrics::SOURCE_KAFKA;
use crate::row::json::Decoded;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::Message;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

type Client = StreamConsumer<Context>;

/// A running Kafka source.
pub struct KafkaSource {
    /// The group member.
    consumer: Arc<Client>,
    /// Whether the cluster is reachable.
    link: crate::bus::link::Link,
    /// The read loop; ends when told to stop.
    task: tokio::task::JoinHandle<()>,
    /// Tells the read loop to stop.
    stop: watch::Sender<bool>,
    /// Set when the consumer failed for good.
    failure: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").finish_non_exhaustive()
    }
}

/// Stores offsets of processed messages.
#[derive(Clone)]
pub struct KafkaAcker(Arc<Client>);

impl KafkaAcker {
    /// Marks `offset` of `topic`/`partition` processed: the next commit goes past it.
    pub fn store(&self, topic: &str, partition: i32, offset: i64) {
        if let Err(e) = self.0.store_offset(topic, partition, offset) {
            // The partition was revoked meanwhile: its new owner reads the row again.
            debug!(topic, partition, offset, error = %e, "Could not store a Kafka offset.");
        }
    }
}

/// Consumer defaults; the properties table may change them.
const DEFAULTS: [(&str, &str); 5] = [
    // A new group starts at the oldest row rather than skipping what is already waiting.
    ("auto.offset.reset", "earliest"),
    // Some brokers (tansu 0.6.0) hold every fetch for the rest of the wait even when rows are
    // there, and answer at most 5 MB; 500 ms (librdkafka's default) then caps throughput near 2k
    // rows/s, 10 ms near 28k (2 ms: 46-47k, for more empty fetches while idle; BENCHMARKS.md).
    // Apache Kafka answers at once, so there this only paces an idle consumer's empty fetches.
    ("fetch.wait.max.ms", "10"),
    ("auto.commit.interval.ms", "1000"),
    // librdkafka prefetches up to this much per partition set; bounds memory under load.
    ("queued.max.messages.kbytes", "16384"),
    ("client.id", "faultline"),
];

/// A message decoded straight from librdkafka's buffer (released before any wait), and how to
/// acknowledge it.
fn read(
    admitter: &crate::bus::admit::Admitter,
    m: &rdkafka::message::BorrowedMessage<'_>,
    topic: &str,
) -> (Decoded, Ack) {
    (
        admitter.decode(m.payload().unwrap_or_default(), topic),
        Ack::Kafka {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
        },
    )
}

/// Forgets the held messages read from partitions revoked since the last look (see
/// [`Revoked`]): their partitions' next owner reads them again.
fn forget_revoked(revoked: &Revoked, held: &mut VecDeque<(Decoded, Ack)>) {
    let forgotten = revoked.forget(held, |(_, ack)| match ack {
        Ack::Kafka {
            topic, partition, ..
        } => (topic.as_str(), *partition),
        _ => ("", -1),
    });
    if forgotten.is_empty() {
        return;
    }
    let rows: usize = forgotten
        .iter()
        .map(|(d, _)| d.rows.len() + d.rejects.len())
        .sum();
    info!(messages = forgotten.len(), rows, "Forgot the rows read from partitions Kafka took away before there was room for them; whoever owns those partitions now reads them again from the last committed offset.");
}

impl KafkaSource {
    /// Creates the consumer, subscribes and forwards every message to `output`. Connecting
    /// happens in the background; librdkafka retries with backoff.
    pub fn start(
        settings: &KafkaSettings,
        options: SourceOptions,
        output: mpsc::Sender<Incoming>,
    ) -> Result<KafkaSource, KafkaError> {
        let mut config = client_config(&settings.brokers, &DEFAULTS, &settings.properties);
        config
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "fetch.message.max.bytes",
                (options.max_payload_bytes + 1024).to_string(),
            );
        let context = Context::new("consumer", Some(options.metrics.clone()));
        let link = context.link();
        let drained = context.drained();
        let revoked = context.revoked();
        let consumer: Arc<Client> = Arc::new(config.create_with_context(context)?);
        let (stop, mut stopped) = watch::channel(false);
        let admitter =
            crate::bus::admit::Admitter::start(SOURCE_KAFKA, options, stopped.clone(), output);
        let _ = drained.set(admitter.drained());
        consumer.subscribe(&[&settings.topic])?;
        let (failed, failure) = watch::channel(None);
        let reader = consumer.clone();
        let shown = link.clone();
        let topic = settings.topic.clone();
        let group = settings.group_id.clone();
        let task = tokio::spawn(async move {
            info!(topic = %topic, group = %group, "Reading rows from Kafka.");
            let mut errors = ReadErrors::new("rows", failed).showing_on(shown);
            // Messages read while the pipeline had no room, in order, and the partitions paused.
            let mut held: VecDeque<(Decoded, Ack)> = VecDeque::new();
            let mut paused = Paused::default();
            loop {
                // Before a held message is taken (with none held, a message read next is
                // looked at in turn, below).
                if !held.is_empty() {
                    forget_revoked(&revoked, &mut held);
                }
                let (decoded, ack) = match held.pop_front() {
                    Some(message) => message,
                    None => {
                        paused.resume(&reader);
                        let message = tokio::select! {
                            m = reader.recv() => Some(m),
                            _ = stopped.wait_for(|s| *s) => return,
                            // While Kafka says the topic does not exist, whether it does now
                            // (no message need come to say so). `recv` is cancel-safe.
                            _ = tokio::time::sleep(TOPIC_RECHECK), if errors.is_missing() => None,
                        };
                        let Some(message) = message else {
                            errors.recheck_topic(&reader, &topic).await;
                            continue;
                        };
                        match message {
                            Ok(m) => {
                                errors.delivered(&topic);
                                // Nothing is held; what was revoked before this is done with.
                                forget_revoked(&revoked, &mut held);
                                read(&admitter, &m, &topic)
                            }
                            Err(e) => {
                                if errors.failed(&topic, &e, reader.client()).await.is_break() {
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                };
                // While the pipeline has no room (verdicts the cluster does not take hold the
                // in-flight bound), the consumer is still polled, its partitions paused:
                // librdkafka takes a consumer not polled for max.poll.interval.ms for stuck and
                // leaves the group, which would then read every row in flight again.
                let incoming = match admitter.try_queue(Incoming::new(topic.clone(), decoded, ack))
                {
                    Queued::Yes => continue,
                    Queued::Stopping => return,
                    Queued::Full(incoming) => incoming,
                };
                let queued = admitter.queue_incoming(*incoming);
                let hold = |held: &mut VecDeque<(Decoded, Ack)>,
                            m: &rdkafka::message::BorrowedMessage<'_>| {
                    // What was held before a revoke goes first: this message came after it.
                    forget_revoked(&revoked, held);
                    if held.is_empty() {
                        info!(topic = %topic, partition = m.partition(), "Kafka assigned partitions during the wait for room; what it delivers from them waits its turn, their partitions paused.");
                    }
                    held.push_back(read(&admitter, m, &topic));
                };
                let (errors, held) = (&mut errors, &mut held);
                if !wait_polling(queued, &reader, &mut paused, held, errors, &topic, hold).await {
                    return;
                }
            }
        });
        Ok(KafkaSource {
            consumer,
            link,
            task,
            stop,
            failure,
        })
    }

    /// Whether the cluster is reachable.
    pub fn link(&self) -> crate::bus::link::Link {
        self.link.clone()
    }

    /// Resolves with the reason if the consumer fails for good.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// A handle for storing offsets.
    pub fn acker(&self) -> KafkaAcker {
        KafkaAcker(self.consumer.clone())
    }

    /// Stops forwarding messages; what was read after this is read again by the group.
    pub fn stop_reading(&self) {
        self.stop.send_replace(true);
    }

    /// Commits the stored offsets and leaves the group (off the runtime: both block).
    pub async fn close(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
        let consumer = self.consumer;
        let closed = tokio::task::spawn_blocking(move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) => info!("Committed the Kafka offsets of every published row."),
                Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    warn!(error = %e, "Could not commit Kafka offsets; the group will read the last rows again.")
                }
            }
            // Dropping the last handle closes the consumer, which leaves the group.
            drop(consumer);
        });
        let _ = closed.await;
    }
}
