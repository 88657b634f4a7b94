//! Configuration: serde types, loaded in layers, then validated without I/O.
//!
//! Secrets can come from files (`[web] token_file`, a Kafka property `<name>.file`), which
//! validation reads; they are never printed (`Debug` redacts them).
//!
//! Layers, later wins: `config/default.toml` (compiled in, so it is the one place defaults live),
//! the user's `--config FILE`, then environment variables `FAULTLINE_<SECTION>__<KEY>`. The double
//! underscore separates nesting levels so keys that contain `_` survive
//! (`FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS=true`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable prefix.
pub const ENV_PREFIX: &str = "FAULTLINE";

/// Why configuration cannot be used. Messages say what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or parsed, or a value has the wrong type.
    #[error("configuration cannot be read: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Which model to serve.
    pub model: ModelSection,
    /// How input rows are read.
    pub input: InputSection,
    /// Where rows come from.
    pub source: SourceSection,
    /// The embedded MQTT broker.
    pub broker: BrokerSection,
    /// Where verdicts go.
    pub sink: SinkSection,
    /// Micro-batching and the in-flight bound.
    pub batch: BatchSection,
    /// Drift against the training distribution.
    pub drift: DriftSection,
    /// The HTTP server.
    pub web: WebSection,
    /// Graceful shutdown.
    pub shutdown: ShutdownSection,
    /// Late labels and live quality.
    pub labels: LabelsSection,
    /// The on-disk store of scored rows and labels.
    pub store: StoreSection,
    /// A challenger model scored beside the serving one.
    pub shadow: ShadowSection,
}

/// `[labels]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsSection {
    /// Topic the labels are published on; empty for none.
    pub topic: String,
    /// Labelled wafers live quality is computed over.
    pub window_rows: usize,
    /// Scored rows remembered for the join.
    pub join_rows: usize,
    /// Seconds a label waits for its row.
    pub pending_s: u64,
    /// Labels waiting at once.
    pub max_pending: usize,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Directory of the store; empty for none.
    pub dir: String,
    /// Scored rows kept on disk.
    pub max_rows: usize,
    /// Days kept on disk; 0 for no limit.
    pub max_days: u32,
    /// Rows per file.
    pub segment_rows: usize,
}

/// `[shadow]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowSection {
    /// Directory of the shadow model; empty for none.
    pub model: String,
}

/// `[source]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// `embedded`, `mqtt` or `kafka`.
    pub kind: String,
    /// `[source.mqtt]`
    pub mqtt: MqttSection,
    /// `[source.kafka]`
    pub kafka: KafkaSection,
}

/// `[source.kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic the rows are published on.
    pub topic: String,
    /// Consumer group.
    pub group_id: String,
    /// librdkafka properties passed through to the consumer and the producer (TLS, SASL, tuning).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `[source.mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://host:port`.
    pub url: String,
    /// Topic filter.
    pub topic: String,
    /// Stable client id.
    pub client_id: String,
    /// Subscription QoS (0 or 1).
    pub qos: u8,
    /// Shared subscription group, empty for none.
    pub shared_group: String,
    /// Keep-alive interval in seconds.
    pub keep_alive_s: u64,
    /// PEM file of the CA(s) that sign the broker's certificate (mqtts://); empty: the system's.
    pub ca_file: String,
    /// PEM client certificate (chain) for brokers that require one; empty: none.
    pub client_cert_file: String,
    /// PEM private key of the client certificate.
    pub client_key_file: String,
    /// User name for brokers that require one; empty: none.
    #[serde(default)]
    pub username: String,
    /// Password of `username` (prefer `password_file`).
    #[serde(default)]
    pub password: String,
    /// File holding the password (its whole content, trailing newline dropped).
    #[serde(default)]
    pub password_file: String,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Listen address of the embedded broker.
    pub listen: String,
}

/// `[sink]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// Topic for faults.
    pub faults_topic: String,
    /// Topic for every verdict; empty for none.
    pub scores_topic: String,
    /// Topic for unreadable rows.
    pub dead_letter_topic: String,
}

/// `[batch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    /// Rows that trigger a flush.
    pub max_rows: usize,
    /// Milliseconds after a batch's first row that trigger a flush.
    pub linger_ms: u64,
    /// Rows in flight (read, not yet acknowledged).
    pub queue_rows: usize,
}

/// `[drift]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSection {
    /// Rows in the window.
    pub window_rows: usize,
    /// Recompute interval in milliseconds.
    pub interval_ms: u64,
}

/// `[web]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// HTTP listen address.
    pub listen: String,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most rows per scoring request.
    pub max_rows: usize,
    /// Request timeout in milliseconds.
    pub request_timeout_ms: u64,
    /// Scoring requests at once.
    pub max_concurrent: usize,
    /// Bearer token for /api/*; empty for none.
    pub token: String,
    /// File holding the bearer token (instead of `token`); empty for none.
    #[serde(default)]
    pub token_file: String,
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSection {
    /// Grace period in milliseconds.
    pub grace_ms: u64,
}

/// Where rows come from, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// The embedded broker on `broker_listen`.
    Embedded,
    /// An external MQTT broker.
    Mqtt,
    /// A Kafka cluster (needs the `kafka` cargo feature).
    Kafka,
}

/// A Kafka connection's settings, checked.
#[derive(Clone)]
pub struct KafkaSettings {
    /// Bootstrap servers.
    pub brokers: String,
    /// Topic to consume.
    pub topic: String,
    /// Consumer group.
    pub group_id: String,
    /// librdkafka properties, names with dots (`security.protocol`), values as text.
    pub properties: Vec<(String, String)>,
}

/// librdkafka properties faultline sets itself: at-least-once depends on them, or they have their
/// own keys.
const KAFKA_RESERVED: [(&str, &str); 5] = [
    ("bootstrap.servers", "set source.kafka.brokers instead"),
    ("group.id", "set source.kafka.group_id instead"),
    (
        "enable.auto.offset.store",
        "faultline stores a row's offset only after its verdict is on the broker",
    ),
    (
        "enable.auto.commit",
        "faultline commits only offsets it has stored, after their verdicts are on the broker",
    ),
    (
        "enable.partition.eof",
        "faultline reads the topic as an endless stream",
    ),
];

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = ["password", "secret", "key", "token", "jaas"]
                    .iter()
                    .any(|s| k.contains(s));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("group_id", &self.group_id)
            .field("properties", &properties)
            .finish()
    }
}

/// `[source.mqtt]` user name and password (from `password` or `password_file`).
fn mqtt_credentials(m: &MqttSection) -> Result<Option<(String, Secret)>, String> {
    let user = m.username.trim();
    let password = match (m.password.as_str(), m.password_file.trim()) {
        ("", "") => String::new(),
        (p, "") => p.to_string(),
        ("", file) => read_secret("source.mqtt.password_file", file)?,
        _ => {
            return Err(
                "source.mqtt.password and password_file are both set; keep one (the file keeps the password out of the configuration)"
                    .into(),
            )
        }
    };
    match (user, password.is_empty()) {
        ("", true) => Ok(None),
        ("", false) => Err(
            "source.mqtt has a password but no username; MQTT sends a password only with a user name"
                .into(),
        ),
        (user, _) => Ok(Some((user.to_string(), password.into()))),
    }
}

/// Reads a secret from `path`: the whole file, without the trailing newline.
fn read_secret(setting: &str, path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path.trim())
        .map_err(|e| format!("{setting} = {path}: cannot read it: {e}"))?;
    let text = text.trim_end_matches(['\n', '\r']).to_string();
    if text.is_empty() {
        return Err(format!("{setting} = {path}: the file is empty"));
    }
    Ok(text)
}

impl KafkaSettings {
    /// Checks `[source.kafka]`. Property names may be written with `_` for `.` (environment
    /// variables cannot hold dots): `FAULTLINE_SOURCE__KAFKA__PROPERTIES__SECURITY_PROTOCOL=SSL`.
    pub fn from_section(k: &KafkaSection) -> Result<KafkaSettings, String> {
        let brokers = k.brokers.trim();
        if brokers.is_empty() {
            return Err("source.kafka.brokers is empty; set host:port[,host:port]".into());
        }
        if brokers.contains("://") {
            return Err(format!(
                "source.kafka.brokers is \"{brokers}\"; write host:port[,host:port] without a scheme"
            ));
        }
        let topic = k.topic.trim();
        if topic.is_empty() {
            return Err(
                "source.kafka.topic is empty; set the topic the rows are published on".into(),
            );
        }
        if let Some(bad) = kafka_topic_problem(topic) {
            return Err(format!("source.kafka.topic \"{topic}\" {bad}"));
        }
        let group_id = k.group_id.trim();
        if group_id.is_empty() {
            return Err("source.kafka.group_id is empty; instances in one group split the partitions, so set a stable name".into());
        }
        let mut properties = Vec::with_capacity(k.properties.len());
        for (name, value) in &k.properties {
            let name = if name.contains('.') {
                name.clone()
            } else {
                name.replace('_', ".")
            };
            if let Some((_, why)) = KAFKA_RESERVED.iter().find(|(n, _)| *n == name) {
                return Err(format!(
                    "source.kafka.properties sets \"{name}\"; faultline sets it itself: {why}"
                ));
            }
            let mut name = name;
            let value = match value {
                // `<property>.file`: the value is in that file (a secret kept out of the config).
                serde_json::Value::String(path) if name.ends_with(".file") => {
                    name = name.trim_end_matches(".file").to_string();
                    read_secret(&format!("source.kafka.properties.\"{name}.file\""), path)?
                }
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "source.kafka.properties.\"{name}\" must be a string, number or boolean"
                    ))
                }
            };
            properties.push((name, value));
        }
        Ok(KafkaSettings {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group_id: group_id.to_string(),
            properties,
        })
    }
}

/// Why `topic` is not a legal Kafka topic name, if it is not.
pub fn kafka_topic_problem(topic: &str) -> Option<&'static str> {
    if topic.len() > 249 {
        Some("is longer than 249 characters")
    } else if topic == "." || topic == ".." {
        Some("is not a legal Kafka topic name")
    } else if !topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("may hold only letters, digits, '.', '_' and '-' (Kafka topic names)")
    } else {
        None
    }
}

/// A password or token: its `Debug` never shows it (read it with `&*secret`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<T: Into<String>> From<T> for Secret {
    fn from(s: T) -> Secret {
        Secret(s.into())
    }
}

/// An MQTT connection's settings, checked.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic filter to subscribe to (without any `$share` prefix).
    pub topic: String,
    /// Client id.
    pub client_id: String,
    /// Subscription QoS.
    pub qos: u8,
    /// Shared subscription group.
    pub shared_group: Option<String>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// TLS, for `mqtts://` URLs.
    pub tls: Option<MqttTls>,
    /// User name and password sent in CONNECT (the password is never printed).
    pub credentials: Option<(String, Secret)>,
}

/// TLS settings of an `mqtts://` connection (files are read when faultline starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTls {
    /// CA certificates (PEM) to trust; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for brokers that require client certificates.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl MqttSettings {
    /// The filter to subscribe to: `$share/<group>/<topic>` on a shared subscription.
    pub fn subscription(&self) -> String {
        match &self.shared_group {
            Some(g) => format!("$share/{g}/{}", self.topic),
            None => self.topic.clone(),
        }
    }
}

/// Parses `mqtt://host[:port]` (plain TCP only).
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    match parse_broker_url(url)? {
        (_, _, true) => Err(format!(
            "'{url}': TLS is not available here; use mqtt://HOST:PORT"
        )),
        (host, port, false) => Ok((host, port)),
    }
}

/// Parses `mqtt://host[:port]` (port 1883) or `mqtts://host[:port]` (TLS, port 8883); the bool
/// says TLS.
pub fn parse_broker_url(url: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true)
    } else {
        return Err(format!(
            "'{url}' is not an MQTT URL; write mqtt://HOST:PORT or mqtts://HOST:PORT"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("'{url}' has an invalid port '{p}'"))?,
        ),
        _ => (rest, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("'{url}' names no host; write mqtt://HOST:PORT"));
    }
    Ok((host.to_string(), port, tls))
}

/// `[model]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model directory; empty for the embedded model.
    pub dir: String,
    /// Threshold override; negative for the card's.
    pub threshold: f64,
    /// How often to look for changed model files, in milliseconds; 0 for never.
    pub watch_ms: u64,
    /// Alarm budget: the share of recent wafers to flag, in (0, 1); 0 for the fixed threshold.
    pub alarm_rate: f64,
    /// Recent wafers the alarm budget's quantile is taken over.
    pub alarm_window_rows: usize,
    /// Wafers the window must hold before the budget decides (the fixed threshold decides until then).
    pub alarm_warmup_rows: usize,
    /// Contributions listed per explained verdict; 0 for none.
    pub contributions_top_k: usize,
    /// Explain every verdict, not only faults.
    pub explain_all_rows: bool,
}

/// `[input]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// Ignore unknown CSV columns instead of refusing the file.
    pub allow_extra_columns: bool,
    /// Rows per CSV batch.
    pub csv_batch_rows: usize,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Model directory; `None` for the embedded model.
    pub model_dir: Option<PathBuf>,
    /// Threshold override.
    pub threshold: Option<f32>,
    /// The alarm budget, when `[model] alarm_rate` is set.
    pub alarm: Option<crate::model::Budget>,
    /// `[model] alarm_window_rows` and `alarm_warmup_rows`, for a budget set on the command line.
    pub alarm_rows: (usize, usize),
    /// Which verdicts carry contributions.
    pub explain: crate::model::Explain,
    /// How often to look for changed model files (`None`: never, or no model directory).
    pub model_watch: Option<Duration>,
    /// Ignore unknown CSV columns.
    pub allow_extra_columns: bool,
    /// Rows per CSV batch.
    pub csv_batch_rows: NonZeroUsize,
    /// Where rows come from.
    pub source: SourceKind,
    /// The MQTT connection (to the embedded broker when `source` is `Embedded`).
    pub mqtt: MqttSettings,
    /// The Kafka connection, when `source` is `Kafka`.
    pub kafka: Option<KafkaSettings>,
    /// The embedded broker's listen address.
    pub broker_listen: SocketAddr,
    /// Topic for faults.
    pub faults_topic: String,
    /// Topic for every verdict.
    pub scores_topic: Option<String>,
    /// Topic for unreadable rows.
    pub dead_letter_topic: String,
    /// When to flush a micro-batch.
    pub batch: crate::pipeline::batch::BatchPolicy,
    /// Rows in flight.
    pub queue_rows: NonZeroUsize,
    /// HTTP listen address.
    pub web_listen: SocketAddr,
    /// HTTP API limits and token.
    pub web_limits: crate::web::api::WebLimits,
    /// Rows in the drift window.
    pub drift_window_rows: NonZeroUsize,
    /// Drift recompute interval.
    pub drift_interval: Duration,
    /// Shutdown grace period.
    pub grace: Duration,
    /// Topic (MQTT filter) the labels arrive on, if any.
    pub labels_topic: Option<String>,
    /// The store and the join's limits.
    pub store: crate::store::StoreSettings,
    /// How often waiting labels expire and the quality gauges are recomputed.
    pub quality_interval: Duration,
    /// The shadow model's directory, if one runs.
    pub shadow_dir: Option<PathBuf>,
}

impl Config {
    /// The decision policy every loaded model gets: threshold override, alarm budget, explanations.
    pub fn policy(&self) -> crate::model::Policy {
        crate::model::Policy {
            threshold: self.threshold,
            budget: self.alarm,
            explain: self.explain,
        }
    }
}

impl RawConfig {
    /// Loads the layers: defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<RawConfig, ConfigError> {
        RawConfig::load_with_env(file, std::env::vars())
    }

    /// As [`RawConfig::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<RawConfig, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // Only FAULTLINE_<SECTION>__<KEY>: every key lives in a section, and other FAULTLINE_*
        // variables (a test's FAULTLINE_BIN, say) are not configuration.
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")) && k.contains("__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        Ok(builder.build()?.try_deserialize()?)
    }

    /// Checks ranges and cross-field rules; no I/O.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let threshold = if self.model.threshold < 0.0 {
            None
        } else if self.model.threshold > 0.0 && self.model.threshold < 1.0 {
            Some(self.model.threshold as f32)
        } else {
            return Err(ConfigError::Invalid(format!(
                "model.threshold is {}; set it between 0 and 1 (exclusive), or to -1 to use the model card's threshold",
                self.model.threshold
            )));
        };
        let md = &self.model;
        let alarm = if md.alarm_rate == 0.0 {
            None
        } else {
            let budget = crate::model::Budget::new(
                md.alarm_rate,
                md.alarm_window_rows,
                md.alarm_warmup_rows,
            )
            .map_err(ConfigError::Invalid)?;
            Some(budget)
        };
        let explain = crate::model::Explain {
            top_k: md.contributions_top_k,
            all_rows: md.explain_all_rows,
        };
        let csv_batch_rows = NonZeroUsize::new(self.input.csv_batch_rows).ok_or_else(|| {
            ConfigError::Invalid(
                "input.csv_batch_rows is 0; set it to at least 1 (the default is 4096)".into(),
            )
        })?;
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let source = match self.source.kind.as_str() {
            "embedded" => SourceKind::Embedded,
            "mqtt" => SourceKind::Mqtt,
            "kafka" if cfg!(feature = "kafka") => SourceKind::Kafka,
            "kafka" => {
                return invalid(
                    "source.kind is \"kafka\", but this build of faultline was compiled without Kafka; rebuild with `cargo build --release --features kafka`"
                        .into(),
                )
            }
            other => {
                return invalid(format!(
                    "source.kind is \"{other}\"; set it to \"embedded\", \"mqtt\" or \"kafka\""
                ))
            }
        };
        let broker_listen: SocketAddr = self.broker.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "broker.listen is \"{}\"; write an IP address and port such as 127.0.0.1:1883",
                self.broker.listen
            ))
        })?;
        let m = &self.source.mqtt;
        let (host, port, tls) = match source {
            SourceKind::Embedded => (broker_listen.ip().to_string(), broker_listen.port(), false),
            // Not used on Kafka, but checked all the same: a typo should not wait for a switch.
            SourceKind::Mqtt | SourceKind::Kafka => parse_broker_url(m.url.trim())
                .map_err(|e| ConfigError::Invalid(format!("source.mqtt.url {e}")))?,
        };
        let file = |f: &str| Some(PathBuf::from(f.trim())).filter(|p| !p.as_os_str().is_empty());
        let client_cert = match (file(&m.client_cert_file), file(&m.client_key_file)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return invalid(
                "source.mqtt.client_cert_file and client_key_file go together: set both or neither"
                    .into(),
            ),
        };
        if !tls
            && (file(&m.ca_file).is_some() || client_cert.is_some())
            && source == SourceKind::Mqtt
        {
            return invalid(format!(
                "source.mqtt sets TLS files but the url \"{}\" is not mqtts://; write mqtts://HOST:PORT",
                m.url.trim()
            ));
        }
        let credentials = mqtt_credentials(m).map_err(ConfigError::Invalid)?;
        let tls = tls.then(|| MqttTls {
            ca_file: file(&m.ca_file),
            client_cert,
        });
        let kafka = match source {
            SourceKind::Kafka => Some(
                KafkaSettings::from_section(&self.source.kafka).map_err(ConfigError::Invalid)?,
            ),
            _ => None,
        };
        // Empty sink topics take the bus's own default names.
        let on_kafka = source == SourceKind::Kafka;
        let bus_default = |topic: &str, mqtt: &str, kafka: &str| -> String {
            match topic.trim() {
                "" if on_kafka => kafka.to_string(),
                "" => mqtt.to_string(),
                t => t.to_string(),
            }
        };
        let faults_topic = bus_default(
            &self.sink.faults_topic,
            "faultline/faults",
            "faultline.faults",
        );
        let dead_letter_topic = bus_default(
            &self.sink.dead_letter_topic,
            "faultline/dead-letter",
            "faultline.dead-letter",
        );
        let host = if host == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        if m.topic.trim().is_empty() {
            return invalid(
                "source.mqtt.topic is empty; set the topic the rows are published on".into(),
            );
        }
        if m.client_id.trim().is_empty() {
            return invalid(
                "source.mqtt.client_id is empty; set a stable id so the broker keeps the session"
                    .into(),
            );
        }
        if m.qos > 1 {
            return invalid(format!(
                "source.mqtt.qos is {}; set 1 (at least once) or 0 (at most once)",
                m.qos
            ));
        }
        if m.keep_alive_s < 5 {
            return invalid(format!(
                "source.mqtt.keep_alive_s is {}; set at least 5 seconds",
                m.keep_alive_s
            ));
        }
        let group = m.shared_group.trim();
        if group.contains(['/', '+', '#']) {
            return invalid(format!(
                "source.mqtt.shared_group \"{group}\" may not contain /, + or #"
            ));
        }
        for (key, topic) in [
            ("sink.faults_topic", faults_topic.as_str()),
            ("sink.dead_letter_topic", dead_letter_topic.as_str()),
            ("sink.scores_topic", self.sink.scores_topic.trim()),
        ] {
            if topic.contains(['+', '#']) {
                return invalid(format!(
                    "{key} \"{topic}\" contains a wildcard; publish topics must be literal"
                ));
            }
            if let Some(bad) = kafka_topic_problem(topic).filter(|_| on_kafka && !topic.is_empty())
            {
                return invalid(format!("{key} \"{topic}\" {bad}"));
            }
        }
        let max_rows = NonZeroUsize::new(self.batch.max_rows).ok_or_else(|| {
            ConfigError::Invalid("batch.max_rows is 0; set at least 1 (default 256)".into())
        })?;
        let queue_rows = NonZeroUsize::new(self.batch.queue_rows).ok_or_else(|| {
            ConfigError::Invalid("batch.queue_rows is 0; set at least 1 (default 10000)".into())
        })?;
        if queue_rows < max_rows {
            return invalid(format!(
                "batch.queue_rows ({queue_rows}) is smaller than batch.max_rows ({max_rows}); a batch could never fill: raise queue_rows or lower max_rows"
            ));
        }
        let web_listen: SocketAddr = self.web.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "web.listen is \"{}\"; write an IP address and port such as 127.0.0.1:8080",
                self.web.listen
            ))
        })?;
        let drift_window_rows = NonZeroUsize::new(self.drift.window_rows).ok_or_else(|| {
            ConfigError::Invalid("drift.window_rows is 0; set at least 50 (default 1000)".into())
        })?;
        if self.drift.interval_ms < 100 {
            return invalid(format!(
                "drift.interval_ms is {}; set at least 100 (default 5000)",
                self.drift.interval_ms
            ));
        }
        let web = &self.web;
        if web.max_body_bytes == 0
            || web.max_rows == 0
            || web.max_concurrent == 0
            || web.request_timeout_ms == 0
        {
            return invalid(
                "web.max_body_bytes, web.max_rows, web.max_concurrent and web.request_timeout_ms must all be above 0"
                    .into(),
            );
        }
        let token = match (web.token.trim(), web.token_file.trim()) {
            (t, "") => Some(t.to_string()).filter(|t| !t.is_empty()),
            ("", file) => Some(read_secret("web.token_file", file).map_err(ConfigError::Invalid)?),
            _ => {
                return invalid(
                    "web.token and web.token_file are both set; keep one (the file keeps the token out of the configuration)"
                        .into(),
                )
            }
        };
        let web_limits = crate::web::api::WebLimits {
            max_body_bytes: web.max_body_bytes,
            max_rows: web.max_rows,
            request_timeout: Duration::from_millis(web.request_timeout_ms),
            max_concurrent: web.max_concurrent,
            token: token.map(Secret::from),
        };
        let dir = self.model.dir.trim();
        if self.model.watch_ms > 0 && self.model.watch_ms < 100 {
            return invalid(format!(
                "model.watch_ms is {}; set at least 100, or 0 to not watch the model files",
                self.model.watch_ms
            ));
        }
        let l = &self.labels;
        if l.window_rows == 0 || l.join_rows == 0 || l.max_pending == 0 {
            return invalid(
                "labels.window_rows, labels.join_rows and labels.max_pending must all be above 0"
                    .into(),
            );
        }
        let labels_topic = Some(l.topic.trim().to_string()).filter(|t| !t.is_empty());
        let row_topic = match &kafka {
            Some(k) => k.topic.clone(),
            None => m.topic.trim().to_string(),
        };
        if let Some(t) = &labels_topic {
            for (key, other) in [
                ("the rows' topic", row_topic.as_str()),
                ("sink.faults_topic", faults_topic.as_str()),
                ("sink.dead_letter_topic", dead_letter_topic.as_str()),
                ("sink.scores_topic", self.sink.scores_topic.trim()),
            ] {
                if t == other {
                    return invalid(format!(
                        "labels.topic \"{t}\" is also {key}; labels need a topic of their own"
                    ));
                }
            }
        }
        if let Some(bad) = labels_topic
            .as_deref()
            .filter(|_| on_kafka)
            .and_then(kafka_topic_problem)
        {
            return invalid(format!("labels.topic \"{}\" {bad}", l.topic.trim()));
        }
        let st = &self.store;
        if st.max_rows == 0 || st.segment_rows == 0 {
            return invalid("store.max_rows and store.segment_rows must be above 0".into());
        }
        if st.segment_rows > st.max_rows {
            return invalid(format!(
                "store.segment_rows ({}) is larger than store.max_rows ({}); lower segment_rows: old rows are deleted a whole file at a time",
                st.segment_rows, st.max_rows
            ));
        }
        let store = crate::store::StoreSettings {
            dir: file(&st.dir),
            max_rows: st.max_rows,
            max_days: (st.max_days > 0).then_some(st.max_days),
            segment_rows: st.segment_rows,
            ledger: crate::store::ledger::LedgerLimits {
                max_rows: l.join_rows,
                window: l.window_rows,
                max_pending: l.max_pending,
                pending_ttl_ms: (l.pending_s as i64).saturating_mul(1000),
            },
        };
        Ok(Config {
            labels_topic,
            store,
            quality_interval: Duration::from_secs(1),
            shadow_dir: file(&self.shadow.model),
            model_dir: (!dir.is_empty()).then(|| PathBuf::from(dir)),
            threshold,
            alarm,
            alarm_rows: (md.alarm_window_rows, md.alarm_warmup_rows),
            explain,
            model_watch: (!dir.is_empty() && self.model.watch_ms > 0)
                .then(|| Duration::from_millis(self.model.watch_ms)),
            allow_extra_columns: self.input.allow_extra_columns,
            csv_batch_rows,
            source,
            mqtt: MqttSettings {
                host,
                port,
                topic: m.topic.trim().to_string(),
                client_id: m.client_id.trim().to_string(),
                qos: m.qos,
                shared_group: (!group.is_empty()).then(|| group.to_string()),
                keep_alive: Duration::from_secs(m.keep_alive_s),
                tls,
                credentials,
            },
            kafka,
            broker_listen,
            faults_topic,
            scores_topic: Some(self.sink.scores_topic.trim().to_string()).filter(|t| !t.is_empty()),
            dead_letter_topic,
            batch: crate::pipeline::batch::BatchPolicy {
                max_rows,
                linger: Duration::from_millis(self.batch.linger_ms),
            },
            queue_rows,
            web_listen,
            web_limits,
            drift_window_rows,
            drift_interval: Duration::from_millis(self.drift.interval_ms),
            grace: Duration::from_millis(self.shutdown.grace_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let c = RawConfig::load_with_env(None, env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.model_dir, None);
        assert_eq!(c.threshold, None);
        assert!(!c.allow_extra_columns);
        assert_eq!(c.csv_batch_rows.get(), 4096);
    }

    #[test]
    fn env_overrides_nested_keys_that_contain_underscores() {
        let c = RawConfig::load_with_env(
            None,
            env(&[
                ("FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS", "true"),
                ("FAULTLINE_INPUT__CSV_BATCH_ROWS", "7"),
                ("FAULTLINE_MODEL__DIR", "/srv/models/x"),
                ("FAULTLINE_MODEL__THRESHOLD", "0.25"),
                ("UNRELATED__THING", "1"),
                ("FAULTLINE_BIN", "/not/config"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert!(c.allow_extra_columns);
        assert_eq!(c.csv_batch_rows.get(), 7);
        assert_eq!(c.model_dir, Some(PathBuf::from("/srv/models/x")));
        assert_eq!(c.threshold, Some(0.25));
    }

    #[test]
    fn a_file_layers_over_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[input]\nallow_extra_columns = true\n").unwrap();
        let c = RawConfig::load_with_env(Some(&path), env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert!(c.allow_extra_columns);
        assert_eq!(c.csv_batch_rows.get(), 4096);

        std::fs::write(&path, "[input]\nallow_extra_colums = true\n").unwrap();
        let e = RawConfig::load_with_env(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("allow_extra_colums"), "{e}");
    }

    #[test]
    fn the_documented_env_names_reach_nested_sections() {
        let c = RawConfig::load_with_env(
            None,
            env(&[
                ("FAULTLINE_SOURCE__KIND", "mqtt"),
                ("FAULTLINE_SOURCE__MQTT__URL", "mqtt://broker.local:2883"),
                ("FAULTLINE_SOURCE__MQTT__SHARED_GROUP", "scorers"),
                ("FAULTLINE_SINK__SCORES_TOPIC", "faultline/scores"),
                ("FAULTLINE_BATCH__MAX_ROWS", "64"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.source, SourceKind::Mqtt);
        assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("broker.local", 2883));
        assert_eq!(c.mqtt.subscription(), "$share/scorers/faultline/rows");
        assert_eq!(c.scores_topic.as_deref(), Some("faultline/scores"));
        assert_eq!(c.batch.max_rows.get(), 64);
    }

    #[test]
    fn embedded_defaults_need_nothing_else() {
        let c = RawConfig::load_with_env(None, env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.source, SourceKind::Embedded);
        assert_eq!(c.broker_listen.to_string(), "127.0.0.1:1883");
        assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("127.0.0.1", 1883));
        assert_eq!(c.faults_topic, "faultline/faults");
        assert_eq!(c.scores_topic, None);
        assert_eq!(c.batch.linger, Duration::from_millis(5));
    }

    #[test]
    fn mqtt_urls_parse_or_say_how_to_write_them() {
        assert_eq!(parse_mqtt_url("mqtt://h:1"), Ok(("h".into(), 1)));
        assert_eq!(parse_mqtt_url("mqtt://h"), Ok(("h".into(), 1883)));
        assert_eq!(parse_mqtt_url("mqtt://[::1]:9"), Ok(("::1".into(), 9)));
        assert!(parse_mqtt_url("tcp://h:1")
            .unwrap_err()
            .contains("mqtt://HOST:PORT"));
        assert!(parse_mqtt_url("mqtts://h:1").unwrap_err().contains("TLS"));
        assert_eq!(parse_broker_url("mqtts://h"), Ok(("h".into(), 8883, true)));
        assert_eq!(parse_broker_url("mqtt://h:2"), Ok(("h".into(), 2, false)));
        assert!(parse_mqtt_url("mqtt://h:x")
            .unwrap_err()
            .contains("invalid port"));
    }

    #[test]
    fn cross_field_rules_are_sentences() {
        let e = RawConfig::load_with_env(
            None,
            env(&[
                ("FAULTLINE_BATCH__QUEUE_ROWS", "10"),
                ("FAULTLINE_BATCH__MAX_ROWS", "100"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("raise queue_rows or lower max_rows"), "{e}");
        if !cfg!(feature = "kafka") {
            let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_SOURCE__KIND", "kafka")]))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("--features kafka"), "{e}");
        }
        let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_SOURCE__MQTT__QOS", "2")]))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("set 1"), "{e}");
    }

    #[test]
    fn the_loop_sections_load_from_the_environment_and_are_checked() {
        let c = RawConfig::load_with_env(
            None,
            env(&[
                ("FAULTLINE_LABELS__TOPIC", "plant/labels"),
                ("FAULTLINE_LABELS__WINDOW_ROWS", "250"),
                ("FAULTLINE_LABELS__PENDING_S", "60"),
                ("FAULTLINE_STORE__DIR", "/var/lib/faultline"),
                ("FAULTLINE_STORE__MAX_DAYS", "0"),
                ("FAULTLINE_SHADOW__MODEL", "/srv/models/challenger"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.labels_topic.as_deref(), Some("plant/labels"));
        assert_eq!(c.store.ledger.window, 250);
        assert_eq!(c.store.ledger.pending_ttl_ms, 60_000);
        assert_eq!(c.store.dir, Some(PathBuf::from("/var/lib/faultline")));
        assert_eq!(c.store.max_days, None);
        assert_eq!(c.shadow_dir, Some(PathBuf::from("/srv/models/challenger")));
        let defaults = RawConfig::load_with_env(None, env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            (
                defaults.labels_topic,
                defaults.store.dir,
                defaults.shadow_dir
            ),
            (None, None, None)
        );
        assert_eq!(defaults.store.max_days, Some(30));
        for (pairs, says) in [
            (
                vec![("FAULTLINE_LABELS__TOPIC", "faultline/rows")],
                "is also the rows' topic",
            ),
            (vec![("FAULTLINE_LABELS__WINDOW_ROWS", "0")], "above 0"),
            (
                vec![
                    ("FAULTLINE_STORE__MAX_ROWS", "10"),
                    ("FAULTLINE_STORE__SEGMENT_ROWS", "100"),
                ],
                "lower segment_rows",
            ),
        ] {
            let e = RawConfig::load_with_env(None, env(&pairs))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn out_of_range_values_say_what_to_change() {
        let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_MODEL__THRESHOLD", "1.5")]))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_INPUT__CSV_BATCH_ROWS", "0")]))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_settings_take_bus_default_topics_and_pass_properties_through() {
        let c = RawConfig::load_with_env(
            None,
            env(&[
                ("FAULTLINE_SOURCE__KIND", "kafka"),
                (
                    "FAULTLINE_SOURCE__KAFKA__BROKERS",
                    "10.0.0.1:9092,10.0.0.2:9092",
                ),
                (
                    "FAULTLINE_SOURCE__KAFKA__PROPERTIES__SECURITY_PROTOCOL",
                    "SSL",
                ),
                (
                    "FAULTLINE_SOURCE__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS",
                    "6000",
                ),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.source, SourceKind::Kafka);
        let k = c.kafka.unwrap();
        assert_eq!(k.brokers, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(
            (k.topic.as_str(), k.group_id.as_str()),
            ("faultline.rows", "faultline")
        );
        assert_eq!(
            k.properties,
            [
                ("security.protocol".to_string(), "SSL".to_string()),
                ("session.timeout.ms".to_string(), "6000".to_string())
            ]
        );
        assert_eq!(c.faults_topic, "faultline.faults");
        assert_eq!(c.dead_letter_topic, "faultline.dead-letter");
        assert_eq!(c.scores_topic, None);
    }

    #[cfg(feature = "kafka")]
    #[test]
    fn kafka_settings_that_would_break_at_least_once_are_refused() {
        let refuse = |pairs: &[(&str, &str)]| {
            let mut all = vec![("FAULTLINE_SOURCE__KIND", "kafka")];
            all.extend_from_slice(pairs);
            RawConfig::load_with_env(None, env(&all))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let e = refuse(&[(
            "FAULTLINE_SOURCE__KAFKA__PROPERTIES__ENABLE_AUTO_OFFSET_STORE",
            "true",
        )]);
        assert!(
            e.contains("enable.auto.offset.store") && e.contains("after its verdict"),
            "{e}"
        );
        let e = refuse(&[("FAULTLINE_SOURCE__KAFKA__PROPERTIES__GROUP_ID", "x")]);
        assert!(e.contains("source.kafka.group_id"), "{e}");
        let e = refuse(&[("FAULTLINE_SOURCE__KAFKA__BROKERS", "kafka://h:9092")]);
        assert!(e.contains("without a scheme"), "{e}");
        let e = refuse(&[("FAULTLINE_SINK__FAULTS_TOPIC", "plant/faults")]);
        assert!(
            e.contains("sink.faults_topic") && e.contains("Kafka topic names"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_files_and_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "kafka-pass").unwrap();
        let mut pairs = vec![
            ("FAULTLINE_WEB__TOKEN_FILE", token.to_str().unwrap()),
            (
                "FAULTLINE_SOURCE__KAFKA__PROPERTIES__SASL_PASSWORD_FILE",
                password.to_str().unwrap(),
            ),
        ];
        if cfg!(feature = "kafka") {
            pairs.push(("FAULTLINE_SOURCE__KIND", "kafka"));
        }
        let c = RawConfig::load_with_env(None, env(&pairs))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.web_limits.token.as_deref(), Some("s3cret-token"));
        let printed = format!("{c:?}");
        assert!(!printed.contains("s3cret-token"), "{printed}");
        if let Some(k) = &c.kafka {
            assert!(k
                .properties
                .contains(&("sasl.password".into(), "kafka-pass".into())));
            assert!(!printed.contains("kafka-pass"), "{printed}");
        }
        let e = RawConfig::load_with_env(
            None,
            env(&[("FAULTLINE_WEB__TOKEN_FILE", "/nonexistent/token")]),
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("web.token_file") && e.contains("/nonexistent/token"),
            "{e}"
        );
        let e = RawConfig::load_with_env(
            None,
            env(&[
                ("FAULTLINE_WEB__TOKEN", "x"),
                ("FAULTLINE_WEB__TOKEN_FILE", token.to_str().unwrap()),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("both set"), "{e}");
    }

    #[test]
    fn an_mqtt_login_comes_from_settings_or_a_file_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "mqtt-pass\n").unwrap();
        let check = |pairs: &[(&str, &str)]| {
            RawConfig::load_with_env(None, env(pairs))
                .unwrap()
                .validate()
                .map(|c| c.mqtt)
                .map_err(|e| e.to_string())
        };
        assert_eq!(check(&[]).unwrap().credentials, None);
        let m = check(&[
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "plant"),
            (
                "FAULTLINE_SOURCE__MQTT__PASSWORD_FILE",
                file.to_str().unwrap(),
            ),
        ])
        .unwrap();
        assert_eq!(
            m.credentials.as_ref().map(|(u, p)| (u.as_str(), &**p)),
            Some(("plant", "mqtt-pass"))
        );
        let printed = format!("{m:?}");
        assert!(
            printed.contains("plant") && !printed.contains("mqtt-pass"),
            "{printed}"
        );
        let m = check(&[
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "plant"),
            ("FAULTLINE_SOURCE__MQTT__PASSWORD", "inline"),
        ])
        .unwrap();
        assert_eq!(&*m.credentials.unwrap().1, "inline");
        let e = check(&[("FAULTLINE_SOURCE__MQTT__PASSWORD", "inline")]).unwrap_err();
        assert!(e.contains("no username"), "{e}");
        let e = check(&[
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "plant"),
            ("FAULTLINE_SOURCE__MQTT__PASSWORD", "inline"),
            (
                "FAULTLINE_SOURCE__MQTT__PASSWORD_FILE",
                file.to_str().unwrap(),
            ),
        ])
        .unwrap_err();
        assert!(e.contains("both set"), "{e}");
        let e = check(&[
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "plant"),
            ("FAULTLINE_SOURCE__MQTT__PASSWORD_FILE", "/nonexistent/pw"),
        ])
        .unwrap_err();
        assert!(
            e.contains("source.mqtt.password_file") && e.contains("/nonexistent/pw"),
            "{e}"
        );
    }
}
