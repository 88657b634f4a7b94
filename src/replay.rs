//! `faultline replay`: publishes a wafer CSV to the bus, one JSON object per row — for demos and as
//! the load generator.

use crate::bus::mqtt::split_host_port;
use crate::row::csv::{CsvOptions, CsvRows};
use crate::row::json::encode_row;
use crate::row::Schema;
use std::num::NonZeroU64;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target is not usable.
    #[error("{0}")]
    Target(String),
    /// The CSV is not usable.
    #[error(transparent)]
    Csv(#[from] crate::row::csv::CsvError),
    /// A row of the CSV is not usable, after `sent` rows before it were published (and
    /// acknowledged, when `acked`).
    #[error("{file}: {error}; {sent} rows had been published when it was found (they are read 1,024 at a time){}, and replay stopped there", if *.acked { " and the broker acknowledged them" } else { "" })]
    CsvPartway {
        /// The file.
        file: String,
        /// What is wrong (boxed: the error is large, and rare).
        error: Box<crate::row::csv::CsvError>,
        /// Rows published before it.
        sent: u64,
        /// Whether the broker acknowledged them all.
        acked: bool,
    },
    /// Reading the file failed.
    #[error("cannot open {0}: {1}")]
    Open(String, std::io::Error),
    /// The broker went away (or never answered).
    #[error("the broker failed: {0}")]
    Broker(String),
    /// As `Broker`, naming the address that was tried.
    #[error("the broker at {0} failed: {1}")]
    BrokerAt(String, String),
    /// The broker failed after rows went out: how many, and how many it acknowledged.
    #[error("the broker at {at} failed: {error}; {}, and replay stopped there", if *.acked == 0 { format!("{sent} rows had been handed to the client and the broker acknowledged none of them") } else { format!("{sent} rows had been published and the broker acknowledged {acked} of them") })]
    BrokerPartway {
        /// The address.
        at: String,
        /// What failed.
        error: String,
        /// Rows published.
        sent: u64,
        /// Rows the broker acknowledged.
        acked: u64,
    },
}

/// Which bus a target is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// An MQTT broker; rows go out at QoS 1.
    Mqtt,
    /// A Kafka cluster; rows are keyed by id.
    Kafka,
}

/// Where to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The bus.
    pub bus: Bus,
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic.
    pub topic: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.bus {
            Bus::Mqtt => "mqtt",
            Bus::Kafka => "kafka",
        };
        write!(f, "{scheme}://{}/{}", self.address(), self.topic)
    }
}

impl Target {
    /// `HOST:PORT`, an IPv6 host in brackets (`[::1]:9092`), as clients and URLs take it.
    pub fn address(&self) -> String {
        crate::bus::mqtt::join_host_port(&self.host, self.port)
    }
}

/// Parses `mqtt://HOST:PORT/TOPIC` (the topic may contain `/`) or `kafka://HOST:PORT/TOPIC`.
pub fn parse_target(to: &str) -> Result<Target, ReplayError> {
    let (bus, rest) = if let Some(rest) = to.strip_prefix("kafka://") {
        if !cfg!(feature = "kafka") {
            return Err(ReplayError::Target(
                "this build of faultline was compiled without Kafka; rebuild with `cargo build --release --features kafka`".into(),
            ));
        }
        (Bus::Kafka, rest)
    } else if let Some(rest) = to.strip_prefix("mqtt://") {
        (Bus::Mqtt, rest)
    } else {
        return Err(ReplayError::Target(format!(
            "--to '{to}' is not mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC"
        )));
    };
    let scheme = if bus == Bus::Kafka { "kafka" } else { "mqtt" };
    let (addr, topic) = rest
        .split_once('/')
        .filter(|(_, t)| !t.is_empty())
        .ok_or_else(|| {
            ReplayError::Target(format!(
                "--to '{to}' names no topic; write {scheme}://HOST:PORT/TOPIC"
            ))
        })?;
    match bus {
        Bus::Mqtt if topic.contains(['+', '#']) => {
            return Err(ReplayError::Target(format!(
                "--to '{to}': a publish topic cannot contain + or #"
            )))
        }
        Bus::Kafka => {
            if let Some(bad) = crate::bus::kafka::kafka_topic_problem(topic) {
                return Err(ReplayError::Target(format!("--to '{to}': the topic {bad}")));
            }
        }
        Bus::Mqtt => {}
    }
    let (host, port) = split_host_port(&format!("{scheme}://{addr}"), addr)
        .map_err(|e| ReplayError::Target(e.replace("mqtt://", &format!("{scheme}://"))))?;
    let port = port.unwrap_or(if bus == Bus::Kafka { 9092 } else { 1883 });
    Ok(Target {
        bus,
        host: host.to_string(),
        port,
        topic: topic.to_string(),
    })
}

/// Where a replay publishes: an address given on the command line (a plain connection, no
/// login), or the bus `faultline serve` reads as configured (its address, rows topic, login,
/// TLS and Kafka properties).
#[derive(Debug, Clone)]
pub enum Destination {
    /// `--to mqtt://…` or `kafka://…`.
    Address(Target),
    /// The configured source.
    Configured(Box<crate::config::Bus>),
}

impl Destination {
    /// The configured bus as a destination: refused when its rows topic is an MQTT filter or
    /// its rows are Sparkplug (a replay publishes JSON rows to one topic).
    pub fn configured(bus: crate::config::Bus) -> Result<Destination, ReplayError> {
        if let Some(m) = bus.mqtt() {
            if m.topic.contains(['+', '#']) {
                return Err(ReplayError::Target(format!(
                    "the configured rows topic '{}' is a filter, not a topic to publish to; give one with --to mqtt://HOST:PORT/TOPIC",
                    m.topic
                )));
            }
            if m.format != crate::bus::mqtt::RowFormat::Json {
                return Err(ReplayError::Target(
                    "the daemon reads Sparkplug B ([source.mqtt] format) and a replay publishes JSON rows; give a JSON rows topic with --to".into(),
                ));
            }
        }
        Ok(Destination::Configured(Box::new(bus)))
    }

    /// The rows topic.
    fn topic(&self) -> &str {
        match self {
            Destination::Address(t) => &t.topic,
            Destination::Configured(bus) => bus.rows_topic(),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Address(t) => t.fmt(f),
            Destination::Configured(bus) => write!(f, "{} (as configured)", bus.rows_address()),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplaySummary {
    /// Rows published.
    pub rows: u64,
    /// Of those, the rows the broker acknowledged (all of them unless interrupted).
    pub acked: u64,
    /// Whether the stop signal ended it (`--loop`'s way to end).
    pub interrupted: bool,
    /// Wall time.
    pub seconds: f64,
}

/// How long an interrupted replay waits for the broker to acknowledge what it published.
pub const INTERRUPTED_ACK_WAIT: Duration = Duration::from_secs(10);

/// How long a replay that ends early waits to close its connection.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long the cluster must refuse the client (a login, TLS), with no row acknowledged meanwhile,
/// before a replay gives up saying why, rather than waiting out its minute for acknowledgements
/// that cannot come. Not shorter: librdkafka reports a handshake that timed out (a broker
/// restarting) as an authentication failure too.
const REFUSED_FOR: Duration = Duration::from_secs(15);

/// Resolves once `stop` is true; never, once its sender is gone without saying so.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The lowest rate a replay takes, in rows per second (one row every 1,000 s): a lower one would
/// put the later rows' times past what a clock can hold.
pub const MIN_RATE: f64 = 0.001;

/// Publishes every row of `file` to `target` at up to `rate` rows/s (unlimited when `None`; a
/// rate must be a finite number of at least [`MIN_RATE`]), `passes` times (unlimited when `None`; ids get a `#<pass>`
/// suffix after the first pass, so every row is unique), and returns once the broker has
/// acknowledged them all. When `stop` turns true it publishes no more rows, waits up to
/// [`INTERRUPTED_ACK_WAIT`] for those in flight, and says how many were acknowledged.
pub async fn replay(
    file: &Path,
    target: &Destination,
    features: &[String],
    rate: Option<f64>,
    passes: Option<NonZeroU64>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<ReplaySummary, ReplayError> {
    if let Some(r) = rate.filter(|r| !(*r >= MIN_RATE && r.is_finite())) {
        return Err(ReplayError::Target(format!(
            "the rate {r} is not a number of rows per second from {MIN_RATE} up"
        )));
    }
    replay_to(file, target, features, rate, passes, stop)
        .await
        .map_err(|e| match e {
            ReplayError::Broker(why) => ReplayError::BrokerAt(target.to_string(), why),
            other => other,
        })
}

async fn replay_to(
    file: &Path,
    target: &Destination,
    features: &[String],
    rate: Option<f64>,
    passes: Option<NonZeroU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<ReplaySummary, ReplayError> {
    let mut out = Out::connect(target)?;
    let mut acked = out.acked();
    let refusals = out.refusals();
    let mut interrupted = false;
    let schema = Schema::new(features);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut pass = 0u64;
    // A bad row part-way: the rows before it are delivered first, then the error says how many.
    let mut bad_row = None;
    // The broker failed part-way: the error says how many rows went out and were acknowledged.
    let mut lost = None;
    'passes: loop {
        // After rows went out (a later pass: the file rotated or rewritten meanwhile), a file
        // that cannot be read again ends the replay as a bad row does: the rows in flight are
        // waited for, and the error says how many went out.
        let input = match std::fs::File::open(file) {
            Ok(input) => input,
            Err(e) if sent == 0 => return Err(ReplayError::Open(file.display().to_string(), e)),
            Err(e) => {
                bad_row = Some(e.into());
                break 'passes;
            }
        };
        let options = CsvOptions {
            allow_extra_columns: true,
            batch_rows: 1024,
        };
        let mut rows = match CsvRows::new(input, &schema, options) {
            Ok(rows) => rows,
            Err(e) if sent == 0 => return Err(e.into()),
            Err(e) => {
                bad_row = Some(e);
                break 'passes;
            }
        };
        loop {
            let batch = match rows.next_batch() {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) if sent == 0 => return Err(e.into()),
                Err(e) => {
                    bad_row = Some(e);
                    break 'passes;
                }
            };
            for i in 0..batch.len() {
                let id = if pass == 0 {
                    batch.ids[i].clone()
                } else {
                    format!("{}#{pass}", batch.ids[i])
                };
                let payload = encode_row(&id, batch.row(i), features);
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs_f64(sent as f64 / rate);
                    tokio::select! {
                        _ = tokio::time::sleep_until(due.into()) => {}
                        _ = stopped(&mut stop) => {}
                    }
                }
                if *stop.borrow() {
                    interrupted = true;
                    break 'passes;
                }
                if out.failed() {
                    lost = out.error().await.err();
                    break 'passes;
                }
                tokio::select! {
                    // The publish first: the other two are looked at only while it waits.
                    biased;
                    r = out.publish(target.topic(), &id, payload) => if let Err(e) = r {
                        // The connection's own failure (a connect timeout, TLS, a login refused)
                        // says more than "the publisher has stopped", which is all a publish
                        // into the stopped client can say.
                        let e = if out.failed() { out.error().await.err().unwrap_or(e) } else { e };
                        if sent == 0 {
                            return Err(e);
                        }
                        lost = Some(e);
                        break 'passes;
                    },
                    // Waiting for room (the broker slow or gone): the stop ends that wait, and
                    // so does a cluster that keeps refusing the client (a wrong password), with
                    // its reason.
                    _ = stopped(&mut stop) => {
                        interrupted = true;
                        break 'passes;
                    }
                    why = refused_for(refusals.as_ref(), &acked, REFUSED_FOR) => {
                        lost = Some(ReplayError::Broker(why));
                        break 'passes;
                    }
                }
                sent += 1;
            }
        }
        pass += 1;
        if passes.is_some_and(|p| pass >= p.get()) {
            break;
        }
    }
    if let Some(error) = lost {
        // Gone for good: no more acknowledgements can come.
        let acked = (*acked.borrow()).min(sent);
        let _ = tokio::time::timeout(CLOSE_WAIT, out.close()).await;
        let error = match error {
            ReplayError::Broker(why) => why,
            other => other.to_string(),
        };
        return Err(ReplayError::BrokerPartway {
            at: target.to_string(),
            error,
            sent,
            acked,
        });
    }
    let wait = if interrupted {
        INTERRUPTED_ACK_WAIT
    } else {
        Duration::from_secs(60)
    };
    // The stop also cuts the wait for the last acknowledgements short, to INTERRUPTED_ACK_WAIT;
    // a cluster that keeps refusing the client (a wrong password) ends it with its reason.
    let counted = out.acked();
    let ended = tokio::select! {
        r = tokio::time::timeout(wait, acked.wait_for(|a| *a >= sent)) => Ok(Some(matches!(r, Ok(Ok(_))))),
        _ = stopped(&mut stop), if !interrupted => Ok(None),
        why = refused_for(refusals.as_ref(), &counted, REFUSED_FOR) => Err(why),
    };
    let stop_cut = match ended {
        Ok(cut) => cut,
        Err(why) => {
            let acked = (*acked.borrow()).min(sent);
            let _ = tokio::time::timeout(CLOSE_WAIT, out.close()).await;
            return Err(ReplayError::BrokerPartway {
                at: target.to_string(),
                error: why,
                sent,
                acked,
            });
        }
    };
    let done = match stop_cut {
        Some(done) => done,
        None => {
            interrupted = true;
            matches!(
                tokio::time::timeout(INTERRUPTED_ACK_WAIT, acked.wait_for(|a| *a >= sent)).await,
                Ok(Ok(_))
            )
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    if let Some(error) = bad_row {
        let _ = tokio::time::timeout(CLOSE_WAIT, out.close()).await;
        return Err(ReplayError::CsvPartway {
            file: file.display().to_string(),
            error: Box::new(error),
            sent,
            acked: done,
        });
    }
    if interrupted {
        let acked = (*acked.borrow()).min(sent);
        // A disconnect queued behind requests the broker never took would wait for them.
        let _ = tokio::time::timeout(CLOSE_WAIT, out.close()).await;
        return Ok(ReplaySummary {
            rows: sent,
            acked,
            interrupted,
            seconds,
        });
    }
    out.error().await?;
    if !done {
        return Err(ReplayError::Broker(format!(
            "the broker acknowledged only {} of {sent} rows",
            *acked.borrow()
        )));
    }
    out.close().await;
    Ok(ReplaySummary {
        rows: sent,
        acked: sent,
        interrupted,
        seconds,
    })
}

/// Resolves with the reason once the cluster has refused the client whose link is `refusals` for
/// `limit` without a break and without acknowledging a row (`acked` counts them); never for a
/// client it does not refuse, nor without a link (an MQTT broker's refusal ends the connection,
/// which [`Out::failed`] says).
async fn refused_for(
    refusals: Option<&crate::bus::link::Link>,
    acked: &watch::Receiver<u64>,
    limit: Duration,
) -> String {
    let Some(link) = refusals else {
        return std::future::pending().await;
    };
    let mut since: Option<(std::time::Instant, u64)> = None;
    loop {
        let now_acked = *acked.borrow();
        match link.refused() {
            Some(why) if since.is_some_and(|(t, a)| a == now_acked && t.elapsed() >= limit) => {
                return why
            }
            Some(_) if since.is_some_and(|(_, a)| a == now_acked) => {}
            Some(_) => since = Some((std::time::Instant::now(), now_acked)),
            None => since = None,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The publishing end of a replay: a connection and the count of acknowledged rows.
enum Out {
    Mqtt(crate::bus::mqtt::publisher::MqttPublisher),
    #[cfg(feature = "kafka")]
    Kafka(crate::bus::kafka::publisher::KafkaPublisher),
}

impl Out {
    fn connect(destination: &Destination) -> Result<Out, ReplayError> {
        let target = match destination {
            Destination::Address(t) => t,
            Destination::Configured(bus) => return Out::configured(bus),
        };
        match target.bus {
            Bus::Mqtt => Ok(Out::mqtt(target)),
            #[cfg(feature = "kafka")]
            Bus::Kafka => {
                let settings = crate::bus::kafka::KafkaSettings {
                    brokers: target.address(),
                    topic: target.topic.clone(),
                    group_id: String::new(),
                    properties: vec![],
                };
                Out::kafka(&settings)
            }
            #[cfg(not(feature = "kafka"))]
            Bus::Kafka => Err(ReplayError::Target("compiled without Kafka".into())),
        }
    }

    /// A connection to the daemon's own bus, with its login, TLS and properties.
    fn configured(bus: &crate::config::Bus) -> Result<Out, ReplayError> {
        if let Some(m) = bus.mqtt() {
            let transport = crate::bus::mqtt::tls::transport(m.tls.as_ref())
                .map_err(|e| ReplayError::Target(e.to_string()))?;
            return Ok(Out::Mqtt(
                crate::bus::mqtt::publisher::MqttPublisher::for_replay_as(m, transport, 1 << 24),
            ));
        }
        #[cfg(feature = "kafka")]
        if let Some(k) = bus.kafka() {
            return Out::kafka(k);
        }
        Err(ReplayError::Target("compiled without Kafka".into()))
    }

    #[cfg(feature = "kafka")]
    fn kafka(settings: &crate::bus::kafka::KafkaSettings) -> Result<Out, ReplayError> {
        crate::bus::kafka::publisher::KafkaPublisher::start(
            settings,
            1 << 24,
            Default::default(),
            &[],
            None,
        )
        .map(Out::Kafka)
        .map_err(|e| ReplayError::Broker(e.to_string()))
    }

    fn mqtt(target: &Target) -> Out {
        Out::Mqtt(crate::bus::mqtt::publisher::MqttPublisher::for_replay(
            &target.host,
            target.port,
            1 << 24,
        ))
    }

    async fn publish(&mut self, topic: &str, id: &str, payload: String) -> Result<(), ReplayError> {
        let broker = |e: String| ReplayError::Broker(e);
        match self {
            Out::Mqtt(p) => {
                let _ = id;
                p.publish(topic, payload.into_bytes())
                    .await
                    .map(|_| ())
                    .map_err(|e| broker(e.to_string()))
            }
            #[cfg(feature = "kafka")]
            Out::Kafka(p) => p
                .publish(crate::bus::Output {
                    topic,
                    key: Some(id),
                    model_version: None,
                    payload: payload.into_bytes(),
                })
                .await
                .map(|_| ())
                .map_err(|e| broker(e.to_string())),
        }
    }

    /// The link that says why the cluster refuses the client (a login, TLS), while it does; none
    /// for MQTT (a broker's refusal ends the connection, which [`Out::failed`] says).
    fn refusals(&self) -> Option<crate::bus::link::Link> {
        match self {
            Out::Mqtt(_) => None,
            #[cfg(feature = "kafka")]
            Out::Kafka(p) => Some(p.link()),
        }
    }

    /// True once the connection failed for good.
    fn failed(&self) -> bool {
        match self {
            Out::Mqtt(p) => p.failure().borrow().is_some(),
            #[cfg(feature = "kafka")]
            Out::Kafka(p) => p.failure().borrow().is_some(),
        }
    }

    fn acked(&self) -> watch::Receiver<u64> {
        match self {
            Out::Mqtt(p) => p.acked(),
            #[cfg(feature = "kafka")]
            Out::Kafka(p) => p.acked(),
        }
    }

    /// The failure, if the connection failed.
    async fn error(&mut self) -> Result<(), ReplayError> {
        match self {
            Out::Mqtt(p) => match p.failure().borrow().clone() {
                Some(e) => Err(ReplayError::Broker(e)),
                None => Ok(()),
            },
            #[cfg(feature = "kafka")]
            Out::Kafka(p) => match p.failure().borrow().clone() {
                Some(e) => Err(ReplayError::Broker(e)),
                None => Ok(()),
            },
        }
    }

    async fn close(self) {
        match self {
            Out::Mqtt(p) => p.close().await,
            #[cfg(feature = "kafka")]
            Out::Kafka(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_rate_out_of_range_is_refused_before_anything_is_sent() {
        // A rate of 0 would wait for ever before the first row, one of 1e-20 overflow the clock
        // at the second; the CLI checks it too.
        let target = Destination::Address(parse_target("mqtt://127.0.0.1:1/rows").unwrap());
        for rate in [0.0, -1.0, 1e-20, f64::NAN, f64::INFINITY] {
            let (_stop, stopped) = tokio::sync::watch::channel(false);
            let e = replay(
                Path::new("no-such.csv"),
                &target,
                &[],
                Some(rate),
                None,
                stopped,
            )
            .await
            .unwrap_err();
            assert!(
                e.to_string()
                    .contains("not a number of rows per second from 0.001 up"),
                "{rate}: {e}"
            );
        }
    }

    #[test]
    fn the_configured_bus_is_refused_where_a_replay_cannot_publish() {
        let bus = |pairs: &[(&str, &str)]| {
            let env: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            crate::config::RawConfig::load_with_env(None, env)
                .unwrap()
                .validate()
                .unwrap()
                .bus
        };
        let d = Destination::configured(bus(&[])).unwrap();
        assert_eq!(d.topic(), "faultline/rows");
        assert!(
            d.to_string().ends_with("/faultline/rows (as configured)"),
            "{d}"
        );
        let e = Destination::configured(bus(&[
            ("FAULTLINE_SOURCE__KIND", "mqtt"),
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/+/rows"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("is a filter"), "{e}");
        let e = Destination::configured(bus(&[
            ("FAULTLINE_SOURCE__KIND", "mqtt"),
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "spBv1.0/fab/DDATA/n/d"),
            ("FAULTLINE_SOURCE__MQTT__FORMAT", "sparkplug"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("Sparkplug"), "{e}");
    }

    #[test]
    fn targets_parse_or_say_how_to_write_them() {
        assert_eq!(
            parse_target("mqtt://127.0.0.1:1883/faultline/rows").unwrap(),
            Target {
                bus: Bus::Mqtt,
                host: "127.0.0.1".into(),
                port: 1883,
                topic: "faultline/rows".into()
            }
        );
        assert!(parse_target("mqtt://h:1")
            .unwrap_err()
            .to_string()
            .contains("names no topic"));
        if cfg!(feature = "kafka") {
            let t = parse_target("kafka://h:9093/faultline.rows").unwrap();
            assert_eq!(
                (t.bus, t.port, t.topic.as_str()),
                (Bus::Kafka, 9093, "faultline.rows")
            );
            assert_eq!(parse_target("kafka://h/t").unwrap().port, 9092);
            // An IPv6 address without a port takes Kafka's (it took MQTT's 1883).
            let t = parse_target("kafka://[::1]/t").unwrap();
            assert_eq!((t.host.as_str(), t.port), ("::1", 9092));
            // The address librdkafka is given, and the one replay reports, in brackets.
            assert_eq!(t.address(), "[::1]:9092");
            assert_eq!(t.to_string(), "kafka://[::1]:9092/t");
            assert!(parse_target("kafka://::1/t")
                .unwrap_err()
                .to_string()
                .contains("[::1]:PORT"));
            // A broker list: one broker, said plainly (it was taken for an IPv6 address).
            let e = parse_target("kafka://b1:9092,b2:9092/t")
                .unwrap_err()
                .to_string();
            assert!(e.contains("more than one broker"), "{e}");
            assert!(parse_target("kafka://h:1/a/b")
                .unwrap_err()
                .to_string()
                .contains("Kafka topic names"));
        } else {
            assert!(parse_target("kafka://h:9092/t")
                .unwrap_err()
                .to_string()
                .contains("--features kafka"));
        }
        let t = parse_target("mqtt://[::1]:1884/rows").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1884));
        assert_eq!(parse_target("mqtt://[::1]/rows").unwrap().port, 1883);
        assert!(parse_target("http://h/t")
            .unwrap_err()
            .to_string()
            .contains("mqtt://HOST:PORT/TOPIC"));
        assert!(parse_target("mqtt://h:1/a/#")
            .unwrap_err()
            .to_string()
            .contains("cannot contain"));
    }
}
