//! Publishes verdicts and dead letters to Kafka, and tells the pipeline when the cluster has
//! acknowledged them.
//!
//! Each publish gets a sequence number; a task awaits the delivery reports in that order, so
//! "everything up to sequence n is on the cluster" is `acked >= n`, as with the MQTT publisher.
//! A delivery that fails for good (librdkafka retries until `message.timeout.ms`) stops the
//! daemon: the rows behind it were not committed and will be read again.

use crate::bus::kafka::client::{client_config, producer_properties, Context};
use crate::bus::kafka::KafkaSettings;
use crate::bus::{Output, PublishError};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::error;

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

/// Publishes to one Kafka cluster.
pub struct KafkaPublisher {
    producer: FutureProducer<Context>,
    /// The last sequence number handed out.
    sent: u64,
    /// Delivery reports, in publish order, to the counting task.
    deliveries: mpsc::Sender<DeliveryFuture>,
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
    /// Creates the producer (it connects in the background).
    pub fn start(
        settings: &KafkaSettings,
        max_message_bytes: usize,
    ) -> Result<KafkaPublisher, KafkaError> {
        let mut config =
            client_config(&settings.brokers, &DEFAULTS, &producer_properties(settings));
        config.set("message.max.bytes", max_message_bytes.to_string());
        let context = Context::new("producer", None);
        let link = context.link();
        let producer: FutureProducer<Context> = config.create_with_context(context)?;
        let (deliveries, mut reports) = mpsc::channel::<DeliveryFuture>(65_536);
        let (ack_tx, acked) = watch::channel(0u64);
        let (failed, failure) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut count = 0u64;
            while let Some(report) = reports.recv().await {
                let problem = match report.await {
                    Ok(Ok(_)) => {
                        count += 1;
                        ack_tx.send_replace(count);
                        continue;
                    }
                    Ok(Err((e, _))) => e.to_string(),
                    Err(_) => "the producer was dropped".to_string(),
                };
                error!(error = %problem, "Kafka did not accept a verdict; stopping, since the rows behind it cannot be committed.");
                let _ = failed.send(Some(format!("Kafka did not accept a verdict: {problem}")));
                return;
            }
        });
        Ok(KafkaPublisher {
            producer,
            sent: 0,
            deliveries,
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
        let report = loop {
            match self.producer.send_result(record) {
                Ok(report) => break report,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(PublishError(e.to_string())),
            }
        };
        self.deliveries
            .send(report)
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
