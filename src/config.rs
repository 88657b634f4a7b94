//! Configuration: serde types, loaded in layers, then validated without I/O.
//!
//! Secrets can come from files (`[web] token_file`, a Kafka property `<name>.file`), which
//! validation reads; they are never printed (`Debug` redacts them).
//!
//! Layers, later wins: `config/default.toml` (compiled in, so it is the one place defaults live),
//! the user's `--config FILE`, then environment variables `FAULTLINE_<SECTION>__<KEY>`. The double
//! underscore separates nesting levels so keys that contain `_` survive
//! (`FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS=true`).

use crate::bus::kafka::{kafka_topic_problem, KafkaSection, KafkaSettings};
use crate::bus::mqtt::{MqttSection, MqttSettings};
use crate::model::settings::ModelSection;
use crate::store::{LabelsSection, StoreSection, StoreSettings};
use crate::web::api::{WebLimits, WebSection};
use serde::Deserialize;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The defaults, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment variable prefix.
pub const ENV_PREFIX: &str = "FAULTLINE";

/// The configuration's sections (the first word of every key).
const SECTIONS: [&str; 13] = [
    "model", "input", "source", "broker", "sink", "batch", "drift", "web", "shutdown", "labels",
    "store", "shadow", "runtime",
];

/// The most threads `[runtime] workers` may ask for: past the machine's cores they only wait on
/// each other, and far past it the runtime could not start them.
const MAX_WORKERS: usize = 1024;

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
    /// The threads the daemon's tasks run on.
    pub runtime: RuntimeSection,
}

/// `[runtime]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// `auto` (one per core) or a number of threads.
    pub workers: String,
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
    /// Read by an offline command, which does not connect to the bus: a Kafka source is checked
    /// as written even in a build without Kafka.
    #[serde(skip)]
    pub offline: bool,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Listen address of the embedded broker.
    pub listen: String,
    /// Whether `listen` was set by the file or the environment (not the default).
    #[serde(skip)]
    pub listen_chosen: bool,
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

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSection {
    /// Grace period in milliseconds.
    pub grace_ms: u64,
}

/// `[input]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// Ignore unknown CSV columns instead of refusing the file.
    pub allow_extra_columns: bool,
    /// Rows per CSV batch of `faultline score`.
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
    /// Rows per CSV batch of `faultline score` (uploads and replay use their own).
    pub csv_batch_rows: NonZeroUsize,
    /// The bus rows come from and verdicts go to.
    pub bus: Bus,
    /// Topic for faults.
    pub faults_topic: String,
    /// Topic for every verdict.
    pub scores_topic: Option<String>,
    /// Topic for unreadable rows.
    pub dead_letter_topic: String,
    /// When to flush a micro-batch.
    pub batch: BatchPolicy,
    /// Rows in flight.
    pub queue_rows: NonZeroUsize,
    /// HTTP listen address.
    pub web_listen: SocketAddr,
    /// HTTP API limits and token.
    pub web_limits: WebLimits,
    /// Rows in the drift window.
    pub drift_window_rows: NonZeroUsize,
    /// Drift recompute interval.
    pub drift_interval: Duration,
    /// Shutdown grace period.
    pub grace: Duration,
    /// Topic (MQTT filter) the labels arrive on, if any.
    pub labels_topic: Option<String>,
    /// On Kafka with a labels topic, the consumer group this instance reads the labels in.
    pub labels_group: Option<String>,
    /// The store and the join's limits.
    pub store: StoreSettings,
    /// How often waiting labels expire and the quality gauges are recomputed.
    pub quality_interval: Duration,
    /// The shadow model's directory, if one runs.
    pub shadow_dir: Option<PathBuf>,
    /// Threads for the daemon's tasks; `None` for one per core.
    pub workers: Option<NonZeroUsize>,
}

/// `[batch]`, checked: when the micro-batcher flushes.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Flush as soon as this many rows are waiting.
    pub max_rows: NonZeroUsize,
    /// Flush this long after the first row of a batch arrived.
    pub linger: Duration,
}

/// The bus rows come from and verdicts go to, checked: each kind carries only its own settings.
#[derive(Debug, Clone)]
pub enum Bus {
    /// faultline's own MQTT broker on `listen`; its clients connect there with `mqtt`.
    Embedded {
        /// Where the embedded broker listens.
        listen: SocketAddr,
        /// The connection faultline's clients make to it.
        mqtt: MqttSettings,
        /// When `listen` is taken by an MQTT broker, serve on that broker instead of stopping
        /// (true when `listen` is the default rather than chosen: a first run on a machine that
        /// already runs Mosquitto on 1883 works, and every client's default address still fits).
        use_existing: bool,
    },
    /// An external MQTT broker.
    Mqtt(MqttSettings),
    /// A Kafka cluster (builds with the `kafka` feature; others refuse this configuration).
    Kafka(KafkaSettings),
}

impl Bus {
    /// The MQTT connection's settings, on an MQTT bus.
    pub fn mqtt(&self) -> Option<&MqttSettings> {
        match self {
            Bus::Embedded { mqtt, .. } | Bus::Mqtt(mqtt) => Some(mqtt),
            Bus::Kafka(_) => None,
        }
    }

    /// As [`Bus::mqtt`], to change them (tests, the command line).
    pub fn mqtt_mut(&mut self) -> Option<&mut MqttSettings> {
        match self {
            Bus::Embedded { mqtt, .. } | Bus::Mqtt(mqtt) => Some(mqtt),
            Bus::Kafka(_) => None,
        }
    }

    /// The Kafka connection's settings, on Kafka.
    pub fn kafka(&self) -> Option<&KafkaSettings> {
        match self {
            Bus::Kafka(k) => Some(k),
            _ => None,
        }
    }

    /// Where rows go on this bus: `kafka://`, `mqtt://` or, under TLS, `mqtts://`, an IPv6 host
    /// in brackets, then the topic (an MQTT filter where one is configured).
    pub fn rows_address(&self) -> String {
        match self {
            Bus::Kafka(k) => {
                let first = k.brokers.split(',').next().unwrap_or_default().trim();
                format!("kafka://{first}/{}", k.topic)
            }
            Bus::Embedded { mqtt, .. } | Bus::Mqtt(mqtt) => {
                let scheme = if mqtt.tls.is_some() { "mqtts" } else { "mqtt" };
                let address = crate::bus::mqtt::join_host_port(&mqtt.host, mqtt.port);
                format!("{scheme}://{address}/{}", mqtt.topic)
            }
        }
    }

    /// A `faultline replay` of the sample wafers that reaches this bus, where one can: none for
    /// an MQTT filter (`+`, `#`: no topic to publish to) or Sparkplug B (replay publishes JSON);
    /// without `--to` (replay then connects as configured) where a login, TLS or Kafka
    /// properties are set, which an address cannot carry.
    pub fn replay_hint(&self) -> Option<String> {
        const SAMPLE: &str = "faultline replay examples/wafers.csv";
        let as_configured =
            || format!("{SAMPLE}, with the same configuration (it connects as faultline does)");
        match self {
            Bus::Kafka(k) if !k.properties.is_empty() => Some(as_configured()),
            Bus::Kafka(_) => Some(format!("{SAMPLE} --to {}", self.rows_address())),
            Bus::Embedded { mqtt, .. } | Bus::Mqtt(mqtt) => {
                if mqtt.topic.contains(['+', '#'])
                    || matches!(mqtt.format, crate::bus::mqtt::RowFormat::Sparkplug { .. })
                {
                    None
                } else if mqtt.tls.is_some() || mqtt.credentials.is_some() {
                    Some(as_configured())
                } else {
                    Some(format!("{SAMPLE} --to {}", self.rows_address()))
                }
            }
        }
    }

    /// The topic (MQTT filter) the rows arrive on.
    pub fn rows_topic(&self) -> &str {
        match self {
            Bus::Embedded { mqtt, .. } | Bus::Mqtt(mqtt) => &mqtt.topic,
            Bus::Kafka(k) => &k.topic,
        }
    }
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

/// The most a configuration file may hold: `--config /dev/zero` is refused, not read for ever.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Refuses a fraction, a negative number written with a decimal point, a boolean or a word like
/// "off" where a setting is a whole number (its default is one): the config crate would round
/// 2.5 to 3, turn -30.0 into 0 (for `[store] max_days`, no age limit at all) and read "off" or
/// "no" as 0, without a word. `30.0` is taken as 30. `where_` says where the value came from.
fn check_whole_numbers(
    defaults: &config::Value,
    user: &config::Value,
    path: &str,
    where_: &str,
) -> Result<(), ConfigError> {
    use config::ValueKind as K;
    let (K::Table(defaults), K::Table(user)) = (&defaults.kind, &user.kind) else {
        return Ok(());
    };
    for (key, default) in defaults {
        let Some(given) = user.get(key) else { continue };
        let name = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (&default.kind, &given.kind) {
            (K::Table(_), _) => check_whole_numbers(default, given, &name, where_)?,
            (K::I64(_) | K::U64(_) | K::I128(_) | K::U128(_), kind) => {
                let whole = match kind {
                    K::Float(x) => x.fract() == 0.0 && *x >= 0.0,
                    K::Boolean(_) => false,
                    // The words the config crate reads as 1 or 0; other text that is no whole
                    // number it refuses itself, as it does any other type.
                    K::String(text) => !matches!(
                        text.to_lowercase().as_str(),
                        "true" | "false" | "on" | "off" | "yes" | "no"
                    ),
                    _ => true,
                };
                if !whole {
                    return Err(ConfigError::Invalid(format!(
                        "{name} is {}{where_}: it takes a whole number of at least 0 (faultline rounds no setting)",
                        match kind {
                            K::Float(x) => format!("{x:?}"),
                            _ => given.to_string(),
                        }
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The text of the configuration file at `path` (a pipe too), at most [`MAX_CONFIG_BYTES`].
fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| {
        ConfigError::Invalid(format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| cannot(&e))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cannot(&format!(
            "it holds more than {} MiB, more than a configuration file does",
            MAX_CONFIG_BYTES >> 20
        )));
    }
    Ok(text)
}

impl RawConfig {
    /// Loads the layers: defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<RawConfig, ConfigError> {
        // vars() panics at the first variable that is not UTF-8 (a Latin-1 PWD, say); only
        // faultline's own must be.
        let mut env = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str().filter(|k| k.starts_with("FAULTLINE_")) else {
                continue;
            };
            match value.into_string() {
                Ok(value) => env.push((key.to_string(), value)),
                Err(_) => {
                    return Err(ConfigError::Invalid(format!(
                        "the environment variable {key} is not valid UTF-8; set it as UTF-8 text"
                    )))
                }
            }
        }
        RawConfig::load_with_env(file, env)
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
        // Only FAULTLINE_<SECTION>__<KEY>: every key lives in a section, and other FAULTLINE_*
        // variables (a test's FAULTLINE_BIN, say) are not configuration. One that names a section
        // with a single underscore (FAULTLINE_BATCH_MAX_ROWS) is a typo, not something to ignore.
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}_")))
            .collect();
        for name in env.keys().filter(|k| !k.contains("__")) {
            let rest = name[ENV_PREFIX.len() + 1..].to_ascii_lowercase();
            if let Some(section) = SECTIONS.iter().find(|s| rest.starts_with(&format!("{s}_"))) {
                let key = &name[ENV_PREFIX.len() + 2 + section.len()..];
                return Err(ConfigError::Invalid(format!(
                    "{name} is not read: a configuration variable puts two underscores between \
                     the section and the key, as in {ENV_PREFIX}_{}__{key}",
                    section.to_ascii_uppercase()
                )));
            }
        }
        let env: config::Map<String, String> =
            env.into_iter().filter(|(k, _)| k.contains("__")).collect();
        // Read here rather than by the config crate, which takes a path only when it is a
        // regular file and otherwise tries it with ".toml" added: `--config <(envsubst ...)`
        // (a pipe) was "not found", and `--config prod` quietly read prod.toml.
        let text = match file {
            Some(path) => Some(read_config_file(path)?),
            None => None,
        };
        let user_layers =
            |builder: config::builder::ConfigBuilder<config::builder::DefaultState>| {
                let builder = match &text {
                    Some(text) => {
                        builder.add_source(config::File::from_str(text, config::FileFormat::Toml))
                    }
                    None => builder,
                };
                builder.add_source(
                    config::Environment::with_prefix(ENV_PREFIX)
                        .prefix_separator("_")
                        .separator("__")
                        // Values stay text: a setting that is a number or a switch reads its
                        // text as one, and a token, password or group id stays as written
                        // (parsed first, 00123 would come back as 123 and 1e3 as 1000).
                        .try_parsing(false)
                        .source(Some(env.clone())),
                )
            };
        builder = user_layers(builder);
        let built = builder.build().map_err(|e| match (e, file) {
            // The file's text is read above, so its syntax errors name no file: name it.
            (config::ConfigError::FileParse { uri: None, cause }, Some(path)) => {
                ConfigError::Invalid(format!(
                    "the configuration file {} is not valid TOML: {cause}",
                    path.display()
                ))
            }
            (e, _) => e.into(),
        })?;
        // What the file and the environment set, apart from the defaults: for the whole-number
        // check below and for whether the broker's address was chosen.
        let user = user_layers(config::Config::builder()).build()?;
        let defaults = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()?;
        let where_ = match file {
            Some(path) => format!(" (in {} or the environment)", path.display()),
            None => " (in the environment)".to_string(),
        };
        check_whole_numbers(&defaults.cache, &user.cache, "", &where_)?;
        let mut raw: RawConfig = built.try_deserialize().map_err(|e| match file {
            // The file's text carries no name: say where the value may come from.
            Some(path) => ConfigError::Invalid(format!(
                "configuration cannot be read ({} and the environment): {e}",
                path.display()
            )),
            None => e.into(),
        })?;
        // Whether the file or the environment chose the embedded broker's address, or it is the
        // default (which `serve` may find taken by a broker it can use instead).
        raw.broker.listen_chosen = user.get_string("broker.listen").is_ok();
        Ok(raw)
    }

    /// The configuration as the offline commands (`score`, `export`, `model`, `replay --to`)
    /// take it: the secrets only the daemon uses (the web token, the MQTT password, Kafka
    /// properties kept in files) are not read, so such a command works where those files cannot
    /// be read (an operator's shell beside the daemon's environment). Every other setting is
    /// checked as for `serve`, a Kafka source even in a build without Kafka (the command does
    /// not connect to it).
    pub fn offline(self) -> RawConfig {
        let mut raw = self.without_web_token();
        raw.source.offline = true;
        raw.source.mqtt.password.clear();
        raw.source.mqtt.password_file.clear();
        raw.source
            .kafka
            .properties
            .retain(|name, _| !crate::bus::kafka::property_name(name).ends_with(".file"));
        raw
    }

    /// The configuration without the web token, for a command that uses the bus but not the web
    /// server (`replay` to the configured bus reads the bus's login, not the token).
    pub fn without_web_token(mut self) -> RawConfig {
        self.web.token.clear();
        self.web.token_file.clear();
        self
    }

    /// Checks ranges and cross-field rules, and reads the secrets kept in files.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let md = &self.model;
        let crate::model::Policy {
            threshold,
            budget: alarm,
            explain,
        } = crate::model::Policy::from_section(md).map_err(ConfigError::Invalid)?;
        let csv_batch_rows = NonZeroUsize::new(self.input.csv_batch_rows).ok_or_else(|| {
            ConfigError::Invalid(
                "input.csv_batch_rows is 0; set it to at least 1 (the default is 4096)".into(),
            )
        })?;
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let workers = match self.runtime.workers.trim() {
            auto if auto.eq_ignore_ascii_case("auto") => None,
            n => Some(
                n.parse::<NonZeroUsize>()
                    .ok()
                    .filter(|n| n.get() <= MAX_WORKERS)
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "runtime.workers is \"{n}\"; write auto (one thread per core) or a \
                             number of threads from 1 to {MAX_WORKERS}"
                        ))
                    })?,
            ),
        };
        let m = &self.source.mqtt;
        let bus = match self.source.kind.as_str() {
            "embedded" => {
                let listen: SocketAddr = self.broker.listen.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "broker.listen is \"{}\"; write an IP address and port such as 127.0.0.1:1883",
                        self.broker.listen
                    ))
                })?;
                let mqtt = MqttSettings::from_section(m, Some(listen), true)
                    .map_err(ConfigError::Invalid)?;
                Bus::Embedded {
                    listen,
                    mqtt,
                    use_existing: !self.broker.listen_chosen,
                }
            }
            "mqtt" => Bus::Mqtt(
                MqttSettings::from_section(m, None, true).map_err(ConfigError::Invalid)?,
            ),
            "kafka" if cfg!(feature = "kafka") || self.source.offline => {
                // [source.mqtt] is checked all the same: a typo should not wait for a switch.
                MqttSettings::from_section(m, None, false).map_err(ConfigError::Invalid)?;
                Bus::Kafka(
                    KafkaSettings::from_section(&self.source.kafka)
                        .map_err(ConfigError::Invalid)?,
                )
            }
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
        let file = |f: &str| Some(PathBuf::from(f.trim())).filter(|p| !p.as_os_str().is_empty());
        // Empty sink topics take the bus's own default names.
        let on_kafka = matches!(bus, Bus::Kafka(_));
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
        // One topic for two kinds of output would mix them: a fault published twice on a scores
        // topic that is also the faults topic, dead letters (no id, no score) among the faults.
        let scores_topic = self.sink.scores_topic.trim();
        let named = |key: &str, set: &str| {
            if set.trim().is_empty() {
                format!("{key} (by default)")
            } else {
                key.to_string()
            }
        };
        let faults_key = named("sink.faults_topic", &self.sink.faults_topic);
        let dead_key = named("sink.dead_letter_topic", &self.sink.dead_letter_topic);
        for (a, b, ta, tb, why) in [
            (
                faults_key.as_str(),
                dead_key.as_str(),
                faults_topic.as_str(),
                dead_letter_topic.as_str(),
                "dead letters would be mixed into the faults",
            ),
            (
                "sink.scores_topic",
                faults_key.as_str(),
                scores_topic,
                faults_topic.as_str(),
                "every fault would be published there twice; the scores topic already carries \
                 every verdict, faults included",
            ),
            (
                "sink.scores_topic",
                dead_key.as_str(),
                scores_topic,
                dead_letter_topic.as_str(),
                "dead letters would be mixed into the scores",
            ),
        ] {
            if ta == tb {
                return invalid(format!(
                    "{a} and {b} are both \"{ta}\": {why}; give each output a topic of its own"
                ));
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
        // Below MIN_ROWS rows no sensor is ever judged: the drift gauges would stay silent.
        if self.drift.window_rows > crate::drift::MAX_ROWS {
            return invalid(format!(
                "drift.window_rows is {}; set at most {} (default 1000): the window holds 4 bytes \
                 a sensor for each row (2.4 KB at 590 sensors) from the start and is copied at \
                 every drift.interval_ms",
                self.drift.window_rows,
                crate::drift::MAX_ROWS
            ));
        }
        let drift_window_rows = NonZeroUsize::new(self.drift.window_rows)
            .filter(|n| n.get() >= crate::drift::MIN_ROWS)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "drift.window_rows is {}; set at least {} (default 1000): with fewer rows no \
                     sensor is judged",
                    self.drift.window_rows,
                    crate::drift::MIN_ROWS
                ))
            })?;
        if self.drift.interval_ms < 100 {
            return invalid(format!(
                "drift.interval_ms is {}; set at least 100 (default 5000)",
                self.drift.interval_ms
            ));
        }
        let web_limits = WebLimits::from_section(&self.web).map_err(ConfigError::Invalid)?;
        let dir = self.model.dir.trim();
        let model_watch = md.watch().map_err(ConfigError::Invalid)?;
        let l = &self.labels;
        let labels_topic = Some(l.topic.trim().to_string()).filter(|t| !t.is_empty());
        let row_topic = bus.rows_topic();
        if let Some(t) = &labels_topic {
            for (key, other) in [
                ("the rows' topic", row_topic),
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
        if let Some(t) = labels_topic
            .as_deref()
            .filter(|t| !on_kafka && !rumqttc::valid_filter(t))
        {
            return invalid(format!(
                "labels.topic \"{t}\" is not a valid MQTT topic filter: + and # stand alone \
                 between slashes, # only last"
            ));
        }
        // The source must not read what faultline itself publishes, nor the labels: a verdict
        // would come back as a row of missing sensors under a real wafer's id, a dead letter
        // (which has no id) would be dead-lettered again for ever, a label would be scored.
        let rows_key = if on_kafka {
            "source.kafka.topic"
        } else {
            "source.mqtt.topic"
        };
        for (key, topic, what, set) in [
            (
                "sink.faults_topic",
                faults_topic.as_str(),
                "faults",
                &self.sink.faults_topic,
            ),
            (
                "sink.dead_letter_topic",
                dead_letter_topic.as_str(),
                "dead letters",
                &self.sink.dead_letter_topic,
            ),
            (
                "sink.scores_topic",
                self.sink.scores_topic.trim(),
                "scores",
                &self.sink.scores_topic,
            ),
            (
                "labels.topic",
                labels_topic.as_deref().unwrap_or(""),
                "labels",
                &self.labels.topic,
            ),
        ] {
            let overlap = if on_kafka {
                topic == row_topic
            } else {
                filters_overlap(topic, row_topic)
            };
            if !topic.is_empty() && overlap {
                let default = if set.trim().is_empty() {
                    " (its default)"
                } else {
                    ""
                };
                return invalid(format!(
                    "{key} \"{topic}\"{default} is read by {rows_key} \"{row_topic}\": faultline \
                     would read its own {what} as rows; give {key} a topic outside it, or narrow \
                     {rows_key}"
                ));
            }
        }
        if let Some(bad) = labels_topic
            .as_deref()
            .filter(|_| on_kafka)
            .and_then(kafka_topic_problem)
        {
            return invalid(format!("labels.topic \"{}\" {bad}", l.topic.trim()));
        }
        let store = StoreSettings::from_sections(&self.store, &self.labels)
            .map_err(ConfigError::Invalid)?;
        let labels_group =
            match (&bus, &labels_topic) {
                (Bus::Kafka(k), Some(_)) => Some(labels_group(&k.group_id, l.group_id.trim())?),
                _ if !l.group_id.trim().is_empty() => return invalid(
                    "labels.group_id is set, but it is used only on Kafka with a labels.topic; \
                     remove it"
                        .to_string(),
                ),
                _ => None,
            };
        Ok(Config {
            labels_topic,
            labels_group,
            store,
            quality_interval: Duration::from_secs(1),
            shadow_dir: file(&self.shadow.model),
            model_dir: (!dir.is_empty()).then(|| PathBuf::from(dir)),
            threshold,
            alarm,
            alarm_rows: (md.alarm_window_rows, md.alarm_warmup_rows),
            explain,
            model_watch: model_watch.filter(|_| !dir.is_empty()),
            allow_extra_columns: self.input.allow_extra_columns,
            csv_batch_rows,
            bus,
            faults_topic,
            scores_topic: Some(self.sink.scores_topic.trim().to_string()).filter(|t| !t.is_empty()),
            dead_letter_topic,
            batch: BatchPolicy {
                max_rows,
                linger: Duration::from_millis(self.batch.linger_ms),
            },
            queue_rows,
            web_listen,
            web_limits,
            drift_window_rows,
            drift_interval: Duration::from_millis(self.drift.interval_ms),
            grace: Duration::from_millis(self.shutdown.grace_ms),
            workers,
        })
    }
}

/// The Kafka group an instance reads the labels in: `set`, or `<group_id>.labels.<host name>`,
/// so that instances on different machines each read every label.
fn labels_group(group_id: &str, set: &str) -> Result<String, ConfigError> {
    if set == group_id {
        return Err(ConfigError::Invalid(format!(
            "labels.group_id is \"{set}\", the rows' source.kafka.group_id: the labels consumer \
             would join the rows' group (and take rows' partitions away at each rebalance); give it \
             a group of its own, or leave it empty"
        )));
    }
    if !set.is_empty() {
        return Ok(set.to_string());
    }
    let host = host_name().ok_or_else(|| {
        ConfigError::Invalid(
            "cannot tell this machine's host name for the labels' Kafka group; set \
             labels.group_id (each instance its own)"
                .into(),
        )
    })?;
    Ok(format!("{group_id}.labels.{host}"))
}

/// This machine's host name (Linux's, else `$HOSTNAME`), if it has one.
pub fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .find(|h| !h.is_empty())
}

/// Whether some MQTT topic matches both filters (a topic name is a filter without wildcards):
/// `+` stands for one level, `#` for the rest (the parent level included), and a wildcard at
/// the start does not match a topic that starts with `$` (MQTT 3.1.1, 4.7.2).
fn filters_overlap(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (mut x, mut y) = (a.split('/'), b.split('/'));
    let mut first = true;
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) => {
                let wild = |l: &str| l == "+" || l == "#";
                if first && ((wild(p) && q.starts_with('$')) || (wild(q) && p.starts_with('$'))) {
                    return false;
                }
                if p == "#" || q == "#" {
                    return true;
                }
                if !(p == "+" || q == "+" || p == q) {
                    return false;
                }
            }
            (None, None) => return true,
            // "a/#" also matches "a".
            (Some("#"), None) | (None, Some("#")) => return true,
            _ => return false,
        }
        first = false;
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

    /// Why the configuration of `pairs` (over the defaults) is refused at validation.
    fn refused(pairs: &[(&str, &str)]) -> String {
        RawConfig::load_with_env(None, env(pairs))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
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

    /// A fraction, a word or a boolean where a whole number goes is refused, naming the key;
    /// the config crate alone would round, saturate -30.0 to 0 (max_days: no age limit) and read
    /// "off" as 0. Whole numbers as text (the environment's) are read.
    #[test]
    fn whole_number_settings_refuse_fractions_and_words() {
        for (key, value) in [
            ("FAULTLINE_STORE__MAX_DAYS", "off"),
            ("FAULTLINE_MODEL__CONTRIBUTIONS_TOP_K", "yes"),
        ] {
            let e = RawConfig::load_with_env(None, env(&[(key, value)])).unwrap_err();
            assert!(
                e.to_string().contains("takes a whole number"),
                "{key}={value}: {e}"
            );
        }
        // Other text that is no whole number the config crate refuses itself.
        for value in ["-30.0", "2.5"] {
            let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_BATCH__MAX_ROWS", value)]));
            assert!(e.is_err(), "{value}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (text, said) in [
            (
                "[store]\nmax_days = -30.0\n",
                "store.max_days is -30.0 (in ",
            ),
            ("[batch]\nmax_rows = 2.5\n", "batch.max_rows is 2.5 (in "),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = RawConfig::load_with_env(Some(&path), env(&[])).unwrap_err();
            assert!(
                e.to_string().contains(said)
                    && e.to_string()
                        .contains("c.toml or the environment): it takes a whole number"),
                "{e}"
            );
        }
        // A whole number written with a decimal point is that number.
        std::fs::write(&path, "[store]\nmax_days = 30.0\n").unwrap();
        let c = RawConfig::load_with_env(Some(&path), env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.store.max_days, Some(30));
        let c = RawConfig::load_with_env(None, env(&[("FAULTLINE_STORE__MAX_DAYS", "7")]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.store.max_days, Some(7));
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

    /// The file named is the file read: a pipe (`--config <(envsubst < t.toml)`) is read like a
    /// file, a missing name is not quietly taken as NAME.toml, and a syntax error names the file.
    #[cfg(unix)]
    #[test]
    fn the_configuration_file_is_the_one_named_even_a_pipe() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("c.pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                std::fs::write(fifo, "[input]\nallow_extra_columns = true\n").unwrap()
            })
        };
        let c = RawConfig::load_with_env(Some(&fifo), env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        writer.join().unwrap();
        assert!(c.allow_extra_columns);

        std::fs::write(dir.path().join("prod.toml"), "[input]\n").unwrap();
        let e = RawConfig::load_with_env(Some(&dir.path().join("prod")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read the configuration file") && e.contains("prod"),
            "{e}"
        );

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[input\n").unwrap();
        let e = RawConfig::load_with_env(Some(&bad), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml is not valid TOML"), "{e}");
        // A wrongly typed value names the file too; a device that never ends is refused.
        std::fs::write(&bad, "[batch]\nmax_rows = \"many\"\n").unwrap();
        let e = RawConfig::load_with_env(Some(&bad), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.toml and the environment"), "{e}");
        let e = RawConfig::load_with_env(Some(Path::new("/dev/zero")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 1 MiB"), "{e}");
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
        let Bus::Mqtt(mqtt) = &c.bus else {
            panic!("not an MQTT bus: {:?}", c.bus)
        };
        assert_eq!((mqtt.host.as_str(), mqtt.port), ("broker.local", 2883));
        assert_eq!(mqtt.subscription(), "$share/scorers/faultline/rows");
        assert_eq!(c.scores_topic.as_deref(), Some("faultline/scores"));
        assert_eq!(c.batch.max_rows.get(), 64);
    }

    #[test]
    fn embedded_defaults_need_nothing_else() {
        let c = RawConfig::load_with_env(None, env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        let Bus::Embedded {
            listen,
            mqtt,
            use_existing,
        } = &c.bus
        else {
            panic!("not the embedded broker: {:?}", c.bus)
        };
        assert_eq!(listen.to_string(), "127.0.0.1:1883");
        assert!(
            use_existing,
            "the default address may be served by a broker already there"
        );
        assert_eq!((mqtt.host.as_str(), mqtt.port), ("127.0.0.1", 1883));
        assert_eq!(c.faults_topic, "faultline/faults");
        assert_eq!(c.scores_topic, None);
        assert_eq!(c.batch.linger, Duration::from_millis(5));
    }

    #[test]
    fn a_chosen_broker_address_is_never_swapped_for_another_broker() {
        for (k, v) in [
            ("FAULTLINE_BROKER__LISTEN", "127.0.0.1:1884"),
            ("FAULTLINE_BROKER__LISTEN", "127.0.0.1:1883"),
        ] {
            let c = RawConfig::load_with_env(None, env(&[(k, v)]))
                .unwrap()
                .validate()
                .unwrap();
            assert!(
                matches!(
                    c.bus,
                    Bus::Embedded {
                        use_existing: false,
                        ..
                    }
                ),
                "{v}: {:?}",
                c.bus
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faultline.toml");
        std::fs::write(&file, "[broker]\nlisten = \"127.0.0.1:1883\"\n").unwrap();
        let c = RawConfig::load_with_env(Some(&file), env(&[]))
            .unwrap()
            .validate()
            .unwrap();
        assert!(matches!(
            c.bus,
            Bus::Embedded {
                use_existing: false,
                ..
            }
        ));
    }

    #[test]
    fn the_sections_list_is_the_default_files_sections() {
        let defaults = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()
            .unwrap()
            .try_deserialize::<config::Map<String, config::Value>>()
            .unwrap();
        let mut in_file: Vec<&str> = defaults.keys().map(String::as_str).collect();
        let mut listed = SECTIONS.to_vec();
        in_file.sort_unstable();
        listed.sort_unstable();
        assert_eq!(in_file, listed);
    }

    #[test]
    fn a_variable_with_one_underscore_after_a_section_is_named_with_its_spelling() {
        let e = RawConfig::load_with_env(None, env(&[("FAULTLINE_BATCH_MAX_ROWS", "64")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("FAULTLINE_BATCH_MAX_ROWS is not read")
                && e.contains("FAULTLINE_BATCH__MAX_ROWS"),
            "{e}"
        );
        // Variables that are not configuration (the tests' own) stay ignored.
        RawConfig::load_with_env(
            None,
            env(&[("FAULTLINE_DATA_DIR", "/x"), ("FAULTLINE_BIN", "/y")]),
        )
        .unwrap();
    }

    #[test]
    fn runtime_workers_are_auto_or_a_positive_count() {
        let workers = |v: &str| {
            RawConfig::load_with_env(None, env(&[("FAULTLINE_RUNTIME__WORKERS", v)]))
                .unwrap()
                .validate()
                .map(|c| c.workers.map(NonZeroUsize::get))
        };
        let defaults = RawConfig::load_with_env(None, env(&[])).unwrap();
        assert_eq!(defaults.validate().unwrap().workers, None);
        assert_eq!(workers("auto").unwrap(), None);
        assert_eq!(workers("Auto").unwrap(), None);
        assert_eq!(workers("1").unwrap(), Some(1));
        assert_eq!(workers("1024").unwrap(), Some(1024));
        for bad in ["0", "-1", "two", "", "1025", "100000"] {
            let e = workers(bad).unwrap_err().to_string();
            assert!(
                e.contains("runtime.workers is") && e.contains("auto"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn cross_field_rules_are_sentences() {
        let e = refused(&[
            ("FAULTLINE_BATCH__QUEUE_ROWS", "10"),
            ("FAULTLINE_BATCH__MAX_ROWS", "100"),
        ]);
        assert!(e.contains("raise queue_rows or lower max_rows"), "{e}");
        if !cfg!(feature = "kafka") {
            let e = refused(&[("FAULTLINE_SOURCE__KIND", "kafka")]);
            assert!(e.contains("--features kafka"), "{e}");
        }
        // An offline command (score, export, model, replay --to) reads a Kafka daemon's
        // configuration in any build, and still checks its Kafka section.
        let kafka = |pairs: &[(&str, &str)]| {
            let mut all = vec![("FAULTLINE_SOURCE__KIND", "kafka")];
            all.extend_from_slice(pairs);
            RawConfig::load_with_env(None, env(&all))
                .unwrap()
                .offline()
                .validate()
        };
        let c = kafka(&[]).unwrap();
        assert!(c.bus.kafka().is_some());
        let e = kafka(&[("FAULTLINE_SOURCE__KAFKA__TOPIC", "")]).unwrap_err();
        assert!(e.to_string().contains("source.kafka"), "{e}");
        let e = refused(&[("FAULTLINE_SOURCE__MQTT__QOS", "2")]);
        assert!(e.contains("set 1"), "{e}");
        let e = refused(&[
            ("FAULTLINE_WEB__UPLOAD_IDLE_MS", "5000"),
            ("FAULTLINE_WEB__UPLOAD_TIMEOUT_MS", "4000"),
        ]);
        assert!(
            e.contains("web.upload_timeout_ms (4000) is below web.upload_idle_ms (5000)"),
            "{e}"
        );
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
                vec![("FAULTLINE_LABELS__WINDOW_ROWS", "100001")],
                "labels.window_rows is 100001; set at most 100000",
            ),
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
        let e = refused(&[("FAULTLINE_MODEL__THRESHOLD", "1.5")]);
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = refused(&[("FAULTLINE_INPUT__CSV_BATCH_ROWS", "0")]);
        assert!(e.contains("at least 1"), "{e}");
        let e = refused(&[
            ("FAULTLINE_MODEL__ALARM_RATE", "0.1"),
            ("FAULTLINE_MODEL__ALARM_WINDOW_ROWS", "5000000"),
        ]);
        assert!(
            e.contains("alarm_window_rows is 5000000; set at most"),
            "{e}"
        );
        // Fewer rows than drift ever judges, and a keep-alive MQTT cannot carry.
        for (k, v, says) in [
            ("FAULTLINE_DRIFT__WINDOW_ROWS", "20", "at least 50"),
            ("FAULTLINE_DRIFT__WINDOW_ROWS", "100001", "at most 100000"),
            (
                "FAULTLINE_SOURCE__MQTT__KEEP_ALIVE_S",
                "70000",
                "5 to 65535",
            ),
        ] {
            let e = refused(&[(k, v)]);
            assert!(e.contains(says) && e.contains(v), "{e}");
        }
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
        let Bus::Kafka(k) = c.bus else {
            panic!("not Kafka: {:?}", c.bus)
        };
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
        // Set by faultline after the user's properties: a value here would be silently replaced.
        for name in ["FETCH_MESSAGE_MAX_BYTES", "MESSAGE_MAX_BYTES"] {
            let e = refuse(&[(
                &format!("FAULTLINE_SOURCE__KAFKA__PROPERTIES__{name}"),
                "1000",
            )]);
            assert!(e.contains("16 MiB payload limit"), "{e}");
        }
        let e = refuse(&[("FAULTLINE_SOURCE__KAFKA__BROKERS", "kafka://h:9092")]);
        assert!(e.contains("without a scheme"), "{e}");
        let e = refuse(&[("FAULTLINE_SINK__FAULTS_TOPIC", "plant/faults")]);
        assert!(
            e.contains("sink.faults_topic") && e.contains("Kafka topic names"),
            "{e}"
        );
        // Verdicts acknowledged by the leader alone (or by nobody) could be lost after their
        // rows' offsets are stored.
        for (k, v) in [
            ("FAULTLINE_SOURCE__KAFKA__PROPERTIES__ACKS", "1"),
            (
                "FAULTLINE_SOURCE__KAFKA__PROPERTIES__REQUEST_REQUIRED_ACKS",
                "0",
            ),
        ] {
            let e = refuse(&[(k, v)]);
            assert!(e.contains("acks=all") && e.contains(v), "{e}");
        }
        for v in ["all", "-1"] {
            RawConfig::load_with_env(
                None,
                env(&[
                    ("FAULTLINE_SOURCE__KIND", "kafka"),
                    ("FAULTLINE_SOURCE__KAFKA__PROPERTIES__ACKS", v),
                ]),
            )
            .unwrap()
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn a_broker_url_or_tls_files_with_the_embedded_broker_are_refused() {
        for (k, v, says) in [
            (
                "FAULTLINE_SOURCE__MQTT__URL",
                "mqtts://broker:8883",
                "source.mqtt.url",
            ),
            (
                "FAULTLINE_SOURCE__MQTT__CA_FILE",
                "/etc/ca.pem",
                "TLS files",
            ),
        ] {
            let e = refused(&[(k, v)]);
            assert!(
                e.contains(says) && e.contains("source.kind = \"mqtt\""),
                "{e}"
            );
        }
        // The default url is what an embedded configuration holds.
        let c = RawConfig::load_with_env(
            None,
            env(&[("FAULTLINE_SOURCE__MQTT__URL", "mqtt://127.0.0.1:1883")]),
        )
        .unwrap()
        .validate()
        .unwrap();
        assert!(matches!(c.bus, Bus::Embedded { .. }));
    }

    /// The address the start-up line gives and the replay the idle hint suggests: one that
    /// works, or none. It was always mqtt://HOST:PORT/TOPIC with `replay --to`, which is plain
    /// TCP without a login and refuses a filter.
    #[test]
    fn the_rows_address_and_replay_hint_are_ones_that_work() {
        let bus = |pairs: &[(&str, &str)]| {
            let mut all = vec![("FAULTLINE_SOURCE__KIND", "mqtt")];
            all.extend_from_slice(pairs);
            RawConfig::load_with_env(None, env(&all))
                .unwrap()
                .validate()
                .unwrap()
                .bus
        };
        let plain = bus(&[("FAULTLINE_SOURCE__MQTT__URL", "mqtt://[::1]:1884")]);
        assert_eq!(plain.rows_address(), "mqtt://[::1]:1884/faultline/rows");
        assert_eq!(
            plain.replay_hint().unwrap(),
            "faultline replay examples/wafers.csv --to mqtt://[::1]:1884/faultline/rows"
        );
        let tls = bus(&[("FAULTLINE_SOURCE__MQTT__URL", "mqtts://broker")]);
        assert_eq!(tls.rows_address(), "mqtts://broker:8883/faultline/rows");
        let login = bus(&[("FAULTLINE_SOURCE__MQTT__USERNAME", "line-3")]);
        for configured in [tls, login] {
            let hint = configured.replay_hint().unwrap();
            assert!(
                !hint.contains("--to") && hint.contains("same configuration"),
                "{hint}"
            );
        }
        let filter = bus(&[("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/+/rows")]);
        assert_eq!(filter.replay_hint(), None);
        let sparkplug = bus(&[
            ("FAULTLINE_SOURCE__MQTT__FORMAT", "sparkplug"),
            (
                "FAULTLINE_SOURCE__MQTT__TOPIC",
                "spBv1.0/fab/DDATA/edge/tool",
            ),
        ]);
        assert_eq!(sparkplug.replay_hint(), None);
    }

    #[test]
    fn topic_filters_the_broker_would_refuse_are_refused_at_start() {
        for (k, v) in [
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/#/rows"),
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/rows#"),
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "a+/b"),
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "$share/g/plant/rows"),
            ("FAULTLINE_LABELS__TOPIC", "labels/#/x"),
        ] {
            let e = refused(&[(k, v)]);
            assert!(
                e.contains("not a valid MQTT topic filter") && e.contains(v),
                "{e}"
            );
        }
    }

    #[test]
    fn topic_filters_overlap_where_a_topic_matches_both() {
        for (a, b) in [
            ("faultline/faults", "faultline/#"),
            ("faultline/faults", "faultline/+"),
            ("faultline", "faultline/#"),
            ("plant/a/rows", "plant/+/rows"),
            ("plant/+/rows", "plant/a/+"),
            ("#", "anything/at/all"),
            ("x/y", "x/y"),
        ] {
            assert!(filters_overlap(a, b) && filters_overlap(b, a), "{a} {b}");
        }
        for (a, b) in [
            ("faultline/faults", "faultline/rows"),
            ("faultline/faults/x", "faultline/+"),
            ("plant/a/rows", "plant/+/labels"),
            ("$SYS/x", "#"),
            ("$SYS/x", "+/x"),
            ("x", ""),
        ] {
            assert!(!filters_overlap(a, b) && !filters_overlap(b, a), "{a} {b}");
        }
    }

    #[test]
    fn the_rows_topic_never_reads_faultlines_own_outputs() {
        // The default outputs are under faultline/: a rows filter over all of it reads them.
        let e = refused(&[("FAULTLINE_SOURCE__MQTT__TOPIC", "faultline/#")]);
        assert!(
            e.contains("sink.faults_topic \"faultline/faults\" (its default)")
                && e.contains("faultline/#")
                && e.contains("its own faults"),
            "{e}"
        );
        let e = refused(&[
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/+"),
            ("FAULTLINE_SINK__DEAD_LETTER_TOPIC", "plant/dead"),
        ]);
        assert!(
            e.contains("sink.dead_letter_topic") && e.contains("dead letters"),
            "{e}"
        );
        let e = refused(&[("FAULTLINE_SINK__SCORES_TOPIC", "faultline/rows")]);
        assert!(e.contains("sink.scores_topic"), "{e}");
        let e = refused(&[
            ("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/#"),
            ("FAULTLINE_LABELS__TOPIC", "plant/labels"),
        ]);
        assert!(
            e.contains("labels.topic") && e.contains("its own labels"),
            "{e}"
        );
        // Filters that only look alike are fine.
        for pairs in [
            &[("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/+/rows")][..],
            &[
                ("FAULTLINE_SOURCE__MQTT__TOPIC", "plant/#"),
                ("FAULTLINE_SINK__FAULTS_TOPIC", "verdicts/faults"),
                ("FAULTLINE_SINK__DEAD_LETTER_TOPIC", "verdicts/dead"),
                ("FAULTLINE_LABELS__TOPIC", "verdicts/labels"),
            ][..],
        ] {
            RawConfig::load_with_env(None, env(pairs))
                .unwrap()
                .validate()
                .unwrap();
        }
        if cfg!(feature = "kafka") {
            let e = refused(&[
                ("FAULTLINE_SOURCE__KIND", "kafka"),
                ("FAULTLINE_SOURCE__KAFKA__TOPIC", "wafers"),
                ("FAULTLINE_SINK__FAULTS_TOPIC", "wafers"),
            ]);
            assert!(
                e.contains("source.kafka.topic") && e.contains("sink.faults_topic"),
                "{e}"
            );
        }
    }

    #[test]
    fn on_kafka_each_instance_reads_the_labels_in_a_group_of_its_own() {
        // On MQTT there is no labels group, and setting one is refused rather than ignored.
        let e = refused(&[("FAULTLINE_LABELS__GROUP_ID", "g")]);
        assert!(e.contains("labels.group_id"), "{e}");
        if !cfg!(feature = "kafka") {
            return;
        }
        let kafka = [
            ("FAULTLINE_SOURCE__KIND", "kafka"),
            ("FAULTLINE_SOURCE__KAFKA__GROUP_ID", "fab"),
            ("FAULTLINE_LABELS__TOPIC", "wafer-labels"),
        ];
        let load = |pairs: &[(&str, &str)]| {
            RawConfig::load_with_env(None, env(pairs))
                .unwrap()
                .validate()
                .unwrap()
        };
        // By default the machine's name keeps instances on different machines apart.
        let host = host_name().expect("this machine has a host name");
        assert_eq!(
            load(&kafka).labels_group,
            Some(format!("fab.labels.{host}"))
        );
        let mut own = kafka.to_vec();
        own.push(("FAULTLINE_LABELS__GROUP_ID", "fab.labels.line-2"));
        assert_eq!(
            load(&own).labels_group.as_deref(),
            Some("fab.labels.line-2")
        );
        // Without a labels topic there is none.
        assert_eq!(load(&kafka[..2]).labels_group, None);
        let mut rows_group = kafka.to_vec();
        rows_group.push(("FAULTLINE_LABELS__GROUP_ID", "fab"));
        let e = refused(&rows_group);
        assert!(
            e.contains("labels.group_id") && e.contains("a group of its own"),
            "{e}"
        );
    }

    #[test]
    fn each_output_has_a_topic_of_its_own() {
        for (pairs, a, b) in [
            (
                &[("FAULTLINE_SINK__SCORES_TOPIC", "faultline/faults")][..],
                "sink.scores_topic",
                "sink.faults_topic",
            ),
            (
                &[("FAULTLINE_SINK__SCORES_TOPIC", "faultline/dead-letter")][..],
                "sink.scores_topic",
                "sink.dead_letter_topic",
            ),
            (
                &[("FAULTLINE_SINK__DEAD_LETTER_TOPIC", "faultline/faults")][..],
                "sink.faults_topic",
                "sink.dead_letter_topic",
            ),
        ] {
            let e = refused(pairs);
            assert!(
                e.contains(a) && e.contains(b) && e.contains("are both"),
                "{e}"
            );
            // The one left to its default name says so.
            assert!(e.contains("(by default)"), "{e}");
        }
        // Distinct topics are fine.
        RawConfig::load_with_env(
            None,
            env(&[("FAULTLINE_SINK__SCORES_TOPIC", "faultline/scores")]),
        )
        .unwrap()
        .validate()
        .unwrap();
    }

    #[test]
    fn environment_values_are_kept_as_written() {
        // A token, a password or a group id that looks like a number is still the text the user
        // set: not 123 for 00123, nor 1000 for 1e3.
        let mut pairs = vec![
            ("FAULTLINE_WEB__TOKEN", "00123"),
            ("FAULTLINE_SOURCE__KIND", "mqtt"),
            ("FAULTLINE_SOURCE__MQTT__USERNAME", "007"),
            ("FAULTLINE_SOURCE__MQTT__PASSWORD", "1e3"),
            ("FAULTLINE_SOURCE__MQTT__CLIENT_ID", "1.50"),
            ("FAULTLINE_SOURCE__KAFKA__GROUP_ID", "0042"),
            (
                "FAULTLINE_SOURCE__KAFKA__PROPERTIES__SASL_PASSWORD",
                "+12345678901234567890123",
            ),
            // Numbers and switches are still read as such.
            ("FAULTLINE_BATCH__MAX_ROWS", "64"),
            ("FAULTLINE_MODEL__THRESHOLD", "0.25"),
            ("FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS", "true"),
            ("FAULTLINE_RUNTIME__WORKERS", "2"),
        ];
        let c = RawConfig::load_with_env(None, env(&pairs))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.web_limits.token.as_deref(), Some("00123"));
        let mqtt = c.bus.mqtt().unwrap();
        assert_eq!(mqtt.client_id, "1.50");
        let (user, password) = mqtt.credentials.as_ref().unwrap();
        assert_eq!((user.as_str(), &**password), ("007", "1e3"));
        assert_eq!(c.batch.max_rows.get(), 64);
        assert_eq!(c.threshold, Some(0.25));
        assert!(c.allow_extra_columns);
        assert_eq!(c.workers.map(NonZeroUsize::get), Some(2));
        // Text that is not what a number or a switch needs is refused by its key.
        for (k, v, key) in [
            ("FAULTLINE_BATCH__MAX_ROWS", "lots", "batch.max_rows"),
            ("FAULTLINE_MODEL__THRESHOLD", "half", "model.threshold"),
            (
                "FAULTLINE_INPUT__ALLOW_EXTRA_COLUMNS",
                "sometimes",
                "input.allow_extra_columns",
            ),
        ] {
            let e = RawConfig::load_with_env(None, env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(v), "{e}");
        }
        if cfg!(feature = "kafka") {
            pairs[1] = ("FAULTLINE_SOURCE__KIND", "kafka");
            let c = RawConfig::load_with_env(None, env(&pairs))
                .unwrap()
                .validate()
                .unwrap();
            let k = c.bus.kafka().unwrap();
            assert_eq!(k.group_id, "0042");
            assert!(
                k.properties
                    .contains(&("sasl.password".into(), "+12345678901234567890123".into())),
                "{:?}",
                k.properties
            );
        }
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
        if let Some(k) = c.bus.kafka() {
            assert!(k
                .properties
                .contains(&("sasl.password".into(), "kafka-pass".into())));
            assert!(!printed.contains("kafka-pass"), "{printed}");
        }
        let e = refused(&[("FAULTLINE_WEB__TOKEN_FILE", "/nonexistent/token")]);
        assert!(
            e.contains("web.token_file") && e.contains("/nonexistent/token"),
            "{e}"
        );
        let e = refused(&[
            ("FAULTLINE_WEB__TOKEN", "x"),
            ("FAULTLINE_WEB__TOKEN_FILE", token.to_str().unwrap()),
        ]);
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
                .map(|c| c.bus.mqtt().cloned().expect("an MQTT bus"))
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
