//! Admission: every source's front door into the pipeline. Decodes each message (ahead, in
//! arrival order), counts it, and takes its share of the in-flight bound, waiting while the
//! pipeline is full (backpressure: the source stops reading and the broker holds the rest).

use super::Ack;
use crate::row::json::{self, Decoded};
use crate::row::{sparkplug, Schema};
use prometheus::IntCounter;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// When it arrived, for dead letters (formatted only for one: most messages never need it).
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// When it arrived, for latency.
    pub received: std::time::Instant,
    /// How to acknowledge it to the broker once its outputs are published.
    pub ack: Ack,
    /// Its share of the in-flight bound; released when it is acknowledged.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Incoming {
    /// Rows it carries, readable or not (its share of the in-flight bound and of a batch).
    pub fn rows(&self) -> usize {
        self.decoded.rows.len() + self.decoded.rejects.len()
    }

    /// A message that has just arrived.
    pub fn new(topic: String, decoded: Decoded, ack: Ack) -> Incoming {
        Incoming {
            topic,
            decoded,
            received_at: chrono::Utc::now(),
            received: std::time::Instant::now(),
            ack,
            permit: None,
        }
    }
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
    /// How the messages encode rows.
    pub reader: Reader,
}

/// How a source's messages encode rows.
#[derive(Debug, Clone, Default)]
pub enum Reader {
    /// faultline's JSON rows.
    #[default]
    Json,
    /// Sparkplug B payloads, with the aliases the births bound.
    Sparkplug(Arc<SparkplugReader>),
}

impl Reader {
    /// The reader for an MQTT source's format (`None`: not MQTT, so JSON).
    pub fn new(format: Option<&super::mqtt::RowFormat>) -> Reader {
        match format {
            Some(super::mqtt::RowFormat::Sparkplug { id_metric }) => {
                Reader::Sparkplug(Arc::new(SparkplugReader::new(id_metric)))
            }
            _ => Reader::Json,
        }
    }
}

/// Reads Sparkplug B: each NDATA/DDATA is a row; births bind aliases for the data after them.
#[derive(Debug)]
pub struct SparkplugReader {
    id_metric: String,
    /// `group/node[/device]` → its last birth (its aliases and, an edge node's, its bdSeq).
    births: std::sync::Mutex<std::collections::HashMap<String, Arc<sparkplug::Birth>>>,
    /// The source's connection, on which data using an alias no birth bound asks its edge node
    /// for its births again; unset until [`Self::ask_for_births_on`].
    commands: std::sync::OnceLock<rumqttc::AsyncClient>,
    /// `group/node` → when it may be asked again, and the wait after that.
    asked: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Duration)>>,
}

/// How long an edge node is given to answer a rebirth request before it is asked again; the
/// wait doubles while it does not answer, up to [`REBIRTH_MAX`].
const REBIRTH_FIRST: Duration = Duration::from_secs(60);
const REBIRTH_MAX: Duration = Duration::from_secs(3600);
/// Edge nodes waited on at once: names beyond it (anyone may publish under `spBv1.0/`) are not
/// asked, so the table stays bounded.
const REBIRTH_NODES: usize = 10_000;
/// Nodes and devices whose births are kept (each holds its aliases, about 10 KB for a wafer
/// row): births under new names beyond it are refused, so the table stays bounded.
const BIRTHS_KEPT: usize = 10_000;

impl SparkplugReader {
    /// Reads the wafer id from the metric `id_metric`.
    pub fn new(id_metric: &str) -> SparkplugReader {
        SparkplugReader {
            id_metric: id_metric.to_string(),
            births: Default::default(),
            commands: Default::default(),
            asked: Default::default(),
        }
    }

    /// From now on, data using an alias that no birth this reader has seen bound (after
    /// faultline starts, say) makes it ask that edge node for its births again: an NCMD with
    /// `Node Control/Rebirth` on `client`, at most once a minute a node, less often while the
    /// node does not answer. Not on a shared subscription, where each birth reaches one instance
    /// only and the asking would not end.
    pub fn ask_for_births_on(&self, client: rumqttc::AsyncClient) {
        let _ = self.commands.set(client);
    }

    fn asked(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (std::time::Instant, Duration)>>
    {
        self.asked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the edge node behind `t` for its births, unless it is still waited on.
    fn ask_for_births(&self, t: &sparkplug::Topic) {
        let Some(client) = self.commands.get() else {
            return;
        };
        let now = std::time::Instant::now();
        let wait = {
            let asked = self.asked();
            match asked.get(t.node()) {
                Some((next, _)) if now < *next => return,
                Some((_, wait)) => (*wait * 2).min(REBIRTH_MAX),
                None if asked.len() >= REBIRTH_NODES => return,
                None => REBIRTH_FIRST,
            }
        };
        let topic = t.command_topic();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let payload = sparkplug::rebirth_request(now_ms);
        match client.try_publish(&topic, rumqttc::QoS::AtMostOnce, false, payload) {
            Ok(()) => {
                self.asked()
                    .insert(t.node().to_string(), (now + wait, wait));
                tracing::info!(
                    %topic,
                    source = %t.source,
                    "Data used a Sparkplug alias from a birth faultline has not seen; asked the \
                     edge node for its births again (Node Control/Rebirth)."
                );
            }
            Err(e) => {
                tracing::warn!(%topic, error = %e, "Could not ask a Sparkplug edge node for its births.")
            }
        }
    }

    fn births(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<sparkplug::Birth>>> {
        self.births.lock().unwrap_or_else(|e| e.into_inner())
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
    let text = crate::bus::messages::dead_letter_text(payload);
    Decoded {
        rows: crate::row::RowBatch::new(options.schema.width()),
        rejects: vec![json::Reject {
            error: format!(
                "the message is {} bytes; faultline accepts at most {} (split it into smaller arrays of rows)",
                payload.len(),
                options.max_payload_bytes
            ),
            row: None,
            reason: json::RejectReason::TooLarge,
            column: None,
            value: None,
            payload: text,
        }],
        unknown_keys: 0,
    }
}

/// Decoded messages queued for admission ahead of the pipeline. Their rows are bounded too: at
/// most the in-flight bound's worth (`[batch] queue_rows`) wait, besides the message at hand. A
/// message of an array may hold up to 100,000 rows of 590 sensors each (236 MB decoded, from a
/// payload of a megabyte or two when its rows are sparse), so 64 of them could have held 15 GB.
pub const DECODE_AHEAD: usize = 64;

/// What [`Admitter::try_queue`] did.
#[derive(Debug)]
pub enum Queued {
    /// Queued.
    Yes,
    /// No room now: the message, back (boxed: this is the rare, slow path).
    Full(Box<Incoming>),
    /// The pipeline is stopping.
    Stopping,
}

/// Decodes messages on the source's task and admits them to the pipeline in arrival order, which
/// Kafka offsets and MQTT acknowledgements depend on. A message that finds room and nothing
/// waiting before it goes straight on; otherwise a task of its own waits for room in the
/// in-flight bound, so the source keeps reading up to [`DECODE_AHEAD`] messages ahead, holding
/// at most the in-flight bound's worth of rows among them. (Handing
/// every message to that task woke the runtime's second thread about twice as often: 0.39
/// context switches a row against 0.18 on MQTT, BENCHMARKS.md.) Decoding each message on the
/// blocking pool instead was measured and dropped: on Kafka (whose client reads in its own
/// threads) and on MQTT, the hand-offs' futex traffic and allocations cost more CPU than they
/// freed (MQTT: 53–58 µs of daemon CPU a row against 31–36 µs in place, ~16k rows/s against
/// ~21k; BENCHMARKS.md).
#[derive(Debug)]
pub struct Admitter {
    tx: mpsc::Sender<(Incoming, OwnedSemaphorePermit)>,
    options: Arc<SourceOptions>,
    /// The rows decoded ahead: a message waiting for the admitting task holds its share
    /// ([`permits`]) of these, as many as the in-flight bound has.
    ahead: Arc<Semaphore>,
    /// Messages given to the admitting task and not yet handed on by it.
    queued: Arc<AtomicUsize>,
    /// Where admitted messages go.
    out: mpsc::Sender<Incoming>,
    /// This source's count of rows received, looked up once.
    received: IntCounter,
    stopped: watch::Receiver<bool>,
}

/// Whether every message an [`Admitter`] took is through the pipeline: none waits to be admitted
/// and every in-flight permit is back (a message's permits go back once its outputs are on the
/// broker and the message is acknowledged).
#[derive(Debug, Clone)]
pub struct Drained {
    queued: Arc<AtomicUsize>,
    in_flight: Arc<Semaphore>,
    permits: usize,
    stopped: watch::Receiver<bool>,
}

impl Drained {
    /// Whether nothing is in flight now, counting every message queued ([`Drained::through`]
    /// looks past one that cannot move).
    #[cfg(test)]
    fn now(&self) -> bool {
        self.queued.load(Ordering::Acquire) == 0
            && self.in_flight.available_permits() >= self.permits
    }

    /// Whether every message taken in is through, looking twice (with `pause` between) when
    /// some are counted as waiting for the admitting task: a message whose hand-over is itself
    /// waiting (the reader blocked with it, in a rebalance's wait) is counted but cannot move.
    /// With every permit back, the admitting task takes any message it has at once (and holds
    /// its permits until it is acknowledged), so a count that stays put across the pause with
    /// every permit still back is such messages alone.
    pub fn through(&self, pause: impl FnOnce()) -> bool {
        let permits_back = || self.in_flight.available_permits() >= self.permits;
        let queued = self.queued.load(Ordering::Acquire);
        if !permits_back() {
            return false;
        }
        if queued == 0 {
            return true;
        }
        pause();
        permits_back() && self.queued.load(Ordering::Acquire) == queued
    }

    /// Whether the source is stopping: the shutdown waits for the rows in flight itself (and
    /// messages left waiting for room are never taken in).
    pub fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }
}

impl Admitter {
    /// Whether every message taken so far is through the pipeline, asked at any time.
    pub fn drained(&self) -> Drained {
        Drained {
            queued: self.queued.clone(),
            in_flight: self.options.in_flight.clone(),
            permits: self.options.max_permits as usize,
            stopped: self.stopped.clone(),
        }
    }

    /// Starts the task that admits decoded messages in order to `out`.
    pub fn start(
        source: &'static str,
        options: SourceOptions,
        mut stopped: watch::Receiver<bool>,
        out: mpsc::Sender<Incoming>,
    ) -> Admitter {
        let options = Arc::new(options);
        let (tx, mut rx) = mpsc::channel::<(Incoming, OwnedSemaphorePermit)>(DECODE_AHEAD);
        let ahead = Arc::new(Semaphore::new(options.max_permits as usize));
        let opts = options.clone();
        let queued = Arc::new(AtomicUsize::new(0));
        let (left, to) = (queued.clone(), out.clone());
        let watching = stopped.clone();
        let received = options.metrics.rows_received.with_label_values(&[source]);
        let counter = received.clone();
        tokio::spawn(async move {
            while let Some((incoming, ahead)) = rx.recv().await {
                let admitted = admit(incoming, ahead, &counter, &opts, &mut stopped, &to).await;
                left.fetch_sub(1, Ordering::Release);
                if !admitted {
                    return;
                }
            }
        });
        Admitter {
            tx,
            options,
            ahead,
            queued,
            out,
            received,
            stopped: watching,
        }
    }

    /// Admits a message here and now when that needs no wait: nothing earlier is still with the
    /// admitting task (so the order holds), its permits are free and the pipeline has room.
    /// Saves the hand-over to that task, and the thread it may wake, for most messages. Gives
    /// the message back when it must wait.
    fn admit_now(&self, mut incoming: Incoming) -> Option<Incoming> {
        if self.queued.load(Ordering::Acquire) != 0 || *self.stopped.borrow() {
            return Some(incoming);
        }
        let options = &self.options;
        let rows = permits(&incoming, options);
        let Ok(permit) = options.in_flight.clone().try_acquire_many_owned(rows) else {
            return Some(incoming);
        };
        let Ok(slot) = self.out.try_reserve() else {
            return Some(incoming);
        };
        count(&incoming, &self.received, options);
        incoming.permit = Some(permit);
        queue_gauge(options);
        slot.send(incoming);
        None
    }

    /// Decodes one message and queues it for admission; waits while [`DECODE_AHEAD`] messages or
    /// the in-flight bound's worth of rows are queued
    /// (backpressure). False once the pipeline is stopping.
    pub async fn push(&self, payload: impl AsRef<[u8]>, topic: String, ack: Ack) -> bool {
        let decoded = self.decode(payload.as_ref(), &topic);
        drop(payload);
        self.queue(topic, decoded, ack).await
    }

    /// Decodes one message's payload (for [`Admitter::queue`]), so that a source whose payload is
    /// borrowed can let go of it before waiting for room.
    pub fn decode(&self, payload: &[u8], topic: &str) -> Decoded {
        match &self.options.reader {
            Reader::Json => decode(payload, &self.options),
            Reader::Sparkplug(reader) => self.sparkplug(reader, payload, topic),
        }
    }

    /// Queues a message decoded by [`Admitter::decode`] for admission; waits while
    /// [`DECODE_AHEAD`] messages or the in-flight bound's worth of rows are queued
    /// (backpressure). False once the pipeline is stopping.
    pub async fn queue(&self, topic: String, decoded: Decoded, ack: Ack) -> bool {
        self.queue_incoming(Incoming::new(topic, decoded, ack))
            .await
    }

    /// [`Admitter::queue`] for a message already made.
    pub async fn queue_incoming(&self, incoming: Incoming) -> bool {
        let Some(incoming) = self.admit_now(incoming) else {
            return true;
        };
        self.queued.fetch_add(1, Ordering::Release);
        let rows = permits(&incoming, &self.options);
        // Waits while the rows decoded ahead hold the in-flight bound's worth. The admitting task
        // gives them back as it admits messages, or drops them when it stops.
        let sent = match self.ahead.clone().acquire_many_owned(rows).await {
            Ok(ahead) => self.tx.send((incoming, ahead)).await.is_ok(),
            Err(_) => false,
        };
        if !sent {
            self.queued.fetch_sub(1, Ordering::Release);
        }
        sent
    }

    /// Queues a message if there is room now, without waiting.
    pub fn try_queue(&self, incoming: Incoming) -> Queued {
        let Some(incoming) = self.admit_now(incoming) else {
            return Queued::Yes;
        };
        let rows = permits(&incoming, &self.options);
        let Ok(ahead) = self.ahead.clone().try_acquire_many_owned(rows) else {
            return Queued::Full(Box::new(incoming));
        };
        self.queued.fetch_add(1, Ordering::Release);
        let queued = match self.tx.try_send((incoming, ahead)) {
            Ok(()) => return Queued::Yes,
            Err(mpsc::error::TrySendError::Full((incoming, _))) => Queued::Full(Box::new(incoming)),
            Err(mpsc::error::TrySendError::Closed(_)) => Queued::Stopping,
        };
        self.queued.fetch_sub(1, Ordering::Release);
        queued
    }

    /// A Sparkplug B message: a birth binds its aliases (in arrival order, so the data after it
    /// sees them) and holds no row; data is one row; other types hold none.
    fn sparkplug(&self, reader: &SparkplugReader, payload: &[u8], topic: &str) -> Decoded {
        let options = &self.options;
        let Some(t) = sparkplug::topic(topic) else {
            return Decoded::empty(options.schema.width());
        };
        match t.kind {
            sparkplug::Kind::NBirth | sparkplug::Kind::DBirth => {
                let mut decoded = Decoded::empty(options.schema.width());
                let refused = match sparkplug::birth(payload) {
                    Ok(birth) => {
                        let mut births = reader.births();
                        // A node's birth opens a session whose devices are born again after
                        // it: their births of the session before are void.
                        if t.kind == sparkplug::Kind::NBirth {
                            births.retain(|source, _| !is_device_of(source, &t.source));
                        }
                        if births.len() < BIRTHS_KEPT || births.contains_key(&t.source) {
                            reader.asked().remove(t.node());
                            births.insert(t.source, Arc::new(birth));
                            None
                        } else {
                            Some((
                                format!(
                                    "births of {BIRTHS_KEPT} Sparkplug nodes and devices are kept already; \
                                     this one's is not, so its data's aliases stay unbound until a \
                                     device's DDEATH or a node's NDEATH frees a place"
                                ),
                                json::RejectReason::TooManyBirths,
                            ))
                        }
                    }
                    Err(error) => Some((error, json::RejectReason::NotSparkplug)),
                };
                if let Some((error, reason)) = refused {
                    decoded.rejects.push(json::Reject {
                        error,
                        row: None,
                        reason,
                        column: None,
                        value: None,
                        payload: format!("{} on {topic}", sparkplug::describe(payload)),
                    });
                }
                decoded
            }
            sparkplug::Kind::NData | sparkplug::Kind::DData => {
                if payload.len() > options.max_payload_bytes {
                    return too_large(payload, options);
                }
                let birth = reader.births().get(&t.source).cloned();
                let data = sparkplug::decode_data_noting_aliases(
                    payload,
                    &options.schema,
                    &reader.id_metric,
                    birth.as_deref().map(|b| &b.aliases),
                );
                if data.unbound_alias {
                    reader.ask_for_births(&t);
                }
                data.decoded
            }
            // A device's death voids the aliases its birth bound (and frees its place in the
            // table): it is born again before it sends data.
            sparkplug::Kind::DDeath => {
                reader.births().remove(&t.source);
                Decoded::empty(options.schema.width())
            }
            // An edge node's death voids its birth and its devices' when it carries the bdSeq of
            // the node's last birth. As the MQTT will of a connection it can arrive after the
            // node's next birth, whose bdSeq differs: that death, or one without a bdSeq, is left
            // alone, since forgetting the new birth would void good aliases.
            sparkplug::Kind::NDeath => {
                let mut births = reader.births();
                let node = &t.source;
                let ended = births
                    .get(node)
                    .and_then(|b| b.bd_seq)
                    .is_some_and(|last| sparkplug::death_bd_seq(payload) == Some(last));
                if ended {
                    births.retain(|source, _| source != node && !is_device_of(source, node));
                }
                Decoded::empty(options.schema.width())
            }
            sparkplug::Kind::Other => Decoded::empty(options.schema.width()),
        }
    }
}

/// Whether `source` (`group/node/device`) is a device of the edge node `node` (`group/node`).
fn is_device_of(source: &str, node: &str) -> bool {
    source
        .strip_prefix(node)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Counts a decoded message, takes its share of the in-flight bound (waiting while the pipeline
/// is full: backpressure) and hands it on. False once the pipeline is stopping; the message then
/// stays unacknowledged and the broker redelivers it.
async fn admit(
    mut incoming: Incoming,
    ahead: OwnedSemaphorePermit,
    received: &IntCounter,
    options: &SourceOptions,
    stopped: &mut watch::Receiver<bool>,
    out: &mpsc::Sender<Incoming>,
) -> bool {
    count(&incoming, received, options);
    let rows = permits(&incoming, options);
    let permit = tokio::select! {
        p = options.in_flight.clone().acquire_many_owned(rows) => p.ok(),
        _ = stopped.wait_for(|s| *s) => None,
    };
    let Some(permit) = permit else {
        return false;
    };
    // Counted in flight now, no longer ahead.
    drop(ahead);
    incoming.permit = Some(permit);
    queue_gauge(options);
    out.send(incoming).await.is_ok()
}

/// Counts a message's rows (on its source's `received`) and unknown keys as received.
fn count(incoming: &Incoming, received: &IntCounter, options: &SourceOptions) {
    received.inc_by(incoming.rows() as u64);
    options
        .metrics
        .unknown_keys
        .inc_by(incoming.decoded.unknown_keys);
}

/// A message's share of the in-flight bound: a permit a row (one for a message without rows),
/// never more than the bound.
fn permits(incoming: &Incoming, options: &SourceOptions) -> u32 {
    incoming.rows().clamp(1, options.max_permits as usize) as u32
}

/// Sets the gauge of rows in flight.
fn queue_gauge(options: &SourceOptions) {
    options
        .metrics
        .queue_rows
        .set(options.max_permits as i64 - options.in_flight.available_permits() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: usize) -> Vec<u8> {
        format!("{{\"id\":\"{id}\",\"S1\":1}}").into_bytes()
    }

    /// Options for one sensor, `S1`, and one message in flight, read by `reader`; rows decoded
    /// ahead are bounded by `ahead` (the in-flight bound's size where the daemon sets them).
    fn options(reader: Reader, ahead: u32) -> SourceOptions {
        SourceOptions {
            schema: Schema::new(&["S1".to_string()]),
            in_flight: Arc::new(Semaphore::new(1)),
            max_permits: ahead,
            max_payload_bytes: 1 << 20,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            reader,
        }
    }

    /// An admitter for `source` reading with `reader` into a channel of `room`: it, the channel's
    /// end and the stop (which must be kept, or the admitter stops).
    fn started(
        source: &'static str,
        reader: Reader,
        room: usize,
    ) -> (Admitter, mpsc::Receiver<Incoming>, watch::Sender<bool>) {
        started_ahead(source, reader, room, 1)
    }

    /// [`started`], with `ahead` rows decoded ahead at most.
    fn started_ahead(
        source: &'static str,
        reader: Reader,
        room: usize,
        ahead: u32,
    ) -> (Admitter, mpsc::Receiver<Incoming>, watch::Sender<bool>) {
        let (out, admitted) = mpsc::channel(room);
        let (stop, stopped) = watch::channel(false);
        let admitter = Admitter::start(source, options(reader, ahead), stopped, out);
        (admitter, admitted, stop)
    }

    fn id(m: &Incoming) -> &str {
        &m.decoded.rows.ids[0]
    }

    /// A message is admitted at once when nothing waits before it, and never overtakes one that
    /// waits for room. On one thread the admitting task runs only when the test yields, so the
    /// order is the code's, not the scheduler's.
    #[tokio::test(flavor = "current_thread")]
    async fn a_message_admitted_at_once_never_overtakes_one_waiting_for_room() {
        // Rows enough ahead that the third's push need not wait for the admitting task.
        let (admitter, mut admitted, _stop) = started_ahead("mqtt", Reader::Json, 8, 8);
        // Room for it: in the pipeline before `push` returns.
        assert!(admitter.push(message(0), "t".into(), Ack::None).await);
        let first = admitted.try_recv().expect("admitted at once");
        assert_eq!(id(&first), "0");
        // No room (the first holds the only permit): the second goes to the admitting task.
        assert!(admitter.push(message(1), "t".into(), Ack::None).await);
        assert!(admitted.try_recv().is_err(), "admitted without room");
        // Room again, and the third arrives before that task has run (once it waits for the
        // permit, the semaphore keeps the permit for it).
        drop(first);
        assert!(admitter.push(message(2), "t".into(), Ack::None).await);
        let mut order = Vec::new();
        while order.len() < 2 {
            let m = admitted.recv().await.unwrap();
            order.push(id(&m).to_string());
        }
        assert_eq!(order, ["1", "2"]);
    }

    /// Rows decoded ahead of the pipeline are bounded by the in-flight bound, not only messages:
    /// an array of sparse rows decodes to far more than its payload (236 MB for 100,000 rows of
    /// 590 sensors), and 64 of them were held while the pipeline was full.
    #[tokio::test(flavor = "current_thread")]
    async fn rows_decoded_ahead_are_bounded_by_the_in_flight_bound() {
        let (admitter, mut admitted, _stop) = started("mqtt", Reader::Json, 8);
        let array = |n: usize| {
            let rows: Vec<String> = (0..200)
                .map(|i| format!("{{\"id\":\"{n}-{i}\"}}"))
                .collect();
            format!("[{}]", rows.join(",")).into_bytes()
        };
        // The first holds the only permit; the second waits with the admitting task.
        assert!(admitter.push(message(0), "t".into(), Ack::None).await);
        let first = admitted.try_recv().expect("admitted at once");
        assert!(admitter.push(array(1), "t".into(), Ack::None).await);
        // The third's rows would pass the bound: the Kafka source's try_queue gets it back, and
        // a push waits, however often the runtime runs.
        let decoded = admitter.decode(&array(2), "t");
        let Queued::Full(_) = admitter.try_queue(Incoming::new("t".into(), decoded, Ack::None))
        else {
            panic!("try_queue took rows past the bound");
        };
        let third = admitter.push(array(2), "t".into(), Ack::None);
        tokio::pin!(third);
        for _ in 0..20 {
            tokio::select! {
                biased;
                _ = &mut third => panic!("a third message decoded ahead with the bound's worth waiting"),
                _ = tokio::task::yield_now() => {}
            }
        }
        // The second is admitted once the first is through; the third then goes ahead.
        drop(first);
        assert!(third.await);
        let second = admitted.recv().await.unwrap();
        assert_eq!(second.rows(), 200);
        drop(second);
        assert_eq!(admitted.recv().await.unwrap().rows(), 200);
    }

    /// `drained` says the pipeline is empty only once every message taken is through: none
    /// waiting with the admitting task and every permit back (a rebalance waits for it).
    #[tokio::test(flavor = "current_thread")]
    async fn drained_waits_for_queued_and_admitted_messages() {
        let (admitter, mut admitted, stop) = started("kafka", Reader::Json, 8);
        let drained = admitter.drained();
        assert!(drained.now() && !drained.stopping());
        assert!(admitter.push(message(0), "t".into(), Ack::None).await);
        let first = admitted.try_recv().expect("admitted at once");
        assert!(!drained.now(), "one message holds the permit");
        // The second waits with the admitting task for the permit.
        assert!(admitter.push(message(1), "t".into(), Ack::None).await);
        drop(first);
        assert!(!drained.now(), "one message still queued");
        let second = admitted.recv().await.unwrap();
        assert!(!drained.now(), "the second holds the permit");
        drop(second);
        assert!(drained.now());
        stop.send_replace(true);
        assert!(drained.stopping());
    }

    /// A hand-over to the admitting task that is itself waiting (its future not polled, as when
    /// the reader is blocked in a rebalance) is counted as queued; with every permit back it
    /// cannot move, and `through` takes the pipeline as drained all the same.
    #[tokio::test(flavor = "current_thread")]
    async fn through_sees_past_a_hand_over_that_cannot_move() {
        let (admitter, mut admitted, _stop) = started("kafka", Reader::Json, 8);
        let drained = admitter.drained();
        // As `queue_incoming` counts a message before its send into a full channel waits.
        admitter.queued.fetch_add(1, Ordering::Release);
        assert!(!drained.now(), "counted as queued");
        assert!(
            drained.through(|| {}),
            "every permit back, the count unmoved"
        );
        // A permit out (a message in the pipeline): not through, whatever the count.
        admitter.queued.fetch_sub(1, Ordering::Release);
        assert!(admitter.push(message(0), "t".into(), Ack::None).await);
        let held = admitted.try_recv().expect("admitted at once");
        admitter.queued.fetch_add(1, Ordering::Release);
        assert!(!drained.through(|| {}));
        drop(held);
        assert!(drained.through(|| {}));
    }

    /// Births under ever new names (anyone may publish under `spBv1.0/`) are kept up to
    /// [`BIRTHS_KEPT`]; past it a new name's birth is refused as a dead letter showing its bytes,
    /// while a name already kept is still rebound.
    #[tokio::test(flavor = "current_thread")]
    async fn births_are_kept_for_a_bounded_number_of_names() {
        let (admitter, _admitted, _stop) = started(
            "mqtt",
            Reader::Sparkplug(Arc::new(SparkplugReader::new("id"))),
            1,
        );
        let birth = |i: usize| admitter.decode(&[], &format!("spBv1.0/fab/DBIRTH/n/d{i}"));
        assert!(admitter
            .decode(&[], "spBv1.0/fab/NBIRTH/n")
            .rejects
            .is_empty());
        for i in 1..BIRTHS_KEPT {
            assert!(birth(i).rejects.is_empty(), "birth {i}");
        }
        let refused = birth(BIRTHS_KEPT);
        assert_eq!(refused.rejects.len(), 1);
        let r = &refused.rejects[0];
        assert_eq!(r.reason, json::RejectReason::TooManyBirths);
        assert!(
            r.error.contains("births of 10000 Sparkplug nodes"),
            "{}",
            r.error
        );
        assert!(
            r.payload.contains("Sparkplug B payload, 0 bytes")
                && r.payload.contains("DBIRTH/n/d10000"),
            "{}",
            r.payload
        );
        assert!(
            birth(7).rejects.is_empty(),
            "a kept name's birth binds again"
        );
        // A device's death frees its birth's place; an edge node's without a bdSeq frees none.
        admitter.decode(&[], "spBv1.0/fab/DDEATH/n/d3");
        assert!(
            birth(BIRTHS_KEPT).rejects.is_empty(),
            "a place freed by a death"
        );
        // (Not even the node's own birth, which would free a place: it carried no bdSeq.)
        admitter.decode(&[], "spBv1.0/fab/NDEATH/n");
        assert!(!birth(BIRTHS_KEPT + 1).rejects.is_empty());
    }

    /// An edge node's NDEATH voids its birth and its devices' (they must be born again before
    /// their aliases read) when it carries its last NBIRTH's bdSeq. A death with another bdSeq
    /// (the will of the connection before, delivered after the node's new birth), or with none,
    /// voids nothing; nor does a death void another node's devices whose name it begins.
    #[tokio::test(flavor = "current_thread")]
    async fn a_node_death_voids_its_births_when_its_bd_seq_is_the_last_births() {
        use prost::Message as _;
        use sparkplug::{Metric, Payload, Value};
        let (admitter, _admitted, _stop) = started(
            "mqtt",
            Reader::Sparkplug(Arc::new(SparkplugReader::new("id"))),
            1,
        );
        let metric = |name: &str, alias: Option<u64>, value: Value| Metric {
            name: Some(name.into()),
            alias,
            value: Some(value),
            ..Default::default()
        };
        let payload = |metrics: Vec<Metric>| {
            Payload {
                metrics,
                ..Default::default()
            }
            .encode_to_vec()
        };
        let bd_seq = |n: u64| payload(vec![metric("bdSeq", None, Value::Long(n))]);
        let birth = |topic: &str, bd: Option<u64>| {
            let mut metrics = vec![metric("S1", Some(1), Value::Double(0.0))];
            metrics.extend(bd.map(|n| metric("bdSeq", None, Value::Long(n))));
            let d = admitter.decode(&payload(metrics), topic);
            assert!(d.rejects.is_empty(), "{topic}: {:?}", d.rejects);
        };
        // Data by alias alone, with its id by name.
        let data = |topic: &str| {
            let mut m = vec![metric("id", None, Value::String("w".into()))];
            m.push(Metric {
                name: None,
                alias: Some(1),
                value: Some(Value::Double(2.0)),
                ..Default::default()
            });
            admitter.decode(&payload(m), topic)
        };
        let reads = |topic: &str| {
            let d = data(topic);
            match d.rejects.first() {
                None => true,
                Some(r) => {
                    assert_eq!(r.reason, json::RejectReason::UnboundAlias, "{topic}");
                    false
                }
            }
        };
        birth("spBv1.0/fab/NBIRTH/n", Some(4));
        birth("spBv1.0/fab/DBIRTH/n/d", None);
        birth("spBv1.0/fab/NBIRTH/n2", Some(4));
        birth("spBv1.0/fab/DBIRTH/n2/d", None);
        assert!(reads("spBv1.0/fab/NDATA/n") && reads("spBv1.0/fab/DDATA/n/d"));

        // The will of an earlier connection, and a death without a bdSeq: nothing voided.
        admitter.decode(&bd_seq(3), "spBv1.0/fab/NDEATH/n");
        admitter.decode(&payload(vec![]), "spBv1.0/fab/NDEATH/n");
        assert!(reads("spBv1.0/fab/NDATA/n") && reads("spBv1.0/fab/DDATA/n/d"));

        // This birth's death: the node and its device are void, the other node (whose name
        // begins with this one's) and its device are not.
        admitter.decode(&bd_seq(4), "spBv1.0/fab/NDEATH/n");
        assert!(!reads("spBv1.0/fab/NDATA/n"));
        assert!(!reads("spBv1.0/fab/DDATA/n/d"));
        assert!(reads("spBv1.0/fab/NDATA/n2") && reads("spBv1.0/fab/DDATA/n2/d"));

        // Born again with the next bdSeq; the late will of the session before voids nothing.
        birth("spBv1.0/fab/NBIRTH/n", Some(5));
        admitter.decode(&bd_seq(4), "spBv1.0/fab/NDEATH/n");
        assert!(reads("spBv1.0/fab/NDATA/n"));

        // A node's birth voids its devices' births of the session before (they are born again
        // after it), whether or not it carries a bdSeq; another node's devices keep theirs.
        birth("spBv1.0/fab/DBIRTH/n/d", None);
        assert!(reads("spBv1.0/fab/DDATA/n/d"));
        birth("spBv1.0/fab/NBIRTH/n", None);
        assert!(!reads("spBv1.0/fab/DDATA/n/d"));
        assert!(reads("spBv1.0/fab/NDATA/n") && reads("spBv1.0/fab/DDATA/n2/d"));
    }

    /// The Kafka source's way in: `try_queue` admits at once, queues behind a waiting message,
    /// gives a message back when the queue is full, and admits at once again once all before it
    /// are through (the count of queued messages came back down on every path).
    #[tokio::test(flavor = "current_thread")]
    async fn try_queue_keeps_the_order_and_recovers_from_a_full_queue() {
        // Rows enough for more than DECODE_AHEAD one-row messages ahead: the queue's own bound.
        let ahead = 2 * DECODE_AHEAD;
        let (admitter, mut admitted, _stop) =
            started_ahead("kafka", Reader::Json, ahead, ahead as u32);
        let incoming = |i: usize| {
            let decoded = admitter.decode(&message(i), "t");
            Incoming::new("t".into(), decoded, Ack::None)
        };
        assert!(matches!(admitter.try_queue(incoming(0)), Queued::Yes));
        let first = admitted.try_recv().expect("admitted at once");
        // The admitting task has not run: it holds the next DECODE_AHEAD, then the queue is full.
        for i in 1..=DECODE_AHEAD {
            assert!(matches!(admitter.try_queue(incoming(i)), Queued::Yes));
        }
        let last = DECODE_AHEAD + 1;
        let Queued::Full(back) = admitter.try_queue(incoming(last)) else {
            panic!("the queue took more than {DECODE_AHEAD}");
        };
        assert_eq!(id(&back), last.to_string());
        drop(first);
        for i in 1..=DECODE_AHEAD {
            let m = admitted.recv().await.unwrap();
            assert_eq!(id(&m), i.to_string());
        }
        assert!(matches!(admitter.try_queue(*back), Queued::Yes));
        let m = admitted
            .try_recv()
            .expect("admitted at once after the queue emptied");
        assert_eq!(id(&m), last.to_string());
    }
}
