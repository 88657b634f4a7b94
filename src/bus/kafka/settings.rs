//! `[source.kafka]`: the section as written, and the checked settings the Kafka consumer and
//! producer are made from. Compiled with or without the `kafka` feature, so a configuration is
//! checked the same way by every build.

use serde::Deserialize;

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
const KAFKA_RESERVED: [(&str, &str); 7] = [
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
    (
        "fetch.message.max.bytes",
        "it reads messages up to its 16 MiB payload limit (a larger one is dead-lettered as too large)",
    ),
    (
        "message.max.bytes",
        "it writes messages up to its 16 MiB payload limit; the cluster's own limit still applies",
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

/// A property's librdkafka name: written with dots (TOML) as it is, else its underscores read as
/// dots (an environment variable such as `..._PROPERTIES__SASL_PASSWORD_FILE`).
pub fn property_name(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        name.replace('_', ".")
    }
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
            let name = property_name(name);
            if let Some((_, why)) = KAFKA_RESERVED.iter().find(|(n, _)| *n == name) {
                return Err(format!(
                    "source.kafka.properties sets \"{name}\"; faultline sets it itself: {why}"
                ));
            }
            // A row's offset is stored once its verdicts are acknowledged: that acknowledgement
            // must mean every in-sync replica has them.
            let acks = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.trim().to_string(),
                other => other.to_string(),
            };
            if matches!(name.as_str(), "acks" | "request.required.acks")
                && !(acks(value).eq_ignore_ascii_case("all") || acks(value) == "-1")
            {
                return Err(format!(
                    "source.kafka.properties sets \"{name}\" to {}; faultline needs acks=all \
                     (a row's offset is stored once its verdicts are acknowledged, so they must \
                     be on every in-sync replica): remove it or set \"all\"",
                    acks(value)
                ));
            }
            let mut name = name;
            let value = match value {
                // `<property>.file`: the value is in that file (a secret kept out of the config).
                serde_json::Value::String(path) if name.ends_with(".file") => {
                    name = name.trim_end_matches(".file").to_string();
                    crate::secret::read_secret(
                        &format!("source.kafka.properties.\"{name}.file\""),
                        path,
                    )?
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
