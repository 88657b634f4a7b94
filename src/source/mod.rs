//! Rows from the bus. A source turns broker messages into [`Incoming`] items for the pipeline and
//! acknowledges them only when the pipeline says their verdicts are on the broker.

#[cfg(feature = "kafka")]
pub mod kafka;
pub mod labels;
pub mod mqtt;

use crate::row::json::{self, Decoded};
use crate::row::Schema;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// One broker message, decoded, waiting to be scored.
#[derive(Debug)]
pub struct Incoming {
    /// Topic it arrived on.
    pub topic: String,
    /// Rows that decoded, rows that did not, and the count of unknown keys.
    pub decoded: Decoded,
    /// When it arrived (RFC 3339), for dead letters.
    pub received_at: String,
    /// When it arrived, for latency.
    pub received: std::time::Instant,
    /// How to acknowledge it to the broker once its outputs are published.
    pub ack: Ack,
    /// Its share of the in-flight bound; released when it is acknowledged.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Incoming {
    /// A message that has just arrived.
    pub fn new(topic: String, decoded: Decoded, ack: Ack) -> Incoming {
        Incoming {
            topic,
            decoded,
            received_at: crate::sink::now_rfc3339(),
            received: std::time::Instant::now(),
            ack,
            permit: None,
        }
    }
}

impl crate::batch::Rows for Incoming {
    fn rows(&self) -> usize {
        self.decoded.rows.len() + self.decoded.rejects.len()
    }
}

/// What acknowledging a message takes.
#[derive(Debug)]
pub enum Ack {
    /// An MQTT QoS 1 publish, acknowledged with PUBACK through the source's connection.
    Mqtt(rumqttc::Publish),
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

/// The options every faultline MQTT connection starts from: `client_id` on the configured broker,
/// over `transport`, with the configured keep-alive and login.
pub fn mqtt_options(
    settings: &crate::config::MqttSettings,
    client_id: String,
    transport: rumqttc::Transport,
) -> rumqttc::MqttOptions {
    let mut options = rumqttc::MqttOptions::new(client_id, &settings.host, settings.port);
    options
        .set_transport(transport)
        .set_keep_alive(settings.keep_alive);
    if let Some((user, password)) = &settings.credentials {
        options.set_credentials(user.clone(), &**password);
    }
    options
}

/// Records a failed MQTT connection attempt of `client` on `link`, and logs it if it is news
/// (the first failure after being up, or a refusal not yet on record; not every retry).
pub fn mqtt_failed(
    link: &crate::link::Link,
    error: &rumqttc::ConnectionError,
    backoff: &Backoff,
    broker: &str,
    client: &str,
) {
    if !mqtt_failure_is_news(link, error, backoff) {
        return;
    }
    match link.refused() {
        Some(reason) => {
            tracing::warn!(broker, client, %reason, "The MQTT broker refuses this client; retrying with backoff until it is let in.")
        }
        None => {
            tracing::warn!(broker, client, %error, "Lost the MQTT broker; reconnecting with backoff.")
        }
    }
}

fn mqtt_failure_is_news(
    link: &crate::link::Link,
    error: &rumqttc::ConnectionError,
    backoff: &Backoff,
) -> bool {
    use rumqttc::{ConnectReturnCode as Code, ConnectionError as E};
    let refused = match error {
        E::ConnectionRefused(Code::BadUserNamePassword) => {
            "the broker refused the user name or password (source.mqtt.username, password)".into()
        }
        // Mosquitto answers a wrong password this way too (MQTT 3.1.1 return code 5).
        E::ConnectionRefused(Code::NotAuthorized) => {
            "the broker refused this client: not authorized (a wrong or missing login? see source.mqtt.username, password)".into()
        }
        E::ConnectionRefused(code) => format!("the broker refused the connection: {code:?}"),
        E::Tls(e) => format!("TLS: {e}"),
        _ => {
            let was_up = link.set_up(false);
            return was_up || backoff.is_first();
        }
    };
    link.refuse(refused)
}

/// Settings a source needs beyond its connection.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Model schema for decoding.
    pub schema: Schema,
    /// Bound on rows in flight.
    pub in_flight: Arc<Semaphore>,
    /// Total permits of `in_flight` (a message never takes more than this).
    pub max_permits: u32,
    /// Largest accepted message.
    pub max_payload_bytes: usize,
    /// Where counts go.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A running source.
#[derive(Debug)]
pub enum Source {
    /// MQTT (an external broker or the embedded one).
    Mqtt(mqtt::MqttSource),
    /// Kafka.
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaSource),
}

impl Source {
    /// Whether the connection is up.
    pub fn link(&self) -> crate::link::Link {
        match self {
            Source::Mqtt(s) => s.link(),
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => s.link(),
        }
    }

    /// A handle for acknowledgements.
    pub fn acker(&self) -> Acker {
        match self {
            Source::Mqtt(s) => Acker::Mqtt(s.acker(), Default::default()),
            #[cfg(feature = "kafka")]
            Source::Kafka(s) => Acker::Kafka(s.acker()),
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
    /// PUBACK through the MQTT source's connection. rumqttc sends acknowledgements from the
    /// event loop, which stops being polled while the pipeline is full; an acknowledgement that
    /// does not fit in its request queue waits here (without its payload) instead of blocking the
    /// acker, which would keep the pipeline full for ever.
    Mqtt(
        rumqttc::AsyncClient,
        std::collections::VecDeque<rumqttc::Publish>,
    ),
    /// Offset store on the Kafka consumer.
    #[cfg(feature = "kafka")]
    Kafka(kafka::KafkaAcker),
}

impl Acker {
    /// Acknowledges one message whose outputs are on the broker. Never waits.
    pub fn ack(&mut self, ack: Ack) {
        match (self, ack) {
            (Acker::Mqtt(client, waiting), Ack::Mqtt(mut publish)) => {
                publish.payload = Default::default();
                waiting.push_back(publish);
                Acker::send_waiting(client, waiting);
            }
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
            Acker::Mqtt(_, waiting) => !waiting.is_empty(),
            #[cfg(feature = "kafka")]
            Acker::Kafka(_) => false,
        }
    }

    /// Sends acknowledgements that waited for room, in order, as far as there is room.
    pub fn flush(&mut self) {
        match self {
            Acker::Mqtt(client, waiting) => Acker::send_waiting(client, waiting),
            #[cfg(feature = "kafka")]
            Acker::Kafka(_) => {}
        }
    }

    fn send_waiting(
        client: &rumqttc::AsyncClient,
        waiting: &mut std::collections::VecDeque<rumqttc::Publish>,
    ) {
        while let Some(publish) = waiting.front() {
            match client.try_ack(publish) {
                Ok(()) => {
                    waiting.pop_front();
                }
                Err(rumqttc::ClientError::TryRequest(rumqttc::Request::PubAck(_))) => return,
                Err(e) => {
                    // The connection is gone for good (shutdown): the broker redelivers.
                    tracing::debug!(error = %e, "Dropped acknowledgements; the broker will redeliver.");
                    waiting.clear();
                    return;
                }
            }
        }
    }
}

/// Decodes a message's payload, refusing one over the size limit.
pub fn decode(payload: &[u8], options: &SourceOptions) -> Decoded {
    if payload.len() > options.max_payload_bytes {
        too_large(payload, options)
    } else {
        json::decode(payload, &options.schema)
    }
}

/// A message over the size limit: one reject carrying the message's first 64 KiB.
#[cold]
fn too_large(payload: &[u8], options: &SourceOptions) -> Decoded {
    const KEEP: usize = 64 * 1024;
    let mut text = String::from_utf8_lossy(&payload[..payload.len().min(KEEP)]).into_owned();
    text.push_str("…(truncated)");
    Decoded {
        rows: crate::row::RowBatch::new(options.schema.width()),
        rejects: vec![json::Reject {
            error: format!(
                "the message is {} bytes; faultline accepts at most {} (split it into smaller arrays of rows)",
                payload.len(),
                options.max_payload_bytes
            ),
            reason: json::RejectReason::TooLarge,
            payload: text,
        }],
        unknown_keys: 0,
    }
}

/// Messages decoded at once, ahead of the pipeline (each on the blocking pool).
pub const DECODE_AHEAD: usize = 64;

/// Decodes messages and admits them to the pipeline in arrival order, which Kafka offsets and
/// MQTT acknowledgements depend on. With [`Decode::Offload`] each message is decoded on the
/// blocking pool, several at once: JSON decoding is the costliest step per row, and the MQTT
/// source's task also does the network reads. Kafka's client reads in its own threads, so the
/// Kafka source decodes in place ([`Decode::InPlace`]) and saves the hand-offs (measured: the
/// hand-offs cost more CPU than they freed there).
#[derive(Debug)]
pub struct Admitter {
    tx: mpsc::Sender<Decoding>,
    options: Arc<SourceOptions>,
    decode: Decode,
}

/// Where an [`Admitter`] decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// On the blocking pool, up to [`DECODE_AHEAD`] at once.
    Offload,
    /// On the caller's task.
    InPlace,
}

/// A message on its way to admission.
#[derive(Debug)]
enum Decoding {
    /// Being decoded on the blocking pool.
    Pending(tokio::task::JoinHandle<Incoming>),
    /// Decoded.
    Ready(Box<Incoming>),
}

impl Admitter {
    /// Starts the task that admits decoded messages in order to `out`.
    pub fn start(
        source: &'static str,
        decode: Decode,
        options: SourceOptions,
        mut stopped: watch::Receiver<bool>,
        out: mpsc::Sender<Incoming>,
    ) -> Admitter {
        let options = Arc::new(options);
        let (tx, mut rx) = mpsc::channel::<Decoding>(DECODE_AHEAD);
        let opts = options.clone();
        tokio::spawn(async move {
            while let Some(decoding) = rx.recv().await {
                let decoded = match decoding {
                    Decoding::Ready(incoming) => Ok(*incoming),
                    Decoding::Pending(handle) => handle.await,
                };
                let incoming = match decoded {
                    Ok(incoming) => incoming,
                    Err(e) => {
                        // Unacknowledged: the broker delivers it again (MQTT after a reconnect).
                        tracing::error!(error = %e, "Decoding a message failed; it stays unacknowledged.");
                        continue;
                    }
                };
                if !admit(incoming, source, &opts, &mut stopped, &out).await {
                    return;
                }
            }
        });
        Admitter {
            tx,
            options,
            decode,
        }
    }

    /// Queues one message for decoding; waits while [`DECODE_AHEAD`] are queued (backpressure).
    /// False once the pipeline is stopping.
    pub async fn push(
        &self,
        payload: impl AsRef<[u8]> + Send + 'static,
        topic: String,
        ack: Ack,
    ) -> bool {
        let decoding = match self.decode {
            Decode::InPlace => {
                let decoded = decode(payload.as_ref(), &self.options);
                Decoding::Ready(Box::new(Incoming::new(topic, decoded, ack)))
            }
            Decode::Offload => {
                let options = self.options.clone();
                let received = std::time::Instant::now();
                Decoding::Pending(tokio::task::spawn_blocking(move || {
                    let decoded = decode(payload.as_ref(), &options);
                    let mut incoming = Incoming::new(topic, decoded, ack);
                    incoming.received = received;
                    incoming
                }))
            }
        };
        self.tx.send(decoding).await.is_ok()
    }
}

/// Counts a decoded message, takes its share of the in-flight bound (waiting while the pipeline
/// is full: backpressure) and hands it on. False once the pipeline is stopping; the message then
/// stays unacknowledged and the broker redelivers it.
pub async fn admit(
    mut incoming: Incoming,
    source: &str,
    options: &SourceOptions,
    stopped: &mut watch::Receiver<bool>,
    out: &mpsc::Sender<Incoming>,
) -> bool {
    use crate::batch::Rows;
    let m = &options.metrics;
    m.rows_received
        .with_label_values(&[source])
        .inc_by(incoming.rows() as u64);
    m.unknown_keys.inc_by(incoming.decoded.unknown_keys);
    let rows = incoming.rows().clamp(1, options.max_permits as usize) as u32;
    let permit = tokio::select! {
        p = options.in_flight.clone().acquire_many_owned(rows) => p.ok(),
        _ = stopped.wait_for(|s| *s) => None,
    };
    let Some(permit) = permit else {
        return false;
    };
    incoming.permit = Some(permit);
    m.queue_rows
        .set(options.max_permits as i64 - options.in_flight.available_permits() as i64);
    out.send(incoming).await.is_ok()
}

/// Disconnects an MQTT client cleanly and waits up to 2 s for its event loop task to end.
pub async fn disconnect(client: &rumqttc::AsyncClient, mut task: tokio::task::JoinHandle<()>) {
    let _ = client.disconnect().await;
    if tokio::time::timeout(Duration::from_secs(2), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

/// Capped exponential backoff for reconnecting: 100 ms doubling to 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The next wait.
    next: Duration,
    /// Waits since the last success.
    attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Backoff::MIN,
            attempts: 0,
        }
    }
}

impl Backoff {
    /// First wait after a failure.
    pub const MIN: Duration = Duration::from_millis(100);
    /// Longest wait.
    pub const MAX: Duration = Duration::from_secs(10);

    /// True before the first wait since the last success: the moment to log a state change.
    pub fn is_first(&self) -> bool {
        self.attempts == 0
    }

    /// Sleeps for the current wait, then doubles it (up to [`Backoff::MAX`]).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Backoff::MAX);
        self.attempts += 1;
    }

    /// After a success.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        assert!(b.is_first());
        let mut waits = vec![];
        for _ in 0..9 {
            let t = tokio::time::Instant::now();
            b.wait().await;
            waits.push(t.elapsed().as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        assert!(!b.is_first());
        b.reset();
        assert!(b.is_first());
    }
}
