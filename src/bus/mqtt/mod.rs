//! MQTT, both directions: the source (rows in, QoS 1 with manual acknowledgements), the publisher
//! (verdicts out, acknowledgements counted in order), TLS, and the embedded broker; and what
//! every faultline MQTT connection shares (options, a clean disconnect; connecting, reconnecting
//! and failure reporting are the [`driver`]'s).

pub mod broker;
pub mod driver;
pub mod publisher;
pub mod settings;
pub mod source;
pub mod tls;

pub use settings::{
    join_host_port, parse_broker_url, parse_mqtt_url, split_host_port, MqttSection, MqttSettings,
    MqttTls, OnSessionLost, RowFormat,
};

use std::time::Duration;

/// The largest packet MQTT allows (a remaining length of 268,435,455 bytes and a fixed header of
/// at most 5): what faultline's readers accept, so that a message over the payload limit is read
/// and dead-lettered. At a lower limit rumqttc drops the connection on it, and a broker that keeps
/// the session sends it again at every reconnect: nothing behind it would ever be read.
pub const MAX_PACKET_BYTES: usize = 268_435_455 + 5;

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
