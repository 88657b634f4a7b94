//! Publishes verdicts and dead letters to Kafka, and tells the pipeline when the cluster has
//! acknowledged them.
//!
//! Each publish gets a sequence number; a task awaits the delivery reports in that order, so
//! "everything up to sequence n is on the cluster" is `acked >= n`, as with the MQTT publisher.
//!
//! A delivery that fails (a broker restarting answers with errors librdkafka does not retry, and
//! a cluster down longer than `message.timeout.ms` times messages out) is sent again, with
//! backoff, until the cluster takes it; then the verdicts behind it whose refusals have come are
//! sent again together. The task holds each message, and the count waits for it,
//! so nothing behind it is committed early and a broker restart never stops detection. Verdicts
//! may then arrive more than once, or out of order across a failure, as at-least-once allows.
//! Only a refusal that no retry can change (the message is too large, the client is not
//! authorised, the broker cannot read it) stops the daemon; the rows behind it were not
//! committed and will be read again.
//!
//! A topic Kafka says does not exist is one of those only if this process never saw it exist:
//! then it is a name to correct. The publisher asks the cluster for its output topics as it
//! starts (until the cluster answers), and a topic that took a message counts too. A topic seen
//! to exist that then reads as unknown is a broker restarting (one that lost its topics, or
//! answers before it has loaded them) or a topic deleted to be made again: its verdicts are held
//! and sent again until it is back, and `/readyz` says so meanwhile.

use crate::bus::backoff::Backoff;
use crate::bus::kafka::client::{client_config, producer_properties, Context};
use crate::bus::kafka::KafkaSettings;
use crate::bus::link::Hold;
use crate::bus::{Output, PublishError};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

/// Producer defaults; the properties table may change them.
const DEFAULTS: [(&str, &str); 4] = [
    // Acknowledged by every in-sync replica: a verdict the cluster acknowledged survives a broker.
    ("acks", "all"),
    ("linger.ms", "5"),
    ("client.id", "faultline-out"),
    // Keep connections to the brokers while idle (librdkafka otherwise reconnects only when it
    // has something to send): after a broker restart /readyz then says whether the publisher
    // could deliver now, not whether it has delivered since.
    ("enable.sparse.connections", "false"),
];

/// The longest wait between two sends of a verdict the cluster refused. A refusal is one
/// request answered at once (a broker restarting, a partition moving), so waiting longer spares
/// the cluster nothing; and every wait past the cluster's return holds that verdict, the offsets
/// behind it and, once the in-flight bound is full, the reading of new rows. With the 10 s of a
/// reconnect's backoff (up to 10 s), a verdict refused for 14 s went out 8.9 s after the cluster
/// took writes again, against 0.9 s with this cap (one run each of
/// `a_verdict_the_cluster_refused_goes_out_once_it_takes_writes_again`).
const RESEND_MAX_WAIT: Duration = Duration::from_secs(1);

/// The waits between sends of a refused verdict.
fn resend_backoff() -> Backoff {
    Backoff::up_to(RESEND_MAX_WAIT)
}

/// Publishes to one Kafka cluster.
pub struct KafkaPublisher {
    producer: FutureProducer<Context>,
    /// The last sequence number handed out.
    sent: u64,
    /// Delivery reports, in publish order, with their topics, to the counting task.
    deliveries: mpsc::Sender<(DeliveryFuture, Arc<str>)>,
    /// The topics published to (a handful), each shared with the reports for it.
    topics: Vec<Arc<str>>,
    /// The output topics seen to exist.
    known: Known,
    /// Asks the cluster for the output topics as the publisher starts (stopped when the
    /// publisher goes).
    _lookup: AbortOnDrop,
    /// Deliveries acknowledged so far.
    acked: watch::Receiver<u64>,
    /// Whether the cluster is reachable.
    link: crate::bus::link::Link,
    /// Set when a delivery failed for good.
    failure: watch::Receiver<Option<String>>,
    /// The counting task.
    task: JoinHandle<()>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    /// Creates the producer (it connects in the background, and asks the cluster for `outputs`,
    /// the topics it will write), counting on `counters`. A hold on an output that went is shown
    /// on `holds`, or on the publisher's own link.
    pub fn start(
        settings: &KafkaSettings,
        max_message_bytes: usize,
        counters: Counters,
        outputs: &[&str],
        holds: Option<crate::bus::link::Link>,
    ) -> Result<KafkaPublisher, KafkaError> {
        let mut config =
            client_config(&settings.brokers, &DEFAULTS, &producer_properties(settings));
        config.set("message.max.bytes", max_message_bytes.to_string());
        let context = Context::new("producer", None);
        let link = context.link();
        let producer: FutureProducer<Context> = config.create_with_context(context)?;
        let (deliveries, mut reports) = mpsc::channel::<(DeliveryFuture, Arc<str>)>(65_536);
        let known = Known {
            topics: Default::default(),
            link: holds.unwrap_or_else(|| link.clone()),
        };
        let lookup = tokio::spawn(look_up(
            producer.clone(),
            outputs.iter().map(|t| t.to_string()).collect(),
            known.clone(),
        ));
        let taken = known.clone();
        let (ack_tx, acked) = watch::channel(0u64);
        let (failed, failure) = watch::channel(None);
        let resender = producer.clone();
        let Counters {
            resent: resent_counter,
            failed: failed_counter,
        } = counters;
        let task = tokio::spawn(async move {
            let mut count = 0u64;
            // Sends of refused verdicts since the first refusal, until every verdict sent again
            // has been taken (a run of refusals, logged once).
            let mut resent: Option<u64> = None;
            // Reports taken off the channel ahead of their turn (while a refused verdict was
            // being sent again), in order, and how many of them are for verdicts sent again.
            let mut queue: VecDeque<Slot> = VecDeque::new();
            let mut resends_queued = 0usize;
            let mut backoff = resend_backoff();
            loop {
                let slot = match queue.pop_front() {
                    Some(slot) => slot,
                    None => match reports.recv().await {
                        Some(report) => Slot::first(report),
                        None => break,
                    },
                };
                let Slot {
                    report,
                    resent: sent_again,
                    topic,
                } = slot;
                resends_queued -= usize::from(sent_again);
                let problem = match report.result().await {
                    Ok(Ok(_)) => None,
                    Ok(Err((e, message))) => {
                        if resent.is_none() && !is_permanent(&e) {
                            warn!(topic = message.topic(), error = %e, "Kafka refused a verdict; sending refused verdicts again, with backoff, until it takes them.");
                        }
                        *resent.get_or_insert(0) += 1;
                        if let (Some(c), false) = (&resent_counter, is_permanent(&e)) {
                            c.inc();
                        }
                        match redeliver(&resender, e, message, &mut backoff, &taken).await {
                            // Taken: the cluster takes writes again. The refusals that have
                            // come for verdicts behind this one go out again now, together.
                            Ok(()) => {
                                while let Ok(report) = reports.try_recv() {
                                    queue.push_back(Slot::first(report));
                                }
                                match resend_refused(&resender, &mut queue, &taken).await {
                                    Ok(Swept { sent, marked }) => {
                                        if sent > 0 {
                                            info!(verdicts = sent, "Kafka takes writes again; the verdicts it refused meanwhile are sent again at once.");
                                        }
                                        resends_queued += marked;
                                        *resent.get_or_insert(0) += sent as u64;
                                        if let Some(c) = &resent_counter {
                                            c.inc_by(sent as u64);
                                        }
                                        None
                                    }
                                    Err(e) => Some(e),
                                }
                            }
                            Err(e) => Some(e),
                        }
                    }
                    Err(_) => Some("the producer was dropped".to_string()),
                };
                if let Some(problem) = problem {
                    if let Some(c) = &failed_counter {
                        c.inc();
                    }
                    error!(error = %problem, "Kafka refused an output (a verdict or a dead letter) for good; stopping, since the messages behind it cannot be committed.");
                    let _ = failed.send(Some(format!("Kafka did not accept an output: {problem}")));
                    return;
                }
                taken.insert(topic);
                count += 1;
                ack_tx.send_replace(count);
                if resends_queued == 0 {
                    if let Some(n) = resent.take() {
                        info!(resends = n, "Kafka takes verdicts again; every refused one was sent again and taken.");
                    }
                }
            }
        });
        Ok(KafkaPublisher {
            producer,
            sent: 0,
            deliveries,
            topics: Vec::new(),
            known,
            _lookup: AbortOnDrop(lookup),
            acked,
            link,
            failure,
            task,
        })
    }

    /// Queues a message (keyed by row id, with a `model_version` header when given) and returns
    /// its sequence number. Waits while librdkafka's queue is full.
    pub async fn publish(&mut self, out: Output<'_>) -> Result<u64, PublishError> {
        let headers = out.model_version.map(|v| {
            OwnedHeaders::new().insert(Header {
                key: "model_version",
                value: Some(v),
            })
        });
        let mut record = FutureRecord::<str, [u8]>::to(out.topic).payload(&out.payload);
        if let Some(key) = out.key {
            record = record.key(key);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let report = queue_record(&self.producer, record, &self.known)
            .await
            .map_err(PublishError)?;
        let topic = match self.topics.iter().find(|t| ***t == *out.topic) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = out.topic.into();
                self.topics.push(t.clone());
                t
            }
        };
        self.deliveries
            .send((report, topic))
            .await
            .map_err(|_| PublishError("the delivery task stopped".into()))?;
        self.sent += 1;
        Ok(self.sent)
    }

    /// The last sequence number handed out.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Watches how many publishes the cluster has acknowledged.
    pub fn acked(&self) -> watch::Receiver<u64> {
        self.acked.clone()
    }

    /// Whether the cluster is reachable.
    pub fn link(&self) -> crate::bus::link::Link {
        self.link.clone()
    }

    /// Resolves with the reason if a delivery fails for good.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Waits (up to 5 s, off the runtime) for queued messages to be delivered, then stops.
    pub async fn close(self) {
        let KafkaPublisher {
            producer,
            deliveries,
            task,
            ..
        } = self;
        drop(deliveries);
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = producer.flush(Duration::from_secs(5)) {
                error!(error = %e, "Kafka did not take every queued verdict before shutdown.");
            }
        })
        .await;
        let _ = task.await;
    }
}

/// Where a publisher counts (nowhere, for `faultline replay`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages sent again after the cluster refused them.
    pub resent: Option<prometheus::IntCounter>,
    /// Deliveries that failed for good: the publisher then stops.
    pub failed: Option<prometheus::IntCounter>,
}

/// A delivery report the counting task holds ahead of its turn.
struct Slot {
    report: Report,
    /// The verdict was sent again after a refusal.
    resent: bool,
    /// Its topic.
    topic: Arc<str>,
}

enum Report {
    Waiting(DeliveryFuture),
    Came(<DeliveryFuture as Future>::Output),
}

impl Slot {
    fn first((report, topic): (DeliveryFuture, Arc<str>)) -> Slot {
        Slot {
            report: Report::Waiting(report),
            resent: false,
            topic,
        }
    }
}

impl Report {
    async fn result(self) -> <DeliveryFuture as Future>::Output {
        match self {
            Report::Waiting(report) => report.await,
            Report::Came(result) => result,
        }
    }
}

/// What [`resend_refused`] did: verdicts it sent again, and how many of them it marked as sent
/// again for the first time.
struct Swept {
    sent: usize,
    marked: usize,
}

/// Once the cluster has taken a refused verdict again: sends again, at once, every verdict in
/// `queue` whose refusal has already come (a retryable one). One at a
/// time, as each reached its turn, each would wait for its own report (`linger.ms` and a round
/// trip), and a backlog refused during an outage would drain at a few hundred a second while
/// the offsets behind it, and the reading of new rows, waited.
async fn resend_refused(
    producer: &FutureProducer<Context>,
    queue: &mut VecDeque<Slot>,
    known: &Known,
) -> Result<Swept, String> {
    let (mut sent, mut marked) = (0, 0);
    for slot in queue.iter_mut() {
        let Report::Waiting(report) = &mut slot.report else {
            continue;
        };
        let Some(result) = come(report) else {
            continue;
        };
        slot.report = match result {
            Ok(Err((e, message))) if !is_permanent(&e) => {
                sent += 1;
                marked += usize::from(!slot.resent);
                slot.resent = true;
                Report::Waiting(send_again(producer, &message, known).await?)
            }
            other => Report::Came(other),
        };
    }
    Ok(Swept { sent, marked })
}

/// The report, if it has come (it is not polled again after that).
fn come(report: &mut DeliveryFuture) -> Option<<DeliveryFuture as Future>::Output> {
    let mut look = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(report).poll(&mut look) {
        std::task::Poll::Ready(result) => Some(result),
        std::task::Poll::Pending => None,
    }
}

/// Sends a message whose delivery failed again until the cluster takes it: at once, then with
/// `backoff` (shared by the refused verdicts that follow, and reset when one is taken). An error
/// that no retry can change is returned.
async fn redeliver(
    producer: &FutureProducer<Context>,
    mut error: KafkaError,
    message: OwnedMessage,
    backoff: &mut Backoff,
    known: &Known,
) -> Result<(), String> {
    loop {
        if is_permanent(&error) {
            return Err(error.to_string());
        }
        match send_again(producer, &message, known).await?.await {
            Ok(Ok(_)) => {
                backoff.reset();
                return Ok(());
            }
            Ok(Err((e, _))) => error = e,
            Err(_) => return Err("the producer was dropped".into()),
        }
        backoff.wait().await;
    }
}

/// Queues `message` again (its topic, key, payload and headers).
async fn send_again(
    producer: &FutureProducer<Context>,
    message: &OwnedMessage,
    known: &Known,
) -> Result<DeliveryFuture, String> {
    let headers = message.headers().map(|h| {
        h.iter().fold(OwnedHeaders::new(), |acc, h| {
            acc.insert(Header {
                key: h.key,
                value: h.value,
            })
        })
    });
    let mut record = FutureRecord::<[u8], [u8]>::to(message.topic());
    if let Some(p) = message.payload() {
        record = record.payload(p);
    }
    if let Some(k) = message.key() {
        record = record.key(k);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    queue_record(producer, record, known).await
}

/// Queues `record` for delivery, waiting while librdkafka's queue is full, and while its topic,
/// one seen to exist, reads as unknown (see the module's documentation).
async fn queue_record<K, P>(
    producer: &FutureProducer<Context>,
    mut record: FutureRecord<'_, K, P>,
    known: &Known,
) -> Result<DeliveryFuture, String>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    use RDKafkaErrorCode::{QueueFull, UnknownTopic};
    let topic = record.topic;
    // Set while the topic reads as unknown.
    let mut gone: Option<Gone> = None;
    loop {
        match producer.send_result(record) {
            Ok(report) => {
                if let Some(gone) = gone {
                    info!(
                        topic,
                        waited_s = gone.since.elapsed().as_secs(),
                        "Kafka knows the output topic again; its held verdicts go out."
                    );
                }
                return Ok(report);
            }
            Err((KafkaError::MessageProduction(QueueFull), r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((KafkaError::MessageProduction(UnknownTopic), r)) => {
                if !known.contains(topic) {
                    return Err(format!("Kafka has no topic {topic:?}, and faultline has not seen it exist since it started: create it, or name an output topic that exists"));
                }
                let now = std::time::Instant::now();
                let gone = gone.get_or_insert_with(|| {
                    warn!(topic, "Kafka says an output topic that existed does not (a broker restarting, or the topic deleted); holding its verdicts, and the rows behind them, and trying again until it is back.");
                    Gone {
                        backoff: resend_backoff(),
                        since: now,
                        logged: now,
                        _hold: known.link.hold(topic, format!("Kafka says the output topic {topic:?} does not exist, though it did when faultline started (a broker restarting, or the topic deleted); its verdicts, and the rows behind them, are held until it is back")),
                    }
                });
                if now.duration_since(gone.logged) >= HELD_LOG_EVERY {
                    gone.logged = now;
                    warn!(topic, waited_s = gone.since.elapsed().as_secs(), "Kafka still says the output topic does not exist; its verdicts are still held.");
                }
                record = r;
                gone.backoff.wait().await;
            }
            Err((e, _)) => return Err(e.to_string()),
        }
    }
}

/// A verdict held while its topic reads as unknown ([`queue_record`]).
struct Gone {
    /// The waits between tries.
    backoff: Backoff,
    /// Since when.
    since: std::time::Instant,
    /// When it was last logged.
    logged: std::time::Instant,
    /// The hold on `/readyz`, released when this goes, however the wait ends.
    _hold: Hold,
}

/// How often a verdict held for an unknown topic is logged again.
const HELD_LOG_EVERY: Duration = Duration::from_secs(60);

/// What the cluster said of an output topic as the publisher started.
enum Found {
    /// It exists, with partitions.
    Exists,
    /// It does not, or this client may not see it: the reason.
    No(String),
    /// No answer yet (the cluster out of reach, a leader being elected): ask again.
    Later,
}

/// Asks the cluster, until it answers, whether each of `outputs` exists; those that do are
/// [`Known`]. One that does not is only warned about: librdkafka gives a new topic
/// `topic.metadata.propagation.max.ms` to appear, and a publish to it fails after that. (The
/// question is the one a first publish asks: a broker that creates topics on demand creates
/// them now rather than at their first message.)
async fn look_up(producer: FutureProducer<Context>, outputs: Vec<String>, known: Known) {
    use rdkafka::types::RDKafkaRespErr as Err;
    let mut left = outputs;
    let mut backoff = Backoff::default();
    while !left.is_empty() {
        let (asker, asked) = (producer.clone(), left.clone());
        let Ok(answers) = tokio::task::spawn_blocking(move || {
            asked
                .iter()
                .map(|t| {
                    match asker
                        .client()
                        .fetch_metadata(Some(t), Duration::from_secs(5))
                    {
                        Ok(m) => match m.topics().first() {
                            Some(t) => match t.error() {
                                None if !t.partitions().is_empty() => Found::Exists,
                                Some(Err::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
                                    Found::No("Kafka has no such topic".into())
                                }
                                Some(
                                    e @ (Err::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
                                    | Err::RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION),
                                ) => Found::No(RDKafkaErrorCode::from(e).to_string()),
                                _ => Found::Later,
                            },
                            None => Found::Later,
                        },
                        Err(_) => Found::Later,
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        else {
            return;
        };
        let mut unanswered = vec![];
        for (topic, found) in left.into_iter().zip(answers) {
            match found {
                Found::Exists => known.insert(topic.into()),
                Found::No(why) => {
                    warn!(topic = %topic, reason = %why, "An output topic faultline cannot see: create it (or let this client use it); faultline stops at the first verdict it cannot deliver there.")
                }
                Found::Later => unanswered.push(topic),
            }
        }
        left = unanswered;
        if !left.is_empty() {
            backoff.wait().await;
        }
    }
}

/// A task stopped when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The output topics seen to exist since the publisher started (a handful), and the link where a
/// hold for one that went is shown.
#[derive(Debug, Clone)]
struct Known {
    topics: Arc<RwLock<Vec<Arc<str>>>>,
    link: crate::bus::link::Link,
}

impl Known {
    fn contains(&self, topic: &str) -> bool {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|t| **t == *topic)
    }

    /// Records that `topic` exists (cheap once it is known: a shared read).
    fn insert(&self, topic: Arc<str>) {
        if !self.contains(&topic) {
            self.topics
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(topic);
        }
    }
}

/// Whether Kafka refused a message for a reason a retry cannot change.
fn is_permanent(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::InvalidMessage
                | Code::InvalidRecord
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::TransactionalIdAuthorizationFailed
                | Code::UnsupportedForMessageFormat
                | Code::UnsupportedVersion
                | Code::InvalidRequiredAcks
                | Code::InvalidTopic
                | Code::MessageBatchTooLarge
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_refused_verdict_is_sent_again_at_least_once_a_second() {
        let mut backoff = resend_backoff();
        let mut waits = vec![];
        for _ in 0..8 {
            let t = tokio::time::Instant::now();
            backoff.wait().await;
            waits.push(t.elapsed().as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn only_refusals_no_retry_can_change_are_permanent() {
        let produce = |c| KafkaError::MessageProduction(c);
        // What a restarting broker (tansu) answers, and a cluster down past the timeout.
        for c in [
            RDKafkaErrorCode::Unknown,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::AllBrokersDown,
        ] {
            assert!(!is_permanent(&produce(c)), "{c:?}");
        }
        for c in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::InvalidRecord,
        ] {
            assert!(is_permanent(&produce(c)), "{c:?}");
        }
    }
}
