//! MQTT, both directions: the source (rows in, QoS 1 with manual acknowledgements), the publisher
//! (verdicts out, acknowledgements counted in order), TLS, and the embedded broker; and what
//! every faultline MQTT connection shares (options, failure reporting, a clean disconnect).

pub mod broker;
pub mod driver;
pub mod publisher;
pub mod settings;
pub mod source;
pub mod tls;

pub use settings::{
    parse_broker_url, parse_mqtt_url, MqttSection, MqttSettings, MqttTls, OnSessionLost,
};

use super::Backoff;
use std::time::Duration;

/// The options every faultline MQTT connection starts from: `client_id` on the configured broker,
/// over `transport`, with the configured keep-alive and login.
pub fn mqtt_options(
    settings: &crate::bus::mqtt::MqttSettings,
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
    link: &crate::bus::link::Link,
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
    link: &crate::bus::link::Link,
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
