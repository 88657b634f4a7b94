//! What the Kafka source, publisher, labels reader and `replay` share: client configuration and the librdkafka client
//! context (logs into tracing, connection state for `/readyz`, consumer lag for `/metrics`).

use super::KafkaSettings;
use crate::bus::link::Link;
use crate::metrics::Metrics;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{debug, error, info, warn};

/// How often librdkafka reports statistics (connection state and lag), unless the properties
/// table sets `statistics.interval.ms`.
pub const STATISTICS_INTERVAL_MS: &str = "1000";

/// A client configuration: `defaults` first, then the user's properties (which win), then what
/// faultline must set itself.
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: &[(String, String)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in properties {
        config.set(k, v);
    }
    config.set("bootstrap.servers", brokers);
    // librdkafka's own log lines go through the context below.
    config.set_log_level(RDKafkaLogLevel::Info);
    config
}

/// How a consumer's read loop (the rows source's, the labels reader's) meets the errors the
/// consumer returns: it logs the first of a run of them and the first message after, and polls
/// again at once.
///
/// An error from a consumer is an event librdkafka queued while it retries by itself, not a
/// failed attempt of ours. The group's rebalances (the rejoin after a broker restart) and the
/// offset commits' results are served only while the consumer is polled. A doubling backoff here
/// once slept through every queued error in turn and held the rejoin for 27 s to more than 80 s
/// after a tansu restart. The pause ([`ERROR_PAUSE`]) only keeps an error that repeated without
/// end from spinning a core.
///
/// The exception is an error librdkafka raised as fatal (with `group.instance.id`, another member
/// took this one's id): the consumer is finished, and polling it again returns the same error for
/// ever. The loop then stops, with the reason, for the daemon to stop on.
#[derive(Debug)]
pub struct ReadErrors {
    /// What the loop reads, for logs: "rows", "labels".
    what: &'static str,
    /// Where a fatal error's reason goes.
    fatal: tokio::sync::watch::Sender<Option<String>>,
    /// Set from an error until the next message.
    failing: bool,
    /// Where a topic Kafka says does not exist is shown (`/readyz`), if anywhere.
    link: Option<Link>,
    /// Kafka said the topic does not exist, and no message came since; with what `/readyz`
    /// shows meanwhile, if it shows it.
    missing: Option<Option<crate::bus::link::Hold>>,
    /// Kafka refused to let this consumer read the topic or join its group (an ACL), and no
    /// message came since; with what `/readyz` shows meanwhile, if it shows it, and when Kafka
    /// last said so.
    refused: Option<(Option<crate::bus::link::Hold>, std::time::Instant)>,
}

/// How long after Kafka last refused this consumer the topic's metadata may clear the refusal
/// (a quiet topic may bring no message for long after the grant, and librdkafka keeps reporting
/// a refusal that lasts).
const REFUSAL_QUIET: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a consumer's read loop pauses after an error before it polls again.
const ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

impl ReadErrors {
    /// For a loop reading `what` ("rows", "labels"), which says on `fatal` why it stopped.
    pub fn new(
        what: &'static str,
        fatal: tokio::sync::watch::Sender<Option<String>>,
    ) -> ReadErrors {
        ReadErrors {
            what,
            fatal,
            failing: false,
            link: None,
            missing: None,
            refused: None,
        }
    }

    /// Shows on `link` (so on `/readyz`, not ready) that the topic does not exist, while Kafka
    /// says so: a misspelt or not yet created topic, which librdkafka otherwise retries quietly.
    pub fn showing_on(mut self, link: Link) -> ReadErrors {
        self.link = Some(link);
        self
    }

    /// Logs `error` if it starts a run of errors, then pauses [`ERROR_PAUSE`]; or, when it is
    /// fatal to `client`, says why (librdkafka's reason) and tells the loop to stop.
    pub async fn failed<C: ClientContext>(
        &mut self,
        topic: &str,
        error: &KafkaError,
        client: &Client<C>,
    ) -> ControlFlow<()> {
        if let KafkaError::MessageConsumptionFatal(code) = error {
            let why = client.fatal_error().map_or_else(
                || code.to_string(),
                |(code, why)| format!("{code:?}: {why}"),
            );
            error!(topic = %topic, error = %why, "Kafka ended this consumer for good (librdkafka's fatal error); stopping.");
            self.fatal.send_replace(Some(format!(
                "the Kafka consumer of {} on {topic} failed for good: {why}",
                self.what
            )));
            return ControlFlow::Break(());
        }
        use rdkafka::types::RDKafkaErrorCode as Code;
        if let KafkaError::MessageConsumption(Code::UnknownTopicOrPartition | Code::UnknownTopic) =
            error
        {
            if self.missing.is_none() {
                let why = format!(
                    "Kafka has no topic {topic:?} to read {} from; create it, or correct the topic in the configuration",
                    self.what
                );
                error!(topic = %topic, "{why}. faultline reads nothing from it until it exists.");
                self.missing = Some(self.link.as_ref().map(|l| l.hold(topic, why)));
                self.failing = true;
            }
            tokio::time::sleep(ERROR_PAUSE).await;
            return ControlFlow::Continue(());
        }
        if let KafkaError::MessageConsumption(
            code @ (Code::TopicAuthorizationFailed | Code::GroupAuthorizationFailed),
        ) = error
        {
            // librdkafka says so once and goes on retrying: without this the source would look
            // ready while it reads nothing. Shown until a message is read (metadata may list the
            // topic's partitions while reading it stays refused).
            if let Some((_, last)) = &mut self.refused {
                *last = std::time::Instant::now();
            } else {
                let what = if *code == Code::GroupAuthorizationFailed {
                    "to join its consumer group (group.id)"
                } else {
                    "to read the topic"
                };
                let why = format!(
                    "Kafka does not authorize this consumer {what} ({code}) for {} on {topic:?}; grant it in the cluster's ACLs, or correct the login",
                    self.what
                );
                error!(topic = %topic, "{why}. faultline reads nothing from it until a message comes.");
                self.refused = Some((
                    self.link.as_ref().map(|l| l.hold(topic, why)),
                    std::time::Instant::now(),
                ));
                self.failing = true;
            }
            tokio::time::sleep(ERROR_PAUSE).await;
            return ControlFlow::Continue(());
        }
        if !std::mem::replace(&mut self.failing, true) {
            warn!(topic = %topic, error = %error, "Kafka could not deliver {}; librdkafka retries with backoff.", self.what);
        }
        tokio::time::sleep(ERROR_PAUSE).await;
        ControlFlow::Continue(())
    }

    /// Whether Kafka said the topic does not exist, or refused this consumer, and neither a
    /// message nor [`ReadErrors::topic_exists`] said otherwise since: the topic is to be
    /// [rechecked](ReadErrors::recheck_topic).
    pub fn is_missing(&self) -> bool {
        self.missing.is_some() || self.refused.is_some()
    }

    /// The topic Kafka said did not exist does now (its metadata has partitions): an instance
    /// that gets none of them, or a topic no row has reached yet, may see no message for long.
    /// A refusal is taken back too once Kafka has not repeated it for [`REFUSAL_QUIET`].
    pub fn topic_exists(&mut self, topic: &str) {
        if self.missing.take().is_some() {
            self.failing = false;
            info!(topic = %topic, "Kafka has the topic {} are read from now.", self.what);
        }
        if self
            .refused
            .as_ref()
            .is_some_and(|(_, last)| last.elapsed() >= REFUSAL_QUIET)
        {
            self.refused = None;
            self.failing = false;
            info!(topic = %topic, "Kafka lets this consumer read {} again (it lists the topic and has not refused it for {} s).", self.what, REFUSAL_QUIET.as_secs());
        }
    }

    /// While Kafka says the topic does not exist or refuses it: asks its metadata again (off
    /// the runtime: a blocking request), and notes when it has partitions now.
    pub async fn recheck_topic(
        &mut self,
        consumer: &Arc<rdkafka::consumer::StreamConsumer<Context>>,
        topic: &str,
    ) {
        use rdkafka::consumer::Consumer;
        let (asker, name) = (consumer.clone(), topic.to_string());
        let exists =
            tokio::task::spawn_blocking(move || topic_has_partitions(asker.client(), &name))
                .await
                .unwrap_or(false);
        if exists {
            self.topic_exists(topic);
        }
    }

    /// Notes a message; after errors, logs that messages arrive again.
    pub fn delivered(&mut self, topic: &str) {
        self.missing = None;
        self.refused = None;
        if std::mem::take(&mut self.failing) {
            info!(topic = %topic, "Kafka delivers {} again.", self.what);
        }
    }
}

/// The properties given for the consumer, minus consumer-only ones, for the producer (so
/// librdkafka does not warn about each).
pub fn producer_properties(settings: &KafkaSettings) -> Vec<(String, String)> {
    const CONSUMER_ONLY: [&str; 14] = [
        "auto.offset.reset",
        "group.instance.id",
        "auto.commit.interval.ms",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "queued.max.messages.kbytes",
        "queued.min.messages",
        "fetch.max.bytes",
        "fetch.min.bytes",
        "fetch.wait.max.ms",
        "fetch.error.backoff.ms",
        "max.partition.fetch.bytes",
    ];
    settings
        .properties
        .iter()
        .filter(|(k, _)| !CONSUMER_ONLY.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// The librdkafka client context of one faultline client (consumer or producer).
#[derive(Debug, Clone)]
pub struct Context {
    /// "consumer" or "producer", for logs.
    role: &'static str,
    /// Whether some broker of the cluster is up (from statistics), and why the cluster refuses
    /// this client when it does (authentication, TLS; from error callbacks).
    link: Link,
    /// Where the consumer lag goes; `None` for producers.
    metrics: Option<Arc<Metrics>>,
    /// Whether the last offset commit failed: a failing commit is logged once, not per partition
    /// and per retry (a group that lost its session fails every commit until it rejoins).
    commit_failing: Arc<AtomicBool>,
    /// For the rows consumer: whether the rows it read are through the pipeline, which a
    /// rebalance waits for before it gives partitions up (set once the admitter runs).
    drained: Arc<std::sync::OnceLock<crate::bus::admit::Drained>>,
    /// For the rows consumer: the partitions revoked since its read loop last looked.
    revoked: Revoked,
}

/// The longest a rebalance waits for the rows in flight before this instance gives its
/// partitions up: long enough for a pipeline that publishes (milliseconds), short enough not to
/// hold the group's other members long when the output cluster refuses writes.
const REBALANCE_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

impl Context {
    /// A context for a client playing `role`.
    pub fn new(role: &'static str, metrics: Option<Arc<Metrics>>) -> Context {
        Context {
            role,
            link: Link::default(),
            metrics,
            commit_failing: Arc::new(AtomicBool::new(false)),
            drained: Arc::default(),
            revoked: Revoked::default(),
        }
    }

    /// Where the rows consumer's read loop learns which partitions were revoked.
    pub fn revoked(&self) -> Revoked {
        self.revoked.clone()
    }

    /// Where the rows consumer's rebalances learn whether its rows are through the pipeline.
    pub fn drained(&self) -> Arc<std::sync::OnceLock<crate::bus::admit::Drained>> {
        self.drained.clone()
    }

    /// Whether the client reaches the cluster, and why not when it is refused.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// Records a connection state, logging only changes.
    fn set_connected(&self, up: bool, detail: &str) {
        // A refusal already marked the link down (and was logged), so it reads as no change.
        let was = self.link.set_up(up);
        if up && !was {
            info!(client = self.role, "Connected to the Kafka cluster.");
        } else if !up && was {
            warn!(
                client = self.role,
                detail, "Lost the Kafka cluster; librdkafka reconnects with backoff."
            );
        }
        if let (Some(m), "consumer") = (&self.metrics, self.role) {
            m.source_connected
                .with_label_values(&[crate::metrics::SOURCE_KAFKA])
                .set(up as i64);
        }
    }

    /// Records that the cluster refuses this client, logging it when it is news.
    fn refused(&self, reason: String) {
        if self.link.refuse(reason.clone()) {
            error!(client = self.role, %reason, "The Kafka cluster refuses this client; librdkafka retries with backoff. Check the security.protocol / sasl.* / ssl.* properties.");
        } else {
            debug!(client = self.role, %reason, "The Kafka cluster still refuses this client.");
        }
        if let (Some(m), "consumer") = (&self.metrics, self.role) {
            m.source_connected
                .with_label_values(&[crate::metrics::SOURCE_KAFKA])
                .set(0);
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // Connection failures repeat on every retry; the state change is logged once by
        // `set_connected` instead.
        let connection = matches!(fac, "FAIL" | "BROKERFAIL" | "CONNECT");
        match level {
            _ if connection => debug!(client = self.role, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(client = self.role, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => warn!(client = self.role, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(client = self.role, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => debug!(client = self.role, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as Code;
        match error.rdkafka_error_code() {
            // Connection state comes from the statistics (every second), which say which
            // brokers are up; these events arrive late and out of order during reconnects, and
            // each retry would log again.
            Some(Code::AllBrokersDown)
            | Some(Code::BrokerTransportFailure)
            | Some(Code::Resolve) => debug!(client = self.role, "librdkafka: {error}: {reason}"),
            // The cluster refuses this client: librdkafka retries with backoff, so the refusal
            // is logged once (until a connection succeeds) and shown on /readyz.
            Some(Code::Authentication | Code::SaslAuthenticationFailed) => {
                self.refused(format!("Kafka authentication failed: {reason}"))
            }
            Some(Code::SSL) => self.refused(format!("Kafka TLS failed: {reason}")),
            _ => warn!(client = self.role, "librdkafka: {error}: {reason}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        // A refused client still shows its brokers' states; any of them UP means it got in.
        let up = statistics
            .brokers
            .values()
            .any(|b| b.nodeid >= 0 && b.state == "UP");
        self.set_connected(up, "no broker of the cluster is up");
        let Some(metrics) = &self.metrics else { return };
        let lag = &metrics.kafka_consumer_lag;
        lag.reset();
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                if *id < 0 || !p.desired {
                    continue;
                }
                // Lag behind what faultline stored (published), else behind the last commit,
                // else (nothing processed yet) everything the partition holds.
                let value = if p.consumer_lag_stored >= 0 {
                    p.consumer_lag_stored
                } else if p.consumer_lag >= 0 {
                    p.consumer_lag
                } else if p.hi_offset >= 0 {
                    p.hi_offset - p.lo_offset.max(0)
                } else {
                    -1
                };
                if value >= 0 {
                    lag.with_label_values(&[name.as_str(), &id.to_string()])
                        .set(value);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    /// Before partitions go to another member: the rows consumer waits (up to
    /// [`REBALANCE_DRAIN`]) until the rows it read are published and their offsets stored.
    /// librdkafka then commits the stored offsets of the partitions it gives up (with
    /// `enable.auto.commit`, before it rejoins the group). Without the wait the new owner starts
    /// from offsets before the rows still in flight, and scores them again, their faults
    /// published twice. Rows read but not yet taken into the pipeline (held while it had no
    /// room) are not waited for: the read loop forgets them ([`Revoked`]), and whoever owns their
    /// partitions next reads them again. An assignment already lost (the session or the poll interval ran
    /// out) is not waited for either: librdkafka commits nothing for it.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (Rebalance::Revoke(list), Some(drained)) = (rebalance, self.drained.get()) else {
            return;
        };
        self.revoked.record(list);
        // At shutdown (which waits for the rows itself), for nothing, and for an assignment
        // already lost (a session or poll timeout: librdkafka commits nothing for it).
        if drained.stopping() || list.count() == 0 || consumer.assignment_lost() {
            return;
        }
        let started = std::time::Instant::now();
        let pause = || std::thread::sleep(std::time::Duration::from_millis(10));
        let wait = || loop {
            if drained.through(pause) {
                return true;
            }
            if started.elapsed() >= REBALANCE_DRAIN {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        // Called while the consumer is polled, on a thread of the runtime: the rest of the
        // pipeline must go on meanwhile. A runtime of one thread (tests) cannot wait here.
        let through = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread => {
                drained.through(|| {})
            }
            Ok(_) => tokio::task::block_in_place(wait),
            Err(_) => wait(),
        };
        let waited_ms = started.elapsed().as_millis() as u64;
        if through {
            info!(partitions = %describe(list), waited_ms, "Kafka is moving partitions; the rows read from them are published and their offsets stored, for librdkafka to commit as it gives them up.");
        } else {
            warn!(partitions = %describe(list), waited_ms, "Kafka is moving partitions while rows read from them are still unpublished (the output cluster is slow or refusing writes); their new owner scores them again.");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                info!(partitions = %describe(list), "Kafka assigned partitions to this instance.")
            }
            Rebalance::Revoke(list) => {
                info!(partitions = %describe(list), "Kafka revoked partitions from this instance.")
            }
            Rebalance::Error(e) => warn!(error = %e, "A Kafka rebalance failed."),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                if self.commit_failing.swap(false, Ordering::Relaxed) {
                    info!(client = self.role, "Kafka offsets are committed again.");
                }
            }
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                if self.commit_failing.swap(true, Ordering::Relaxed) {
                    debug!(client = self.role, error = %e, "Could not commit Kafka offsets (again).");
                } else {
                    warn!(client = self.role, error = %e, "Could not commit Kafka offsets; rows since the last commit may be scored again after a restart. Logged once until a commit succeeds.")
                }
            }
        }
    }
}

/// `topic[0,1,2]` for logs.
fn describe(list: &TopicPartitionList) -> String {
    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for e in list.elements() {
        by_topic
            .entry(e.topic().to_string())
            .or_default()
            .push(e.partition());
    }
    by_topic
        .iter()
        .map(|(t, p)| format!("{t}{p:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoke_forgets_only_what_was_held_from_its_partitions_and_only_once() {
        let revoked = Revoked::default();
        fn from<'a>(m: &'a (&'static str, i32, u32)) -> (&'a str, i32) {
            (m.0, m.1)
        }
        let mut held: std::collections::VecDeque<_> = [
            ("rows", 0, 1),
            ("rows", 1, 2),
            ("other", 1, 3),
            ("rows", 1, 4),
            ("rows", 2, 5),
        ]
        .into_iter()
        .collect();
        assert!(revoked.forget(&mut held, from).is_empty());
        let mut list = TopicPartitionList::new();
        list.add_partition("rows", 1);
        list.add_partition("rows", 2);
        revoked.record(&list);
        let forgotten = revoked.forget(&mut held, from);
        assert_eq!(forgotten, [("rows", 1, 2), ("rows", 1, 4), ("rows", 2, 5)]);
        assert_eq!(held, [("rows", 0, 1), ("other", 1, 3)]);
        // Taken: what is read after the revoke (the partition given back) is kept.
        held.push_back(("rows", 1, 6));
        assert!(revoked.forget(&mut held, from).is_empty());
        assert_eq!(held.len(), 3);
    }

    #[test]
    fn the_producer_gets_the_shared_properties_and_none_of_the_consumers_fetch_tuning() {
        let settings = KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            topic: "rows".into(),
            group_id: "g".into(),
            properties: [
                ("security.protocol", "SSL"),
                ("fetch.wait.max.ms", "2"),
                ("max.partition.fetch.bytes", "4194304"),
                ("auto.offset.reset", "latest"),
                ("group.instance.id", "faultline-a"),
                ("linger.ms", "5"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        };
        let names: Vec<String> = producer_properties(&settings)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(names, ["security.protocol", "linger.ms"]);
    }
}

/// The partitions a consumer paused while what it feeds had no room (the rows source, the labels
/// reader). librdkafka keeps a pause through a rebalance (a partition revoked while paused comes
/// back paused), so exactly these are resumed, assigned now or not.
#[derive(Default)]
pub(crate) struct Paused(TopicPartitionList);

impl Paused {
    /// Pauses the partitions assigned now that are not paused yet (each pause waits for
    /// librdkafka's threads, so it is asked once a partition).
    pub(crate) fn pause(&mut self, consumer: &rdkafka::consumer::StreamConsumer<Context>) {
        let fresh = consumer.assignment().map(|assigned| {
            let mut fresh = TopicPartitionList::new();
            for e in assigned.elements() {
                if self.0.find_partition(e.topic(), e.partition()).is_none() {
                    fresh.add_partition(e.topic(), e.partition());
                }
            }
            fresh
        });
        match fresh.and_then(|fresh| consumer.pause(&fresh).map(|()| fresh)) {
            Ok(fresh) => {
                for e in fresh.elements() {
                    self.0.add_partition(e.topic(), e.partition());
                }
            }
            Err(e) => {
                warn!(error = %e, "Could not pause the Kafka partitions while there is no room for what they hold.")
            }
        }
    }

    /// Resumes every partition paused; kept for another try if that fails.
    pub(crate) fn resume(&mut self, consumer: &rdkafka::consumer::StreamConsumer<Context>) {
        if self.0.count() == 0 {
            return;
        }
        match consumer.resume(&self.0) {
            Ok(()) => self.0 = TopicPartitionList::new(),
            Err(e) => warn!(error = %e, "Could not resume the Kafka partitions."),
        }
    }
}

/// The partitions a rebalance took from the rows consumer, kept for its read loop: the messages
/// it read from them but could not yet hand to the pipeline (held while it had no room) are
/// forgotten. Their offsets were never stored, so the committed offset lies before them and
/// whoever owns each partition next (another member, or this one again: an eager rebalance
/// revokes everything and a partition assigned again is read from its committed offset) reads
/// them again. Scoring them here too would publish their faults twice.
///
/// The revoke callback runs inside the consumer's poll, on the read loop's own task, so every
/// message held when the loop looks was read before the revoke: the loop looks before it uses
/// anything it reads, and before it takes a held message.
#[derive(Debug, Clone, Default)]
pub struct Revoked {
    /// Set when `partitions` holds some.
    any: Arc<AtomicBool>,
    partitions: Arc<std::sync::Mutex<Vec<(String, i32)>>>,
}

impl Revoked {
    fn record(&self, list: &TopicPartitionList) {
        let mut partitions = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        partitions.extend(
            list.elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition())),
        );
        self.any.store(!partitions.is_empty(), Ordering::Release);
    }

    /// Takes the partitions revoked since the last call and removes from `held` what was read
    /// from them (`from` names a message's partition); returns what was removed, in order.
    pub fn forget<T>(
        &self,
        held: &mut std::collections::VecDeque<T>,
        from: impl Fn(&T) -> (&str, i32),
    ) -> Vec<T> {
        // Looked at before every message the rows source reads: a load, and a swap only after
        // a revoke.
        if !self.any.load(Ordering::Acquire) || !self.any.swap(false, Ordering::Acquire) {
            return vec![];
        }
        let revoked =
            std::mem::take(&mut *self.partitions.lock().unwrap_or_else(|e| e.into_inner()));
        let mut forgotten = vec![];
        let mut kept = std::collections::VecDeque::with_capacity(held.len());
        for message in held.drain(..) {
            let (topic, partition) = from(&message);
            if revoked.iter().any(|(t, p)| *p == partition && t == topic) {
                forgotten.push(message);
            } else {
                kept.push_back(message);
            }
        }
        *held = kept;
        forgotten
    }
}

/// How long a consumer waits for room in what it feeds before it pauses its partitions and polls
/// while it waits.
pub(crate) const PAUSE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The most messages a consumer holds while it waits for room. Only what a poll brings from a
/// partition assigned during the wait is held (its partition is paused at once), so this is
/// reached only if Kafka goes on delivering from partitions it was asked to pause; the consumer
/// then stops polling until there is room, and librdkafka takes it for stuck after
/// `max.poll.interval.ms` (its rows are then read again by the group).
pub(crate) const MAX_HELD: usize = 4096;

/// Waits for `room` (what the consumer feeds taking the message at hand; false: it never will)
/// while polling `consumer`: librdkafka takes a consumer not polled for max.poll.interval.ms for
/// stuck and leaves the group, which would then read every message in flight again. After
/// [`PAUSE_AFTER`] its partitions are paused; a message that still comes (from a partition
/// assigned since) is given to `hold`, which keeps it in `held` for its turn, and its partition
/// is paused too; at most [`MAX_HELD`] are. False when the reader is to stop: no room will come,
/// or Kafka ended the consumer.
pub(crate) async fn wait_polling<T>(
    room: impl std::future::Future<Output = bool>,
    consumer: &rdkafka::consumer::StreamConsumer<Context>,
    paused: &mut Paused,
    held: &mut std::collections::VecDeque<T>,
    errors: &mut ReadErrors,
    topic: &str,
    hold: impl Fn(&mut std::collections::VecDeque<T>, &rdkafka::message::BorrowedMessage<'_>),
) -> bool {
    tokio::pin!(room);
    let mut waited = false;
    let mut full = false;
    loop {
        if held.len() >= MAX_HELD && !full {
            full = true;
            warn!(
                held = held.len(),
                topic, "Kafka went on delivering messages from paused partitions while there is no room for them; reading stops until there is (after max.poll.interval.ms the consumer leaves its group and the group reads them again)."
            );
        }
        tokio::select! {
            biased;
            ok = &mut room => return ok,
            _ = tokio::time::sleep(PAUSE_AFTER), if !waited => {
                waited = true;
                paused.pause(consumer);
            }
            m = consumer.recv(), if waited && held.len() < MAX_HELD => match m {
                Ok(m) => {
                    errors.delivered(topic);
                    hold(held, &m);
                    paused.pause(consumer);
                }
                Err(e) => {
                    if errors.failed(topic, &e, consumer.client()).await.is_break() {
                        return false;
                    }
                }
            },
        }
    }
}

/// How often, while Kafka says a topic read does not exist, its metadata is asked for again.
pub(crate) const TOPIC_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the cluster knows `topic`, with partitions (a blocking metadata request).
fn topic_has_partitions<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> bool {
    client
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(2))
        .is_ok_and(|m| {
            m.topics()
                .first()
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
        })
}
