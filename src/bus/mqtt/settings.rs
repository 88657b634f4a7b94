//! `[source.mqtt]`: the section as written, and the checked settings every faultline MQTT
//! connection (source, publisher, labels reader) is made from.

use crate::secret::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// `resume` or `exit`, when the broker comes back without faultline's sessions.
    pub on_session_lost: String,
    /// `json` (faultline's rows) or `sparkplug` (Sparkplug B payloads).
    pub format: String,
    /// With `format = "sparkplug"`: the metric holding the wafer id.
    pub sparkplug_id_metric: String,
}

/// How rows are encoded on an MQTT topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowFormat {
    /// JSON objects (or arrays of them), faultline's own.
    Json,
    /// Sparkplug B: protobuf NDATA/DDATA payloads, one wafer each; births bind metric aliases.
    Sparkplug {
        /// The metric holding the wafer id.
        id_metric: String,
    },
}

/// What faultline does when the broker comes back without its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSessionLost {
    /// Re-send what the broker had not acknowledged, subscribe again and keep serving.
    Resume,
    /// Stop (status 1) when verdicts were unacknowledged, for a supervisor to decide.
    Exit,
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
    /// When the broker comes back without faultline's sessions.
    pub on_session_lost: OnSessionLost,
    /// How the rows are encoded.
    pub format: RowFormat,
}

/// TLS settings of an `mqtts://` connection (files are read when faultline starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTls {
    /// CA certificates (PEM) to trust; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for brokers that require client certificates.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// `[source.mqtt] url`'s default (config/default.toml).
const DEFAULT_URL: &str = "mqtt://127.0.0.1:1883";

impl MqttSettings {
    /// Checks `[source.mqtt]`. On the embedded broker (`embedded`: its listen address) the
    /// clients connect there, and a url other than the default or TLS files are refused (they
    /// would be a `kind = "mqtt"` left out); TLS files need an `mqtts://` url only when
    /// this is the bus (`in_use`), but the rest is checked all the same: a typo should not wait
    /// for a switch of `source.kind`.
    pub fn from_section(
        m: &MqttSection,
        embedded: Option<SocketAddr>,
        in_use: bool,
    ) -> Result<MqttSettings, String> {
        let file = |f: &str| Some(PathBuf::from(f.trim())).filter(|p| !p.as_os_str().is_empty());
        let (host, port, tls) = match embedded {
            Some(listen) => {
                // The embedded broker's clients never use the url or TLS files: one set anyway is
                // a `kind = "mqtt"` left out, and the rows would be read from the wrong broker.
                let url = m.url.trim();
                if url != DEFAULT_URL {
                    return Err(format!(
                        "source.mqtt.url is \"{url}\" but source.kind is \"embedded\", which runs \
                         its own broker on broker.listen and never connects there; remove \
                         source.mqtt.url to use the embedded broker, or set source.kind = \"mqtt\" \
                         to use that broker"
                    ));
                }
                if [&m.ca_file, &m.client_cert_file, &m.client_key_file]
                    .iter()
                    .any(|f| file(f).is_some())
                {
                    return Err(
                        "source.mqtt sets TLS files but source.kind is \"embedded\", whose \
                         broker speaks plain MQTT on broker.listen; set source.kind = \"mqtt\" and \
                         an mqtts:// url to use a TLS broker"
                            .into(),
                    );
                }
                (listen.ip().to_string(), listen.port(), false)
            }
            None => parse_broker_url(m.url.trim()).map_err(|e| format!("source.mqtt.url {e}"))?,
        };
        let client_cert = match (file(&m.client_cert_file), file(&m.client_key_file)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(
                "source.mqtt.client_cert_file and client_key_file go together: set both or neither"
                    .into(),
            ),
        };
        if !tls
            && (file(&m.ca_file).is_some() || client_cert.is_some())
            && in_use
            && embedded.is_none()
        {
            return Err(format!(
                "source.mqtt sets TLS files but the url \"{}\" is not mqtts://; write mqtts://HOST:PORT",
                m.url.trim()
            ));
        }
        let credentials = mqtt_credentials(m)?;
        let tls = tls.then(|| MqttTls {
            ca_file: file(&m.ca_file),
            client_cert,
        });
        let host = if host == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        if m.topic.trim().is_empty() {
            return Err(
                "source.mqtt.topic is empty; set the topic the rows are published on".into(),
            );
        }
        // A filter the broker cannot take would only show as a connection it keeps closing.
        let topic = m.topic.trim();
        if !rumqttc::valid_filter(topic) || topic.starts_with("$share/") {
            return Err(format!(
                "source.mqtt.topic \"{topic}\" is not a valid MQTT topic filter: + and # stand \
                 alone between slashes, # only last (a shared subscription is set with \
                 source.mqtt.shared_group, not in the topic)"
            ));
        }
        if m.client_id.trim().is_empty() {
            return Err(
                "source.mqtt.client_id is empty; set a stable id so the broker keeps the session"
                    .into(),
            );
        }
        if m.qos > 1 {
            return Err(format!(
                "source.mqtt.qos is {}; set 1 (at least once) or 0 (at most once)",
                m.qos
            ));
        }
        // MQTT carries the keep-alive in 16 bits: a larger value would reach the broker wrapped.
        if !(5..=u64::from(u16::MAX)).contains(&m.keep_alive_s) {
            return Err(format!(
                "source.mqtt.keep_alive_s is {}; set 5 to 65535 seconds",
                m.keep_alive_s
            ));
        }
        let group = m.shared_group.trim();
        if group.contains(['/', '+', '#']) {
            return Err(format!(
                "source.mqtt.shared_group \"{group}\" may not contain /, + or #"
            ));
        }
        let on_session_lost = match m.on_session_lost.trim() {
            "resume" => OnSessionLost::Resume,
            "exit" => OnSessionLost::Exit,
            other => {
                return Err(format!(
                    "source.mqtt.on_session_lost is \"{other}\"; set \"resume\" (keep serving after the broker lost faultline's sessions) or \"exit\" (stop, for a supervisor to decide)"
                ))
            }
        };
        let format = match m.format.trim() {
            "json" => RowFormat::Json,
            "sparkplug" => {
                let id_metric = m.sparkplug_id_metric.trim();
                if id_metric.is_empty() {
                    return Err("source.mqtt.sparkplug_id_metric is empty; name the Sparkplug metric that holds the wafer id".into());
                }
                if !m.topic.trim().starts_with("spBv1.0/") {
                    return Err(format!(
                        "source.mqtt.format is \"sparkplug\" but topic \"{}\" is not in the Sparkplug B namespace; subscribe to spBv1.0/<group>/# (births and data)",
                        m.topic.trim()
                    ));
                }
                RowFormat::Sparkplug {
                    id_metric: id_metric.to_string(),
                }
            }
            other => {
                return Err(format!(
                    "source.mqtt.format is \"{other}\"; set \"json\" (faultline's JSON rows) or \"sparkplug\" (Sparkplug B)"
                ))
            }
        };
        Ok(MqttSettings {
            format,
            on_session_lost,
            host,
            port,
            topic: m.topic.trim().to_string(),
            client_id: m.client_id.trim().to_string(),
            qos: m.qos,
            shared_group: (!group.is_empty()).then(|| group.to_string()),
            keep_alive: Duration::from_secs(m.keep_alive_s),
            tls,
            credentials,
        })
    }

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
    // A host name holds neither: the form faultline prints (mqtt://HOST:PORT/TOPIC) pasted in
    // was read as host "broker/faultline/rows", which never resolves.
    if rest.contains('/') {
        return Err(format!(
            "'{url}' has a path; a broker URL is mqtt://HOST:PORT, and the topic has a key of its own (topic)"
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "'{url}' holds a user name; a broker URL is mqtt://HOST:PORT, and the login goes in username and password (or password_file)"
        ));
    }
    let (host, port) = split_host_port(url, rest)?;
    let port = port.unwrap_or(if tls { 8883 } else { 1883 });
    Ok((host.to_string(), port, tls))
}

/// Splits `HOST[:PORT]` (an IPv6 address in brackets: `[::1]:1883`) of `url` into the host and,
/// if given, the port.
pub fn split_host_port<'a>(url: &str, rest: &'a str) -> Result<(&'a str, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("'{url}' has an invalid port '{p}'"))
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| {
            format!("'{url}' opens an IPv6 address with '[' and does not close it with ']'")
        })?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (host, Some(port(p)?)),
                None => {
                    return Err(format!(
                        "'{url}' has '{after}' after the IPv6 address; write [ADDRESS]:PORT"
                    ))
                }
            },
        }
    } else {
        match rest.split_once(':') {
            _ if rest.contains(',') => {
                return Err(format!(
                    "'{url}' names more than one broker; give one (a client finds the rest of a cluster from it)"
                ))
            }
            Some((_, p)) if p.contains(':') => {
                return Err(format!(
                    "'{url}': write an IPv6 address in brackets, as in [::1]:PORT"
                ))
            }
            Some((host, p)) => (host, Some(port(p)?)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{url}' names no host; write mqtt://HOST:PORT"));
    }
    Ok((host, port))
}

/// `HOST:PORT`, an IPv6 host in brackets (`[::1]:1883`): what [`split_host_port`] reads.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `[source.mqtt]` user name and password (from `password` or `password_file`).
fn mqtt_credentials(m: &MqttSection) -> Result<Option<(String, Secret)>, String> {
    let user = m.username.trim();
    let password = match (m.password.as_str(), m.password_file.trim()) {
        ("", "") => String::new(),
        (p, "") => p.to_string(),
        ("", file) => crate::secret::read_secret("source.mqtt.password_file", file)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_urls_parse_or_say_how_to_write_them() {
        assert_eq!(parse_mqtt_url("mqtt://h:1"), Ok(("h".into(), 1)));
        assert_eq!(parse_mqtt_url("mqtt://h"), Ok(("h".into(), 1883)));
        assert_eq!(parse_mqtt_url("mqtt://[::1]:9"), Ok(("::1".into(), 9)));
        // An IPv6 address without a port takes the default; it was "an invalid port '1]'".
        assert_eq!(parse_mqtt_url("mqtt://[::1]"), Ok(("::1".into(), 1883)));
        assert_eq!(
            parse_broker_url("mqtts://[fe80::2]/"),
            Ok(("fe80::2".into(), 8883, true))
        );
        // Without brackets an IPv6 address cannot be told from its port: "::1" was host ":",
        // port 1.
        for bad in ["mqtt://::1", "mqtt://fe80::2:1883"] {
            assert!(
                parse_mqtt_url(bad).unwrap_err().contains("in brackets"),
                "{bad}"
            );
        }
        assert!(parse_mqtt_url("mqtt://[::1")
            .unwrap_err()
            .contains("does not close"));
        assert!(parse_mqtt_url("mqtt://[::1]1883")
            .unwrap_err()
            .contains("[ADDRESS]:PORT"));
        assert!(parse_mqtt_url("mqtt://[]:1")
            .unwrap_err()
            .contains("names no host"));
        // The form faultline prints for replay, and a login in the URL: said, not a host that
        // never resolves.
        for with_path in [
            "mqtt://broker/faultline/rows",
            "mqtt://broker:1883/faultline/rows",
        ] {
            assert!(
                parse_mqtt_url(with_path)
                    .unwrap_err()
                    .contains("has a path"),
                "{with_path}"
            );
        }
        assert!(parse_mqtt_url("mqtt://u:p@broker:1883")
            .unwrap_err()
            .contains("username"));
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
}
