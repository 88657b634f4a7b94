//! The bus, one folder per transport, both directions in each: rows in, verdicts and dead letters
//! out, acknowledged to the source's broker only once its outputs are on the broker.
//!
//! - [`mqtt`]: MQTT (an external broker, or the embedded one in [`mqtt::broker`]), with TLS.
//! - [`kafka`]: Kafka through librdkafka (the `kafka` feature; its settings are checked in every build).
//! - [`admit`]: decoding and the in-flight bound, every source's way into the pipeline.
//! - [`messages`]: what faultline publishes (verdicts, dead letters).
//! - [`link`], [`backoff`]: connection state for `/readyz`, and reconnecting.
//!
//! [`Source`], [`Acker`] and [`Publisher`] dispatch to the configured transport.

pub mod admit;
pub mod backoff;
pub mod kafka;
pub mod link;
pub mod messages;
pub mod mqtt;

pub use admit::{Incoming, SourceOptions};
pub use backoff::Backoff;
pub use messages::now_rfc3339;
use tokio::sync::watch;

/// Largest message accepted from the bus (a JSON array of rows).
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;

/// What acknowledging a message takes.
#[derive(Debug)]
pub enum Ack {
    /// An MQTT QoS 1 publish, acknowledged with PUBACK through the source's connection, unless
    /// it arrived on an earlier `connection` (see [`mqtt::driver::Driver::connection`]).
    Mqtt {
        /// The message, without its topic and payload (the source hands those to decoding).
        publish: rumqttc::Publish,
        /// The number of the connection it arrived on.
        connection: u64,
    },
    /// A Kafka message: its offset is stored for the next commit.
    #[cfg(feature = "kafka")]
    Kafka {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The message's offset (the commit will be past it).
        offset: i64,
    },
    /// Nothing to acknowledge (QoS 0, or a message that did not come from a broker).
    None,
}

/// A running source.
#[derive(Debug)]
pub enum Source {
    /// MQTT (an external broker or the embedded one).
    Mqtt(mqtt::source::MqttSource),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(kafka::source::KafkaSource),
}

impl Source {
    /// Whether the connection is up.
    pub fn link(&self) -> link::Link {
        match self {
            Source::Mqtt(s) => s.link(),
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => s.link(),
        }
    }

    /// A handle for acknowledgements.
    pub fn acker(&self) -> Acker {
        match self {
            Source::Mqtt(s) => {
                let (client, connection, direct) = s.acker();
                Acker::Mqtt(MqttAcker::new(client, connection, direct))
            }
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => Acker::Kafka(s.acker()),
        }
    }

    /// Watches for the reason the source failed for good (a Kafka consumer that librdkafka
    /// ended; an MQTT source reconnects for as long as it runs, and fails only on a bug).
    pub fn failure(&self) -> Option<watch::Receiver<Option<String>>> {
        match self {
            Source::Mqtt(s) => Some(s.failure()),
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => Some(s.failure()),
        }
    }

    /// Stops forwarding messages; what arrives from now on stays unacknowledged.
    pub fn stop_reading(&self) {
        match self {
            Source::Mqtt(s) => s.stop_reading(),
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => s.stop_reading(),
        }
    }

    /// Commits what was acknowledged and disconnects.
    pub async fn close(self) {
        match self {
            Source::Mqtt(s) => s.close().await,
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => s.close().await,
        }
    }
}

/// Acknowledges messages to the source's broker.
pub enum Acker {
    /// PUBACK through the MQTT source's connection.
    Mqtt(MqttAcker),
    /// Offset store on the Kafka consumer.
    #[cfg(feature = "kafka")]
    Kafka(kafka::source::KafkaAcker),
}

/// PUBACKs through the MQTT source's connection. QoS 1 acknowledgements go to the connection's
/// driver, which writes them itself before each poll ([`mqtt::driver::DirectAcks`]); while its
/// poll has waited [`mqtt::driver::DirectAcks::STALE`] (the connection is idle), the oldest goes
/// through the client's request queue to wake it, and the driver writes the rest once that one is
/// out. Nothing here waits: rumqttc serves that queue from the event loop, which stops being
/// polled while the pipeline is full, and an acknowledger that waited for it would keep the
/// pipeline full for ever. An acknowledgement for a message of an earlier connection is dropped
/// (see [`mqtt::driver::Driver::connection`]): the broker sends that message again if it kept the
/// session, and otherwise its packet id names another message.
pub struct MqttAcker {
    client: rumqttc::AsyncClient,
    connection: std::sync::Arc<std::sync::atomic::AtomicU64>,
    direct: std::sync::Arc<mqtt::driver::DirectAcks>,
}

impl MqttAcker {
    /// Acknowledges through the driver that drains `direct`, or through `client`; `connection`
    /// is that driver's current connection number.
    pub fn new(
        client: rumqttc::AsyncClient,
        connection: std::sync::Arc<std::sync::atomic::AtomicU64>,
        direct: std::sync::Arc<mqtt::driver::DirectAcks>,
    ) -> MqttAcker {
        MqttAcker {
            client,
            connection,
            direct,
        }
    }

    /// Acknowledges `publish` (of `connection`) as soon as the driver writes it (or, on an idle
    /// connection, the next [`MqttAcker::flush`] hands it over). Never waits.
    /// Only QoS 1 messages are acknowledged: a QoS 1 subscription receives nothing above QoS 1,
    /// and a QoS 0 message has no acknowledgement.
    pub fn ack(&mut self, mut publish: rumqttc::Publish, connection: u64) {
        if publish.qos != rumqttc::QoS::AtLeastOnce {
            return;
        }
        publish.payload = Default::default();
        self.direct.push(publish, connection);
    }

    /// True while acknowledgements wait for the driver (and it is still there).
    pub fn has_waiting(&self) -> bool {
        self.direct.has_waiting()
    }

    /// If the driver's connection is idle, hands the oldest waiting acknowledgement to the
    /// client's queue to wake it (the driver writes the rest after it).
    pub fn flush(&mut self) {
        self.direct
            .hand_over(std::time::Instant::now(), &self.connection, &self.client);
    }
}

impl Acker {
    /// Acknowledges one message whose outputs are on the broker. Never waits.
    pub fn ack(&mut self, ack: Ack) {
        match (self, ack) {
            (
                Acker::Mqtt(acker),
                Ack::Mqtt {
                    publish,
                    connection,
                },
            ) => acker.ack(publish, connection),
            #[cfg(feature = "kafka")]
            (
                Acker::Kafka(acker),
                Ack::Kafka {
                    topic,
                    partition,
                    offset,
                },
            ) => acker.store(&topic, partition, offset),
            _ => {}
        }
    }

    /// True while acknowledgements wait for room; call [`Acker::flush`] again soon.
    pub fn has_waiting(&self) -> bool {
        match self {
            Acker::Mqtt(acker) => acker.has_waiting(),
            #[cfg(feature = "kafka")]
            Acker::Kafka(_) => false,
        }
    }

    /// Sends acknowledgements that waited for room, in order, as far as there is room.
    pub fn flush(&mut self) {
        match self {
            Acker::Mqtt(acker) => acker.flush(),
            #[cfg(feature = "kafka")]
            Acker::Kafka(_) => {}
        }
    }
}

/// A publisher stopped.
#[derive(Debug, thiserror::Error)]
#[error("the publisher has stopped: {0}")]
pub struct PublishError(pub String);

/// One message to publish.
#[derive(Debug)]
pub struct Output<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Message key on Kafka (the row id); unused on MQTT.
    pub key: Option<&'a str>,
    /// `model_version` header on Kafka; unused on MQTT (the payload carries it too).
    pub model_version: Option<&'a str>,
    /// The JSON body.
    pub payload: Vec<u8>,
}

/// Publishes outputs on the source's bus and counts the broker's acknowledgements, in order.
#[derive(Debug)]
pub enum Publisher {
    /// MQTT, QoS 1.
    Mqtt(mqtt::publisher::MqttPublisher),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(kafka::publisher::KafkaPublisher),
}

impl Publisher {
    /// Queues a message; returns its sequence number.
    pub async fn publish(&mut self, out: Output<'_>) -> Result<u64, PublishError> {
        match self {
            Publisher::Mqtt(p) => p.publish(out.topic, out.payload).await,
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.publish(out).await,
        }
    }

    /// The last sequence number handed out.
    pub fn sent(&self) -> u64 {
        match self {
            Publisher::Mqtt(p) => p.sent(),
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.sent(),
        }
    }

    /// Watches how many publishes the broker has acknowledged.
    pub fn acked(&self) -> watch::Receiver<u64> {
        match self {
            Publisher::Mqtt(p) => p.acked(),
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.acked(),
        }
    }

    /// Whether the connection is up.
    pub fn link(&self) -> link::Link {
        match self {
            Publisher::Mqtt(p) => p.link(),
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.link(),
        }
    }

    /// Resolves with the reason if the publisher fails for good.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        match self {
            Publisher::Mqtt(p) => p.failure(),
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.failure(),
        }
    }

    /// Whether the publisher has failed for good and counted that failure itself (Kafka's
    /// delivery task, on `faultline_publish_errors_total`): a publish refused after it fails only
    /// because of it, and is not another failure to count.
    pub fn failure_counted(&self) -> bool {
        match self {
            Publisher::Mqtt(_) => false,
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.failure().borrow().is_some(),
        }
    }

    /// The `sink` metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Publisher::Mqtt(_) => crate::metrics::SINK_MQTT,
            #[cfg(feature = "kafka")]
            Publisher::Kafka(_) => crate::metrics::SINK_KAFKA,
        }
    }

    /// Delivers what is queued (briefly) and disconnects.
    pub async fn close(self) {
        match self {
            Publisher::Mqtt(p) => p.close().await,
            #[cfg(feature = "kafka")]
            Publisher::Kafka(p) => p.close().await,
        }
    }
}
